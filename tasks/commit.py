"""Commit: the approved plan in one DuckDB transaction keyed on the batch.

The new students' passwords are made and hashed first, with the warehouse closed (hashing is most
of a commit's work); the warehouse is held alone only for the short transaction that writes the
batch, so other commands go on meanwhile. A commit marker row is written inside the transaction and read back after it: its presence is the
proof the batch committed (DuckDB has been seen to accept a COMMIT after an aborted transaction
without raising), and committing again is a no-op.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl

from tasks import credentials
from tasks.plan_view import plan_version
from tasks.progress import Progress
from warehouse import batches
from warehouse.connection import ArrowStream, first_row, insert_frame, transaction
from warehouse.handle import Warehouse


class CommitError(RuntimeError):
    """The batch cannot be committed; the message says why."""


class PlanStale(CommitError):
    """The approved plan no longer holds; the batch was sent back to be matched and planned again."""

    def __init__(self, message: str, reasons: list[str]):
        super().__init__(message)
        self.reasons = reasons


def _next_ids(con: duckdb.DuckDBPyConnection, sequence: str, count: int) -> list[int]:
    if count == 0:
        return []
    # Sequence names are fixed identifiers from this module, never user input.
    return [r[0] for r in con.execute(f"SELECT nextval('{sequence}') FROM range(?)", [count]).fetchall()]


def committed_summary(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, Any] | None:
    """The summary recorded by the batch's commit, or None if it never committed."""
    row = first_row(con.execute("SELECT summary FROM commit_markers WHERE batch_id = ?", [batch_id]))
    return json.loads(row[0]) if row else None


def commit_batch(wh: Warehouse, batch_id: int, actor: str,
                 progress: Callable[[str], None] | None = None, hashed: Progress | None = None) -> dict[str, Any]:
    """Apply the approved plan: teachers, classes, students, enrollments, subscriptions, removals.

    All or nothing, exactly once: a second call returns the first commit's summary. The warehouse
    is held only briefly: read the plan, make and hash the new students' passwords with the
    warehouse closed (on every core; ``progress`` is told when that starts, ``hashed(done, total)``
    as the passwords are hashed), then write the batch
    in one short transaction.
    """
    with wh.read(batch=batch_id, stage="commit") as con:
        existing = committed_summary(con, batch_id)
        if existing is not None:
            return {**existing, "already_committed": True}
        require_approved(con, batch_id)
        plan = None if stale_reasons(con, batch_id) else read_plan(con, batch_id)
    if plan is None:
        with wh.write(batch=batch_id, stage="commit") as con:
            refuse_stale_plan(con, batch_id, actor)
            plan = read_plan(con, batch_id)
    new_people = new_people_of_plan(plan)
    if progress is not None:
        progress(f"Batch {batch_id}: hashing {new_people.height} new password(s) on {os.cpu_count() or 1} core(s); "
                 "the warehouse is free meanwhile.")
    prepared = make_passwords(new_people, hashed)
    with wh.write(batch=batch_id, stage="commit") as con:
        return write_commit(con, batch_id, actor, prepared)


def require_approved(con: duckdb.DuckDBPyConnection, batch_id: int) -> None:
    """Raise ``CommitError`` unless the batch's approval stands."""
    decision = batches.stage_result(con, batch_id, "approve")
    if not decision or not decision.get("approved"):
        raise CommitError(f"Batch {batch_id} is not approved: nothing was changed.")


def stale_reasons(con: duckdb.DuckDBPyConnection, batch_id: int) -> list[str]:
    """Why the approved plan no longer holds, in words (empty while it does): the students changed
    after this batch was matched (another batch, or a change by hand), or the plan in the warehouse
    is not the version that was approved."""
    stale = batches.changes_since(con, batch_id, "match")
    decision = batches.stage_result(con, batch_id, "approve") or {}
    if not stale and decision.get("plan_version") not in (None, plan_version(con, batch_id)):
        stale = [f"its plan is no longer version {decision['plan_version']}, the one approved"]
    return stale


