"""The batch state machine and the audit log.

Each stage of a batch writes its rows and its marker in ``batch_stages`` inside one transaction.
A stage that finds its marker returns the recorded result instead of running again, which is how a
re-run after a crash, a retry or a suspended flow resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb

from warehouse.connection import ArrowStream, first_row, transaction

if TYPE_CHECKING:
    import polars as pl

    from warehouse.handle import Warehouse

STAGES = ("ingest", "validate", "match", "review", "plan", "approve", "commit")

# Batch statuses, in the order a batch normally moves through them.
STATUS_OPEN = "open"
STATUS_IN_REVIEW = "in_review"
STATUS_AWAITING_APPROVAL = "awaiting_approval"
STATUS_HELD = "held"
STATUS_APPROVED = "approved"
STATUS_REJECTED = "rejected"
STATUS_COMMITTED = "committed"
# A named file could not be read (missing, not a workbook, damaged, unknown or hidden roster
# sheet): the batch stops after ingest and is kept, with its file issues, for the audit.
STATUS_FAILED = "failed"
# Shown, never stored: an open batch that no live process is working on (its process died).
STATUS_INTERRUPTED = "interrupted"
# Statuses in which a process is expected to be working on the batch (no person is awaited).
WORKING_STATUSES = (STATUS_OPEN,)


class BatchNotFound(LookupError):
    """Raised when a batch id names no batch."""


def require_batch(con: duckdb.DuckDBPyConnection, batch_id: int) -> int:
    """The batch id if it names a batch; otherwise raise ``BatchNotFound`` with what to do."""
    if first_row(con.execute("SELECT 1 FROM batches WHERE batch_id = ?", [batch_id])) is None:
        raise BatchNotFound(f"No batch {batch_id}: list batches with `rosterflow batch list`.")
    return batch_id


def shown_status(status: str, worked_on: bool) -> str:
    """The status to show: an open batch no live process is working on is interrupted."""
    return STATUS_INTERRUPTED if status in WORKING_STATUSES and not worked_on else status


def create_or_get_batch(
    con: duckdb.DuckDBPyConnection,
    run_key: str,
    mode: str,
    term: str,
    subscription_type: str,
    config: dict[str, Any],
    actor: str,
) -> int:
    """Return the batch for ``run_key``, creating it on first call (a flow re-run finds its own)."""
    row = first_row(con.execute("SELECT batch_id FROM batches WHERE run_key = ?", [run_key]))
    if row:
        return int(row[0])
    with transaction(con):
        batch_id = first_row(con.execute(
            "INSERT INTO batches (run_key, mode, term, subscription_type, config, status)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING batch_id",
            [run_key, mode, term, subscription_type, json.dumps(config, default=str), STATUS_OPEN],
        ))[0]
        audit(con, actor, "batch.create", "batch", batch_id, batch_id, {"mode": mode, "term": term})
    return int(batch_id)


def get_batch(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, Any]:
    """The batch row as a dict, with its config parsed and its finished stages listed."""
    result = con.execute("SELECT * FROM batches WHERE batch_id = ?", [batch_id])
    columns = [d[0] for d in result.description]
    rows = result.fetchall()
    if not rows:
        require_batch(con, batch_id)
    batch = dict(zip(columns, rows[0]))
    batch["config"] = json.loads(batch["config"])
    batch["stages"] = [
        r[0]
        for r in con.execute(
            "SELECT stage FROM batch_stages WHERE batch_id = ? ORDER BY finished_at", [batch_id]
        ).fetchall()
    ]
    return batch


def stage_result(con: duckdb.DuckDBPyConnection, batch_id: int, stage: str) -> dict[str, Any] | None:
    """The recorded result of a finished stage, or None if it has not finished."""
    row = first_row(con.execute(
        "SELECT result FROM batch_stages WHERE batch_id = ? AND stage = ?", [batch_id, stage]
    ))
    return json.loads(row[0]) if row else None


def stage_finished_at(con: duckdb.DuckDBPyConnection, batch_id: int, stage: str) -> str | None:
    """When a stage was recorded finished (as text), or None if it has not finished."""
    row = first_row(con.execute(
        "SELECT CAST(finished_at AS VARCHAR) FROM batch_stages WHERE batch_id = ? AND stage = ?", [batch_id, stage]
    ))
    return row[0] if row else None


def record_stage(
    con: duckdb.DuckDBPyConnection, batch_id: int, stage: str, result: dict[str, Any]
) -> None:
    """Mark a stage finished with its result. Call inside the stage's own transaction."""
    con.execute(
        "INSERT OR REPLACE INTO batch_stages (batch_id, stage, result) VALUES (?, ?, ?)",
        [batch_id, stage, json.dumps(result, default=str)],
    )


