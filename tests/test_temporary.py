"""Temporary students: created by hand, enrolled, linked by a sheet row or by hand, kept by migrations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tasks.approve import decide_batch
from tasks.commit import CommitError, commit_batch
from tasks.plan import plan_tables
from tasks.plan_view import plan_markdown
from tasks.temporary import (
    TemporaryStudentError,
    create_temporary_student,
    delete_temporary_student,
    find_temporary_candidates,
    link_temporary_student,
    list_temporary_students,
)
from tests.batch_helpers import approval, approve_and_commit, link_all_reviews, start
from tests.sheets import roster_row, write_roster
from warehouse import catalog
from warehouse.handle import Warehouse, opened

ABC, SUMMERWIND = "ABC High School", "Summerwind High School"
YEAR1, YEAR2, SUB = "Fall 2025", "Fall 2026", "K12"


def kid(i: int, **change) -> list:
    """Permanent student number ``i`` (ID i, SSID SS00i) as a row of ABC."""
    fields = {"first": f"Kid{i}", "last": f"Family{i}", "student_id": str(i), "ssid": f"SS00{i}",
              "dob": dt.date(2012, i, i).isoformat(), "school": ABC, **change}
    return roster_row(**fields)


@pytest.fixture
def school(warehouse_path: Path, tmp_path: Path) -> Path:
    """ABC with five registered students in Period 1; Summerwind empty."""
    with opened(warehouse_path) as con:
        catalog.add_schools(con, [ABC, SUMMERWIND], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        catalog.set_subscriptions(con, SUB, 1000, "test")
    progress = start(warehouse_path, "registration", [write_roster(tmp_path / "year1.xlsx", [kid(i) for i in range(1, 6)])],
                     YEAR1, SUB)
    approve_and_commit(warehouse_path, progress["batch_id"])
    return warehouse_path


def enroll_by_name(warehouse: Path, tmp_path: Path, first: str, last: str, periods: list[str]) -> int:
    """A teacher's registration naming the temporary student only (no ID): the reviewer links it."""
    # One birth date on every row, so the rows are one person (the temporary record has none).
    rows = [roster_row(first=first, last=last, student_id=None, dob="2013-06-06", period=p) for p in periods]
    progress = start(warehouse, "registration", [write_roster(tmp_path / f"enroll-{first}.xlsx", rows)], YEAR1, SUB)
    assert progress["match"]["review"] == len(periods)
    link_all_reviews(warehouse, progress["batch_id"])
    approve_and_commit(warehouse, progress["batch_id"])
    return progress["batch_id"]


def student(con, key: int) -> dict:
    return con.sql("SELECT * FROM students WHERE student_key = $k", params={"k": key}).pl().to_dicts()[0]


def classes_of(con, key: int) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT c.period FROM enrollments e JOIN classes c USING (class_id) WHERE e.student_key = ? ORDER BY 1", [key]
    ).fetchall()]


def test_a_migration_row_with_its_ssid_makes_the_temporary_student_permanent(school: Path, tmp_path: Path):
    with opened(school) as con:
        temp = create_temporary_student(con, "Maya", "Tempé", ssid="SS900", school=ABC, actor="Office")
    enroll_by_name(school, tmp_path, "Maya", "Tempé", ["Period 2"])
    with opened(school) as con:
        # Enrolled by a registration row linked by name: still temporary.
        assert student(con, temp["student_key"])["status"] == "temporary"
        assert classes_of(con, temp["student_key"]) == ["Period 2"]

    # The SIS now has her: the migration row carries her SSID, an ID and a birth date, and spells her
    # name without the accent.
    rows = [kid(i) for i in range(1, 6)] + [
        roster_row(first="Maya", last="Tempe", student_id="900", ssid="SS900", dob="2012-09-09", period="Period 3")]
    progress = start(school, "migration", [write_roster(tmp_path / "y2.xlsx", rows)], YEAR2, SUB)
    plan = progress["plan"]
    assert plan["temporary_links"] == 1 and plan["temporary_kept"] == 0 and plan["removals"] == 0
    with opened(school) as con:
        tables = plan_tables(con, progress["batch_id"])
    links = tables["temporary_links"].to_dicts()
    assert [(r["student_key"], r["reason"]) for r in links] == [(temp["student_key"], "same SSID")]
    assert "1 temporary student(s) become permanent" in plan_markdown(plan, tables)

    summary = approve_and_commit(school, progress["batch_id"])
    assert summary["temporary_students_linked"] == 1 and summary["students_created"] == 0
    with opened(school) as con:
        maya = student(con, temp["student_key"])
        assert maya["status"] == "active" and maya["linked_to"] == temp["student_key"]
        assert maya["linked_batch"] == progress["batch_id"] and maya["linked_by"] == "Pat Admin"
        # Same record: key, login and name kept; the sheet fills what it lacked.
        assert (maya["login_name"], maya["first_name"], maya["last_name"]) == (temp["login_name"], "Maya", "Tempé")
        assert (maya["student_id"], maya["date_of_birth"]) == ("900", dt.date(2012, 9, 9))
        # The enrollment made while temporary is kept; the migration's class is added.
        assert classes_of(con, temp["student_key"]) == ["Period 2", "Period 3"]
        audit = con.execute("SELECT batch_id FROM audit_log WHERE action = 'temporary.linked' AND entity_key = ?",
                            [str(temp["student_key"])]).fetchall()
        assert audit == [(progress["batch_id"],)]
        assert list_temporary_students(con).is_empty()
        assert list_temporary_students(con, unlinked_only=False)["student_key"].to_list() == [temp["student_key"]]