def refuse_stale_plan(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str) -> None:
    """When the approved plan no longer holds (``stale_reasons``), its links, new students and
    removals may be wrong now: send the batch back to be matched and planned again, and raise
    ``CommitError`` saying so. Nothing is planned again here: the next `rosterflow plan N` matches
    and plans again, and the new plan needs its own approval. Does nothing while the plan holds."""
    stale = stale_reasons(con, batch_id)
    if not stale:
        return
    with transaction(con):
        batches.clear_stages(con, batch_id, ("match", "review", "plan", "approve"))
        batches.set_status(con, batch_id, batches.STATUS_IN_REVIEW)
        batches.audit(con, actor, "batch.plan_stale", "batch", batch_id, batch_id, {"changed_since": stale})
    raise PlanStale(
        f"Batch {batch_id}: its plan changed after it was approved ({'; '.join(stale)}), so it is out of date. "
        f"Nothing was changed: show the plan again (`rosterflow plan {batch_id}`: its rows are matched again, "
        f"earlier review decisions are kept where they still apply) and approve the version it shows.", stale)


def read_plan(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    """The batch's planned enrollments, one row per sheet row."""
    return con.sql("SELECT * FROM plan_enrollments WHERE batch_id = $b ORDER BY row_no", params={"b": batch_id}).pl()


def new_people_of_plan(plan: pl.DataFrame) -> pl.DataFrame:
    """One row per new student the plan creates (the first row of each new person)."""
    return plan.filter(pl.col("student_action") == "new").unique("new_person_key", keep="first", maintain_order=True)


def make_passwords(new_people: pl.DataFrame, hashed: Progress | None = None) -> pl.DataFrame:
    """A memorable password and its salted hash per new person (``new_person_key``, ``password``,
    ``password_hash``). Hashing is most of a commit's work: it runs on every core, with the
    warehouse closed."""
    passwords = [credentials.memorable_password() for _ in range(new_people.height)]
    return pl.DataFrame({
        "new_person_key": new_people["new_person_key"],
        "password": pl.Series(passwords, dtype=pl.String),
        "password_hash": pl.Series(credentials.hash_passwords(passwords, hashed), dtype=pl.String),
    })


def write_commit(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str, prepared: pl.DataFrame) -> dict[str, Any]:
    """The commit's write, holding the warehouse alone: check again what may have changed since the
    passwords were made (this batch committed by another process, its approval withdrawn, another
    batch committed), then write the whole batch with its commit marker in one transaction and read
    the marker back."""
    existing = committed_summary(con, batch_id)
    if existing is not None:
        return {**existing, "already_committed": True}
    require_approved(con, batch_id)
    refuse_stale_plan(con, batch_id, actor)
    batch = batches.get_batch(con, batch_id)
    plan = read_plan(con, batch_id)
    new_people = new_people_of_plan(plan).join(prepared, on="new_person_key", how="left")
    if new_people["password_hash"].null_count():
        raise CommitError(f"Batch {batch_id}: its plan changed while the commit was making passwords; nothing was "
                          "changed. Run the commit again.")
    with transaction(con):
        summary = _write_batch(con, batch_id, actor, batch, plan, new_people)
        con.execute("INSERT INTO commit_markers (batch_id, summary) VALUES (?, ?)", [batch_id, json.dumps(summary)])
        batches.set_status(con, batch_id, batches.STATUS_COMMITTED)
        batches.record_stage(con, batch_id, "commit", summary)
        batches.audit(con, actor, "batch.commit", "batch", batch_id, batch_id, summary)
    confirmed = committed_summary(con, batch_id)
    if confirmed is None:
        raise CommitError(f"Batch {batch_id}: the commit did not persist; nothing was changed. Run it again.")
    return confirmed


CLASS_KEY = ["school_id", "teacher_email", "class_period", "course_code"]


def _write_batch(con: duckdb.DuckDBPyConnection, batch_id: int, actor: str, batch: dict[str, Any],
                 plan: pl.DataFrame, new_people: pl.DataFrame) -> dict[str, Any]:
    """Every row of the batch (inside the commit transaction); returns the commit's summary."""
    # Logins are given inside the transaction: another batch may have taken some since the plan was read.
    taken_logins = {r[0] for r in con.execute("SELECT login_name FROM students WHERE login_name IS NOT NULL").fetchall()}
    new_people = new_people.with_columns(
        login_name=pl.Series([credentials.login_name(first, last, taken_logins)
                              for first, last in new_people.select("first_name", "last_name").iter_rows()],
                             dtype=pl.String),
        new_student_key=pl.Series(_next_ids(con, "student_seq", new_people.height), dtype=pl.Int64))
    new_teachers = _insert_teachers(con, batch_id, plan)
    new_classes = _insert_classes(con, batch_id, plan)
    _insert_students(con, batch_id, new_people)
    resolved = (
        plan.join(new_people.select("new_person_key", "new_student_key"), on="new_person_key", how="left")
        .join(new_classes.select(*CLASS_KEY, "new_class_id"), on=CLASS_KEY, how="left", nulls_equal=True)
        .with_columns(student_key=pl.coalesce("student_key", "new_student_key"),
                      class_id=pl.coalesce("class_id", "new_class_id"))
    )
    kept = _update_kept_students(con, resolved)
    temporaries_linked = _link_temporaries(con, batch_id, resolved, actor)
    enroll = _insert_enrollments(con, batch_id, batch["subscription_type"], resolved)
    removed = con.sql(
        "UPDATE students SET status = 'deleted', deleted_at = current_timestamp, deleted_batch = $b"
        " WHERE student_key IN (SELECT student_key FROM plan_removals WHERE batch_id = $b) AND status = 'active'"
        " RETURNING student_key",
        params={"b": batch_id},
    ).pl()
    _audit_rows(con, actor, batch_id, batch["subscription_type"], new_teachers, new_classes, new_people, kept,
                enroll, removed, temporaries_linked)
    return {
        "batch_id": batch_id,
        "teachers_created": new_teachers.height,
        "classes_created": new_classes.height,
        "students_created": new_people.height,
        "students_updated": kept.height,
        "students_restored": kept.filter(pl.col("student_action") == "restore").height,
        "enrollments_created": enroll.height,
        "subscriptions_used": enroll.height,
        "students_removed": removed.height,
        "temporary_students_linked": temporaries_linked.height,
    }


def _insert_teachers(con: duckdb.DuckDBPyConnection, batch_id: int, plan: pl.DataFrame) -> pl.DataFrame:
    """The plan's new teachers, inserted; returns them with their ids."""
    new_teachers = plan.filter(pl.col("teacher_is_new")).unique("teacher_email", keep="first", maintain_order=True)
    new_teachers = new_teachers.select(
        pl.Series("teacher_id", _next_ids(con, "teacher_seq", new_teachers.height), pl.Int64),
        pl.col("teacher_email").alias("email"), pl.col("teacher_first").alias("first_name"),
        pl.col("teacher_last").alias("last_name"), pl.lit(batch_id, pl.Int64).alias("created_batch"),
    )
    insert_frame(con, "teachers", new_teachers)
    return new_teachers


def _insert_classes(con: duckdb.DuckDBPyConnection, batch_id: int, plan: pl.DataFrame) -> pl.DataFrame:
    """The plan's new classes, each with a class code no class holds, inserted; returns them with
    ``new_class_id`` and the class key."""
    teacher_ids = con.sql("SELECT teacher_id, email AS teacher_email FROM teachers").pl()
    new_classes = plan.filter(pl.col("class_id").is_null()).unique(CLASS_KEY, keep="first", maintain_order=True)
    taken_codes = {r[0] for r in con.execute("SELECT class_code FROM classes").fetchall()}
    new_classes = new_classes.join(teacher_ids, on="teacher_email").select(
        *CLASS_KEY, "teacher_id", "term",
        pl.Series("new_class_id", _next_ids(con, "class_seq", new_classes.height), pl.Int64),
        pl.Series("class_code", [credentials.class_code(taken_codes) for _ in range(new_classes.height)], pl.String),
    )
    insert_frame(con, "classes", new_classes.select(
        pl.col("new_class_id").alias("class_id"), "school_id", "teacher_id", "term",
        pl.col("class_period").alias("period"), "course_code",
        pl.concat_str([pl.col("term"), pl.lit(" - "), pl.col("class_period")]).fill_null(pl.col("term")).alias("class_name"),
        "class_code", pl.lit(batch_id, pl.Int64).alias("created_batch"),
    ))
    return new_classes


def _insert_students(con: duckdb.DuckDBPyConnection, batch_id: int, new_people: pl.DataFrame) -> None:
    """The new students with their login and password hash, and the plain passwords issued (kept
    until the messages that carry them are written and read back)."""
    insert_frame(con, "students", new_people.select(
        pl.col("new_student_key").alias("student_key"), "first_name", "last_name", "student_id", "ssid",
        "other_id", "date_of_birth", "grade", "school_id", "login_name", "password_hash",
        pl.lit("active").alias("status"), pl.lit(batch_id, pl.Int64).alias("created_batch"),
    ))
    insert_frame(con, "issued_credentials", new_people.select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"), pl.col("new_student_key").alias("student_key"),
        "login_name", "password",
    ))


