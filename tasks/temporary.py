"""Temporary students: created by hand so learning can start before the SIS has the student.

A temporary student has a first and last name (SSID, other ID, birth date, school and grade are
optional), a login and a password like every student, and status 'temporary'. It ends in one of two
ways, and both stay in the warehouse so history can be explained:

* a sheet row brings its SSID or other ID (the commit does this, see ``tasks.commit``): the record
  itself becomes permanent (status 'active', same key, enrollments and login), ``linked_to`` = itself;
* an administrator links it by hand to an existing permanent student (``link_temporary_student``):
  its enrollments move to that student and the record becomes status 'linked', ``linked_to`` = the
  permanent student; its login is disabled (the child uses the permanent student's login).

A migration never removes a temporary student. One that was never used (no enrollment, no
subscription used) may be deleted outright.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import polars as pl

from tasks import credentials
from warehouse import batches
from warehouse.connection import first_row, transaction

# Batches in these states will not change anything any more.
FINISHED_BATCH_STATUSES = (batches.STATUS_COMMITTED, batches.STATUS_REJECTED)


class TemporaryStudentError(ValueError):
    """A temporary-student operation that cannot be done; the message says why."""


def _clean(value: Any) -> str | None:
    """Blank text counts as absent, as it does in sheets."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TemporaryStudentError(f"Date of birth {value!r} is not a date: write it as YYYY-MM-DD.") from None


def _student(con: duckdb.DuckDBPyConnection, key: int) -> dict[str, Any]:
    rows = con.sql(
        "SELECT student_key, first_name, last_name, student_id, ssid, other_id, date_of_birth, status, linked_to"
        " FROM students WHERE student_key = $k",
        params={"k": key},
    ).pl()
    if rows.is_empty():
        raise LookupError(f"No student {key}: find students with `rosterflow student temp find`.")
    return rows.to_dicts()[0]


def _open_batches_naming(con: duckdb.DuckDBPyConnection, key: int) -> list[int]:
    """Batches not yet committed or rejected whose match, review or plan names the student.

    Linking or deleting the student under them would make their plan wrong (the commit would
    enroll a record that moved or no longer exists), so both operations wait for those batches.
    """
    rows = con.execute(
        "SELECT DISTINCT b.batch_id FROM batches b WHERE NOT list_contains(?, b.status) AND ("
        " EXISTS (SELECT 1 FROM match_results m WHERE m.batch_id = b.batch_id AND m.student_key = ?)"
        " OR EXISTS (SELECT 1 FROM review_items r WHERE r.batch_id = b.batch_id AND r.student_key = ?)"
        " OR EXISTS (SELECT 1 FROM review_items r JOIN review_candidates c USING (review_id)"
        "            WHERE r.batch_id = b.batch_id AND r.status = 'pending' AND c.student_key = ?)"
        " OR EXISTS (SELECT 1 FROM plan_enrollments p WHERE p.batch_id = b.batch_id AND p.student_key = ?))"
        " ORDER BY b.batch_id",
        [list(FINISHED_BATCH_STATUSES), key, key, key, key],
    ).fetchall()
    return [r[0] for r in rows]


def create_temporary_student(
    con: duckdb.DuckDBPyConnection,
    first_name: str,
    last_name: str,
    ssid: str | None = None,
    other_id: str | None = None,
    date_of_birth: dt.date | str | None = None,
    school: str | None = None,
    grade: str | None = None,
    *,
    actor: str,
) -> dict[str, Any]:
    """Create a temporary student with a login and a password; return it (the password is shown once).

    Refused when the SSID or other ID is already held by a student (any status): the person is
    already known, and a second record would be a duplicate the next migration cannot resolve.
    """
    first, last = _clean(first_name), _clean(last_name)
    if not first or not last:
        raise TemporaryStudentError("A temporary student needs a first and a last name.")
    ssid, other_id, grade = _clean(ssid), _clean(other_id), _clean(grade)
    birth = _parse_date(date_of_birth)
    school_id = None
    if _clean(school):
        row = first_row(con.execute("SELECT school_id FROM schools WHERE lower(name) = lower(?)", [_clean(school)]))
        if row is None:
            raise LookupError(f"No school named {school!r}: list schools with `rosterflow school list`.")
        school_id = row[0]
    for label, column, value in (("SSID", "ssid", ssid), ("other ID", "other_id", other_id)):
        if value is None:
            continue
        # The column name comes from the fixed tuple above, never from input.
        holder = first_row(con.execute(
            f"SELECT student_key, first_name, last_name, status, linked_to FROM students WHERE {column} = ?"
            " ORDER BY student_key LIMIT 1",
            [value],
        ))
        if holder is not None:
            key, f, l, status, linked_to = holder
            where = f" (linked to student {linked_to})" if status == "linked" else ""
            raise TemporaryStudentError(
                f"{label} {value} is already held by student {key}, {f} {l} (status {status}){where}: "
                "use that student instead of creating a temporary one."
            )

    # Hashing takes tens of milliseconds, so it is done before the transaction.
    password = credentials.memorable_password()
    password_hash = credentials.hash_password(password)
    with transaction(con):
        taken = {r[0] for r in con.execute("SELECT login_name FROM students WHERE login_name IS NOT NULL").fetchall()}
        login = credentials.login_name(first, last, taken)
        key = first_row(con.execute("SELECT nextval('student_seq')"))[0]
        con.execute(
            "INSERT INTO students (student_key, first_name, last_name, ssid, other_id, date_of_birth, grade,"
            " school_id, login_name, password_hash, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'temporary')",
            [key, first, last, ssid, other_id, birth, grade, school_id, login, password_hash],
        )
        batches.audit(con, actor, "temporary.create", "student", key, None, {
            "first_name": first, "last_name": last, "ssid": ssid, "other_id": other_id,
            "date_of_birth": birth, "school_id": school_id, "grade": grade, "login_name": login,
        })
    return {"student_key": int(key), "first_name": first, "last_name": last, "ssid": ssid, "other_id": other_id,
            "date_of_birth": birth, "school_id": school_id, "grade": grade, "login_name": login,
            "password": password, "status": "temporary"}


