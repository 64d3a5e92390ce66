"""A year of the sample district through every stage, checked against the generator's truth."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from tasks.approve import ApprovalError, decide_batch
from tasks.approvers import ApproverError
from tasks.commit import CommitError, commit_batch
from tasks.messages import MailSettings, build_messages
from tasks.credentials import CLASS_CODE_ALPHABET, verify_password
from tasks.pipeline import advance_batch
from tests.batch_helpers import (add_district_catalog, approval, approve_and_commit, approver_secret, link_all_reviews,
                                 start)
from warehouse.handle import Warehouse, opened


def _students(warehouse: Path) -> pl.DataFrame:
    with opened(warehouse) as con:
        return con.sql("SELECT * FROM students ORDER BY student_key").pl()


@pytest.fixture(scope="module")
def registered_once(district, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The district after its first-year registration is committed, built once for this module
    (108 password hashes take seconds); each test gets its own copy of the file."""
    warehouse = tmp_path_factory.mktemp("registered") / "warehouse.duckdb"
    add_district_catalog(warehouse, district)
    progress = start(warehouse, "registration", district.registration_files, district.registration_term,
                     district.subscription_type)
    assert progress["status"] == "awaiting_approval"
    approve_and_commit(warehouse, progress["batch_id"])
    assert not warehouse.with_name(warehouse.name + ".wal").exists()  # closed and checkpointed: one file is all
    return warehouse


@pytest.fixture
def registered(registered_once: Path, tmp_path: Path) -> Path:
    """A private copy of the registered district's warehouse."""
    return Path(shutil.copyfile(registered_once, tmp_path / "registered.duckdb"))


def test_registration_creates_classes_teachers_students_and_uses_subscriptions(district, registered: Path):
    with opened(registered) as con:
        classes = con.sql("SELECT * FROM classes").pl()
        teachers = con.sql("SELECT * FROM teachers").pl()
        credentials = con.sql("SELECT * FROM issued_credentials").pl()
        available = con.execute("SELECT available FROM subscriptions").fetchall()[0][0]
        enrollments = con.execute("SELECT count(*) FROM enrollments").fetchall()[0][0]
    students = _students(registered)
    assert students.height == 108 and set(students["status"]) == {"active"}
    assert classes.height == 12 and teachers.height == 6 and enrollments == 108
    assert available == district.subscriptions_available - 108
    code = re.compile(f"^[{CLASS_CODE_ALPHABET}]{{5}}-[{CLASS_CODE_ALPHABET}]{{5}}$")
    assert all(code.match(c) for c in classes["class_code"]) and classes["class_code"].n_unique() == 12
    assert set(classes["class_name"]) >= {"Fall 2025 - Period 1"}
    assert students["login_name"].n_unique() == 108
    joined = credentials.join(students, on="student_key")
    assert all(verify_password(p, h) for p, h in joined.select("password", "password_hash").rows())
    assert not any(h == p for p, h in joined.select("password", "password_hash").rows())


def test_migration_links_everyone_removes_only_leavers_and_holds_the_school_with_an_invalid_row(district,
                                                                                                 registered: Path):
    before = _students(registered)
    progress = start(registered, "migration", district.migration_files, district.migration_term,
                     district.subscription_type)
    assert progress["status"] == "in_review" and progress["match"]["review"] >= 1
    assert progress["validate"]["rows_invalid"] == 1
    progress = link_all_reviews(registered, progress["batch_id"])
    plan = progress["plan"]
    held = set(plan["held_schools"])
    assert held == {"Summerwind High School"}
    summary = approve_and_commit(registered, progress["batch_id"])

    after = _students(registered)
    truth = district.truth.join(before.select("student_id", "student_key"), on="student_id", how="left")
    by_fate = {fate: group for (fate,), group in truth.group_by("fate")}
    status = dict(after.select("student_key", "status").rows())
    leavers = by_fate["leaver"]
    removed = {k for k, s in status.items() if s == "deleted"}
    expected_removed = set(leavers.filter(~pl.col("school").is_in(list(held)))["student_key"])
    assert removed == expected_removed and summary["students_removed"] == len(expected_removed)
    # Nobody who stayed got a second account: every returning person still has exactly one.
    stayed = truth.filter(~pl.col("fate").is_in(["leaver", "newcomer"]))
    assert all(status[k] == "active" for k in stayed["student_key"])
    names = after.group_by(pl.col("last_name").str.to_lowercase(), "date_of_birth").len()
    assert names["len"].max() == 1 or _only_twins(after)
    newcomers = by_fate["newcomer"].filter(~pl.col("school").is_in(list(held)))
    assert summary["students_created"] == newcomers.height
    # Names are never changed from a sheet: the nickname row left the registered name alone.
    nickname = by_fate["nickname"]["student_key"].to_list()
    assert after.filter(pl.col("student_key").is_in(nickname))["first_name"].to_list() == \
        before.filter(pl.col("student_key").is_in(nickname))["first_name"].to_list()