def _update_kept_students(con: duckdb.DuckDBPyConnection, resolved: pl.DataFrame) -> pl.DataFrame:
    """Existing and restored students become active at the row's school and grade; returns them."""
    # Their names are never changed from a sheet. A temporary student stays temporary unless the plan links it.
    kept = resolved.filter(pl.col("student_action") != "new").unique("student_key", keep="last", maintain_order=True)
    if kept.height:
        con.register("kept_frame", ArrowStream(kept.select("student_key", "school_id", "grade")))
        con.execute(
            "UPDATE students SET status = CASE WHEN students.status = 'temporary' THEN 'temporary' ELSE 'active' END,"
            " deleted_at = NULL, deleted_batch = NULL, school_id = k.school_id, grade = coalesce(k.grade, students.grade)"
            " FROM kept_frame k WHERE students.student_key = k.student_key"
        )
        con.unregister("kept_frame")
    return kept


def _insert_enrollments(con: duckdb.DuckDBPyConnection, batch_id: int, subscription_type: str,
                        resolved: pl.DataFrame) -> pl.DataFrame:
    """Enrollments not held yet, each using one subscription; returns them."""
    enroll = resolved.filter(~pl.col("already_enrolled")).unique(["class_id", "student_key"], maintain_order=True)
    insert_frame(con, "enrollments", enroll.select("class_id", "student_key", pl.lit(batch_id, pl.Int64).alias("created_batch")))
    insert_frame(con, "subscription_usage", enroll.select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"), pl.lit(subscription_type).alias("subscription_type"),
        "school_id", "student_key", "class_id",
    ))
    _use_subscriptions(con, subscription_type, enroll.group_by("school_id").agg(pl.len().alias("n")))
    return enroll


