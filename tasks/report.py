"""Reports a person reads: the validation report and the plan, as workbooks (the flows publish them as
Prefect artifacts too, in ``flows.prefect_tasks``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tasks.exports import write_xlsx
from warehouse import batches
from warehouse.handle import Warehouse


def artifact_key(prefix: str, batch_id: int) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-batch-{batch_id}"


def write_validation_report(wh: Warehouse, batch_id: int, report_dir: Path) -> pl.DataFrame:
    """Write the batch's validation issues to ``validation-report.xlsx`` in its report folder, when
    there are any; return them."""
    # Validation's module imports pandera: only a batch's report needs it, not `rosterflow plan`.
    from tasks.validate import batch_issues, write_issue_report

    with wh.read() as con:
        issues = batch_issues(con, batch_id)
        if issues.height:
            write_issue_report(con, batch_id, report_dir / f"batch-{batch_id}" / "validation-report.xlsx",
                               private=True)
    return issues


def validation_summary(batch_id: int, problems: int, rows: int) -> str:
    """The validation report's headline: how many problems in how many rows (also when none)."""
    return (f"Batch {batch_id}: {problems:,} problem{'s' if problems != 1 else ''} in {rows:,} "
            f"row{'s' if rows != 1 else ''}")


def summary_rows(summary: dict[str, Any]) -> pl.DataFrame:
    """The plan summary as two text columns (item, value), lists and guards spelled out."""
    rows = []
    for key, value in summary.items():
        if isinstance(value, list):
            if not value:
                rows.append({"item": key, "value": ""})
            for entry in value:
                text = ", ".join(f"{k}: {v}" for k, v in entry.items()) if isinstance(entry, dict) else str(entry)
                rows.append({"item": key, "value": text})
        elif isinstance(value, dict):
            rows.append({"item": key, "value": ", ".join(f"{k}: {v}" for k, v in value.items())})
        else:
            rows.append({"item": key, "value": "" if value is None else str(value)})
    return pl.DataFrame(rows, schema={"item": pl.String, "value": pl.String})


def write_plan_xlsx(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, private: bool = False) -> Path:
    """The plan an approver reads, as a workbook: the summary, then one sheet per plan table
    (classes with * where some students are already enrolled, students per class with the
    already-enrolled ones marked, removals, ...). ``private``: 0600 in a 0700 folder (the outbox)."""
    from tasks.plan import plan_tables
    from tasks.plan_view import plan_version

    summary = batches.stage_result(con, batch_id, "plan")
    if summary is None:
        raise LookupError(f"Batch {batch_id} has no plan yet: finish its review first.")
    # The version an approval names, recomputed (first row of the summary).
    summary = {"version": plan_version(con, batch_id), **{k: v for k, v in summary.items() if k != "version"}}
    tables = plan_tables(con, batch_id)
    sheets = {"Summary": summary_rows(summary)}
    for name, frame in tables.items():
        if "already_enrolled" in frame.columns:
            frame = frame.with_columns(already_enrolled=pl.when(pl.col("already_enrolled")).then(pl.lit("*"))
                                       .otherwise(pl.lit("")))
        if "some_already_enrolled" in frame.columns:
            frame = frame.drop("some_already_enrolled")
        sheets[name.replace("_", " ").title()] = frame
    return write_xlsx(path, sheets, private=private)
