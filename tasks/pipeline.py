"""Opening a batch and moving it through the stages up to the next gate (review or approval).

The command line uses ``advance_batch``; the Prefect flows call the same stage functions one task
at a time and pause at the gates.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
from prefect import task

from tasks.ingest import read_files, write_staged
from tasks.match import match_batch
from tasks.matching import MatchConfig
from tasks.plan import build_plan
from tasks.review import close_review
from tasks.validate import check_rows, reference_data, validate_batch, write_validation
from warehouse import batches
from warehouse.connection import opened, transaction


def resolve_term(term: str) -> str:
    """The term with ``{year}`` filled in with the current year (for yearly schedules)."""
    return term.replace("{year}", str(dt.date.today().year))


def open_batch(con: duckdb.DuckDBPyConnection, run_key: str, mode: str, config: dict[str, Any], actor: str,
               collecting: bool = False) -> int:
    """Create the batch for ``run_key`` (or find it again on a re-run) and return its id.

    A ``{year}`` in the term is filled with the current year, so a yearly schedule can say
    "Fall {year}".
    """
    config = {**config, "term": resolve_term(config["term"])}
    batch_id = batches.create_or_get_batch(
        con, run_key, mode, config["term"], config["subscription_type"], config, actor
    )
    if collecting and batches.get_batch(con, batch_id)["status"] == batches.STATUS_OPEN and not batches.get_batch(
            con, batch_id)["stages"]:
        with transaction(con):
            batches.set_status(con, batch_id, "collecting")
    return batch_id


def ingest_and_validate(con: duckdb.DuckDBPyConnection, batch_id: int, paths: list[str], sheet: str | None,
                        max_rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest then validate, each resumable on its own.

    A fresh ingest hands its rows straight to validation, and the staged rows are written to the
    warehouse in a second thread while validation computes (both release the interpreter lock);
    validation writes its own results only after the staged rows are committed.
    """
    if batches.stage_result(con, batch_id, "ingest") is not None:
        return batches.stage_result(con, batch_id, "ingest"), validate_batch(con, batch_id)
    read = read_files(batch_id, paths, sheet, max_rows)
    schools, courses = reference_data(con)
    with ThreadPoolExecutor(max_workers=1) as writer:
        written = writer.submit(write_staged, con, batch_id, read)
        try:
            validation = check_rows(batch_id, read.staged, schools, courses)
        finally:
            written.result()  # re-raises a failed write; nothing of validation is written then
    write_validation(con, batch_id, validation)
    return read.result, validation.result


def advance_batch(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, Any]:
    """Run every stage that can run now, from the batch's recorded configuration.

    Stops at pending review items or at the approval gate; finished stages are not run again.
    Returns the batch status and each stage's result.
    """
    batch = batches.get_batch(con, batch_id)
    config = batch["config"]
    results: dict[str, Any] = {}
    if batch["status"] == "collecting":
        # Partial uploads: nothing is read until an administrator confirms all sheets are in.
        return {"batch_id": batch_id, "status": batch["status"]}
    stale = batches.changes_since(con, batch_id, "match") if batch["status"] not in (
        batches.STATUS_COMMITTED, batches.STATUS_REJECTED) else []
    if stale:
        # Students changed since this batch was matched: match again (review decisions are kept
        # where they still apply) and plan again.
        with transaction(con):
            batches.clear_stages(con, batch_id, ("match", "review", "plan", "approve"))
    results["ingest"], results["validate"] = ingest_and_validate(
        con, batch_id, config["files"], config.get("sheet"), config.get("max_rows", 1_048_576))
    results["match"] = match_batch(con, batch_id, MatchConfig(**config.get("match", {})))
    results["review"] = close_review(con, batch_id)
    if results["review"]["pending"]:
        return {"batch_id": batch_id, "status": batches.get_batch(con, batch_id)["status"], **results}
    results["plan"] = build_plan(con, batch_id)
    return {"batch_id": batch_id, "status": batches.get_batch(con, batch_id)["status"], **results}


@task(name="open-batch", retries=2, retry_delay_seconds=2)
def open_batch_task(warehouse_path: str, run_key: str, mode: str, config: dict[str, Any], actor: str) -> int:
    """Prefect task: open (or find again) the batch of this flow run."""
    with opened(warehouse_path) as con:
        return open_batch(con, run_key, mode, config, actor)


@task(name="finished-stages")
def finished_stages_task(warehouse_path: str, batch_id: int) -> list[str]:
    """Prefect task: the stages the batch has finished (a re-run skips the gates already passed)."""
    with opened(warehouse_path) as con:
        return batches.get_batch(con, batch_id)["stages"]


@task(name="ingest-and-validate", retries=2, retry_delay_seconds=2)
def ingest_validate_task(warehouse_path: str, batch_id: int, paths: list[str], sheet: str | None,
                         max_rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prefect task: read the batch's files and validate their rows."""
    with opened(warehouse_path) as con:
        return ingest_and_validate(con, batch_id, paths, sheet, max_rows)