def list_temporary_students(con: duckdb.DuckDBPyConnection, unlinked_only: bool = True) -> pl.DataFrame:
    """Temporary students with their school and enrollment count, oldest first.

    With ``unlinked_only=False`` also those already linked: made permanent by a sheet row
    (status 'active', ``linked_to`` = itself) or linked by hand (status 'linked').
    """
    return con.sql(
        "SELECT s.student_key, s.first_name, s.last_name, s.ssid, s.other_id, s.date_of_birth, s.grade,"
        " sc.name AS school, s.login_name, s.status, s.created_at,"
        " (SELECT count(*) FROM enrollments e WHERE e.student_key = s.student_key) AS enrollments,"
        " s.linked_to, s.linked_at, s.linked_by, s.linked_batch"
        " FROM students s LEFT JOIN schools sc USING (school_id)"
        " WHERE s.status = 'temporary' OR (NOT $unlinked_only AND s.linked_to IS NOT NULL)"
        " ORDER BY s.created_at, s.student_key",
        params={"unlinked_only": unlinked_only},
    ).pl()


def find_temporary_candidates(
    con: duckdb.DuckDBPyConnection, name: str | None = None, ssid: str | None = None, other_id: str | None = None,
) -> pl.DataFrame:
    """Students to link a temporary student to (or the temporary one itself): by name, SSID or other ID.

    The name search ignores case and accents and needs every word given somewhere in the first or
    last name ("jose sil" finds "José Silva"). Records already linked by hand are left out: their
    person lives on as the student they were linked to.
    """
    name, ssid, other_id = _clean(name), _clean(ssid), _clean(other_id)
    if not (name or ssid or other_id):
        raise TemporaryStudentError("Search by a name, an SSID or an other ID.")
    words = [w for w in (name or "").split() if w]
    return con.sql(
        "SELECT s.student_key, s.first_name, s.last_name, s.student_id, s.ssid, s.other_id, s.date_of_birth,"
        " s.grade, sc.name AS school, s.status"
        " FROM students s LEFT JOIN schools sc USING (school_id)"
        " WHERE s.status <> 'linked' AND ("
        "   (len($words) > 0 AND list_bool_and(list_transform($words, lambda w: contains("
        "       strip_accents(lower(s.first_name || ' ' || s.last_name)), strip_accents(lower(w))))))"
        "   OR s.ssid = $ssid OR s.other_id = $other_id)"
        " ORDER BY s.last_name, s.first_name, s.student_key",
        params={"words": words, "ssid": ssid, "other_id": other_id},
    ).pl()


