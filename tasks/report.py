"""Reports a person reads: the validation report and the plan, as Prefect artifacts and workbooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.exports import write_xlsx
from tasks.validate import batch_issues, write_issue_report
from tasks.retries import WAREHOUSE_TASK
from warehouse import batches
from warehouse.handle import Warehouse


def artifact_key(prefix: str, batch_id: int) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-batch-{batch_id}"


@task(name="publish-validation-report", **WAREHOUSE_TASK)
def publish_issues_task(warehouse: Warehouse, batch_id: int, report_dir: str) -> int:
    """Publish every validation issue of the batch as a table artifact and an .xlsx; return how many."""
    with warehouse.read() as con:
        issues = batch_issues(con, batch_id)
        if issues.height:
            write_issue_report(con, batch_id, Path(report_dir) / f"batch-{batch_id}" / "validation-report.xlsx",
                               private=True)
    if issues.height:
        create_table_artifact(
            key=artifact_key("validation", batch_id),
            table=issues.to_dicts(),
            description=f"Batch {batch_id}: rows with errors are not imported; fix them and upload again.",
        )
    return issues.height


@task(name="publish-plan")
def publish_plan_task(batch_id: int, context: dict[str, Any]) -> None:
    """Publish the plan summary (markdown) and each of its tables (classes, students per class,
    removals, removals per school, new teachers, name differences) as a table artifact."""
    create_markdown_artifact(key=artifact_key("plan", batch_id), markdown=context["markdown"],
                             description=f"What batch {batch_id} will do if approved")
    for name, rows in context["tables"].items():
        if rows:
            create_table_artifact(key=artifact_key(f"plan-{name.replace('_', '-')}", batch_id), table=rows,
                                  description=f"Batch {batch_id}: {name.replace('_', ' ')}")


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
    from tasks.plan import plan_tables, plan_version

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


@task(name="write-plan-workbook", **WAREHOUSE_TASK)
def write_plan_workbook_task(warehouse: Warehouse, batch_id: int, report_dir: str) -> str:
    """Prefect task: write the plan workbook next to the batch's other reports; return its path."""
    with warehouse.read() as con:
        return str(write_plan_xlsx(con, batch_id, Path(report_dir) / f"batch-{batch_id}" / "plan.xlsx",
                                   private=True))
