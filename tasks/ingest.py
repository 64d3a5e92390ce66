"""Ingest: roster files into staged rows, with every file's outcome recorded on the batch."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from schemas.columns import CANONICAL_COLUMNS
from tasks.isolated_read import Reader, read_roster_files
from tasks.progress import Progress
from tasks.spreadsheets import (
    HEADER_SEARCH_ROWS, ReadLimits, SpreadsheetError, check_sheet_size, declared_data_rows, declared_sheet_facts,
)
from warehouse import batches
from warehouse.connection import ArrowStream, insert_frame
from warehouse.handle import Warehouse


ROSTER_SUFFIXES = (".xlsx", ".xlsm", ".xls")


def expand_paths(paths: list[str]) -> list[str]:
    """Files named directly are kept as given (a missing one is reported later); a folder or a glob
    pattern stands for the roster workbooks in it, in name order. An empty path stands for nothing
    (not the current folder): ``unmatched_paths`` reports it."""
    expanded: list[str] = []
    for raw in paths:
        expanded += _workbooks_of(raw)
    return expanded


def _workbooks_of(raw: str) -> list[str]:
    if not raw.strip():
        return []
    path = Path(raw)
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.suffix.lower() in ROSTER_SUFFIXES
                      and not p.name.startswith("~$"))
    if any(ch in raw for ch in "*?["):
        return sorted(p for p in glob.glob(raw) if Path(p).suffix.lower() in ROSTER_SUFFIXES)
    return [raw]


def unmatched_paths(paths: list[str]) -> list[dict[str, Any]]:
    """A file issue for each named path that stands for no workbook: an empty path, a folder
    without workbooks, a pattern that matches none (a missing file is reported when it is read)."""
    issues = []
    for raw in paths or [""]:
        if _workbooks_of(raw):
            continue
        if not raw.strip():
            problem, fix = "an empty path names no file.", "Name the roster files or the folder that holds them."
        elif Path(raw).is_dir():
            problem = "no roster files (.xlsx, .xlsm, .xls) were found in this folder."
            fix = "Upload the sheets to that folder, or name the files."
        else:
            problem = "this pattern matches no roster file (.xlsx, .xlsm, .xls)."
            fix = "Check the folder and the pattern, or name the files."
        issues.append({"file_name": raw, "sheet": None, "problem": problem, "fix": fix})
    return issues


class BatchTooLarge(ValueError):
    """The files hold more rows than one batch accepts; nothing was staged."""


def ingest_files(
    wh: Warehouse,
    batch_id: int,
    paths: list[str],
    sheet: str | None = None,
    max_rows: int = 1_048_576,
) -> dict[str, Any]:
    """Read every file into ``staged_rows`` for the batch; a file that cannot be read is reported.

    The files are read with the warehouse closed; it is held only to write the rows. Resumes: if
    the batch's ingest stage has finished (here or, meanwhile, in another process), its recorded
    result is returned. Raises ``BatchTooLarge`` before staging anything when the files hold more
    than ``max_rows`` rows.
    """
    return batches.run_stage(
        wh, batch_id, "ingest", lambda con: None, lambda _: read_files(batch_id, paths, sheet, max_rows),
        lambda con, read: store_staged(con, batch_id, read))


@dataclass
class FilesRead:
    """What reading a batch's files found, before it is written to the warehouse."""

    result: dict[str, Any]
    staged: pl.DataFrame
    file_rows: list[dict[str, Any]]
    file_issues: list[dict[str, Any]]


def refuse_if_declared_too_large(paths: list[str], sheet: str | None, max_rows: int) -> int:
    """Raise ``BatchTooLarge`` before any file is parsed when the sheets' own ranges already say
    the batch is too large; return how many rows below their headers they declare (at most). A sheet whose range is absurd (a stray cell far out) is left to the
    reader, which refuses that file by name and says why."""
    declared = []
    for raw_path in paths:
        name = Path(raw_path).name
        sizes = []
        for sheet_name, facts in declared_sheet_facts(Path(raw_path)).items():
            if sheet is not None and sheet_name != sheet:
                continue
            try:
                check_sheet_size(name, sheet_name, facts, ReadLimits())
            except SpreadsheetError:
                continue
            rows = declared_data_rows(facts)
            if rows is not None:
                sizes.append((rows, sheet_name, facts.used_range))
        if sizes:
            declared.append((*max(sizes), name))
    # The header and any title rows above it are inside the declared range: allow for them here;
    # the rows actually read are counted exactly after parsing.
    total = sum(rows for rows, *_ in declared)
    if total - (HEADER_SEARCH_ROWS - 1) * len(declared) <= max_rows:
        return total
    largest = sorted(declared, key=lambda found: found[0], reverse=True)[:5]
    listed = "; ".join(f"{name} sheet {sheet_name!r}: used range {used or '?'}, about {rows:,} rows"
                       for rows, sheet_name, used, name in largest)
    raise BatchTooLarge(
        f"The files hold about {total:,} rows below their headers ({listed}"
        f"{'; ...' if len(declared) > len(largest) else ''}); one batch accepts at most {max_rows:,}. "
        "Split the rows into several batches (for example one per school). If a sheet's roster is shorter than "
        "its used range, a stray cell below it stretches the range: delete the rows below the roster (select "
        "them, right-click, Delete), save, and upload again."
    )