def link_temporary_student(
    con: duckdb.DuckDBPyConnection, temporary_key: int, student_key: int, actor: str
) -> dict[str, Any]:
    """Link a temporary student by hand to an existing permanent student.

    The permanent student keeps its record (key, names, IDs, login); only the SSID, other ID and
    birth date it lacks are taken from the temporary record, so later sheets carrying them find it.
    The temporary student's enrollments move to it (a class it is already in is not duplicated),
    and the temporary record stays as status 'linked' pointing at it, its login disabled.
    Subscriptions already used stay recorded as they were charged.
    """
    if temporary_key == student_key:
        raise TemporaryStudentError("A temporary student cannot be linked to itself.")
    temp = _student(con, temporary_key)
    target = _student(con, student_key)
    if temp["status"] != "temporary":
        raise TemporaryStudentError(
            f"Student {temporary_key} is not an unlinked temporary student (status {temp['status']}"
            + (f", linked to {temp['linked_to']}" if temp["linked_to"] is not None else "") + ")."
        )
    if target["status"] != "active":
        hint = {"deleted": " restore it first (`rosterflow restore`)",
                "temporary": " link to the permanent student instead",
                "linked": f" link to student {target['linked_to']} instead"}.get(target["status"], "")
        raise TemporaryStudentError(
            f"Student {student_key} is not a permanent active student (status {target['status']}):{hint}."
        )
    waiting = _open_batches_naming(con, temporary_key)
    if waiting:
        raise TemporaryStudentError(
            f"Batch(es) {waiting} not yet committed name temporary student {temporary_key}: commit or reject "
            "them first (a batch committed with a row carrying its SSID or other ID links it by itself)."
        )
    for field, label in (("ssid", "SSID"), ("other_id", "other ID")):
        # Two different identifiers of one kind mean two people, or a typing error to fix first.
        if temp[field] and target[field] and temp[field] != target[field]:
            raise TemporaryStudentError(
                f"The temporary student's {label} {temp[field]} differs from student "
                f"{student_key}'s {target[field]}: they look like different people."
            )
    with transaction(con):
        moved = [r[0] for r in con.execute(
            "INSERT INTO enrollments (class_id, student_key, created_batch, created_at)"
            " SELECT e.class_id, ?, e.created_batch, e.created_at FROM enrollments e WHERE e.student_key = ?"
            " AND e.class_id NOT IN (SELECT class_id FROM enrollments WHERE student_key = ?) RETURNING class_id",
            [student_key, temporary_key, student_key],
        ).fetchall()]
        dropped = [r[0] for r in con.execute(
            "DELETE FROM enrollments WHERE student_key = ? RETURNING class_id", [temporary_key]
        ).fetchall()]
        con.execute(
            "UPDATE students SET ssid = coalesce(students.ssid, t.ssid), other_id = coalesce(students.other_id, t.other_id),"
            " date_of_birth = coalesce(students.date_of_birth, t.date_of_birth)"
            " FROM (SELECT ssid, other_id, date_of_birth FROM students WHERE student_key = ?) t"
            " WHERE students.student_key = ?",
            [temporary_key, student_key],
        )
        con.execute(
            "UPDATE students SET status = 'linked', linked_to = ?, linked_at = current_timestamp, linked_by = ?,"
            " password_hash = NULL WHERE student_key = ?",
            [student_key, actor, temporary_key],
        )
        detail = {"by": "hand", "linked_to": student_key, "enrollments_moved": sorted(moved),
                  "already_enrolled": sorted(set(dropped) - set(moved))}
        batches.audit(con, actor, "temporary.linked", "student", temporary_key, None, detail)
    return {"temporary_key": temporary_key, "student_key": student_key, **detail}


def delete_temporary_student(con: duckdb.DuckDBPyConnection, key: int, actor: str) -> dict[str, Any]:
    """Delete a temporary student that was never used (no enrollment, no subscription used).

    A used one is refused with the reason: it is linked (by hand or by the next migration) instead,
    so its history is kept. The deleted record's fields are kept in the audit log.
    """
    student = _student(con, key)
    if student["status"] != "temporary":
        raise TemporaryStudentError(
            f"Student {key} is not an unlinked temporary student (status {student['status']}): only those can be deleted."
        )
    enrollments, usage = first_row(con.execute(
        "SELECT (SELECT count(*) FROM enrollments WHERE student_key = $k),"
        " (SELECT count(*) FROM subscription_usage WHERE student_key = $k)",
        {"k": key},
    ))
    if enrollments or usage:
        raise TemporaryStudentError(
            f"Temporary student {key} was used ({enrollments} enrollment(s), {usage} subscription(s) used): "
            "it cannot be deleted; link it to the permanent student instead (`rosterflow student temp link`)."
        )
    waiting = _open_batches_naming(con, key)
    if waiting:
        raise TemporaryStudentError(
            f"Batch(es) {waiting} not yet committed name temporary student {key}: commit or reject them first."
        )
    with transaction(con):
        con.execute("DELETE FROM students WHERE student_key = ? AND status = 'temporary'", [key])
        batches.audit(con, actor, "temporary.delete", "student", key, None,
                      {k: v for k, v in student.items() if k not in ("status", "linked_to")})
    return {"student_key": key, "deleted": True}