def test_a_migration_without_the_temporary_student_keeps_it_and_the_plan_lists_it(school: Path, tmp_path: Path):
    with opened(school) as con:
        at_abc = create_temporary_student(con, "Lia", "Nova", school=ABC, actor="Office")
        nowhere = create_temporary_student(con, "Tom", "Loose", other_id="X-77", actor="Office")
        elsewhere = create_temporary_student(con, "Sam", "Away", school=SUMMERWIND, actor="Office")
    enroll_by_name(school, tmp_path, "Lia", "Nova", ["Period 1"])
    # Kid5 left: the migration removes him, and only him.
    rows = [kid(i) for i in range(1, 5)]
    progress = start(school, "migration", [write_roster(tmp_path / "y2.xlsx", rows)], YEAR2, SUB,
                     max_removal_share=0.5)
    plan = progress["plan"]
    assert plan["removals"] == 1 and plan["temporary_kept"] == 2 and plan["temporary_links"] == 0
    assert plan["temporary_kept_by_school"] == {"(no school)": 1, ABC: 1}
    with opened(school) as con:
        tables = plan_tables(con, progress["batch_id"])
        removed = tables["removals"]["student_key"].to_list()
    kept = tables["temporary_kept"]
    assert sorted(kept["student_key"].to_list()) == sorted([at_abc["student_key"], nowhere["student_key"]])
    assert elsewhere["student_key"] not in kept["student_key"].to_list()
    markdown = plan_markdown(plan, tables)
    assert "unlinked temporary students kept: 2 ((no school) 1, ABC High School 1)" in markdown
    assert "| ABC High School | Lia Nova" in markdown

    approve_and_commit(school, progress["batch_id"])
    with opened(school) as con:
        assert {student(con, k)["status"] for k in (at_abc["student_key"], nowhere["student_key"])} == {"temporary"}
        assert student(con, removed[0])["status"] == "deleted"
        assert classes_of(con, at_abc["student_key"]) == ["Period 1"]