def read_files(batch_id: int, paths: list[str], sheet: str | None, max_rows: int,
               progress: Progress | None = None, reader: Reader | None = None) -> FilesRead:
    """Read every file (in a limited child process: ``reader`` when one was started ahead) into
    one frame of staged rows.

    ``progress(rows read, rows)`` is told as each file is read; until every file is read the total
    is what the sheets declare (an upper bound: it counts title rows), then the rows read."""

    frames = []
    file_rows = []
    file_issues = []
    expanded = expand_paths(paths)
    file_issues += unmatched_paths(paths)
    declared = refuse_if_declared_too_large(expanded, sheet, max_rows)
    if progress is not None:
        progress(0, declared)
    rows_read = 0
    # The batch limit is checked on the declared ranges above and on the rows read below; a
    # sheet on its own is held only to what any sheet may ask for.
    limits = ReadLimits()
    for raw_path, sheet_read in zip(expanded, read_roster_files(expanded, sheet, limits, reader)):
        path = Path(raw_path)
        if isinstance(sheet_read, SpreadsheetError):
            file_issues.append({"file_name": sheet_read.file_name, "sheet": sheet_read.sheet,
                                "problem": sheet_read.problem, "fix": sheet_read.fix})
            continue
        if sheet_read.rows.height != sheet_read.non_empty_rows:
            raise AssertionError(
                f"{path.name}: read {sheet_read.rows.height} rows but the sheet has "
                f"{sheet_read.non_empty_rows} non-empty rows"
            )
        frames.append(
            sheet_read.rows.with_columns(
                file_name=pl.lit(sheet_read.file_name),
                sha256=pl.lit(sheet_read.sha256),
                sheet=pl.lit(sheet_read.sheet),
            )
        )
        file_rows.append(
            {"file_name": sheet_read.file_name, "file_path": str(path.resolve()), "sha256": sheet_read.sha256,
             "sheet": sheet_read.sheet, "rows_read": sheet_read.rows.height}
        )
        rows_read += sheet_read.rows.height
        if progress is not None:
            progress(rows_read, max(declared, rows_read))
        for hidden in sheet_read.hidden_sheets:
            # An error, not a warning: a hidden roster sheet may hold real students, and a
            # migration that did not read them would remove them.
            file_issues.append(
                {"file_name": sheet_read.file_name, "sheet": hidden,
                 "problem": "this hidden sheet carries a roster header and was not read.",
                 "fix": "Unhide it and upload it as its own file if it is a roster, or delete it."}
            )
        for problem, fix in sheet_read.warnings:
            file_issues.append({"file_name": sheet_read.file_name, "sheet": sheet_read.sheet, "problem": problem,
                                "fix": fix, "severity": "warning"})

    # The contract needs pandera: imported here, so finding and uploading files (`rosterflow upload`) does not.
    from schemas.roster import StagedRosterRow

    staged = (
        pl.concat(frames, how="vertical")
        if frames
        else pl.DataFrame(schema={"excel_row": pl.Int32, **{c: pl.String for c in CANONICAL_COLUMNS},
                                  "formula_cells": pl.String, "file_name": pl.String, "sha256": pl.String, "sheet": pl.String})
    )
    if staged.height > max_rows:
        per_file = ", ".join(f"{f['file_name']} sheet {f['sheet']!r}: {f['rows_read']:,}" for f in file_rows)
        raise BatchTooLarge(
            f"The files hold {staged.height:,} student rows ({per_file}); one batch accepts at most {max_rows:,}. "
            "Split the rows into several batches (for example one per school)."
        )
    staged = staged.with_columns(
        batch_id=pl.lit(batch_id, dtype=pl.Int64),
        row_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        excel_row=pl.col("excel_row").cast(pl.Int64),
    ).select(list(StagedRosterRow.to_schema().columns))
    staged = StagedRosterRow.validate(staged, lazy=True)
    if progress is not None and declared > rows_read:  # the sheets declared more (title rows): now it is exact
        progress(rows_read, rows_read)

    result = {
        "files": file_rows,
        "file_errors": [i for i in file_issues if i.get("severity", "error") == "error"],
        "file_warnings": [i for i in file_issues if i.get("severity") == "warning"],
        "rows_staged": staged.height,
    }
    return FilesRead(result, staged, file_rows, file_issues)


def store_staged(con: duckdb.DuckDBPyConnection, batch_id: int, read: FilesRead) -> dict[str, Any]:
    """Write the staged rows, the files and their file-level issues, and mark ingest finished.
    The caller holds the transaction."""
    staged, file_rows, file_issues = read.staged, read.file_rows, read.file_issues
    con.execute("DELETE FROM staged_rows WHERE batch_id = ?", [batch_id])
    con.execute("DELETE FROM batch_files WHERE batch_id = ?", [batch_id])
    con.execute("DELETE FROM validation_issues WHERE batch_id = ? AND row_no IS NULL", [batch_id])
    insert_frame(con, "staged_rows", staged)
    if file_rows:
        con.register("file_frame", ArrowStream(pl.DataFrame(file_rows)))
        con.execute(
            "INSERT INTO batch_files SELECT ?, file_name, file_path, sha256, sheet, rows_read FROM file_frame",
            [batch_id],
        )
        con.unregister("file_frame")
    if file_issues:
        issues = pl.DataFrame(
            [{"file_name": i["file_name"], "sheet": i["sheet"], "problem": i["problem"], "fix": i["fix"],
              "severity": i.get("severity", "error")} for i in file_issues],
            schema={"file_name": pl.String, "sheet": pl.String, "problem": pl.String, "fix": pl.String,
                    "severity": pl.String},
        )
        insert_frame(con, "validation_issues", issues.select(
            pl.lit(batch_id, pl.Int64).alias("batch_id"), "file_name", "sheet", "severity", "problem", "fix"))
    batches.record_stage(con, batch_id, "ingest", read.result)
    return read.result
