"""Validation: every problem reported with file, sheet, row, column and a fix; no row lost."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tasks.ingest import ingest_files
from tasks.pipeline import open_batch
from tasks.validate import batch_issues, validate_batch
from tests.sheets import roster_row, write_roster
from warehouse import catalog
from warehouse.handle import Warehouse, opened


@pytest.fixture
def validated(tmp_path: Path, warehouse_path: Path):
    """Ingest and validate one sheet of rows; return (result, issues, valid rows)."""

    def run(rows: list[list]) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
        path = write_roster(tmp_path / "roster.xlsx", rows)
        with (wh := Warehouse(warehouse_path)).write() as con:
            catalog.add_schools(con, ["ABC High School", "Summerwind High School"], "test")
            catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
            config = {"files": [str(path)], "term": "Fall 2026", "subscription_type": "K12"}
            batch_id = open_batch(con, "test", "registration", config, "test")
            ingest_files(wh, batch_id, [str(path)])
            result = validate_batch(wh, batch_id)
            issues = batch_issues(con, batch_id)
            valid = con.sql("SELECT * FROM valid_rows ORDER BY row_no").pl()
        return result, issues, valid

    return run


def _problem(issues: pl.DataFrame, row: int, column: str) -> str:
    found = issues.filter((pl.col("row") == row) & (pl.col("column") == column))
    assert found.height, f"no issue at row {row} column {column}: {issues.to_dicts()}"
    return found["problem"][0]


def test_each_bad_cell_is_reported_at_its_row_and_column(validated):
    result, issues, valid = validated([
        roster_row(first="Good", student_id="1"),
        roster_row(first="Amb", student_id="2", dob="03/04/2015"),
        roster_row(first="Serial", student_id="3", dob="42000"),
        roster_row(first="Mail", student_id="4", email="not-an-email"),
        roster_row(first="Where", student_id="5", school="Nowhere High"),
        roster_row(first="Course", student_id="6", course="CALC9"),
        roster_row(first="", student_id="7"),
        roster_row(first="Grade", student_id="8", grade="15"),
    ])
    assert result["rows_staged"] == 8 and result["rows_valid"] == 1 and result["rows_invalid"] == 7
    assert valid["first_name"].to_list() == ["Good"]
    assert "ambiguous" in _problem(issues, 3, "date_of_birth")
    assert "bare number" in _problem(issues, 4, "date_of_birth")
    assert "not an email" in _problem(issues, 5, "teacher_email")
    assert "known schools: ABC High School, Summerwind High School" in _problem(issues, 6, "school")
    assert "catalog" in _problem(issues, 7, "course_code")
    assert "required" in _problem(issues, 8, "student_first")
    assert "grade" in _problem(issues, 9, "grade")
    located = issues.filter(pl.col("row") == 3).row(0, named=True)
    assert located["file"] == "roster.xlsx" and located["sheet"] == "Roster" and located["fix"]


def test_cross_row_rules(validated):
    _, issues, valid = validated([
        roster_row(first="Ana", student_id="1"),
        roster_row(first="Ana", student_id="1"),  # the same student twice in one class
        roster_row(first="Ben", student_id="2", email="t@example.org", teacher=("Tom", "Hill")),
        roster_row(first="Cal", student_id="3", email="t@example.org", teacher=("Thomas", "Hill")),
        roster_row(first="Dee", last="One", student_id="9", period="Period 2"),
        roster_row(first="Eve", last="Two", student_id="9", period="Period 3"),  # one ID, two people
    ])
    assert "repeats the same student (same name, date of birth and IDs) in the same class as Excel row 2" in \
        _problem(issues, 3, "student_last")
    assert "'Tom Hill' (row 4) and for 'Thomas Hill' (row 5)" in _problem(issues, 5, "teacher_email")
    assert "two teacher names" in _problem(issues, 4, "teacher_email")
    # One ID on two people is a question for matching: a warning naming the other row, both rows valid.
    assert "is also given to another student, Eve Two (roster.xlsx row 7)" in _problem(issues, 6, "student_id")
    assert "is also given to another student, Dee One (roster.xlsx row 6)" in _problem(issues, 7, "student_id")
    assert valid["first_name"].to_list() == ["Ana", "Dee", "Eve"]


def test_a_mistyped_id_on_another_child_in_the_same_class_keeps_both_rows_valid(validated):
    # Olivia's ID was mistyped as Amy's: two children sharing only an ID are not "the same student
    # twice", and nothing advises deleting either row.
    result, issues, valid = validated([
        roster_row(first="Amy", last="Jackson", student_id="0005463", dob="2012-05-04"),
        roster_row(first="Olivia", last="Schneider", student_id="0005463", dob="2012-09-17"),
    ])
    assert result["rows_valid"] == 2 and result["errors"] == 0
    assert set(issues["severity"]) == {"warning"}
    assert not issues["fix"].str.contains("(?i)delete").any(), issues.to_dicts()
    assert "Olivia Schneider (roster.xlsx row 3)" in _problem(issues, 2, "student_id")


def test_one_id_on_two_children_in_two_schools_is_not_an_error(validated):
    result, issues, _ = validated([
        roster_row(first="Amy", last="Jackson", student_id="0005463", school="ABC High School"),
        roster_row(first="Olivia", last="Schneider", student_id="0005463", dob="2011-02-03",
                   school="Summerwind High School"),
    ])
    assert result["rows_valid"] == 2 and result["errors"] == 0
    assert not issues["problem"].str.contains("two schools|different schools").any(), issues.to_dicts()


def test_the_same_whole_student_in_two_schools_is_an_error_naming_both_rows(validated):
    # Accents and case are folded: José and JOSE with one ID and birth date are one child.
    result, issues, _ = validated([
        roster_row(first="José", last="Peña", student_id="77", school="ABC High School"),
        roster_row(first="JOSE", last="Pena", student_id="77", school="Summerwind High School", period="Period 2"),
    ])
    assert result["rows_valid"] == 0
    assert _problem(issues, 2, "student_id") == (
        "is the same student (same name, date of birth and IDs) as on Summerwind High School (roster.xlsx row 3): "
        "one student in two schools")
    assert "ABC High School (roster.xlsx row 2)" in _problem(issues, 3, "student_id")


def test_the_same_student_twice_in_a_class_compares_the_whole_person(validated):
    result, issues, valid = validated([
        roster_row(first="Amy", last="Jackson", student_id="5"),
        roster_row(first="Olivia", last="Schneider", student_id="5"),  # shares only the ID
        roster_row(first="Ann", last="Lee", student_id="6", dob="2012-01-01"),
        roster_row(first="Ann", last="Lee", student_id="6", dob="2013-01-01"),  # another birth date
        roster_row(first="Zoë", last="Ray", student_id="8"),
        roster_row(first="ZOE", last="Ray", student_id="8"),  # the same child, spelled without the accent
    ])
    duplicates = issues.filter(pl.col("problem").str.contains("repeats the same student"))
    assert duplicates["row"].to_list() == [7]
    assert duplicates["fix"][0] == "The two rows are the same student in the same class: delete one of them."
    assert result["rows_valid"] == 5 and valid["first_name"].to_list() == ["Amy", "Olivia", "Ann", "Ann", "Zoë"]


def test_cleaning_normalizes_and_warns_but_keeps_the_row(validated):
    result, issues, valid = validated([
        roster_row(first="Jose\u0301", last="\u00a0Pe\u200bña ", student_id="1", grade="07"),
        roster_row(first="=HYPERLINK(\"x\")", student_id="2"),
        # Spaces before the =, and an invisible character: cleaned, and one warning for the cell
        # (the formula's), as for every cell a rule finds twice at one severity.
        roster_row(first=" =Ana\u200b", student_id="3"),
    ])
    assert result["rows_valid"] == 3
    assert valid["first_name"][0] == "José" and valid["last_name"][0] == "Peña" and valid["grade"][0] == "7"
    assert valid["first_name"][2] == "=Ana"
    assert "invisible" in _problem(issues, 2, "student_last")
    assert "formula" in _problem(issues, 3, "student_first")
    both = issues.filter((pl.col("row") == 4) & (pl.col("column") == "student_first"))
    assert both.height == 1 and "formula" in both["problem"][0], both.to_dicts()
    assert set(issues["severity"]) == {"warning"}


def test_ids_reformatted_by_excel_are_flagged(validated):
    _, issues, _ = validated([roster_row(student_id="1.23456789012346E+18")])
    assert "digits may be lost" in _problem(issues, 2, "student_id")


def test_the_error_report_names_every_problem_and_runs_no_formula(validated, tmp_path: Path, warehouse_path: Path):
    from tasks.validate import write_issue_report

    validated([roster_row(first="=cmd|' /C calc'!A0", student_id="1", dob="03/04/2015")])
    with opened(warehouse_path) as con:
        path = write_issue_report(con, 1, tmp_path / "report.xlsx")
    report = pl.read_excel(path, engine="calamine")
    assert {"File", "Sheet", "Row", "Column", "Value", "Problem", "How to fix"} <= set(report.columns)
    assert report.filter(pl.col("Column") == "date_of_birth")["Row"].to_list() == [2]
    assert report.filter(pl.col("Column") == "student_first")["Value"].to_list() == ["'=cmd|' /C calc'!A0"]


def test_an_unknown_school_records_a_request_for_the_account(validated, warehouse_path: Path):
    validated([roster_row(school="Cranberry Middle School"), roster_row(school="Cranberry Middle School",
                                                                        first="Ben", student_id="2")])
    with opened(warehouse_path) as con:
        assert con.execute("SELECT name, rows_waiting, status FROM school_requests").fetchall() == [
            ("Cranberry Middle School", 2, "open")]


def test_one_teacher_email_with_two_names_is_reported_once_naming_both_and_their_rows(validated):
    jane = [roster_row(first=f"S{i}", student_id=str(i), email="jmorgan@x.org", teacher=("Jane", "Morgan"))
            for i in range(5)]
    j = [roster_row(first=f"T{i}", student_id=str(10 + i), email="jmorgan@x.org", teacher=("J.", "Morgan"))
         for i in range(5)]
    result, issues, valid = validated(jane + j)
    email = issues.filter(pl.col("column") == "teacher_email")
    named = email.filter(pl.col("problem").str.contains("Jane Morgan"))
    assert named.height == 1, email.to_dicts()
    assert named["value"][0] == "jmorgan@x.org"
    assert named["problem"][0] == "is used for 'Jane Morgan' (rows 2-6) and for 'J. Morgan' (rows 7-11)"
    assert named["row"][0] == 7
    # Which name is right is not known: every row of the email stays an error row, pointing to it.
    assert set(email["row"]) == set(range(2, 12)) and set(email["severity"]) == {"error"}
    assert set(email.filter(pl.col("row") != 7)["problem"]) == {"is used with two teacher names (see roster.xlsx row 7)"}
    assert result["rows_invalid"] == 10 and valid.height == 0


def test_ids_that_lost_leading_zeros_are_flagged_even_when_many_did(validated):
    # Seven-digit IDs; the cells typed as numbers lost their zeros (four of ten rows: no 80% share).
    ids = ["0012345", "0023456", "0034567", "0045678", "0056789", "0067890", "12345", "23456", "345678", "4567"]
    _, issues, _ = validated([roster_row(first=f"S{i}", student_id=value) for i, value in enumerate(ids)])
    flagged = issues.filter((pl.col("column") == "student_id") & pl.col("problem").str.contains("leading zeros"))
    assert sorted(flagged["row"]) == [8, 9, 10, 11]
    assert _problem(issues, 8, "student_id") == (
        "has 5 digits where this file's IDs have 7: Excel drops the leading zeros of a number, so it is probably 0012345")
    assert "Text" in flagged["fix"][0] and set(flagged["severity"]) == {"warning"}


def test_ids_that_simply_vary_in_length_are_not_flagged(validated):
    ids = ["7", "85", "912", "1044", "2051", "30112", "40200", "512", "66", "70001"]
    _, issues, _ = validated([roster_row(first=f"S{i}", student_id=value) for i, value in enumerate(ids)])
    assert issues.filter(pl.col("column") == "student_id").is_empty(), issues.to_dicts()


def test_grades_written_as_people_write_them_are_read_as_one_grade():
    # Leading zeros, "Grade 7" and "KG" are one grade each; anything else stays as written, for
    # the contract to report.
    from tasks.validate import clean_rows

    written = ["07", "Grade 5", "GRADE 05", "007", "00", "kg", "Kindergarten", "pk", "12", "Grade K", "5a"]
    staged = pl.DataFrame({"row_no": range(len(written)), "file_name": "f.xlsx",
                           **{c: ["x"] * len(written) for c in ("school", "teacher_first", "teacher_last",
                                                                  "teacher_email", "class_period", "course_code",
                                                                  "student_first", "student_last", "student_id",
                                                                  "ssid", "other_id", "date_of_birth")},
                           "grade": written})
    cleaned, _ = clean_rows(staged)
    assert cleaned["grade"].to_list() == ["7", "5", "5", "7", "0", "K", "K", "PK", "12", "GRADE K", "5A"]


@pytest.mark.parametrize("series_name", ["student_first", "value", "folded", "_folded"])
def test_names_folded_once_per_distinct_name_fold_each_value(series_name):
    # Folded once per distinct name and looked up for the rest, whatever the Series is named.
    from tasks.names import fold_name, folded_names

    names = ["José", "JOSE", None, "", "  Mary-Ann ", "José"]
    folded = folded_names(pl.Series(series_name, names, dtype=pl.String))
    assert folded.name == series_name
    assert folded.to_list() == [fold_name(name) for name in names]