def _only_twins(students: pl.DataFrame) -> bool:
    shared = students.group_by(pl.col("last_name").str.to_lowercase(), "date_of_birth").agg(
        pl.col("first_name").n_unique().alias("firsts"), pl.len().alias("n"))
    return bool((shared.filter(pl.col("n") > 1)["firsts"] == shared.filter(pl.col("n") > 1)["n"]).all())


def test_commit_is_exactly_once_and_a_rejected_batch_changes_nothing(district, registered: Path, tmp_path: Path):
    progress = start(registered, "migration", district.migration_files[:1], district.migration_term,
                     district.subscription_type)
    batch_id = progress["batch_id"]
    link_all_reviews(registered, batch_id)
    before = _students(registered)
    with (wh := Warehouse(registered)).write() as con:
        decide_batch(con, batch_id, "Pat Admin", False, secret=approver_secret(con))
        with pytest.raises(CommitError, match="not approved"):
            commit_batch(wh, batch_id, "Pat Admin")
    assert _students(registered).equals(before)

    second = start(registered, "migration", district.migration_files[:1], district.migration_term,
                   district.subscription_type)
    link_all_reviews(registered, second["batch_id"])
    first = approve_and_commit(registered, second["batch_id"])
    wh = Warehouse(registered)
    again = commit_batch(wh, second["batch_id"], "Pat Admin")
    messages = build_messages(wh, second["batch_id"], tmp_path / "outbox", MailSettings())
    assert again == {**first, "already_committed": True}
    assert messages.filter(pl.col("kind") == "teacher_roster")["attachment"].str.ends_with(".xlsx").all()


def test_approval_needs_the_typed_removal_count_and_a_registered_approver(district, registered: Path):
    progress = start(registered, "migration", district.migration_files[:2], district.migration_term,
                     district.subscription_type)
    progress = link_all_reviews(registered, progress["batch_id"])
    batch_id, removals = progress["batch_id"], progress["plan"]["removals"]
    assert removals > 0
    with opened(registered) as con:
        with pytest.raises(ApprovalError, match=f"removes {removals} students"):
            decide_batch(con, batch_id, "Pat Admin", True, removals + 1, **approval(con, batch_id))
        with pytest.raises(ApproverError, match="'Mallory' is not a registered approver"):
            decide_batch(con, batch_id, "Mallory", True, removals, **approval(con, batch_id))
        assert decide_batch(con, batch_id, "Pat Admin", True, removals, **approval(con, batch_id))["approved"]


def test_a_plan_made_before_another_commit_is_refused(district, registered: Path):
    one = link_all_reviews(registered, start(registered, "migration", district.migration_files[:1],
                                             district.migration_term, district.subscription_type)["batch_id"])
    two = link_all_reviews(registered, start(registered, "migration", district.migration_files[1:2],
                                             district.migration_term, district.subscription_type)["batch_id"])
    with opened(registered) as con:
        decide_batch(con, two["batch_id"], "Pat Admin", True, two["plan"]["removals"],
                     **approval(con, two["batch_id"]))
    approve_and_commit(registered, one["batch_id"])
    with (wh := Warehouse(registered)).write() as con:
        with pytest.raises(CommitError, match="out of date"):
            commit_batch(wh, two["batch_id"], "Pat Admin")
    again = advance_batch(wh, two["batch_id"])
    assert "plan" in again or again["review"]["pending"] > 0


