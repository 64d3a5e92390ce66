"""Opening a batch and moving it through the stages up to the next gate (review or approval).

The command line uses ``advance_batch``; the Prefect flows call the same stage functions one task
at a time and pause at the gates.

Each stage's module is imported when the stage runs, not with this one: reading files, validating
(pandera) and matching import much that a command deciding one review item or showing a plan never
needs, and every command pays its imports before it does anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import duckdb

from tasks.progress import Progress
from tasks.review import close_review
from warehouse import batches
from warehouse.connection import transaction
from warehouse.handle import Warehouse
from warehouse.locks import lock_holder

if TYPE_CHECKING:
    import polars as pl

    from tasks.ingest import FilesRead
    from tasks.isolated_read import Reader
    from tasks.validate import Validation

# The stages advance_batch runs, in order; each is recorded on the batch when it finishes.
STAGES = ("ingest", "validate", "match", "review", "plan")


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


def interrupted_batches(con: duckdb.DuckDBPyConnection, warehouse_path: str | Path) -> list[int]:
    """Open batches that no live process is working on: their process died before a gate."""
    rows = con.execute("SELECT batch_id FROM batches WHERE list_contains(?, status) ORDER BY batch_id",
                       [list(batches.WORKING_STATUSES)]).fetchall()
    return [batch_id for (batch_id,) in rows if lock_holder(warehouse_path, batch_id) is None]


def interrupted_batch_of(con: duckdb.DuckDBPyConnection, warehouse_path: str | Path, mode: str,
                         paths: list[str]) -> int | None:
    """The newest interrupted batch of ``mode`` over the same files (the same resolved paths, or
    the same file contents as far as its ingest recorded them), or None."""
    from tasks.ingest import expand_paths
    from tasks.spreadsheets import file_sha256

    wanted = {str(Path(p).resolve()) for p in expand_paths(paths)}
    hashes: set[str] | None = None
    for batch_id in reversed(interrupted_batches(con, warehouse_path)):
        batch_mode, config = con.execute("SELECT mode, config FROM batches WHERE batch_id = ?", [batch_id]).fetchall()[0]
        if batch_mode != mode:
            continue
        theirs = {str(Path(p).resolve()) for p in expand_paths(json.loads(config).get("files", []))}
        if theirs and theirs == wanted:
            return batch_id
        recorded = {r[0] for r in con.execute("SELECT sha256 FROM batch_files WHERE batch_id = ?", [batch_id]).fetchall()}
        if recorded:
            if hashes is None:
                hashes = {file_sha256(Path(p)) for p in wanted if Path(p).is_file()}
            if recorded == hashes:
                return batch_id
    return None


def ingest_and_validate(wh: Warehouse, batch_id: int, paths: list[str], sheet: str | None,
                        max_rows: int, progress: Progress | None = None,
                        reader: Reader | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest then validate, each resumable on its own, holding the warehouse only to read the
    catalog and to write the results.

    A fresh ingest reads the files with the warehouse closed and writes the staged rows in one short
    transaction; meanwhile, on another thread, their validation runs against the catalog read
    before (polars and DuckDB each let go of the interpreter while they work, so the two share the
    cores). The validation is then written in a second short transaction, with no read hold
    before it. Each write re-checks that its stage is still not done (another process may have done
    it meanwhile: its result stands) and that no school or course was added since the catalog was
    read; the validation computed beside the write is stored only if the staged rows recorded are
    the ones this process wrote and the catalog is the one it checked them against, else the batch
    is validated again from the warehouse. ``progress(rows read, rows)`` is told as the files are
    read.

    The reader's child process is started first: it starts Python and imports the parser while
    this process opens the warehouse and reads the catalog. ``reader``: one the caller started
    earlier still (a command starts it before its own imports); the caller ends it.
    """
    from tasks.ingest import BatchTooLarge, read_files, store_staged
    from tasks.isolated_read import start_reader
    from tasks.validate import check_rows, load_staged, reference_data, store_validation

    files: list[FilesRead] = []
    # (the catalog, the validation of the rows read against it), for each time the rows were
    # computed (again when the catalog changed before the write)
    beside: list[tuple[tuple[pl.DataFrame, pl.DataFrame], Future[Validation]]] = []
    # When this process recorded the ingest stage (its finish time as recorded), if it did
    wrote: list[str] = []

    def compute(catalog: tuple[pl.DataFrame, pl.DataFrame]) -> FilesRead:
        if not files:
            files.append(read_files(batch_id, paths, sheet, max_rows, progress, reader))
        beside.append((catalog, pool.submit(check_rows, batch_id, files[0].staged, *catalog)))
        return files[0]

    def store(con: duckdb.DuckDBPyConnection, read: FilesRead) -> dict[str, Any]:
        result = store_staged(con, batch_id, read)
        wrote.append(batches.stage_finished_at(con, batch_id, "ingest"))
        return result

    def stored_beside() -> dict[str, Any] | None:
        # The usual case needs no read hold before the write: the validation computed beside the
        # staged rows' write is stored if, inside the write, the staged rows recorded are still
        # the ones this process wrote and the catalog still the one they were checked against.
        # None when not (the stage then runs as any other, from the warehouse).
        if not (wrote and beside):
            return None
        catalog, computed = beside[-1]
        try:
            validation = computed.result()  # waited for before the hold: nobody waits on it meanwhile
        except Exception:
            # The stage then runs from the warehouse: another process's result stands, a changed
            # catalog is read, and if it fails again it fails there, as any stage does.
            return None
        with wh.write(batch=batch_id, stage="validate") as con, transaction(con):
            done = batches.stage_result(con, batch_id, "validate")
            if done is not None:  # another process validated the batch meanwhile: its result stands
                return done
            if batches.stage_finished_at(con, batch_id, "ingest") != wrote[-1] \
                    or not same_catalog(reference_data(con), catalog):
                return None
            return store_validation(con, batch_id, validation)

    with contextlib.ExitStack() as stack:
        reader = reader if reader is not None else stack.enter_context(start_reader())
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate"))
        try:
            ingested = batches.run_stage(wh, batch_id, "ingest", reference_data, compute, store,
                                         actions=batches.CATALOG_CHANGES)
        except BatchTooLarge as error:
            # Nothing was staged and nothing will be: the batch is over, not interrupted.
            with wh.write(batch=batch_id, stage="ingest") as con:
                mark_failed(con, batch_id, "rosterflow", {"problem": str(error)})
            raise
        validated = stored_beside()
        if validated is None:
            validated = batches.run_stage(wh, batch_id, "validate", lambda con: load_staged(con, batch_id),
                                          lambda inputs: check_rows(batch_id, *inputs),
                                          lambda con, validation: store_validation(con, batch_id, validation),
                                          actions=batches.CATALOG_CHANGES)
    # As recorded (through JSON), whichever process wrote it.
    return ingested, json.loads(json.dumps(validated, default=str))


