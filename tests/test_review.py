"""The review queue: unsure decisions, and deciding in a spreadsheet exported and imported back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from tasks.exports import write_xlsx
from tasks.plan import PlanError, build_plan
from tasks.review import (NO_DECISION, apply_form_choices, close_review, decide_review, review_choices,
                          review_item_help, review_item_title, review_items)
from tasks.review_sheet import ReviewImportError, export_review_xlsx, import_review_xlsx
from tests.batch_helpers import add_catalog, approve_and_commit, start
from tests.sheets import roster_row, write_roster
from warehouse.handle import Warehouse, opened

SCHOOL, TERM, SUB = "ABC High School", "Fall 2026", "K12"
# Registered last year: Ana and Ava Silva are twins; the others are unrelated.
PEOPLE = [("Ana", "Silva", "1", "2013-01-02"), ("Ava", "Silva", "2", "2013-01-02"),
          ("Mia", "Clark", "3", "2014-03-09"), ("Owen", "Price", "4", "2012-07-21"),
          ("=HYPERLINK(\"http://x\")", "Evil", "5", "2012-02-02")]


@pytest.fixture(scope="module")
def queue_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A migration whose four rows without IDs wait for review, built once for the module (a
    registration committed, then the migration matched); returns (warehouse, batch id)."""
    folder = tmp_path_factory.mktemp("queue")
    warehouse = folder / "warehouse.duckdb"
    add_catalog(warehouse, [SCHOOL], {"ALGE1": "Algebra 1"}, SUB, 100)
    year1 = [roster_row(first=f, last=l, student_id=i, dob=d, school=SCHOOL) for f, l, i, d in PEOPLE]
    approve_and_commit(warehouse, start(warehouse, "registration", [write_roster(folder / "y1.xlsx", year1)],
                                        "Fall 2025", SUB)["batch_id"])
    year2 = [
        roster_row(first="Aya", last="Silva", student_id=None, dob="2013-01-02"),   # one of the twins?
        roster_row(first="Ada", last="Silva", student_id=None, dob="2013-01-02"),   # the other twin?
        # No birth date and no ID, a first name a letter off: names alone, and not even the same ones
        # (the very name, nobody else's, at the student's school would be linked).
        roster_row(first="Mya", last="Clark", student_id=None, dob=None),
        roster_row(first="Owan", last="Price", student_id=None, dob=None),
        roster_row(first=PEOPLE[4][0], last="Evil", student_id="5", dob="2012-02-02"),
    ]
    progress = start(warehouse, "migration", [write_roster(folder / "y2.xlsx", year2)], TERM, SUB)
    assert progress["match"]["review"] == 4
    return warehouse, progress["batch_id"]