def test_a_header_typo_or_an_empty_sheet_removes_nobody(district, registered: Path, tmp_path: Path):
    from tests.sheets import TEMPLATE_HEADER, roster_row, write_roster

    typo = write_roster(tmp_path / "typo.xlsx", [], header=[h.replace("Student Last", "Studnet Last")
                                                           for h in TEMPLATE_HEADER])
    progress = start(registered, "migration", [typo], district.migration_term, district.subscription_type,
                     schools=["ABC High School"])
    # A sheet without its header cannot be read: the batch fails before matching or planning.
    assert progress["status"] == "failed" and progress["ingest"]["file_errors"] and "plan" not in progress
    with opened(registered) as con:
        assert con.execute("SELECT count(*) FROM plan_removals WHERE batch_id = ?", [progress["batch_id"]]).fetchall() \
            == [(0,)]

    # A header and no rows is refused by name: the whole migration fails and removes nobody.
    empty = write_roster(tmp_path / "empty.xlsx", [])
    progress = start(registered, "migration", [empty], district.migration_term, district.subscription_type,
                     schools=["ABC High School"])
    assert progress["status"] == "failed" and "plan" not in progress
    assert "no student rows" in progress["ingest"]["file_errors"][0]["problem"]
    with opened(registered) as con:
        assert con.execute("SELECT count(*) FROM plan_removals WHERE batch_id = ?", [progress["batch_id"]]).fetchall() \
            == [(0,)]

    # A listed school with no rows in otherwise readable sheets needs the guard's override.
    other = write_roster(tmp_path / "other.xlsx", [roster_row(school="Summerwind High School", student_id="S-new")])
    progress = start(registered, "migration", [other], district.migration_term, district.subscription_type,
                     schools=["ABC High School", "Summerwind High School"])
    plan = progress["plan"]
    assert any(g["school"] == "ABC High School" and g["reason"].startswith("the school has active students and no rows")
               for g in plan["guard"]), plan["guard"]
    with opened(registered) as con:
        with pytest.raises(ApprovalError, match="guard"):
            decide_batch(con, progress["batch_id"], "Pat Admin", True, plan["removals"],
                         **approval(con, progress["batch_id"]))


def test_a_removed_student_who_comes_back_is_restored_not_created(district, registered: Path):
    first = link_all_reviews(registered, start(registered, "migration", district.migration_files[:1],
                                               district.migration_term, district.subscription_type)["batch_id"])
    approve_and_commit(registered, first["batch_id"])
    removed = _students(registered).filter(pl.col("status") == "deleted")
    assert removed.height >= 1
    # Next year the registration sheet (which still lists the leavers) comes in as the migration.
    back = link_all_reviews(registered, start(registered, "migration", district.registration_files[:1],
                                              "Fall 2027", district.subscription_type)["batch_id"])
    assert back["plan"]["students_restored"] == removed.height
    summary = approve_and_commit(registered, back["batch_id"], override=bool(back["plan"]["guard"]))
    assert summary["students_restored"] == removed.height
    restored = _students(registered).filter(pl.col("student_key").is_in(removed["student_key"].implode()))
    assert set(restored["status"]) == {"active"}


def test_a_registration_over_the_row_limit_is_refused_before_anything_is_staged(district, district_warehouse: Path):
    from tasks.ingest import BatchTooLarge

    with pytest.raises(BatchTooLarge, match="at most 50"):
        start(district_warehouse, "registration", district.registration_files, district.registration_term,
              district.subscription_type, max_rows=50)
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM staged_rows").fetchall() == [(0,)]


AMY = {"first": "Amy", "last": "Jackson", "student_id": "0005463", "dob": "2012-05-04"}
OLIVIA = {"first": "Olivia", "last": "Schneider", "student_id": "0005999", "dob": "2011-09-17"}
CLASSMATES = [{"first": f"Kid{i}", "last": f"Family{i}", "student_id": f"00051{i:02d}", "dob": f"2012-0{1 + i % 9}-1{i % 10}"}
              for i in range(8)]


