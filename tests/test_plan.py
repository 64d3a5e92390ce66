"""The plan's safety rules, each on a small warehouse built by the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tasks.approve import ApprovalError, decide_batch
from tasks.pipeline import advance_batch
from tasks.plan import PlanInputs, migration_removals, percent, plan_tables
from tasks.plan_view import plan_markdown
from tasks.review import review_items
from tests.batch_helpers import approval, approve_and_commit, start
from tests.sheets import TEMPLATE_HEADER, roster_row, write_roster, write_sheets
from warehouse import catalog
from warehouse.handle import Warehouse, opened

SCHOOLS = ["ABC High School", "Summerwind High School"]
TERM, SUB = "Fall 2026", "K12"


@pytest.fixture
def town(warehouse_path: Path, tmp_path: Path) -> Path:
    """Two schools with twenty registered students each (IDs 1-40)."""
    with opened(warehouse_path) as con:
        catalog.add_schools(con, SCHOOLS, "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        catalog.set_subscriptions(con, SUB, 1000, "test")
    rows = [roster_row(first=f"Kid{i}", last=f"Family{i}", student_id=str(i), school=SCHOOLS[i > 20],
                       dob=dt.date(2012, 1 + i % 12, 1 + i % 27)) for i in range(1, 41)]
    progress = start(warehouse_path, "registration", [write_roster(tmp_path / "year1.xlsx", rows)], "Fall 2025", SUB)
    approve_and_commit(warehouse_path, progress["batch_id"])
    return warehouse_path


def year_two(drop: set[int] = frozenset(), change: dict[int, dict] | None = None) -> list[list]:
    """Next year's rows: everyone but ``drop``, with ``change`` applied per student number."""
    rows = []
    for i in range(1, 41):
        if i in drop:
            continue
        fields = {"first": f"Kid{i}", "last": f"Family{i}", "student_id": str(i), "school": SCHOOLS[i > 20],
                  "dob": dt.date(2012, 1 + i % 12, 1 + i % 27).isoformat(), **(change or {}).get(i, {})}
        rows.append(roster_row(**fields))
    return rows


def test_a_student_whose_row_is_invalid_in_another_school_is_not_removed(town: Path, tmp_path: Path):
    # Kid5 moved to Summerwind and his new row has a bad date: Summerwind is held, and ABC must not
    # remove him although no valid row links him.
    sheet = write_roster(tmp_path / "y2.xlsx", year_two(change={5: {"school": SCHOOLS[1], "dob": "03/04/2012"}}))
    plan = start(town, "migration", [sheet], TERM, SUB)["plan"]
    assert plan["held_schools"] == [SCHOOLS[1]] and plan["removals"] == 0


def test_excluding_a_row_in_review_does_not_remove_its_candidates(town: Path, tmp_path: Path):
    # Kid3 arrives without ID and with a typo-like date: review; the reviewer excludes the row.
    sheet = write_roster(tmp_path / "y2.xlsx", year_two(change={3: {"student_id": None, "first": "Kid3",
                                                                    "dob": dt.date(2012, 4, 5).isoformat()}}))
    progress = start(town, "migration", [sheet], TERM, SUB)
    with (wh := Warehouse(town)).write() as con:
        items = review_items(con, progress["batch_id"])
        assert len(items) == 1
        from tasks.review import decide_review

        decide_review(con, progress["batch_id"], items[0]["review_id"], "exclude", "Rita Reviewer")
        plan = advance_batch(wh, progress["batch_id"])["plan"]
    assert plan["removals"] == 0 and plan["rows_excluded_by_review"] == 1


def test_a_hidden_roster_sheet_fails_the_whole_migration(town: Path, tmp_path: Path):
    rows = year_two()
    path = write_sheets(tmp_path / "y2.xlsx", {"Roster": [TEMPLATE_HEADER, *rows[:-2]],
                                               "More": [TEMPLATE_HEADER, *rows[-2:]]}, hidden=("More",))
    progress = start(town, "migration", [path], TERM, SUB)
    # A file-level error: the batch fails after reading, so nothing is planned, committed or removed.
    assert progress["status"] == "failed" and "plan" not in progress
    assert [e["sheet"] for e in progress["ingest"]["file_errors"]] == ["More"]


def test_new_children_with_only_a_name_are_never_merged(town: Path, tmp_path: Path):
    twins = [roster_row(first="Emma", last="Garcia", student_id=None, dob=None, school=SCHOOLS[0]),
             roster_row(first="Emma", last="Garcia", student_id=None, dob=None, school=SCHOOLS[1],
                        email="other@example.org", teacher=("Ann", "Other"))]
    progress = start(town, "registration", [write_roster(tmp_path / "new.xlsx", twins)], TERM, SUB)
    assert progress["plan"]["students_new"] == 2