def _audit_rows(con: duckdb.DuckDBPyConnection, actor: str, batch_id: int, subscription_type: str,
                new_teachers: pl.DataFrame, new_classes: pl.DataFrame, new_people: pl.DataFrame, kept: pl.DataFrame,
                enroll: pl.DataFrame, removed: pl.DataFrame, temporaries_linked: pl.DataFrame) -> None:
    """One audit entry per row the commit created, changed or removed."""
    for action, entity, frame in (
        ("teacher.create", "teacher", new_teachers.select(pl.col("teacher_id").alias("entity_key"),
                                                          pl.col("email").alias("detail"))),
        ("class.create", "class", new_classes.select(pl.col("new_class_id").alias("entity_key"),
                                                    pl.col("class_code").alias("detail"))),
        ("student.create", "student", new_people.select(pl.col("new_student_key").alias("entity_key"),
                                                       pl.col("login_name").alias("detail"))),
        ("student.update", "student", kept.select(pl.col("student_key").alias("entity_key"),
                                                  pl.col("student_action").alias("detail"))),
        ("enrollment.create", "enrollment", enroll.select(
            pl.concat_str([pl.col("class_id"), pl.col("student_key")], separator=":").alias("entity_key"),
            pl.lit(subscription_type).alias("detail"))),
        ("student.remove", "student", removed.select(pl.col("student_key").alias("entity_key"),
                                                    pl.lit("soft-deleted by migration").alias("detail"))),
        ("temporary.linked", "student", temporaries_linked.select(pl.col("student_key").alias("entity_key"),
                                                                 pl.col("reason").alias("detail"))),
    ):
        batches.audit_many(con, actor, action, entity, batch_id, frame)


