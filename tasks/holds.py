"""Which schools a migration holds: an invalid row could be a real student the plan would remove,
so its school is held (nothing committed or removed there, and its rows not reviewed) until the
corrected sheet is in."""

from __future__ import annotations

import duckdb

from warehouse import batches


def held_schools(con: duckdb.DuckDBPyConnection, batch_id: int) -> tuple[bool, list[int], list[str]]:
    """In a migration, an invalid row could be a real student the plan would remove: hold its school.
    A registration holds nothing (its invalid rows are left out).

    Returns (hold everything, held school ids, reasons).
    """
    if batches.get_batch(con, batch_id)["mode"] != "migration":
        return False, [], []
    # A file-level error (an unreadable file, a hidden roster sheet) may hide real students.
    file_errors = con.execute(
        "SELECT file_name, problem FROM validation_issues WHERE batch_id = ? AND row_no IS NULL AND severity = 'error'",
        [batch_id],
    ).fetchall()
    reasons = [f"{name}: {problem}" for name, problem in file_errors]
    bad_rows = con.sql(
        "SELECT DISTINCT st.row_no, sc.school_id, st.school FROM validation_issues i"
        " JOIN staged_rows st ON st.batch_id = i.batch_id AND st.row_no = i.row_no"
        " LEFT JOIN schools sc ON lower(sc.name) = lower(trim(st.school))"
        " WHERE i.batch_id = $b AND i.severity = 'error'",
        params={"b": batch_id},
    ).fetchall()
    unknown = sum(1 for _, school_id, _ in bad_rows if school_id is None)
    if unknown:
        reasons.append(f"{unknown} invalid row(s) name no known school, so they could belong to any school")
    held = sorted({school_id for _, school_id, _ in bad_rows if school_id is not None})
    if held:
        reasons.append(f"{len(bad_rows) - unknown} invalid row(s) in the held schools")
    return bool(file_errors) or unknown > 0, held, reasons


def held_review_ids(con: duckdb.DuckDBPyConnection, batch_id: int) -> list[int]:
    """The batch's review items whose row is in a school the migration holds: they are not asked
    until the school's corrected sheet is in (its rows are read, matched and asked again then)."""
    hold_all, held, _ = held_schools(con, batch_id)
    if not hold_all and not held:
        return []
    return [r[0] for r in con.execute(
        "SELECT r.review_id FROM review_items r JOIN valid_rows v ON v.batch_id = r.batch_id AND v.row_no = r.row_no"
        " WHERE r.batch_id = ? AND (? OR list_contains(?, v.school_id)) ORDER BY r.review_id",
        [batch_id, hold_all, held]).fetchall()]