def same_catalog(catalog: tuple[pl.DataFrame, pl.DataFrame], other: tuple[pl.DataFrame, pl.DataFrame]) -> bool:
    """True when two reads of the schools and courses (``validate.reference_data``) hold the same rows."""
    return all(mine.sort(mine.columns).equals(theirs.sort(theirs.columns)) for mine, theirs in zip(catalog, other))


def mark_failed(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str, detail: dict[str, Any]) -> None:
    """Mark the batch failed, with why in the audit log; its rows and issues are kept."""
    with transaction(con):
        batches.set_status(con, batch_id, batches.STATUS_FAILED)
        batches.audit(con, actor, "batch.fail", "batch", batch_id, batch_id, detail)


def fail_if_unreadable(con: duckdb.DuckDBPyConnection, batch_id: int, ingest: dict[str, Any],
                       actor: str = "rosterflow") -> str | None:
    """A batch with a file that could not be read is not half-run: mark it failed (its rows and
    file issues stay for the audit) and return why; None when every named file was read.

    Row errors are not file errors: they are validation's business (a registration leaves the
    rows out, a migration holds their school)."""
    errors = ingest["file_errors"]
    if not errors:
        return None
    mark_failed(con, batch_id, actor, {"file_errors": errors})
    return f"Batch {batch_id} failed: {len(errors)} file(s) could not be read: " + "; ".join(
        f"{e['file_name']}" + (f" sheet {e['sheet']}" if e.get("sheet") else "") + f": {e['problem']} {e['fix']}"
        for e in errors)


def batch_position(con: duckdb.DuckDBPyConnection,
                   batch_id: int) -> tuple[dict[str, Any], list[str], dict[str, dict[str, Any] | None]]:
    """Where the batch is: its row, what changed the students since it was matched (in words), and
    each stage's recorded result (None: not finished)."""
    batch = batches.get_batch(con, batch_id)
    if batch["status"] in ("collecting", batches.STATUS_FAILED):
        return batch, [], {stage: batches.stage_result(con, batch_id, stage) if stage in batch["stages"] else None
                           for stage in STAGES}
    stale = batches.changes_since(con, batch_id, "match") if batch["status"] not in (
        batches.STATUS_COMMITTED, batches.STATUS_REJECTED) else []
    return batch, stale, {stage: batches.stage_result(con, batch_id, stage) for stage in STAGES}