def clear_stages(con: duckdb.DuckDBPyConnection, batch_id: int, stages: tuple[str, ...]) -> None:
    """Forget finished stages so they run again (e.g. the plan after a review decision changed)."""
    con.execute(
        "DELETE FROM batch_stages WHERE batch_id = ? AND list_contains(?, stage)",
        [batch_id, list(stages)],
    )


def set_status(con: duckdb.DuckDBPyConnection, batch_id: int, status: str) -> None:
    """Set the batch's status. Call inside the caller's transaction."""
    con.execute("UPDATE batches SET status = ? WHERE batch_id = ?", [status, batch_id])


def audit(
    con: duckdb.DuckDBPyConnection,
    actor: str,
    action: str,
    entity: str,
    entity_key: Any,
    batch_id: int | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the audit log (inside the caller's transaction)."""
    con.execute(
        "INSERT INTO audit_log (actor, batch_id, action, entity, entity_key, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [actor, batch_id, action, entity, None if entity_key is None else str(entity_key),
         json.dumps(detail or {}, default=str)],
    )


def audit_many(
    con: duckdb.DuckDBPyConnection,
    actor: str,
    action: str,
    entity: str,
    batch_id: int | None,
    entity_keys: pl.DataFrame | dict[str, list[str]],
) -> None:
    """Append one audit entry per row of ``entity_keys`` (columns ``entity_key``, ``detail`` as text), in bulk.

    ``entity_keys`` is a frame, or (for a few entries, without polars) a dict of the two columns as lists.
    A detail that is a JSON object's text is stored as that object; other text as ``{"detail": text}``."""
    entry = ("INSERT INTO audit_log (actor, batch_id, action, entity, entity_key, detail)"
             " SELECT $actor, $batch, $action, $entity, entity_key,"
             " CASE WHEN starts_with(detail, '{') AND json_valid(detail) THEN detail::JSON"
             " ELSE json_object('detail', detail) END FROM ")
    about = {"actor": actor, "batch": batch_id, "action": action, "entity": entity}
    if isinstance(entity_keys, dict):
        if entity_keys["entity_key"]:
            con.execute(entry + "(SELECT unnest($keys::VARCHAR[]) AS entity_key, unnest($details::VARCHAR[]) AS detail)",
                        {**about, "keys": entity_keys["entity_key"], "details": entity_keys["detail"]})
        return
    import polars as pl

    if entity_keys.is_empty():
        return
    audit_rows = ArrowStream(entity_keys.select(pl.col("entity_key").cast(pl.String), pl.col("detail").cast(pl.String)))
    con.register("audit_rows", audit_rows)
    con.execute(entry + "audit_rows", about)
    # Unregistered only on success: after an error the transaction is aborted and the caller rolls back.
    con.unregister("audit_rows")


# Changes to students made outside any batch's commit (by hand, on the command line).
STUDENT_CHANGES_OUTSIDE_BATCHES = ("temporary.create", "temporary.linked", "temporary.delete", "student.restore")


def changes_since(con: duckdb.DuckDBPyConnection, batch_id: int, stage: str) -> list[str]:
    """What changed the students after this batch's ``stage`` finished, in words: other batches
    committed, and changes made by hand (a temporary student created, linked or deleted, a student
    restored). Empty when the stage's results still hold."""
    changes = [f"batch {other} was committed" for other in commits_since(con, batch_id, stage)]
    by_hand = con.execute(
        "SELECT a.action, count(*) FROM audit_log a, batch_stages s WHERE s.batch_id = ? AND s.stage = ?"
        " AND a.logged_at > s.finished_at AND list_contains(?, a.action)"
        " AND (a.batch_id IS NULL OR a.batch_id <> ?) GROUP BY a.action ORDER BY a.action",
        [batch_id, stage, list(STUDENT_CHANGES_OUTSIDE_BATCHES), batch_id],
    ).fetchall()
    changes += [f"{count} × {action}" for action, count in by_hand]
    return changes


def commits_since(con: duckdb.DuckDBPyConnection, batch_id: int, stage: str) -> list[int]:
    """Batches committed after this batch's ``stage`` finished: its results may be out of date."""
    row = first_row(con.execute(
        "SELECT list(m.batch_id ORDER BY m.batch_id) FROM commit_markers m, batch_stages s"
        " WHERE s.batch_id = ? AND s.stage = ? AND m.committed_at > s.finished_at AND m.batch_id <> ?",
        [batch_id, stage, batch_id],
    ))
    return list(row[0] or []) if row else []


# Audited changes that alter what a stage of another batch read: students (commits, changes by
# hand), and the catalog rows are checked and planned against. Every one of them writes its audit
# entry in the same transaction as the change.
STUDENT_CHANGES = ("batch.commit", *STUDENT_CHANGES_OUTSIDE_BATCHES)
CATALOG_CHANGES = ("school.create", "course.create", "subscription.set")


def inputs_version(con: duckdb.DuckDBPyConnection, batch_id: int, actions: tuple[str, ...]) -> tuple:
    """A token that changes whenever something a stage of this batch read may have changed: the
    batch's own finished stages (a stage cleared or done again), its own audited changes (a review
    decision, an upload), the audited ``actions`` of anyone, and the commits. Read it with the
    inputs and again inside the write: equal tokens mean the inputs still hold."""
    row = first_row(con.execute(
        "SELECT (SELECT list(stage || '@' || CAST(finished_at AS VARCHAR) ORDER BY stage) FROM batch_stages WHERE batch_id = $1),"
        " (SELECT max(audit_id) FROM audit_log WHERE batch_id = $1 OR list_contains($2, action)),"
        " (SELECT count(*) FROM commit_markers)",
        [batch_id, list(actions)],
    ))
    return (tuple(row[0] or ()), row[1], row[2])


def run_stage(wh: "Warehouse", batch_id: int, stage: str, load: Callable[[duckdb.DuckDBPyConnection], Any],
              compute: Callable[[Any], Any], store: Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]],
              actions: tuple[str, ...] = (), attempts: int = 3) -> dict[str, Any]:
    """Run one stage holding the warehouse only to read its inputs and to write its results.

    ``load(con)`` reads the inputs in a short read hold; ``compute(inputs)`` works with the
    warehouse closed; ``store(con, computed)`` writes in bulk inside one short write transaction
    and records the stage, returning its result. The write re-checks, inside its transaction, that
    the stage is still not done (another process may have finished it meanwhile: its result stands
    and is returned) and that ``inputs_version`` is unchanged; if the inputs changed, the stage is
    read and computed again. After ``attempts`` such changes it computes inside the write hold,
    which is long but cannot be overtaken."""
    for _ in range(attempts):
        with wh.read(batch=batch_id, stage=stage) as con:
            done = stage_result(con, batch_id, stage)
            if done is not None:
                return done
            version = inputs_version(con, batch_id, actions)
            inputs = load(con)
        computed = compute(inputs)
        with wh.write(batch=batch_id, stage=stage) as con, transaction(con):
            done = stage_result(con, batch_id, stage)
            if done is not None:
                return done
            if inputs_version(con, batch_id, actions) == version:
                return store(con, computed)
    with wh.write(batch=batch_id, stage=stage) as con, transaction(con):
        done = stage_result(con, batch_id, stage)
        if done is not None:
            return done
        return store(con, compute(load(con)))