@pytest.fixture
def amy_and_olivia(warehouse_path: Path, tmp_path: Path) -> Path:
    """A school whose registered students include Amy Jackson (ID 0005463) and Olivia Schneider (0005999)."""
    from tests.sheets import roster_row, write_roster
    from warehouse import catalog

    with opened(warehouse_path) as con:
        catalog.add_schools(con, ["ABC High School", "Summerwind High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        catalog.set_subscriptions(con, "K12", 1000, "test")
    rows = [roster_row(**person) for person in [AMY, OLIVIA, *CLASSMATES]]
    progress = start(warehouse_path, "registration", [write_roster(tmp_path / "year1.xlsx", rows)], "Fall 2025", "K12")
    approve_and_commit(warehouse_path, progress["batch_id"])
    return warehouse_path


def _keys(warehouse: Path) -> dict[str, int]:
    return dict(_students(warehouse).select("student_id", "student_key").rows())


def test_a_mistyped_id_landing_on_a_classmates_id_holds_nothing_and_links_the_right_child(amy_and_olivia: Path,
                                                                                          tmp_path: Path):
    from tasks.review import review_items
    from tests.sheets import roster_row, write_roster

    keys = _keys(amy_and_olivia)
    # Olivia's ID was typed as Amy's, in the same class.
    rows = [roster_row(**AMY), roster_row(**{**OLIVIA, "student_id": AMY["student_id"]}),
            *[roster_row(**person) for person in CLASSMATES]]
    progress = start(amy_and_olivia, "migration", [write_roster(tmp_path / "year2.xlsx", rows)], "Fall 2026", "K12")
    assert progress["validate"]["rows_invalid"] == 0 and progress["validate"]["errors"] == 0
    assert progress["match"] == {"matched": 9, "review": 1, "new": 0}
    with opened(amy_and_olivia) as con:
        amy_row = con.execute("SELECT decision, student_key FROM match_results WHERE batch_id = ? AND row_no = 1",
                              [progress["batch_id"]]).fetchall()
        items = review_items(con, progress["batch_id"])
    assert amy_row == [("matched", keys[AMY["student_id"]])]
    assert [item["first_name"] for item in items] == ["Olivia"]
    assert items[0]["reason"].startswith(
        f"ID probably mistyped: student_id '0005463' belongs to Amy Jackson (student {keys[AMY['student_id']]}), "
        "who is on year2.xlsx row 2 of this batch")
    assert items[0]["candidates"][0]["student_key"] == keys[OLIVIA["student_id"]]
    plan = link_all_reviews(amy_and_olivia, progress["batch_id"])["plan"]
    assert plan["held_schools"] == [] and not plan["hold_all"] and plan["blockers"] == []
    assert plan["removals"] == 0 and plan["students_new"] == 0


def test_a_mistyped_row_made_new_by_a_reviewer_never_takes_the_registered_childs_id(amy_and_olivia: Path,
                                                                                    tmp_path: Path):
    from tasks.review import decide_review, review_items
    from tests.sheets import roster_row, write_roster

    rows = [roster_row(**AMY), roster_row(**{**OLIVIA, "student_id": AMY["student_id"]}),
            *[roster_row(**person) for person in CLASSMATES]]
    progress = start(amy_and_olivia, "migration", [write_roster(tmp_path / "year2.xlsx", rows)], "Fall 2026", "K12")
    with (wh := Warehouse(amy_and_olivia)).write() as con:
        item = review_items(con, progress["batch_id"])[0]
        decide_review(con, progress["batch_id"], item["review_id"], "new", "Rita Reviewer")
    progress = advance_batch(wh, progress["batch_id"])
    assert progress["status"] == "held"
    assert any("Olivia Schneider (year2.xlsx row 3) would be a new student with student_id '0005463', which is "
               "Amy Jackson" in b for b in progress["plan"]["blockers"]), progress["plan"]["blockers"]


def test_two_new_children_with_one_new_id_are_never_made_one_student(amy_and_olivia: Path, tmp_path: Path):
    from tasks.review import decide_review, review_items
    from tests.sheets import roster_row, write_roster

    twins_of_id = [roster_row(first="Noah", last="Berg", student_id="0007777", dob="2013-02-02"),
                   roster_row(first="Liam", last="Cole", student_id="0007777", dob="2013-06-07")]
    progress = start(amy_and_olivia, "registration", [write_roster(tmp_path / "new.xlsx", twins_of_id)], "Fall 2026",
                     "K12")
    assert progress["validate"]["rows_invalid"] == 0 and progress["match"] == {"matched": 0, "review": 2, "new": 0}
    wh = Warehouse(amy_and_olivia)
    with wh.write() as con:
        items = review_items(con, progress["batch_id"])
        assert all("two different children carry the same new student_id '0007777'" in i["reason"] for i in items)
        for item in items:
            decide_review(con, progress["batch_id"], item["review_id"], "new", "Rita Reviewer")
    plan = advance_batch(wh, progress["batch_id"])["plan"]
    assert plan["blockers"] == [
        "Noah Berg (new.xlsx row 2) and Liam Cole (new.xlsx row 3) would become one new student with student_id "
        "'0007777', though they are different children: correct the ID in the sheet and upload it again, or exclude "
        "the row that is not the ID's student in review"]
    with wh.write() as con:
        decide_review(con, progress["batch_id"], items[1]["review_id"], "exclude", "Rita Reviewer")
    plan = advance_batch(wh, progress["batch_id"])["plan"]
    assert plan["blockers"] == [] and plan["students_new"] == 1
