"""Partial uploads for a yearly migration: collect teachers' sheets, then compile them once.

The same file twice is a no-op; a corrected sheet from the same teacher (the same set of teacher
emails in it) replaces the earlier one; the batch reads nothing until ``confirm_all_uploaded``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tasks.isolated_read import read_roster_files
from tasks.spreadsheets import SpreadsheetError, file_sha256
from warehouse import batches
from warehouse.connection import first_row, transaction

STATUS_COLLECTING = "collecting"


class UploadError(ValueError):
    """An upload that cannot be taken; the message says why."""


def add_upload(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, store_dir: Path, actor: str) -> dict[str, Any]:
    """Store one uploaded sheet for a collecting batch and say what it holds."""
    batch = batches.get_batch(con, batch_id)
    if batch["status"] != STATUS_COLLECTING:
        raise UploadError(f"Batch {batch_id} is {batch['status']}: it no longer takes uploads.")
    path = Path(path)
    if not path.is_file():
        raise UploadError(f"No file at {path}.")
    sha256 = file_sha256(path)
    same = first_row(con.execute(
        "SELECT upload_id, file_name FROM batch_uploads WHERE batch_id = ? AND sha256 = ?", [batch_id, sha256]))
    if same:
        return {"upload_id": same[0], "file_name": same[1], "duplicate": True, "replaced": []}
    (result,) = read_roster_files([str(path)], batch["config"].get("sheet"))
    if isinstance(result, SpreadsheetError):
        teachers, rows_read, problem = [], 0, f"{result.problem} {result.fix}"
    else:
        teachers = sorted(result.rows["teacher_email"].drop_nulls().str.strip_chars().str.to_lowercase().unique())
        rows_read, problem = result.rows.height, None
    # Kept under its own name (reports name the file the teacher sent), in a folder per content.
    stored = Path(store_dir) / f"batch-{batch_id}" / sha256[:16] / path.name
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, stored)
    with transaction(con):
        upload_id = first_row(con.execute(
            "INSERT INTO batch_uploads (batch_id, file_name, sha256, stored_path, teachers, rows_read, problem,"
            " uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING upload_id",
            [batch_id, path.name, sha256, str(stored.resolve()), teachers, rows_read, problem, actor]))[0]
        replaced = [r[0] for r in con.execute(
            "UPDATE batch_uploads SET replaced_by = ? WHERE batch_id = ? AND upload_id <> ? AND replaced_by IS NULL"
            " AND len(teachers) > 0 AND list_sort(teachers) = list_sort(?::VARCHAR[]) RETURNING upload_id",
            [upload_id, batch_id, upload_id, teachers]).fetchall()]
        batches.audit(con, actor, "upload.add", "upload", upload_id, batch_id,
                      {"file": path.name, "sha256": sha256, "rows": rows_read, "replaced": replaced})
    return {"upload_id": upload_id, "file_name": path.name, "duplicate": False, "replaced": replaced,
            "rows_read": rows_read, "teachers": teachers, "problem": problem}


def list_uploads(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    """Every upload of the batch, newest last, with what replaced it."""
    return con.sql(
        "SELECT upload_id, file_name, rows_read, array_to_string(teachers, ', ') AS teachers, problem,"
        " uploaded_by, uploaded_at, replaced_by FROM batch_uploads WHERE batch_id = $b ORDER BY upload_id",
        params={"b": batch_id},
    ).pl()


def confirm_all_uploaded(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str) -> dict[str, Any]:
    """The administrator's "all sheets are uploaded": the batch's files become the current uploads."""
    batch = batches.get_batch(con, batch_id)
    if batch["status"] != STATUS_COLLECTING:
        raise UploadError(f"Batch {batch_id} is {batch['status']}, not collecting uploads.")
    files = [r[0] for r in con.execute(
        "SELECT stored_path FROM batch_uploads WHERE batch_id = ? AND replaced_by IS NULL ORDER BY upload_id",
        [batch_id]).fetchall()]
    if not files:
        raise UploadError(f"Batch {batch_id} has no uploads yet.")
    config = {**batch["config"], "files": files}
    with transaction(con):
        con.execute("UPDATE batches SET config = ? WHERE batch_id = ?", [json.dumps(config), batch_id])
        batches.set_status(con, batch_id, batches.STATUS_OPEN)
        batches.audit(con, actor, "upload.all_confirmed", "batch", batch_id, batch_id, {"files": len(files)})
    return {"batch_id": batch_id, "files": len(files)}
