"""Restoring removed students: exactly what was removed comes back, by registered approvers only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tasks.approvers import ApproverError
from tasks.restore import restore_students
from tests.batch_helpers import approve_and_commit, approver_secret, link_all_reviews, start
from warehouse.handle import opened


def _state(warehouse: Path) -> pl.DataFrame:
    with opened(warehouse) as con:
        return con.sql("SELECT student_key, status, school_id, grade FROM students ORDER BY student_key").pl()


def test_a_batch_restore_brings_back_exactly_what_it_removed(district, district_warehouse: Path):
    registration = start(district_warehouse, "registration", district.registration_files,
                         district.registration_term, district.subscription_type)
    approve_and_commit(district_warehouse, registration["batch_id"])
    migration = link_all_reviews(district_warehouse, start(district_warehouse, "migration", district.migration_files[:2],
                                                           district.migration_term, district.subscription_type)["batch_id"])
    approve_and_commit(district_warehouse, migration["batch_id"])
    after = _state(district_warehouse)
    removed = after.filter(pl.col("status") == "deleted")["student_key"].to_list()
    assert removed
    with opened(district_warehouse) as con:
        enrollments_before = con.execute("SELECT count(*) FROM enrollments").fetchall()
        with pytest.raises(ApproverError, match="'Mallory' is not a registered approver"):
            restore_students(con, "Mallory", batch_id=migration["batch_id"], secret=approver_secret(con))
        result = restore_students(con, "Pat Admin", batch_id=migration["batch_id"], secret=approver_secret(con))
        assert con.execute("SELECT count(*) FROM enrollments").fetchall() == enrollments_before
        audited = con.execute("SELECT count(*) FROM audit_log WHERE action = 'student.restore'").fetchall()[0][0]
    assert sorted(result["restored"]) == sorted(removed) and result["refused"] == []
    restored = _state(district_warehouse)
    # Exactly the removed students changed, and only their status.
    changed = restored.join(after, on="student_key", suffix="_after").filter(pl.col("status") != pl.col("status_after"))
    assert sorted(changed["student_key"].to_list()) == sorted(removed) and set(changed["status"]) == {"active"}
    assert audited == len(removed)
    with opened(district_warehouse) as con:
        again = restore_students(con, "Pat Admin", student_keys=[removed[0]], secret=approver_secret(con))
    assert again["restored"] == [] and "not removed" in again["refused"][0]["reason"]


def test_a_student_whose_id_is_now_taken_is_not_restored(warehouse_path: Path):
    with opened(warehouse_path) as con:
        con.execute("INSERT INTO students (student_key, first_name, last_name, student_id, status, deleted_batch)"
                    " VALUES (1, 'Ana', 'Silva', 'A1', 'deleted', 7), (2, 'Ana', 'Silva', 'A1', 'active', NULL),"
                    " (3, 'Ben', 'Lee', 'B2', 'deleted', 7)")
        result = restore_students(con, "Pat Admin", batch_id=7, secret=approver_secret(con))
        status = dict(con.execute("SELECT student_key, status FROM students").fetchall())
    assert result["restored"] == [3]
    assert result["refused"] == [{"student_key": 1, "reason": "an active student now has the same student ID or SSID"}]
    assert status == {1: "deleted", 2: "active", 3: "active"}