def test_school_pools_are_not_lent_to_other_schools(warehouse_path: Path, tmp_path: Path):
    with opened(warehouse_path) as con:
        catalog.add_schools(con, SCHOOLS, "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        catalog.set_subscriptions(con, SUB, 100, "test", school=SCHOOLS[1])
        catalog.set_subscriptions(con, SUB, 2, "test")
    rows = [roster_row(first=f"K{i}", student_id=str(i), school=SCHOOLS[0]) for i in range(5)]
    plan = start(warehouse_path, "registration", [write_roster(tmp_path / "r.xlsx", rows)], TERM, SUB)["plan"]
    assert plan["blockers"] and "district pool, which has 2" in plan["blockers"][0]


def test_a_batch_matched_before_another_commit_is_matched_again(town: Path, tmp_path: Path):
    newcomer = roster_row(first="Zoe", last="New", student_id="2001", dob="2013-02-03")
    first = start(town, "registration", [write_roster(tmp_path / "a.xlsx", [newcomer])], TERM, SUB)
    second = start(town, "migration", [write_roster(tmp_path / "b.xlsx", [*year_two(), newcomer])], TERM, SUB)
    approve_and_commit(town, first["batch_id"])
    # The migration was matched before Zoe existed; planning now must match again and link her.
    again = advance_batch(Warehouse(town), second["batch_id"])
    assert again["match"]["new"] == 0 and again["plan"]["students_new"] == 0 and again["plan"]["removals"] == 0


def test_a_sheet_that_shrank_since_last_time_is_held_for_an_override(town: Path, tmp_path: Path):
    # A third of the rows gone from the same sheet: below the per-school removal limit set here,
    # yet a truncated or filtered sheet looks exactly like this, so the plan holds it.
    dropped = {3, 6, 9, 12, 15, 18, 23, 26, 29, 32, 35, 38}
    sheet = write_roster(tmp_path / "year1.xlsx", year_two(drop=dropped))
    progress = start(town, "migration", [sheet], "Fall 2026", SUB, max_removal_share=0.5)
    guard = progress["plan"]["guard"]
    assert [g["school"] for g in guard] == ["year1.xlsx (sheet Roster)"]
    assert "28 rows where batch 1 had 40 (30% fewer, limit 25%)" in guard[0]["reason"]
    with opened(town) as con:
        with pytest.raises(ApprovalError, match="guard"):
            decide_batch(con, progress["batch_id"], "Pat Admin", True, 12, override_guard=False,
                         **approval(con, progress["batch_id"]))
    approve_and_commit(town, progress["batch_id"], override=True)
    with opened(town) as con:
        assert con.execute("SELECT count(*) FROM students WHERE status = 'deleted'").fetchall() == [(12,)]


def test_a_sheet_under_a_new_name_or_within_the_limit_is_not_held(town: Path, tmp_path: Path):
    renamed = write_roster(tmp_path / "year2.xlsx", year_two(drop={3, 6, 9, 12, 15, 18, 23, 26, 29, 32, 35, 38}))
    assert start(town, "migration", [renamed], "Fall 2026", SUB, max_removal_share=0.5)["plan"]["guard"] == []
    same_name = write_roster(tmp_path / "year1.xlsx", year_two(drop={3, 23}))
    assert start(town, "migration", [same_name], "Fall 2026", SUB)["plan"]["guard"] == []


def test_the_plan_shows_name_differences_and_removals_per_school_and_keeps_registered_names(town: Path,
                                                                                            tmp_path: Path):
    sheet = write_roster(tmp_path / "y2.xlsx", year_two(drop={21}, change={7: {"first": "Kiddo7", "last": "Fam7"}}))
    progress = start(town, "migration", [sheet], "Fall 2026", SUB)
    with opened(town) as con:
        tables = plan_tables(con, progress["batch_id"])
        markdown = plan_markdown(progress["plan"], tables)
    assert tables["name_differences"].select("sheet_first", "sheet_last", "registered_first", "registered_last").rows() \
        == [("Kiddo7", "Fam7", "Kid7", "Family7")]
    assert tables["removals_by_school"].rows() == [("Summerwind High School", 1, 20, 0.05)]
    assert "| Kiddo7 Fam7 | Kid7 Family7 |" in markdown and "| Summerwind High School | 1 | 20 | 5.0% |" in markdown
    approve_and_commit(town, progress["batch_id"])
    with opened(town) as con:
        assert con.execute("SELECT first_name, last_name FROM students WHERE student_id = '7'").fetchall() == [
            ("Kid7", "Family7")]


def test_a_cut_off_workbook_fails_the_whole_migration_and_removes_nobody(town: Path, tmp_path: Path):
    from tests.test_bad_files import truncated_xlsx

    # ABC's sheet is fine; Summerwind's workbook arrived cut off (a failed upload): it cannot be
    # read, so it may hold any school's students, and nobody anywhere is removed.
    abc_only = write_roster(tmp_path / "abc.xlsx", year_two(drop=set(range(21, 41)) | {1, 2}))
    progress = start(town, "migration", [abc_only, truncated_xlsx(tmp_path)], "Fall 2026", SUB)
    assert progress["status"] == "failed" and "plan" not in progress
    assert [e["file_name"] for e in progress["ingest"]["file_errors"]] == ["truncated.xlsx"]
    with opened(town) as con:
        assert con.execute("SELECT count(*) FROM plan_removals").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM students WHERE status = 'deleted'").fetchall() == [(0,)]


def _guard_inputs(grades: list[str]) -> PlanInputs:
    """One school's active students with the given grades, for the guard's arithmetic alone."""
    empty = pl.DataFrame()
    students = pl.DataFrame({"student_key": list(range(len(grades))), "school_id": [1] * len(grades),
                             "status": ["active"] * len(grades), "grade": grades})
    return PlanInputs(batch={"config": {"max_removal_share": 0.10}}, rows=empty, hold_all=False, held_schools=[],
                      hold_reasons=[], teachers=empty, classes=empty, enrolled=empty,
                      temporary=pl.DataFrame(schema={"student_key": pl.Int64, "school_id": pl.Int64}),
                      school_names={1: "ABC High School"}, pools=empty, students=students)


def _removing(inputs: PlanInputs, removed: set[int]) -> tuple[pl.DataFrame, list[dict]]:
    kept = inputs.students.filter(~pl.col("student_key").is_in(sorted(removed)))
    rows = kept.select("school_id", "student_key")
    removals, _, guard = migration_removals(inputs, rows, pl.DataFrame({"student_key": []}, schema={"student_key": pl.Int64}), 7)
    return removals, guard


def test_the_guard_refuses_a_share_just_over_its_limit_and_says_it_unrounded():
    inputs = _guard_inputs(["7"] * 500 + ["8"] * 100)
    removals, guard = _removing(inputs, set(range(63)))  # 63 seventh-graders, none of the highest grade
    assert removals.height == 63 and [g["school"] for g in guard] == ["ABC High School"]
    assert guard[0]["reason"] == "removes 63 of 600 (10.5%) of the school's active students (limit 10%)"
    assert percent(0.1004, 0.10) == "10.04%" and percent(0.05) == "5%"


def test_leavers_of_a_schools_highest_grade_are_removed_but_not_counted_by_the_guard():
    inputs = _guard_inputs(["7"] * 500 + ["8"] * 100)
    leavers = set(range(500, 600))
    removals, guard = _removing(inputs, leavers | set(range(20)))
    assert removals.height == 120 and guard == []  # 20 of 600 counted, not 120
    assert set(removals.filter("expected_leaver")["student_key"]) == leavers
    # Over the limit without them, the reason counts the others and names the leavers apart.
    _, guard = _removing(inputs, leavers | set(range(61)))
    assert guard[0]["reason"] == ("removes 61 of 600 (10.2%) of the school's active students, not counting 100 "
                                  "expected leavers of its highest grade 8 (limit 10%)")


def test_a_school_with_one_grade_has_no_expected_leavers():
    removals, guard = _removing(_guard_inputs(["7"] * 20), set(range(5)))
    assert not removals["expected_leaver"].any() and "5 of 20 (25%)" in guard[0]["reason"]


def test_the_plan_reports_highest_grade_leavers_apart_and_the_guard_lets_them_go(warehouse_path: Path,
                                                                                tmp_path: Path):
    with opened(warehouse_path) as con:
        catalog.add_schools(con, SCHOOLS, "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        catalog.set_subscriptions(con, SUB, 1000, "test")
    # Ten students: six in grade 7, four in grade 8 (the school's highest).
    grades = {i: "8" if i > 6 else "7" for i in range(1, 11)}
    year1 = [roster_row(first=f"Kid{i}", last=f"Family{i}", student_id=str(i), grade=grades[i],
                        dob=dt.date(2012, i, 1 + i)) for i in range(1, 11)]
    progress = start(warehouse_path, "registration", [write_roster(tmp_path / "y1.xlsx", year1)], "Fall 2025", SUB)
    approve_and_commit(warehouse_path, progress["batch_id"])
    # Next year the eighth-graders have left (40% of the school): a normal year, not a mass removal.
    year2 = [roster_row(first=f"Kid{i}", last=f"Family{i}", student_id=str(i), grade="8",
                        dob=dt.date(2012, i, 1 + i)) for i in range(1, 7)]
    progress = start(warehouse_path, "migration", [write_roster(tmp_path / "y2.xlsx", year2)], TERM, SUB)
    plan = progress["plan"]
    assert plan["guard"] == [] and plan["removals"] == 4 and plan["expected_leavers"] == 4
    assert plan["expected_leavers_by_school"] == [{"school": SCHOOLS[0], "highest_grade": "8", "students": 4}]
    with opened(warehouse_path) as con:
        markdown = plan_markdown(plan, plan_tables(con, progress["batch_id"]))
    assert "expected leavers (of the removals; not counted by the mass-removal guard): 4: " \
        "ABC High School, highest grade 8: 4" in markdown
    approve_and_commit(warehouse_path, progress["batch_id"])
    with opened(warehouse_path) as con:
        assert con.execute("SELECT count(*) FROM students WHERE status = 'deleted'").fetchall() == [(4,)]
