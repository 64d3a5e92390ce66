"""Partial uploads for a yearly migration: collect teachers' sheets, then compile them once.

The same file twice is a no-op; a corrected sheet from the same teacher (the same set of teacher
emails in it) replaces the earlier one; the batch reads nothing until ``confirm_all_uploaded``.
A held batch takes a corrected sheet too: it replaces the sheet with the same teachers (or the
same file name), and the batch is read, validated and matched again, keeping the review decisions
that still apply.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tasks.ingest import expand_paths
from tasks.isolated_read import read_roster_files
from tasks.spreadsheets import SpreadsheetError, file_sha256
from warehouse import batches
from warehouse.connection import first_row, transaction

STATUS_COLLECTING = "collecting"


class UploadError(ValueError):
    """An upload that cannot be taken; the message says why."""


def _refusal(batch_id: int, status: str) -> str:
    """Why a batch in ``status`` takes no upload, and what to do instead."""
    if status == batches.STATUS_COMMITTED:
        return (f"Batch {batch_id} is committed: it no longer takes uploads. Start a new batch with the "
                "corrected sheets (rosterflow migrate or register).")
    if status == batches.STATUS_REJECTED:
        return f"Batch {batch_id} was rejected: it no longer takes uploads. Start a new batch with the sheets."
    if status == batches.STATUS_APPROVED:
        return (f"Batch {batch_id} is approved and waits for its commit: it no longer takes uploads. Correct "
                "the sheet in a new batch after the commit, or reject this batch first.")
    return (f"Batch {batch_id} is {status}: it no longer takes uploads (a batch collecting sheets takes them; a "
            "held batch, or one whose plan holds schools, takes corrected sheets).")


def takes_corrections(con: duckdb.DuckDBPyConnection, batch: dict[str, Any]) -> bool:
    """Whether the batch takes a corrected sheet: it is held, or its plan holds schools for
    their invalid rows (awaiting approval), or it took a corrected sheet and has not been read
    again yet (several files in one upload command)."""
    if batch["status"] == batches.STATUS_HELD:
        return True
    if batch["status"] == batches.STATUS_AWAITING_APPROVAL:
        plan = batches.stage_result(con, batch["batch_id"], "plan") or {}
        return bool(plan.get("held_schools"))
    return batch["status"] == batches.STATUS_OPEN and "ingest" not in batch["stages"] and bool(first_row(con.execute(
        "SELECT 1 FROM audit_log WHERE batch_id = ? AND action = 'upload.correct_held'", [batch["batch_id"]])))


def add_upload(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, store_dir: Path, actor: str) -> dict[str, Any]:
    """Store one uploaded sheet for a collecting batch and say what it holds; for a held batch,
    take it as a corrected sheet (see ``correct_held_batch``)."""
    batch = batches.get_batch(con, batch_id)
    if takes_corrections(con, batch):
        return correct_held_batch(con, batch, Path(path), store_dir, actor)
    if batch["status"] != STATUS_COLLECTING:
        raise UploadError(_refusal(batch_id, batch["status"]))
    path = Path(path)
    if not path.is_file():
        raise UploadError(f"No file at {path}.")
    sha256 = file_sha256(path)
    same = first_row(con.execute(
        "SELECT upload_id, file_name FROM batch_uploads WHERE batch_id = ? AND sha256 = ?", [batch_id, sha256]))
    if same:
        return {"upload_id": same[0], "file_name": same[1], "duplicate": True, "replaced": []}
    teachers, rows_read, problem = _read_upload(path, batch["config"].get("sheet"))
    stored = _store(path, sha256, store_dir, batch_id)
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


def _read_upload(path: Path, sheet: str | None) -> tuple[list[str], int, str | None]:
    """The teacher emails in an uploaded sheet, its rows, and the problem if it cannot be read."""
    (result,) = read_roster_files([str(path)], sheet)
    if isinstance(result, SpreadsheetError):
        return [], 0, f"{result.problem} {result.fix}"
    teachers = sorted(result.rows["teacher_email"].drop_nulls().str.strip_chars().str.to_lowercase().unique())
    return teachers, result.rows.height, None


def _store(path: Path, sha256: str, store_dir: Path, batch_id: int) -> Path:
    """A copy of the upload, kept under its own name (reports name the file the teacher sent), in
    a folder per content."""
    stored = Path(store_dir) / f"batch-{batch_id}" / sha256[:16] / path.name
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, stored)
    return stored


def correct_held_batch(con: duckdb.DuckDBPyConnection, batch: dict[str, Any], path: Path, store_dir: Path,
                       actor: str) -> dict[str, Any]:
    """Take a corrected sheet for a held batch: it replaces the batch's sheet with the same teacher
    emails, or else the one with the same file name (a sheet matching neither is added); the
    batch goes back to be read, validated and matched again (review decisions that still apply
    are kept by the match). The same file again changes nothing."""
    batch_id = batch["batch_id"]
    if not path.is_file():
        raise UploadError(f"No file at {path}.")
    sha256 = file_sha256(path)
    current = expand_paths(batch["config"]["files"])
    for existing in current:
        if Path(existing).is_file() and file_sha256(Path(existing)) == sha256:
            return {"upload_id": None, "file_name": path.name, "duplicate": True, "replaced": [],
                    "replaced_files": [], "reopened": False}
    teachers, rows_read, problem = _read_upload(path, batch["config"].get("sheet"))
    # The teachers of each current sheet: from its upload record, or from the rows read from it.
    uploaded = {r[0]: (r[1], list(r[2])) for r in con.execute(
        "SELECT stored_path, upload_id, teachers FROM batch_uploads WHERE batch_id = ? AND replaced_by IS NULL",
        [batch_id]).fetchall()}
    staged = dict(con.execute(
        "SELECT file_name, list_sort(list(DISTINCT lower(trim(teacher_email)))"
        " FILTER (WHERE teacher_email IS NOT NULL)) FROM staged_rows WHERE batch_id = ? GROUP BY file_name",
        [batch_id]).fetchall())

    def teachers_of(existing: str) -> list[str]:
        if existing in uploaded:
            return sorted(uploaded[existing][1])
        return list(staged.get(Path(existing).name) or [])

    replaced_files = [f for f in current if teachers and teachers_of(f) == teachers]
    if not replaced_files:
        replaced_files = [f for f in current if Path(f).name == path.name]
    stored = _store(path, sha256, store_dir, batch_id)
    files = [f for f in current if f not in replaced_files]
    position = current.index(replaced_files[0]) if replaced_files else len(current)
    files.insert(min(position, len(files)), str(stored.resolve()))
    config = {**batch["config"], "files": files}
    with transaction(con):
        upload_id = first_row(con.execute(
            "INSERT INTO batch_uploads (batch_id, file_name, sha256, stored_path, teachers, rows_read, problem,"
            " uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id, sha256) DO UPDATE SET"
            " replaced_by = NULL, stored_path = excluded.stored_path RETURNING upload_id",
            [batch_id, path.name, sha256, str(stored.resolve()), teachers, rows_read, problem, actor]))[0]
        replaced = [uploaded[f][0] for f in replaced_files if f in uploaded]
        if replaced:
            con.execute("UPDATE batch_uploads SET replaced_by = ? WHERE list_contains(?, upload_id)",
                        [upload_id, replaced])
        con.execute("UPDATE batches SET config = ? WHERE batch_id = ?", [json.dumps(config), batch_id])
        batches.clear_stages(con, batch_id, ("ingest", "validate", "match", "review", "plan", "approve"))
        batches.set_status(con, batch_id, batches.STATUS_OPEN)
        batches.audit(con, actor, "upload.correct_held", "upload", upload_id, batch_id,
                      {"file": path.name, "sha256": sha256, "rows": rows_read, "replaced": replaced,
                       "replaced_files": replaced_files})
    return {"upload_id": upload_id, "file_name": path.name, "duplicate": False, "replaced": replaced,
            "replaced_files": [Path(f).name for f in replaced_files], "rows_read": rows_read, "teachers": teachers,
            "problem": problem, "reopened": True}


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
