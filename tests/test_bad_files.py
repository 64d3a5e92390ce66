"""The corpus of bad spreadsheets: each one ends in a documented outcome, never a crash or a
silent loss. A file either loads (every non-empty row staged, problems reported at their row and
column) or is refused with an error naming the file (and sheet) and how to fix it."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import xlsxwriter
import xlwt

from tasks.ingest import ingest_files
from tasks.pipeline import open_batch
from tasks.validate import batch_issues, validate_batch
from tests.sheets import TEMPLATE_HEADER, rewrite_sheet_xml, roster_row, write_roster, write_sheets
from warehouse import catalog
from warehouse.handle import Warehouse

ROW = roster_row


def _raw_xlsx(path: Path, cells: list[tuple[int, int, object]], formats: dict | None = None) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Roster")
    for r, c, value in cells:
        if isinstance(value, tuple):  # (number, num_format)
            sheet.write_number(r, c, value[0], workbook.add_format({"num_format": value[1]}))
        elif isinstance(value, str) and value.startswith("="):
            sheet.write_formula(r, c, value, None, "")
        else:
            sheet.write(r, c, value)
    workbook.close()
    return path


def _grid(rows: list[list], start: int = 0) -> list[tuple[int, int, object]]:
    return [(r + start, c, v) for r, row in enumerate(rows) for c, v in enumerate(row) if v is not None]


def _with_column(row: list, index: int, value: object) -> list:
    row = list(row)
    row[index] = value
    return row


def numeric_ids_formatted_with_zeros(tmp: Path) -> Path:
    cells = _grid([TEMPLATE_HEADER])
    for r, (first, number) in enumerate([("Ana", 12345), ("Ben", 23456), ("Cy", 34567), ("Di", 45678), ("Ed", 123)], 1):
        cells += _grid([_with_column(ROW(first=first, student_id=None), 8, None)], r)
        cells.append((r, 8, (number, "00000")))
    return _raw_xlsx(tmp / "zeros.xlsx", cells)


def long_numeric_id(tmp: Path) -> Path:
    cells = _grid([TEMPLATE_HEADER, _with_column(ROW(student_id=None), 8, None)])
    cells.append((1, 8, 12345678901234567890))
    return _raw_xlsx(tmp / "longid.xlsx", cells)


def serial_dates(tmp: Path) -> Path:
    cells = _grid([TEMPLATE_HEADER, ROW(first="Zero", student_id="1", dob=None), ROW(first="Sixty", student_id="2", dob=None)])
    cells += [(1, 11, (0, "yyyy-mm-dd")), (2, 11, (60, "yyyy-mm-dd"))]
    return _raw_xlsx(tmp / "serials.xlsx", cells)


def formula_without_cached_value(tmp: Path) -> Path:
    cells = _grid([TEMPLATE_HEADER, _with_column(ROW(), 6, None)])
    cells.append((1, 6, "=B1&C1"))
    return _raw_xlsx(tmp / "formula.xlsx", cells)


def merged_school_cells(tmp: Path) -> Path:
    path = tmp / "merged.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Roster")
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    for r, first in enumerate(["Ana", "Ben", "Cy"], 1):
        sheet.write_row(r, 1, ROW(first=first, student_id=str(r))[1:])
    sheet.merge_range(1, 0, 3, 0, "ABC High School")
    workbook.close()
    return path


def zip_bomb(tmp: Path) -> Path:
    path = tmp / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
            block = b"0" * (1 << 20)
            for _ in range(200):
                member.write(block)
    return path


def huge_range(tmp: Path) -> Path:
    return _raw_xlsx(tmp / "huge.xlsx", _grid([TEMPLATE_HEADER, ROW()]) + [(1048575, 16383, "x")])


def full_height_sheet(tmp: Path) -> Path:
    return _raw_xlsx(tmp / "tall.xlsx", _grid([TEMPLATE_HEADER, ROW()]) + [(1048575, 0, "x")])


def damaged_range_no_dimension(tmp: Path) -> Path:
    source = huge_range(tmp)
    return rewrite_sheet_xml(source, tmp / "nodim.xlsx", rb"<dimension[^>]*/>", b"")


def password_protected(tmp: Path) -> Path:
    path = tmp / "locked.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le") + b"\0" * 2048)
    return path


def truncated_xlsx(tmp: Path) -> Path:
    good = write_roster(tmp / "good.xlsx", [ROW()])
    path = tmp / "truncated.xlsx"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def real_xls_with_title(tmp: Path) -> Path:
    path = tmp / "legacy.xls"
    book = xlwt.Workbook()
    sheet = book.add_sheet("Roster")
    sheet.write(0, 0, "Spring roster")
    for c, value in enumerate(TEMPLATE_HEADER):
        sheet.write(2, c, value)
    for c, value in enumerate(ROW(first="Old")):
        if value is not None:
            sheet.write(3, c, value)
    book.save(str(path))
    return path


def xlsm(tmp: Path) -> Path:
    return write_roster(tmp / "macro.xlsx", [ROW()]).rename(tmp / "macro.xlsm")


def blank_and_duplicate_headers(tmp: Path) -> Path:
    return write_roster(tmp / "dupe.xlsx", [ROW() + ["x"]], header=TEMPLATE_HEADER[:8] + ["Student ID", "Student ID"]
                        + TEMPLATE_HEADER[10:] + [None])


def blank_header_with_values(tmp: Path) -> Path:
    return write_roster(tmp / "blankhead.xlsx", [ROW() + ["note"]], header=TEMPLATE_HEADER + [None])


def only_a_header(tmp: Path) -> Path:
    return write_roster(tmp / "header-only.xlsx", [])


def empty_workbook(tmp: Path) -> Path:
    return write_sheets(tmp / "empty.xlsx", {"Sheet1": []})


def zero_byte_file(tmp: Path) -> Path:
    path = tmp / "zero.xlsx"
    path.write_bytes(b"")
    return path


def csv_named_xlsx(tmp: Path) -> Path:
    path = tmp / "csv.xlsx"
    path.write_text("School,Student First Name\nABC,Ana\n")
    return path


def invisible_and_decomposed(tmp: Path) -> Path:
    return write_roster(tmp / "unicode.xlsx", [ROW(first="Jose\u0301\u200b", last="\u00a0Pen\u0303a")],
                        header=["\ufeff" + TEMPLATE_HEADER[0], *TEMPLATE_HEADER[1:]])


def hyperlink_and_formula_text(tmp: Path) -> Path:
    return write_roster(tmp / "inject.xlsx", [ROW(first="=HYPERLINK(\"http://x\",\"y\")"), ROW(first="@SUM", student_id="2"),
                                              ROW(first="+Ana", student_id="3")])


def same_student_twice(tmp: Path) -> Path:
    return write_roster(tmp / "twice.xlsx", [ROW(), ROW()])


def blank_rows_between(tmp: Path) -> Path:
    return write_roster(tmp / "gaps.xlsx", [ROW(first="A", student_id="1"), [None] * 13, [None] * 13,
                                            ROW(first="B", student_id="2")])


def mixed_types_past_row_1000(tmp: Path) -> Path:
    cells = _grid([TEMPLATE_HEADER])
    for r in range(1, 1102):
        cells += _grid([_with_column(ROW(first=f"S{r}", student_id=None), 8, None)], r)
        cells.append((r, 8, 1000 + r if r <= 1100 else "X-9"))
    return _raw_xlsx(tmp / "mixed.xlsx", cells)


def text_dates(tmp: Path) -> Path:
    return write_roster(tmp / "textdates.xlsx", [ROW(dob="03/04/2015"), ROW(student_id="2", dob="2015-13-45"),
                                                 ROW(student_id="3", dob=dt.date(2015, 3, 4))])


# name -> (builder, expected). Expected is ("refused", text the file error must contain) or
# ("loaded", rows staged, [(excel row, column, text of the problem)]).
CORPUS: dict[str, tuple[Callable[[Path], Path], tuple]] = {
    "numeric IDs formatted 00000": (numeric_ids_formatted_with_zeros, ("loaded", 5, [(6, "student_id", "leading zeros")])),
    "IDs above 2^53": (long_numeric_id, ("loaded", 1, [(2, "student_id", "digits may be lost")])),
    "Excel serials 0 and 60": (serial_dates, ("loaded", 2, [(2, "date_of_birth", "before 1990"),
                                                            (3, "date_of_birth", "before 1990")])),
    "formula without cached value": (formula_without_cached_value, ("loaded", 1, [(2, "student_first",
                                                                                   "formula with no saved value")])),
    "merged school cells": (merged_school_cells, ("loaded", 3, [(None, None, "A2:A4 are merged")])),
    "zip bomb": (zip_bomb, ("refused", "zip bomb")),
    "cells at A1 and XFD1048576": (huge_range, ("refused", "used range is A1:XFD1048576")),
    "1,048,576-row sheet": (full_height_sheet, ("refused", "Excel's last row")),
    "huge range without a dimension": (damaged_range_no_dimension, ("refused", "could not be parsed within")),
    "password-protected": (password_protected, ("refused", "password-protected")),
    "truncated xlsx": (truncated_xlsx, ("refused", "damaged workbook")),
    ".xls with a title row": (real_xls_with_title, ("loaded", 1, [])),
    ".xlsm": (xlsm, ("loaded", 1, [])),
    "duplicate headers": (blank_and_duplicate_headers, ("refused", "names the same column twice")),
    "blank header over values": (blank_header_with_values, ("loaded", 1, [(None, None, "no header")])),
    "header-only sheet": (only_a_header, ("refused", "no student rows below it")),
    "empty workbook": (empty_workbook, ("refused", "no sheet has a roster header")),
    "zero-byte file": (zero_byte_file, ("refused", "the file is empty (0 bytes)")),
    "CSV named .xlsx": (csv_named_xlsx, ("refused", "not an Excel workbook")),
    "BOM, NBSP, zero-width, NFD": (invisible_and_decomposed, ("loaded", 1, [(2, "student_first", "invisible")])),
    "formula-like text": (hyperlink_and_formula_text, ("loaded", 3, [(2, "student_first", "formula"),
                                                                     (3, "student_first", "formula"),
                                                                     (4, "student_first", "formula")])),
    "same student twice": (same_student_twice, ("loaded", 2, [(3, "student_last", "repeats the same student")])),
    "blank rows between": (blank_rows_between, ("loaded", 2, [])),
    "text ID past row 1000": (mixed_types_past_row_1000, ("loaded", 1101, [])),
    "text and impossible dates": (text_dates, ("loaded", 3, [(2, "date_of_birth", "ambiguous"),
                                                            (3, "date_of_birth", "not a date")])),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_file_has_its_documented_outcome(case: str, tmp_path: Path, warehouse_path: Path):
    builder, expected = CORPUS[case]
    path = builder(tmp_path)
    with (wh := Warehouse(warehouse_path)).write() as con:
        catalog.add_schools(con, ["ABC High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        batch = open_batch(con, "corpus", "registration", {"files": [str(path)], "term": "T", "subscription_type": "S"},
                           "test")
        ingest = ingest_files(wh, batch, [str(path)])
        validated = validate_batch(wh, batch)
        issues = batch_issues(con, batch)
    if expected[0] == "refused":
        assert ingest["rows_staged"] == 0
        assert len(ingest["file_errors"]) == 1, ingest
        error = ingest["file_errors"][0]
        assert error["file_name"] == path.name and expected[1] in error["problem"] and error["fix"], error
        return
    _, rows, problems = expected
    assert ingest["rows_staged"] == rows and not ingest["file_errors"], ingest
    assert validated["rows_valid"] + validated["rows_invalid"] == rows
    for row, column, text in problems:
        found = issues.filter((issues["row"] == row) if row is not None else issues["row"].is_null())
        if column is not None:
            found = found.filter(found["column"] == column)
        assert any(text in p for p in found["problem"]), (case, row, column, issues.to_dicts())
        assert all(f == path.name for f in found["file"])


def test_the_corpus_has_at_least_25_files():
    assert len(CORPUS) >= 25