def test_linking_by_hand_moves_enrollments_without_duplicates(school: Path, tmp_path: Path):
    with opened(school) as con:
        temp = create_temporary_student(con, "Nina", "Quick", other_id="OT-9", actor="Office")
        other = create_temporary_student(con, "Kid2", "Family2", ssid="SS999", actor="Office")
    enroll_by_name(school, tmp_path, "Nina", "Quick", ["Period 1", "Period 2"])
    with opened(school) as con:
        # She turns out to be Kid1 (already in Period 1), found by name search.
        kid1 = find_temporary_candidates(con, name="kid1 FAMILY")["student_key"].to_list()
        assert len(kid1) == 1
        kid1 = kid1[0]
        result = link_temporary_student(con, temp["student_key"], kid1, "Office")
        assert result["enrollments_moved"] == [classes_of_ids(con, kid1, "Period 2")]
        assert len(result["already_enrolled"]) == 1
        assert classes_of(con, kid1) == ["Period 1", "Period 2"]
        assert classes_of(con, temp["student_key"]) == []
        nina, permanent = student(con, temp["student_key"]), student(con, kid1)
        assert (nina["status"], nina["linked_to"], nina["linked_by"]) == ("linked", kid1, "Office")
        assert nina["password_hash"] is None
        # The permanent record keeps its names, IDs and login and gains the other ID it lacked.
        assert (permanent["first_name"], permanent["ssid"], permanent["other_id"]) == ("Kid1", "SS001", "OT-9")
        assert permanent["status"] == "active"
        assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'temporary.linked' AND entity_key = ?",
                           [str(temp["student_key"])]).fetchall() == [(1,)]
        # Linked once, for good; the linked record is no candidate any more.
        with pytest.raises(TemporaryStudentError, match="not an unlinked temporary student"):
            link_temporary_student(con, temp["student_key"], kid1, "Office")
        assert find_temporary_candidates(con, name="Nina")["student_key"].to_list() == []
        # Two different SSIDs are two people (or a typo to fix first).
        with pytest.raises(TemporaryStudentError, match="SSID SS999 differs"):
            link_temporary_student(con, other["student_key"], 2, "Office")

    # A later sheet with her other ID (and the temporary name) leads to the permanent student, never
    # to the linked record.
    row = roster_row(first="Nina", last="Quick", student_id=None, dob=None, period="Period 4")
    row[10] = "OT-9"
    rows = [row]
    progress = start(school, "registration", [write_roster(tmp_path / "later.xlsx", rows)], YEAR1, SUB)
    with opened(school) as con:
        # Her name matches the linked record exactly, yet only the permanent student is a candidate.
        candidates = con.execute(
            "SELECT coalesce(m.student_key, c.student_key) FROM match_results m LEFT JOIN review_items r USING (batch_id, row_no)"
            " LEFT JOIN review_candidates c USING (review_id) WHERE m.batch_id = ?", [progress["batch_id"]]).fetchall()
        assert candidates == [(kid1,)]


def classes_of_ids(con, key: int, period: str) -> int:
    return con.execute("SELECT e.class_id FROM enrollments e JOIN classes c USING (class_id)"
                       " WHERE e.student_key = ? AND c.period = ?", [key, period]).fetchall()[0][0]


def test_delete_only_a_temporary_student_never_used(school: Path, tmp_path: Path):
    with opened(school) as con:
        used = create_temporary_student(con, "Ivy", "Used", actor="Office")
        unused = create_temporary_student(con, "Oli", "Unused", ssid="SS555", actor="Office")
    enroll_by_name(school, tmp_path, "Ivy", "Used", ["Period 1"])
    with opened(school) as con:
        with pytest.raises(TemporaryStudentError, match=r"was used \(1 enrollment\(s\), 1 subscription\(s\) used\)"):
            delete_temporary_student(con, used["student_key"], "Office")
        assert student(con, used["student_key"])["status"] == "temporary"
        with pytest.raises(TemporaryStudentError, match="not an unlinked temporary student"):
            delete_temporary_student(con, 1, "Office")

        assert delete_temporary_student(con, unused["student_key"], "Office")["deleted"]
        assert con.execute("SELECT count(*) FROM students WHERE student_key = ?", [unused["student_key"]]).fetchall() == [(0,)]
        detail = con.execute("SELECT detail FROM audit_log WHERE action = 'temporary.delete'").fetchall()
        assert json.loads(detail[0][0])["ssid"] == "SS555"
        # Its SSID is free again.
        create_temporary_student(con, "Oli", "Unused", ssid="SS555", actor="Office")


def test_a_duplicate_ssid_or_other_id_is_refused(school: Path):
    with opened(school) as con:
        with pytest.raises(TemporaryStudentError, match="SSID SS003 is already held by student 3, Kid3 Family3"):
            create_temporary_student(con, "Someone", "Else", ssid="SS003", actor="Office")
        create_temporary_student(con, "First", "Temp", other_id="OT-1", actor="Office")
        with pytest.raises(TemporaryStudentError, match="other ID OT-1 is already held by student 6, First Temp"):
            create_temporary_student(con, "Second", "Temp", other_id=" OT-1 ", actor="Office")
        with pytest.raises(TemporaryStudentError, match="first and a last name"):
            create_temporary_student(con, " ", "Temp", actor="Office")
        assert list_temporary_students(con)["first_name"].to_list() == ["First"]


