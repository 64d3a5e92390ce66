"""Reading roster workbooks: every row kept, with its real Excel row number, or a clear error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter
import xlwt

from tasks.ingest import BatchTooLarge, ingest_files, read_files
from tasks.pipeline import open_batch
from tasks.spreadsheets import SpreadsheetError, normalize_header, read_roster_file
from tasks.validate import batch_issues, validate_batch
from tests.sheets import TEMPLATE_HEADER, rewrite_sheet_xml, roster_row, write_roster, write_sheets
from warehouse import catalog
from warehouse.handle import Warehouse


def test_title_row_and_leading_empty_rows_keep_real_excel_row_numbers(tmp_path: Path):
    path = write_sheets(tmp_path / "r.xlsx", {"Roster": [["District roster 2026"], [], TEMPLATE_HEADER,
                                                         roster_row(first="Ana"), [], roster_row(first="Ben")]},
                        start_row=2)
    read = read_roster_file(path)
    # Title on Excel row 3, header on row 5, Ana on 6, a blank row 7, Ben on 8.
    assert read.rows.select("excel_row", "student_first").rows() == [(6, "Ana"), (8, "Ben")]
    assert read.non_empty_rows == read.rows.height == 2


def test_headers_with_aliases_case_nbsp_bom_and_zero_width_are_recognized(tmp_path: Path):
    header = ["\ufeffSCHOOL", "teacher first", "Teacher\u00a0Last Name", "Teacher E-mail", "Period", "Course",
              "First\u200b Name", "Surname", "Student Number", "State ID", "Alt ID", "DOB", "Grade Level"]
    read = read_roster_file(write_roster(tmp_path / "r.xlsx", [roster_row()], header=header))
    assert read.rows.row(0, named=True)["student_last"] == "Silva"
    assert read.rows.row(0, named=True)["teacher_email"] == "jmorgan@example.org"
    assert normalize_header(" Student\u00a0First  Name* ") == "student first name"


def test_a_hidden_roster_sheet_is_reported_not_read(tmp_path: Path):
    path = write_sheets(tmp_path / "r.xlsx", {
        "Old": [TEMPLATE_HEADER, roster_row(first="Stale")],
        "Roster": [TEMPLATE_HEADER, roster_row(first="Fresh")],
    }, hidden=("Old",))
    read = read_roster_file(path)
    assert read.sheet == "Roster" and read.rows["student_first"].to_list() == ["Fresh"]
    assert read.hidden_sheets == ["Old"]


def test_only_a_hidden_roster_sheet_is_an_error_that_says_so(tmp_path: Path):
    path = write_sheets(tmp_path / "r.xlsx", {"Notes": [["nothing here"]], "Old": [TEMPLATE_HEADER, roster_row()]},
                        hidden=("Old",))
    with pytest.raises(SpreadsheetError, match="hidden sheet 'Old'"):
        read_roster_file(path)


def test_two_visible_roster_sheets_ask_which_one(tmp_path: Path):
    path = write_sheets(tmp_path / "r.xlsx", {"A": [TEMPLATE_HEADER, roster_row()], "B": [TEMPLATE_HEADER, roster_row()]})
    with pytest.raises(SpreadsheetError, match="several visible sheets"):
        read_roster_file(path)
    assert read_roster_file(path, sheet="B").sheet == "B"


def test_a_header_typo_names_the_file_sheet_row_and_missing_column(tmp_path: Path):
    header = [h if h != "Student Last Name" else "Student Lsat Name" for h in TEMPLATE_HEADER]
    path = write_roster(tmp_path / "typo.xlsx", [roster_row()], header=header)
    with pytest.raises(SpreadsheetError) as error:
        read_roster_file(path)
    message = str(error.value)
    assert message.startswith("typo.xlsx, sheet 'Roster': the header row (Excel row 1) has no column for student_last")
    assert "Student Lsat Name" in message


def test_a_missing_required_column_is_reported_with_the_header_row(tmp_path: Path):
    header = [h if h != "Teacher Email" else "Notes" for h in TEMPLATE_HEADER]
    path = write_roster(tmp_path / "noemail.xlsx", [roster_row()], header=header)
    with pytest.raises(SpreadsheetError, match=r"Excel row 1\) has no column for teacher_email"):
        read_roster_file(path)


def test_a_file_that_is_not_a_workbook_is_rejected_by_its_bytes(tmp_path: Path):
    path = tmp_path / "roster.xlsx"
    path.write_text("School,Student First Name\nABC,Ana\n")
    with pytest.raises(SpreadsheetError, match="not an Excel workbook"):
        read_roster_file(path)


def test_an_xlsx_renamed_xls_is_read_by_its_content(tmp_path: Path):
    path = write_roster(tmp_path / "r.xlsx", [roster_row()])
    renamed = path.rename(tmp_path / "r.xls")
    assert read_roster_file(renamed).rows.height == 1


def test_text_ids_after_a_thousand_numeric_ones_are_kept(tmp_path: Path):
    rows = [roster_row(first=f"S{i}", student_id=None) for i in range(1205)]
    path = tmp_path / "mixed.xlsx"
    write_roster(path, rows)
    # Overwrite the ID column: numbers first, then a text ID far below the sampled rows.
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    for r, row in enumerate(rows, start=1):
        row[8] = 100000 + r if r < 1200 else f"A-{r}"
        sheet.write_row(r, 0, row)
    workbook.close()
    read = read_roster_file(path)
    assert read.rows.height == 1205
    assert read.rows["student_id"].null_count() == 0
    assert read.rows["student_id"][-1] == "A-1205"


def test_leading_zeros_in_text_ids_survive(tmp_path: Path):
    read = read_roster_file(write_roster(tmp_path / "r.xlsx", [roster_row(student_id="000123")]))
    assert read.rows["student_id"].to_list() == ["000123"]


def _without_saved_values(path: Path) -> Path:
    """Remove every formula's saved value, as files written by some programs (never opened in
    Excel) have it: ``<c r="G2"><f>...</f></c>``."""
    return rewrite_sheet_xml(path, path.with_name("edited-" + path.name), rb"(</f>)<v>[^<]*</v>", rb"\1")


def test_a_sheet_with_a_header_and_no_rows_is_refused_by_name(tmp_path: Path):
    path = write_sheets(tmp_path / "empty-roster.xlsx", {"Roster": [["Spring roster"], TEMPLATE_HEADER]})
    with pytest.raises(SpreadsheetError) as refused:
        read_roster_file(path)
    assert refused.value.file_name == "empty-roster.xlsx" and refused.value.sheet == "Roster"
    assert refused.value.problem == "the sheet has a header row (Excel row 2) but no student rows below it."


def test_a_formula_without_a_saved_value_is_named_per_cell(tmp_path: Path, warehouse_path: Path):
    workbook = xlsxwriter.Workbook(str(tmp_path / "formulas.xlsx"))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    sheet.write_row(1, 0, roster_row(first="Ana", student_id="1"))
    sheet.write_row(2, 0, roster_row(first=None, student_id="2"))
    sheet.write_formula(2, 6, '=PROPER("ben")', None, "Ben")
    sheet.write_row(3, 0, roster_row(first="Cy", student_id="3", school=None))
    sheet.write_formula(3, 0, "=Schools!A1", None, "ABC High School")
    workbook.close()
    path = _without_saved_values(tmp_path / "formulas.xlsx")
    assert b"</f><v>" not in zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml")
    read = read_roster_file(path)
    assert read.rows.select("excel_row", "formula_cells").rows() == [(2, None), (3, "student_first"), (4, "school")]
    with (wh := Warehouse(warehouse_path)).write() as con:
        catalog.add_schools(con, ["ABC High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        batch = open_batch(con, "formulas", "registration", {"files": [str(path)], "term": "T", "subscription_type": "S"},
                           "test")
        ingest_files(wh, batch, [str(path)])
        validated = validate_batch(wh, batch)
        issues = batch_issues(con, batch)
    assert validated["rows_invalid"] == 2
    assert issues.select("row", "column", "problem").rows() == [
        (3, "student_first", "is a formula with no saved value (the file was not saved by Excel after it was filled)"),
        (4, "school", "is a formula with no saved value (the file was not saved by Excel after it was filled)"),
    ]
    assert set(issues["fix"]) == {"Open the file in Excel and save it, or type the value instead of the formula."}


def test_rows_made_only_of_formulas_without_saved_values_at_the_end_of_a_sheet_are_kept(tmp_path: Path):
    workbook = xlsxwriter.Workbook(str(tmp_path / "pulled.xlsx"))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    sheet.write_row(1, 0, roster_row(first="Ana", student_id="1"))
    for row in (2, 3):  # every cell pulled from another sheet, saved by a program that is not Excel
        for column in range(len(TEMPLATE_HEADER)):
            sheet.write_formula(row, column, f"=Source!{chr(65 + column)}{row + 1}", None, "x")
    workbook.close()
    path = _without_saved_values(tmp_path / "pulled.xlsx")
    read = read_roster_file(path)
    assert read.rows["excel_row"].to_list() == [2, 3, 4]
    assert read.non_empty_rows == 3
    assert read.rows.filter(pl.col("excel_row") == 4)["formula_cells"][0].split(",")[0] == "school"


def test_cells_merged_down_a_column_are_filled_with_one_warning_per_range(tmp_path: Path):
    path = tmp_path / "merged.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Roster")
    sheet.merge_range(0, 0, 0, 5, "Spring roster")  # a merged title above the header is fine
    sheet.write_row(1, 0, TEMPLATE_HEADER)
    for r, first in enumerate(["Ana", "Ben", "Cy", "Di", "Ed"], 2):
        teacher = ("Joshua", "Morgan") if r > 4 else (None, None)
        sheet.write_row(r, 0, roster_row(first=first, student_id=str(r), school=None, teacher=teacher))
    sheet.merge_range(2, 0, 6, 0, "ABC High School")  # A3:A7
    sheet.merge_range(2, 1, 4, 2, "Joshua")  # B3:C5 spans two columns: not filled
    workbook.close()
    read = read_roster_file(path)
    assert read.rows["school"].to_list() == ["ABC High School"] * 5
    assert read.rows["teacher_first"].to_list() == ["Joshua", None, None, "Joshua", "Joshua"]
    assert read.rows["teacher_last"].to_list() == [None, None, None, "Morgan", "Morgan"]
    assert [problem for problem, _ in read.warnings] == [
        "A3:A7 are merged: rows 3-7 each took the merged value 'ABC High School'",
        "B3:C5 are merged: only B3 holds a value and the other cells read as empty",
    ]
    assert all("Unmerge" in fix for _, fix in read.warnings)


def test_cells_merged_in_an_xls_are_filled_too(tmp_path: Path):
    path = tmp_path / "legacy.xls"
    book = xlwt.Workbook()
    sheet = book.add_sheet("Roster")
    for c, value in enumerate(TEMPLATE_HEADER):
        sheet.write(0, c, value)
    for r, first in enumerate(["Ana", "Ben", "Cy"], 1):
        for c, value in enumerate(roster_row(first=first, student_id=str(r))[1:], 1):
            sheet.write(r, c, value)
    sheet.write_merge(1, 3, 0, 0, "ABC High School")
    book.save(str(path))
    read = read_roster_file(path)
    assert read.rows["school"].to_list() == ["ABC High School"] * 3
    assert read.warnings[0][0] == "A2:A4 are merged: rows 2-4 each took the merged value 'ABC High School'"


def _students(count: int, title: bool = False) -> list[list]:
    rows = [roster_row(first=f"S{i}", student_id=str(100000 + i)) for i in range(count)]
    return [["Roster 2026"], TEMPLATE_HEADER, *rows] if title else [TEMPLATE_HEADER, *rows]


@pytest.mark.slow
@pytest.mark.parametrize("title", [False, True])
def test_exactly_the_row_limit_of_students_is_accepted_and_one_more_refused(tmp_path: Path, title: bool):
    at_limit = write_sheets(tmp_path / "at-limit.xlsx", {"Roster": _students(10_000, title)})
    over = write_sheets(tmp_path / "over.xlsx", {"Roster": _students(10_001, title)})
    assert read_files(1, [str(at_limit)], None, 10_000).staged.height == 10_000
    with pytest.raises(BatchTooLarge, match="10,001 student rows .*at most 10,000"):
        read_files(1, [str(over)], None, 10_000)


def test_a_stray_cell_far_out_in_a_registration_names_the_file_and_its_used_range(tmp_path: Path):
    workbook = xlsxwriter.Workbook(str(tmp_path / "stray.xlsx"))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    sheet.write_row(1, 0, roster_row())
    sheet.write(1048575, 16383, "x")  # XFD1048576
    workbook.close()
    good = write_roster(tmp_path / "good.xlsx", [roster_row(first="Ben", student_id="2")])
    read = read_files(1, [str(tmp_path / "stray.xlsx"), str(good)], None, 10_000)
    (error,) = read.result["file_errors"]
    assert error["file_name"] == "stray.xlsx" and error["sheet"] == "Roster"
    assert "used range is A1:XFD1048576" in error["problem"] and "stray cell" in error["problem"]
    assert "Delete the rows below the roster and the columns right of it" in error["fix"]
    assert read.staged.height == 1


def test_a_registration_whose_used_range_is_too_large_names_the_file_sheet_and_range(tmp_path: Path):
    workbook = xlsxwriter.Workbook(str(tmp_path / "long.xlsx"))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    sheet.write_row(1, 0, roster_row())
    sheet.write(20000, 0, "x")  # a stray cell on row 20,001
    workbook.close()
    with pytest.raises(BatchTooLarge) as refused:
        read_files(1, [str(tmp_path / "long.xlsx")], None, 10_000)
    message = str(refused.value)
    assert "long.xlsx sheet 'Roster': used range A1:M20001, about 20,000 rows" in message
    assert "at most 10,000" in message and "a stray cell below it stretches the range" in message
