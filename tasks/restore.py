"""Restore: bring back students a migration removed, with their enrollments and history.

Removal is a soft delete (status, time, batch), and enrollments are never deleted, so restoring is
setting the student active again. Only registered approvers may restore (proven by their secret);
a student whose ID an active student now carries is refused rather than restored into a duplicate.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from tasks.approvers import verify_approver
from warehouse import batches
from warehouse.connection import ArrowStream, transaction


class RestoreError(ValueError):
    """A restore that cannot be done; the message says why."""


def restore_students(
    con: duckdb.DuckDBPyConnection,
    actor: str,
    student_keys: list[int] | None = None,
    batch_id: int | None = None,
    *,
    secret: str | None,
) -> dict[str, Any]:
    """Restore the named removed students, or every student the given batch removed, as the
    registered approver ``actor`` proven by their ``secret`` (``ApproverError`` otherwise)."""
    if (student_keys is None) == (batch_id is None):
        raise RestoreError("Restore either students (by key) or everything one batch removed, not both or neither.")
    actor = verify_approver(con, actor, secret, "student.restore", batch_id)
    wanted = con.sql(
        "SELECT student_key, status, student_id, ssid, deleted_batch FROM students"
        " WHERE (list_contains($keys, student_key) OR deleted_batch = $batch)",
        params={"keys": student_keys or [], "batch": batch_id},
    ).pl()
    refused = [{"student_key": k, "reason": "no such student"}
               for k in sorted(set(student_keys or []) - set(wanted["student_key"].to_list()))]
    refused += [{"student_key": k, "reason": f"not removed (status {s})"}
                for k, s in wanted.filter(pl.col("status") != "deleted").select("student_key", "status").rows()]
    removed = wanted.filter(pl.col("status") == "deleted")
    con.register("removed_frame", ArrowStream(removed))
    clashing = {r[0] for r in con.execute(
        "SELECT DISTINCT r.student_key FROM students a JOIN removed_frame r"
        " ON (a.student_id = r.student_id OR a.ssid = r.ssid) AND a.student_key <> r.student_key"
        " WHERE a.status <> 'deleted'").fetchall()}
    con.unregister("removed_frame")
    refused += [{"student_key": k, "reason": "an active student now has the same student ID or SSID"}
                for k in sorted(clashing)]
    restore = removed.filter(~pl.col("student_key").is_in(sorted(clashing)))
    with transaction(con):
        con.register("restore_frame", ArrowStream(restore.select("student_key", "deleted_batch")))
        con.execute(
            "UPDATE students SET status = 'active', deleted_at = NULL, deleted_batch = NULL"
            " FROM restore_frame r WHERE students.student_key = r.student_key"
        )
        con.unregister("restore_frame")
        batches.audit_many(con, actor.strip(), "student.restore", "student", batch_id, restore.select(
            pl.col("student_key").alias("entity_key"),
            pl.format("removed by batch {}", pl.col("deleted_batch")).alias("detail")))
    return {"restored": restore["student_key"].to_list(), "refused": refused}