def settled_progress(batch_id: int, batch: dict[str, Any], stale: list[str],
                     recorded: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """What ``advance_batch`` returns when it would run nothing (the batch is collecting uploads or
    failed, or every stage up to the plan is recorded and no student changed since it was matched),
    from ``batch_position``; None when a stage would run."""
    if batch["status"] == "collecting":
        # Partial uploads: nothing is read until an administrator confirms all sheets are in.
        return {"batch_id": batch_id, "status": batch["status"]}
    if batch["status"] == batches.STATUS_FAILED:
        return {"batch_id": batch_id, "status": batch["status"], "ingest": recorded["ingest"],
                "validate": recorded["validate"]}
    if not stale and all(recorded[stage] is not None for stage in STAGES):
        return {"batch_id": batch_id, "status": batch["status"], **recorded}
    return None


def advance_batch(wh: Warehouse, batch_id: int,
                  progress: Callable[[str], Progress | None] | None = None,
                  reader: Reader | None = None) -> dict[str, Any]:
    """Run every stage that can run now, from the batch's recorded configuration.

    Stops at pending review items or at the approval gate; finished stages are not run again.
    A batch with a file that could not be read stops after ingest with status ``failed``.
    Each stage holds the warehouse only to read its inputs and to write its results.
    Returns the batch status and each stage's result. ``progress(what)``, when given, returns the
    callback a long stage tells its counts to (``what``: "rows read", "rows matched"), or None.
    ``reader``: a reader child process started ahead for the files (``tasks.isolated_read``), if any.
    """
    def told(what: str) -> Progress | None:
        return progress(what) if progress is not None else None

    with wh.read(batch=batch_id, stage="advance") as con:
        batch, stale, recorded = batch_position(con, batch_id)
    settled = settled_progress(batch_id, batch, stale, recorded)
    if settled is not None:
        return settled
    if stale:
        # Students changed since this batch was matched: match again (review decisions are kept
        # where they still apply) and plan again. Re-checked in the write: another process may
        # have matched it again meanwhile.
        with wh.write(batch=batch_id, stage="match") as con, transaction(con):
            if batches.changes_since(con, batch_id, "match"):
                batches.clear_stages(con, batch_id, ("match", "review", "plan", "approve"))
        recorded.update(match=None, review=None, plan=None)
    # The stages finished when the batch was read are taken as recorded then (one read); the first
    # unfinished one and those after it run, each importing its module only then.
    done: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        if recorded[stage] is None:
            break
        done[stage] = recorded[stage]
    config = batch["config"]
    results: dict[str, Any] = {}
    if "validate" in done:
        results["ingest"], results["validate"] = done["ingest"], done["validate"]
    else:
        results["ingest"], results["validate"] = ingest_and_validate(
            wh, batch_id, config["files"], config.get("sheet"), config.get("max_rows", 1_048_576), told("rows read"),
            reader)
    if results["ingest"]["file_errors"]:
        with wh.write(batch=batch_id, stage="ingest") as con:
            fail_if_unreadable(con, batch_id, results["ingest"])
        return {"batch_id": batch_id, "status": batches.STATUS_FAILED, **results}
    if "match" in done:
        results["match"] = done["match"]
    else:
        from tasks.match import match_batch
        from tasks.matching import MatchConfig

        results["match"] = match_batch(wh, batch_id, MatchConfig(**config.get("match", {})), told("rows matched"))
    results["review"] = done["review"] if "review" in done else close_review(wh, batch_id)
    if results["review"]["pending"] and "match" in done and not stale:
        # Nothing ran and nothing was written since the batch was read above (a review decision
        # leaving items pending, say): its status is the one read then, without opening it again.
        return {"batch_id": batch_id, "status": batch["status"], **results}
    if not results["review"]["pending"]:
        if "plan" in done:
            results["plan"] = done["plan"]
        else:
            from tasks.plan import PlanError, build_plan

            try:
                results["plan"] = build_plan(wh, batch_id)
            except PlanError:
                # A review decision reopened the review after it was closed: it waits for it again.
                results["review"] = close_review(wh, batch_id)
    with wh.read(batch=batch_id, stage="advance") as con:
        return {"batch_id": batch_id, "status": batches.get_batch(con, batch_id)["status"], **results}


def uploads_confirmed(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str) -> None:
    """The sheets in the run's folders are all in: a collecting batch may be read now."""
    if batches.get_batch(con, batch_id)["status"] == "collecting":
        with transaction(con):
            batches.set_status(con, batch_id, batches.STATUS_OPEN)
            batches.audit(con, actor, "upload.all_confirmed", "batch", batch_id, batch_id, {})
