"""Writing test spreadsheets cell by cell, so each test controls exactly what a file holds."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import xlsxwriter

TEMPLATE_HEADER = [
    "School", "Teacher First Name", "Teacher Last Name", "Teacher Email", "Class Period", "Course Code",
    "Student First Name", "Student Last Name", "Student ID", "SSID", "Other ID", "Date of Birth", "Grade",
]


def roster_row(first: str = "Ana", last: str = "Silva", student_id: str | None = "1001",
               dob: object = "2012-05-04", school: str = "ABC High School", email: str = "jmorgan@example.org",
               teacher: tuple[str, str] = ("Joshua", "Morgan"), period: str = "Period 1", course: str = "ALGE1",
               grade: str = "7", ssid: str | None = None) -> list:
    """One data row in template column order."""
    return [school, teacher[0], teacher[1], email, period, course, first, last, student_id, ssid, None, dob, grade]


def write_sheets(path: Path, sheets: dict[str, list[list]], hidden: tuple[str, ...] = (),
                 start_row: int = 0) -> Path:
    """Write rows to sheets (the first row given is usually the header); dates become date cells."""
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        if name in hidden:
            sheet.hide()
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, dt.date):
                    sheet.write_datetime(start_row + r, c, value, date_format)
                elif value is not None:
                    sheet.write(start_row + r, c, value)
    # Excel cannot hide the active sheet: make the first visible one active.
    visible = [name for name in sheets if name not in hidden]
    if visible and hidden:
        workbook.get_worksheet_by_name(visible[0]).activate()
    workbook.close()
    return path


def write_roster(path: Path, rows: list[list], header: list[str] | None = None, **kwargs) -> Path:
    """A one-sheet roster with the template header."""
    return write_sheets(path, {"Roster": [header or TEMPLATE_HEADER, *rows]}, **kwargs)


def rewrite_sheet_xml(source: Path, target: Path, pattern: bytes, replacement: bytes) -> Path:
    """Copy a workbook with ``pattern`` replaced in every sheet's XML: the damage some programs do
    (a missing <dimension>, formulas without saved values) that no writer produces on purpose."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(pattern, replacement, data)
            dst.writestr(item, data)
    return target
