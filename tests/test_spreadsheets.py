"""Reading roster workbooks: every row kept, with its real Excel row number, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.spreadsheets import SpreadsheetError, normalize_header, read_roster_file
from tests.sheets import TEMPLATE_HEADER, roster_row, write_roster, write_sheets


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