def _link_temporaries(con: duckdb.DuckDBPyConnection, batch_id: int, resolved: pl.DataFrame, actor: str) -> pl.DataFrame:
    """Make permanent the temporary students the approved plan links (inside the commit transaction).

    Each keeps its key, enrollments and login and becomes active; the sheet row's student ID, SSID,
    other ID and birth date fill only what the temporary record lacked (names are never changed).
    Returns the students linked with the plan's reason.
    """
    links = con.sql(
        "SELECT student_key, reason FROM plan_temporaries WHERE batch_id = $b AND action = 'link'", params={"b": batch_id}
    ).pl()
    if links.is_empty():
        return pl.DataFrame(schema={"student_key": pl.Int64, "reason": pl.String})
    # The first row of each student, as the plan showed it.
    rows = resolved.join(links, on="student_key").sort("row_no").unique("student_key", keep="first", maintain_order=True)
    con.register("temporary_link_frame", ArrowStream(rows.select(
        "student_key", "student_id", "ssid", "other_id", "date_of_birth", "reason")))
    linked = con.sql(
        "UPDATE students SET status = 'active', student_id = coalesce(students.student_id, l.student_id),"
        " ssid = coalesce(students.ssid, l.ssid), other_id = coalesce(students.other_id, l.other_id),"
        " date_of_birth = coalesce(students.date_of_birth, l.date_of_birth), linked_to = students.student_key,"
        " linked_at = current_timestamp, linked_by = $actor, linked_batch = $b"
        " FROM temporary_link_frame l WHERE students.student_key = l.student_key AND students.status = 'temporary'"
        " RETURNING students.student_key",
        params={"actor": actor, "b": batch_id},
    ).pl()
    con.unregister("temporary_link_frame")
    return linked.join(rows.select("student_key", "reason"), on="student_key")


def _use_subscriptions(con: duckdb.DuckDBPyConnection, subscription_type: str, per_school: pl.DataFrame) -> None:
    """Take the used subscriptions from each school's own pool first, then from the district's."""
    for school_id, needed in per_school.iter_rows():
        school_row = first_row(con.execute(
            "SELECT available FROM subscriptions WHERE subscription_type = ? AND school_id = ?",
            [subscription_type, school_id],
        ))
        from_school = min(needed, school_row[0]) if school_row else 0
        if from_school:
            con.execute(
                "UPDATE subscriptions SET available = available - ? WHERE subscription_type = ? AND school_id = ?",
                [from_school, subscription_type, school_id],
            )
        if needed - from_school:
            district = first_row(con.execute(
                "SELECT available FROM subscriptions WHERE subscription_type = ? AND school_id IS NULL",
                [subscription_type],
            ))
            if district is None or district[0] < needed - from_school:
                # Raised inside the commit transaction, so nothing of the batch is written.
                raise CommitError(
                    f"Not enough '{subscription_type}' subscriptions: school {school_id} needs "
                    f"{needed - from_school} more than its own pool and the district has {district[0] if district else 0}."
                )
            con.execute(
                "UPDATE subscriptions SET available = available - ? WHERE subscription_type = ? AND school_id IS NULL",
                [needed - from_school, subscription_type],
            )
