"""Partial uploads: sheets collected over days, duplicates ignored, corrections replace, nothing
read until everything is in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.pipeline import advance_batch, open_batch
from tasks.plan import preview_plan
from tasks.review import decide_review, review_items
from tasks.uploads import UploadError, add_upload, confirm_all_uploaded, list_uploads
from tests.batch_helpers import approve_and_commit, start
from tests.sheets import roster_row, write_roster
from warehouse import catalog
from warehouse.handle import Warehouse, opened


def test_collect_replace_and_compile(tmp_path: Path, warehouse_path: Path):
    morgan = [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2")]
    corrected = [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2"),
                 roster_row(first="Cy", student_id="3")]
    cooper = [roster_row(first="Di", student_id="4", email="acooper@example.org", teacher=("Allison", "Cooper")),
              roster_row(first="Ana", student_id="1", email="acooper@example.org", teacher=("Allison", "Cooper"),
                         school="Summerwind High School")]
    (tmp_path / "fixed").mkdir()
    first = write_roster(tmp_path / "morgan.xlsx", morgan)
    second = write_roster(tmp_path / "fixed" / "morgan.xlsx", corrected)
    third = write_roster(tmp_path / "cooper.xlsx", cooper)
    with (wh := Warehouse(warehouse_path)).write() as con:
        catalog.add_schools(con, ["ABC High School", "Summerwind High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        batch = open_batch(con, "collect", "migration", {"files": [], "term": "Fall 2026", "subscription_type": "K12"},
                           "test", collecting=True)
        assert advance_batch(wh, batch)["status"] == "collecting"  # nothing is read yet
        one = add_upload(con, batch, first, tmp_path / "store", "Morgan")
        assert add_upload(con, batch, first, tmp_path / "store", "Morgan")["duplicate"]
        two = add_upload(con, batch, second, tmp_path / "store", "Morgan")
        assert two["replaced"] == [one["upload_id"]]
        add_upload(con, batch, third, tmp_path / "store", "Cooper")
        uploads = list_uploads(con, batch)
        assert uploads.height == 3 and uploads["replaced_by"].null_count() == 2
        confirm_all_uploaded(con, batch, "Pat Admin")
        with pytest.raises(UploadError, match="no longer takes uploads"):
            add_upload(con, batch, first, tmp_path / "store", "Morgan")
        progress = advance_batch(wh, batch)
        issues = con.sql("SELECT file_name, excel_row, column_name, problem FROM validation_issues").pl()
    # Compiled from the corrected sheet and Cooper's: 3 + 2 rows; Ana is in two schools.
    assert progress["ingest"]["rows_staged"] == 5
    assert {f["file_name"] for f in progress["ingest"]["files"]} == {"morgan.xlsx", "cooper.xlsx"}
    two_schools = issues.filter(issues["problem"].str.contains("one student in two schools"))
    assert set(two_schools["file_name"]) == {"morgan.xlsx", "cooper.xlsx"}


SCHOOL = "ABC High School"


def _setup(con) -> None:
    catalog.add_schools(con, [SCHOOL], "test")
    catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
    catalog.set_subscriptions(con, "K12", 100, "test")


def test_a_held_migration_takes_the_corrected_sheet_and_keeps_the_review_decisions(tmp_path: Path, warehouse_path: Path):
    with opened(warehouse_path) as con:
        _setup(con)
    year1 = [roster_row(first="Mia", last="Clark", student_id="3", dob="2014-03-09"),
             roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21")]
    approve_and_commit(warehouse_path, start(warehouse_path, "registration", [write_roster(tmp_path / "y1.xlsx", year1)],
                                             "Fall 2025", "K12")["batch_id"])
    # No birth date, no ID, a first name a letter off: names alone, a question (the very name, nobody
    # else's, at the student's school would be linked).
    mia = roster_row(first="Mya", last="Clark", student_id=None, dob=None)
    bad = roster_row(first="Zed", last="Stone", student_id="9", dob="03/04/2015")  # invalid: holds the school
    owen = roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21")
    (tmp_path / "fixed").mkdir()
    sheet = write_roster(tmp_path / "abc.xlsx", [mia, owen, bad])
    progress = start(warehouse_path, "migration", [sheet], "Fall 2026", "K12")
    batch = progress["batch_id"]
    with (wh := Warehouse(warehouse_path)).write() as con:
        # The school is held: Mia's row is not asked, though a reviewer may still decide it.
        assert review_items(con, batch, pending_only=True) == []
        (item,) = review_items(con, batch)
        decide_review(con, batch, item["review_id"], "link", "Rita Reviewer", 1)
        linked = review_items(con, batch)[0]["student_key"]
        assert advance_batch(wh, batch)["status"] == "held"
        with pytest.raises(UploadError, match="No file at"):
            add_upload(con, batch, tmp_path / "missing.xlsx", tmp_path / "store", "Pat Admin")
    # The corrected sheet: the bad row fixed and moved first, so every row is numbered anew.
    fixed = write_roster(tmp_path / "fixed" / "abc.xlsx",
                         [roster_row(first="Zed", last="Stone", student_id="9", dob="2015-04-03"), owen, mia])
    with (wh := Warehouse(warehouse_path)).write() as con:
        taken = add_upload(con, batch, fixed, tmp_path / "store", "Pat Admin")
        assert taken["reopened"] and taken["replaced_files"] == ["abc.xlsx"]
        assert add_upload(con, batch, fixed, tmp_path / "store", "Pat Admin")["duplicate"]  # the same file again
        again = advance_batch(wh, batch)
        assert again["status"] == "awaiting_approval", again
        assert again["ingest"]["rows_staged"] == 3 and again["validate"]["rows_invalid"] == 0
        # Mia's item was decided before the re-upload: it is not asked again, and keeps its decision.
        assert review_items(con, batch, pending_only=True) == []
        (kept,) = review_items(con, batch)
        assert (kept["first_name"], kept["excel_row"], kept["action"], kept["student_key"], kept["reviewer"]) == (
            "Mya", 4, "link", linked, "Rita Reviewer")
        audit = con.execute("SELECT actor, detail FROM audit_log WHERE action = 'upload.correct_held'").fetchall()
        assert len(audit) == 1 and audit[0][0] == "Pat Admin"
        staged = con.execute("SELECT DISTINCT file_name FROM staged_rows WHERE batch_id = ?", [batch]).fetchall()
        assert staged == [("abc.xlsx",)]
    summary = approve_and_commit(warehouse_path, batch)
    assert summary["students_created"] == 1


def test_a_held_schools_rows_are_asked_only_once_its_corrected_sheet_is_in(tmp_path: Path, warehouse_path: Path):
    with opened(warehouse_path) as con:
        _setup(con)
        catalog.add_schools(con, ["Summerwind High School"], "test")
    summerwind = dict(school="Summerwind High School", email="acooper@example.org", teacher=("Allison", "Cooper"))
    year1 = [roster_row(first="Mia", last="Clark", student_id="3", dob="2014-03-09"),
             roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21"),
             roster_row(first="Lia", last="Moss", student_id="7", dob="2013-01-05", **summerwind)]
    approve_and_commit(warehouse_path, start(warehouse_path, "registration", [write_roster(tmp_path / "y1.xlsx", year1)],
                                             "Fall 2025", "K12")["batch_id"])
    mia = roster_row(first="Mya", last="Clark", student_id=None, dob=None)  # names alone, a letter off: a question
    owen = roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21")
    bad = roster_row(first="Zed", last="Stone", student_id="9", dob="03/04/2015")  # invalid: holds ABC
    lia = roster_row(first="Lya", last="Moss", student_id=None, dob=None, **summerwind)  # a question, not held
    progress = start(warehouse_path, "migration", [write_roster(tmp_path / "abc.xlsx", [mia, owen, bad]),
                                                   write_roster(tmp_path / "summerwind.xlsx", [lia])],
                     "Fall 2026", "K12")
    batch = progress["batch_id"]
    assert progress["review"]["pending"] == 1
    with (wh := Warehouse(warehouse_path)).write() as con:
        # Only the school that is not held is asked; the plan so far already shows ABC held.
        (asked,) = review_items(con, batch, pending_only=True)
        assert asked["first_name"] == "Lya"
        preview = preview_plan(wh, batch)
        assert preview["summary"]["held_schools"] == [SCHOOL] and preview["summary"]["rows_pending_review"] == 1
        assert "1 row(s) wait for review" in preview["markdown"] and "**held** (invalid rows" in preview["markdown"]
        decide_review(con, batch, asked["review_id"], "link", "Rita Reviewer", 1)
        held = advance_batch(wh, batch)
        assert held["status"] == "awaiting_approval" and held["plan"]["held_schools"] == [SCHOOL]
        assert review_items(con, batch, pending_only=True) == []
        fixed = write_roster(tmp_path / "fixed.xlsx", [mia, owen, roster_row(first="Zed", last="Stone", student_id="9",
                                                                             dob="2015-04-03")])
        add_upload(con, batch, fixed, tmp_path / "store", "Pat Admin")
        again = advance_batch(wh, batch)
        # Now Mia's row is asked, once; Lia's decision stands.
        assert again["status"] == "in_review" and again["review"]["pending"] == 1
        (asked_now,) = review_items(con, batch, pending_only=True)
        assert asked_now["first_name"] == "Mya"
        decide_review(con, batch, asked_now["review_id"], "link", "Rita Reviewer", 1)
        assert advance_batch(wh, batch)["status"] == "awaiting_approval"
        assert review_items(con, batch, pending_only=True) == []


def test_a_held_collected_migration_takes_the_same_teachers_corrected_sheet(tmp_path: Path, warehouse_path: Path):
    morgan = [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2", dob="13/13/2013")]
    cooper = [roster_row(first="Di", student_id="4", email="acooper@example.org", teacher=("Allison", "Cooper"))]
    with (wh := Warehouse(warehouse_path)).write() as con:
        _setup(con)
        batch = open_batch(con, "collect", "migration", {"files": [], "term": "Fall 2026", "subscription_type": "K12"},
                           "test", collecting=True)
        first = add_upload(con, batch, write_roster(tmp_path / "morgan.xlsx", morgan), tmp_path / "store", "Morgan")
        add_upload(con, batch, write_roster(tmp_path / "cooper.xlsx", cooper), tmp_path / "store", "Cooper")
        confirm_all_uploaded(con, batch, "Pat Admin")
        assert advance_batch(wh, batch)["status"] == "held"
        corrected = write_roster(tmp_path / "morgan-corrected.xlsx",
                                 [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2")])
        taken = add_upload(con, batch, corrected, tmp_path / "store", "Morgan")
        assert taken["replaced"] == [first["upload_id"]]
        again = advance_batch(wh, batch)
        assert again["status"] == "awaiting_approval", again
        assert {f["file_name"] for f in again["ingest"]["files"]} == {"morgan-corrected.xlsx", "cooper.xlsx"}
        assert list_uploads(con, batch)["replaced_by"].to_list() == [taken["upload_id"], None, None]
    approve_and_commit(warehouse_path, batch)
    with opened(warehouse_path) as con:
        with pytest.raises(UploadError, match="is committed: it no longer takes uploads. Start a new batch"):
            add_upload(con, batch, corrected, tmp_path / "store", "Morgan")


def test_a_migration_holding_one_school_takes_that_schools_corrected_sheet(tmp_path: Path, warehouse_path: Path):
    with opened(warehouse_path) as con:
        _setup(con)
        catalog.add_schools(con, ["Summerwind High School"], "test")
    good = write_roster(tmp_path / "abc.xlsx", [roster_row(first="Ana", student_id="1")])
    summerwind = dict(school="Summerwind High School", email="acooper@example.org", teacher=("Allison", "Cooper"))
    broken = write_roster(tmp_path / "summerwind.xlsx", [roster_row(first="Di", student_id="4", **summerwind),
                                                         roster_row(first="Ed", student_id="5", dob="x", **summerwind)])
    progress = start(warehouse_path, "migration", [good, broken], "Fall 2026", "K12")
    assert progress["status"] == "awaiting_approval" and progress["plan"]["held_schools"] == ["Summerwind High School"]
    (tmp_path / "fixed").mkdir()
    fixed = write_roster(tmp_path / "fixed" / "summerwind.xlsx", [roster_row(first="Di", student_id="4", **summerwind),
                                                                   roster_row(first="Ed", student_id="5", **summerwind)])
    with (wh := Warehouse(warehouse_path)).write() as con:
        assert add_upload(con, progress["batch_id"], fixed, tmp_path / "store", "Pat Admin")["reopened"]
        again = advance_batch(wh, progress["batch_id"])
    assert again["plan"]["held_schools"] == [] and again["plan"]["students_new"] == 3