def test_the_command_line(school: Path, run_cli):
    def run(*args: str) -> tuple[int, str, str]:
        return run_cli("--warehouse", str(school), "--actor", "Office", *args)

    code, out, _ = run("student", "temp", "add", "--first", "José", "--last", "Silva", "--other-id", "OT-321",
                       "--dob", "2013-03-03", "--school", ABC, "--grade", "6", "--json")
    created = json.loads(out)
    assert code == 0 and created["login_name"] == "JSILVA" and created["password"]
    code, out, _ = run("student", "temp", "find", "--name", "jose silva", "--json")
    assert [s["student_key"] for s in json.loads(out)] == [created["student_key"]]
    code, out, _ = run("student", "temp", "list", "--json")
    assert [s["student_key"] for s in json.loads(out)] == [created["student_key"]]
    code, _, err = run("student", "temp", "add", "--first", "A", "--last", "B", "--other-id", "OT-321")
    assert code == 2 and "already held" in err
    code, _, err = run("student", "temp", "link", str(created["student_key"]), "999")
    assert code == 2 and "No student 999" in err
    code, out, _ = run("student", "temp", "link", str(created["student_key"]), "2")
    assert code == 0 and "linked to student 2" in out
    code, out, _ = run("student", "temp", "list", "--all", "--json")
    assert json.loads(out)[0]["status"] == "linked"
    code, _, err = run("student", "temp", "delete", str(created["student_key"]))
    assert code == 2 and "not an unlinked temporary student" in err
    with opened(school) as con:
        assert con.execute("SELECT actor FROM audit_log WHERE action = 'temporary.create'").fetchall() == [("Office",)]


def test_the_schema_upgrade_keeps_every_student(tmp_path: Path):
    # A warehouse made before temporary students (migrations 1-4) with students in it: version 5
    # rebuilds the table, keeping every row, the keys and the unique logins.
    import duckdb

    from tests.batch_helpers import warehouse_at_version
    from warehouse.connection import apply_migrations

    path = tmp_path / "old.duckdb"
    con = warehouse_at_version(path, below=5)
    try:
        con.execute("INSERT INTO students (student_key, first_name, last_name, ssid, login_name, status, deleted_batch)"
                    " VALUES (1, 'Ana', 'Silva', 'SS1', 'ASILVA', 'active', NULL),"
                    " (2, 'Bo', 'Lee', NULL, 'BLEE', 'deleted', 7)")
        assert apply_migrations(con)[0] == "005_temporary_students.sql"
        assert con.execute("SELECT student_key, first_name, ssid, login_name, status, deleted_batch, linked_to"
                           " FROM students ORDER BY 1").fetchall() == [
            (1, "Ana", "SS1", "ASILVA", "active", None, None), (2, "Bo", None, "BLEE", "deleted", 7, None)]
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO students (student_key, first_name, last_name, login_name, status)"
                        " VALUES (3, 'Al', 'Silva', 'ASILVA', 'temporary')")
    finally:
        con.close()


def test_a_temporary_student_created_after_the_match_makes_the_plan_stale(school: Path, tmp_path: Path):
    # The batch was matched before the office created Maya: committing that plan would create a
    # second Maya. The commit refuses, the batch is matched again, and the row links her.
    rows = [kid(i) for i in range(1, 6)] + [kid(9, first="Maya", last="Tempé", student_id="9", ssid="SS900")]
    progress = start(school, "migration", [write_roster(tmp_path / "y2.xlsx", rows)], YEAR2, SUB)
    assert progress["plan"]["students_new"] == 1
    with (wh := Warehouse(school)).write() as con:
        decide_batch(con, progress["batch_id"], "Pat Admin", True, progress["plan"]["removals"],
                     **approval(con, progress["batch_id"]))
        temp = create_temporary_student(con, "Maya", "Tempé", ssid="SS900", school=ABC, actor="Office")
        with pytest.raises(CommitError, match="temporary.create"):
            commit_batch(wh, progress["batch_id"], "Pat Admin")
    summary = approve_and_commit(school, progress["batch_id"])
    assert summary["students_created"] == 0 and summary["temporary_students_linked"] == 1
    with opened(school) as con:
        assert student(con, temp["student_key"])["status"] == "active"