@pytest.fixture
def queue(queue_template: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    """The review queue's warehouse, copied for one test (each decides its own way); returns
    (warehouse, batch id)."""
    template, batch_id = queue_template
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(template, warehouse)
    return warehouse, batch_id


def fill(exported: Path, decisions: dict[int, str], out: Path) -> Path:
    """What a reviewer does in Excel: type decisions (by sheet row) into the decision column."""
    frame = pl.read_excel(exported, sheet_name="Review", infer_schema_length=0)
    column = frame["decision"].to_list()
    for excel_row, text in decisions.items():
        column[excel_row - 2] = text
    return write_xlsx(out, {"Review": frame.with_columns(decision=pl.Series(column, dtype=pl.String))})


def statuses(warehouse: Path, batch_id: int) -> list[tuple]:
    with opened(warehouse) as con:
        return con.execute("SELECT status, action, student_key, reviewer FROM review_items WHERE batch_id = ?"
                           " ORDER BY review_id", [batch_id]).fetchall()


def test_a_filled_sheet_applies_every_decision_and_audits_it(queue, tmp_path: Path):
    warehouse, batch_id = queue
    with opened(warehouse) as con:
        exported = export_review_xlsx(con, batch_id, tmp_path / "queue.xlsx")
    sheet = pl.read_excel(exported, sheet_name="Review", infer_schema_length=0)
    # Each item with its provenance, the reason and the candidates side by side.
    assert sheet.height == 4 and sheet["file"].to_list() == ["y2.xlsx"] * 4
    assert sheet["excel_row"].to_list() == ["2", "3", "4", "5"]
    assert "two candidates are close" in sheet["reason"][0] and "only the names" in sheet["reason"][2]
    assert {sheet["candidate 1 first name"][0], sheet["candidate 2 first name"][0]} == {"Ana", "Ava"}
    assert sheet["candidate 1 date of birth"][2].startswith("2014-03-09")

    filled = fill(exported, {2: "link 1", 3: "new", 4: "Link 1", 5: "unsure"}, tmp_path / "filled.xlsx")
    with (wh := Warehouse(warehouse)).write() as con:
        counts = import_review_xlsx(con, batch_id, filled, "Rita Reviewer")
        assert counts == {"applied": 4, "unchanged": 0, "skipped": 0}
        assert close_review(wh, batch_id) == {"pending": 1, "escalated": 1, "link": 2, "new": 1, "exclude": 0}
        audit = con.execute("SELECT actor, detail->>'action', detail->>'source' FROM audit_log"
                            " WHERE action = 'review.decide' ORDER BY audit_id").fetchall()
    assert [a[1] for a in audit] == ["link", "new", "link", "unsure"]
    assert {a[0] for a in audit} == {"Rita Reviewer"} and {a[2] for a in audit} == {"sheet filled.xlsx"}
    assert [s[0] for s in statuses(warehouse, batch_id)] == ["decided", "decided", "decided", "escalated"]

    # Importing the same sheet again changes nothing; a re-export shows the decisions made.
    with opened(warehouse) as con:
        assert import_review_xlsx(con, batch_id, filled, "Rita Reviewer") == {"applied": 0, "unchanged": 4,
                                                                              "skipped": 0}
        again = export_review_xlsx(con, batch_id, tmp_path / "again.xlsx")
    assert pl.read_excel(again, sheet_name="Review", infer_schema_length=0)["decision"].to_list() == [
        "link 1", "new", "link 1", "unsure"]


def test_one_bad_decision_applies_none_and_names_each_bad_cell(queue, tmp_path: Path):
    warehouse, batch_id = queue
    with opened(warehouse) as con:
        exported = export_review_xlsx(con, batch_id, tmp_path / "queue.xlsx")
    before = statuses(warehouse, batch_id)
    # Row 2 links the first twin; row 3 links the same child for another person; row 4 names a
    # candidate that does not exist; row 5 is not a decision.
    filled = fill(exported, {2: "link 1", 3: "link 1", 4: "link 7", 5: "maybe"}, tmp_path / "filled.xlsx")
    with opened(warehouse) as con:
        with pytest.raises(ReviewImportError) as raised:
            import_review_xlsx(con, batch_id, filled, "Rita Reviewer")
        audits = con.execute("SELECT count(*) FROM audit_log WHERE action = 'review.decide'").fetchall()
    problems = raised.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("sheet Review, row 3, column decision") and "one person only" in problems[0]
    assert problems[1].startswith("sheet Review, row 4, column decision") and "no candidate 7" in problems[1]
    assert problems[2].startswith("sheet Review, row 5, column decision") and "'maybe'" in problems[2]
    assert statuses(warehouse, batch_id) == before and audits == [(0,)]


def test_a_sheet_from_another_batch_or_without_the_columns_is_refused(queue, tmp_path: Path):
    warehouse, batch_id = queue
    other = start(warehouse, "migration", [write_roster(tmp_path / "other.xlsx", [
        roster_row(first="Aya", last="Silva", student_id=None, dob="2013-01-02")])], TERM, SUB)["batch_id"]
    with opened(warehouse) as con:
        exported = export_review_xlsx(con, batch_id, tmp_path / "queue.xlsx")
        with pytest.raises(ReviewImportError, match=f"row 2, column decision: Batch {other} has no review item"):
            import_review_xlsx(con, other, fill(exported, {2: "new"}, tmp_path / "f.xlsx"), "Rita")
        with pytest.raises(LookupError, match="No batch 99"):
            import_review_xlsx(con, 99, exported, "Rita")
    broken = write_xlsx(tmp_path / "broken.xlsx", {"Review": pl.DataFrame({"id": ["1"], "what": ["new"]})})
    with opened(warehouse) as con, pytest.raises(Exception, match="column.*review_id, decision.*missing"):
        import_review_xlsx(con, batch_id, broken, "Rita")


def test_unsure_escalates_blocks_the_plan_and_can_be_changed(queue):
    warehouse, batch_id = queue
    with (wh := Warehouse(warehouse)).write() as con:
        items = review_items(con, batch_id, pending_only=True)
        for item in items[:3]:
            decide_review(con, batch_id, item["review_id"], "new", "Rita")
        assert decide_review(con, batch_id, items[3]["review_id"], "unsure", "Rita")["changed"]
        assert not decide_review(con, batch_id, items[3]["review_id"], "unsure", "Rita")["changed"]
        escalated = review_items(con, batch_id, escalated_only=True)
        assert [i["review_id"] for i in escalated] == [items[3]["review_id"]]
        assert "Escalated by Rita" in review_item_help(escalated[0])
        assert close_review(wh, batch_id)["pending"] == 1
        with pytest.raises(PlanError):
            build_plan(wh, batch_id)
        decide_review(con, batch_id, items[3]["review_id"], "link", "Sam Senior", 1)
        assert close_review(wh, batch_id)["pending"] == 0
        assert build_plan(wh, batch_id)["students_new"] == 3


def test_exported_cells_never_run_as_formulas_and_the_form_names_the_differences(queue, tmp_path: Path):
    warehouse, batch_id = queue
    with opened(warehouse) as con:
        exported = export_review_xlsx(con, batch_id, tmp_path / "queue.xlsx", pending_only=True)
        helps = [review_item_help(item) for item in review_items(con, batch_id, pending_only=True)]
    # The formula-like name is registered and linked by its ID, so it is not in the queue; its
    # neighbours' names are plain; no cell of the export is a formula.
    text = pl.read_excel(exported, sheet_name="Review", infer_schema_length=0)
    assert not any(str(v).startswith("=") for col in text.columns for v in text[col].drop_nulls())
    # In the Prefect form, each item names where a candidate differs from the row: Ana's first name
    # (the row says Aya), not her last name or birth date.
    assert any("Candidate 1: Ana Silva, born 2013-01-02" in text and "differs from the row in first name." in text
               for text in helps), helps


def test_the_command_line_exports_and_imports(queue, tmp_path: Path, run_cli):
    warehouse, batch_id = queue

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli("--warehouse", str(warehouse), *args)

    code, out, _ = run("review", "export", str(batch_id), "--xlsx", str(tmp_path / "q.xlsx"), "--json")
    assert code == 0 and json.loads(out)["path"].endswith("q.xlsx")
    bad = fill(tmp_path / "q.xlsx", {2: "link 9"}, tmp_path / "bad.xlsx")
    code, _, err = run("review", "import", str(batch_id), str(bad), "--reviewer", "Rita")
    assert code == 2 and "row 2, column decision" in err
    good = fill(tmp_path / "q.xlsx", {2: "link 1", 3: "link 2", 4: "link 1", 5: "link 1"}, tmp_path / "good.xlsx")
    code, out, _ = run("review", "import", str(batch_id), str(good), "--reviewer", "Rita", "--json")
    assert code == 0 and json.loads(out)["applied"] == 4 and json.loads(out)["pending"] == 0
    assert json.loads(out)["status"] == "awaiting_approval"


def test_the_forms_choices_name_the_candidates_and_map_back_exactly(queue):
    warehouse, batch_id = queue
    wh = Warehouse(warehouse)
    with wh.read() as con:
        items = review_items(con, batch_id, pending_only=True)
    first, second, third = items[:3]
    options = list(review_choices(first))
    candidate = first["candidates"][1] if len(first["candidates"]) > 1 else first["candidates"][0]
    link = next(o for o in options if review_choices(first)[o] == ("link", candidate["rank"]))
    assert options[0] == NO_DECISION and options[-3:] == ["new student", "exclude", "unsure"]
    assert link.startswith(f"link {candidate['rank']}: {candidate['first_name']} {candidate['last_name']}, "
                           f"born {candidate['date_of_birth']}")
    # The drop-down may cut a long option short: the field's description lists each candidate whole,
    # under the number its option starts with.
    person = link.removeprefix(f"link {candidate['rank']}: ").rsplit(" (score ", 1)[0]
    assert f"Candidate {candidate['rank']}: {person}, grade " in review_item_help(first)
    title = review_item_title(first)
    assert f"{first['first_name']} {first['last_name']}" in title and f"row {first['excel_row']}" in title
    choices = {first["review_id"]: link, second["review_id"]: NO_DECISION, third["review_id"]: "link: Nobody"}
    # Without a reviewer's name nothing is decided, and the reason is given once.
    refused = apply_form_choices(wh, batch_id, choices, " ", "run:review-0")
    assert refused["problems"][0].startswith("Name the reviewer") and refused["applied"] == []
    assert apply_form_choices(wh, batch_id, choices, " ", "run:review-0")["already_applied"]
    outcome = apply_form_choices(wh, batch_id, choices, "Rita", "run:review-1")
    assert outcome["applied"] == [first["review_id"]]
    assert outcome["problems"] == [f"item {third['review_id']}: 'link: Nobody' is not one of this item's choices any "
                                   "more (its candidates changed since the form was shown); choose again."]
    with wh.read() as con:
        decided = {i["review_id"]: (i["status"], i["action"], i["student_key"]) for i in review_items(con, batch_id)}
    assert decided[first["review_id"]] == ("decided", "link", candidate["student_key"])
    assert decided[second["review_id"]][0] == "pending" and decided[third["review_id"]][0] == "pending"
