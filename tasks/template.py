"""The batch template and the current roster of a school, as workbooks a data team fills in."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import xlsxwriter

from schemas.roster import CANONICAL_COLUMNS, REQUIRED_COLUMNS
from tasks.exports import neutralize

TEMPLATE_HEADERS = {
    "school": "School", "teacher_first": "Teacher First Name", "teacher_last": "Teacher Last Name",
    "teacher_email": "Teacher Email", "class_period": "Class Period", "course_code": "Course Code",
    "student_first": "Student First Name", "student_last": "Student Last Name", "student_id": "Student ID",
    "ssid": "SSID", "other_id": "Other ID", "date_of_birth": "Date of Birth", "grade": "Grade",
}
TEXT_COLUMNS = ("student_id", "ssid", "other_id", "grade")
VALIDATED_ROWS = 10_000


def _write_workbook(path: Path, lists: dict[str, list[str]], rows: pl.DataFrame | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False,
                                               "strings_to_numbers": False})
    bold = workbook.add_format({"bold": True, "bg_color": "#DDEBF7"})
    text = workbook.add_format({"num_format": "@"})
    date = workbook.add_format({"num_format": "yyyy-mm-dd"})
    roster = workbook.add_worksheet("Roster")
    instructions = workbook.add_worksheet("Instructions")
    choices = workbook.add_worksheet("Lists")
    columns = list(TEMPLATE_HEADERS)
    for index, column in enumerate(columns):
        cell_format = text if column in TEXT_COLUMNS else date if column == "date_of_birth" else None
        roster.set_column(index, index, max(14, len(TEMPLATE_HEADERS[column]) + 2), cell_format)
        roster.write(0, index, TEMPLATE_HEADERS[column], bold)
    roster.freeze_panes(1, 0)
    # Drop-downs come from the warehouse; the values live on a sheet so long lists still work.
    for list_index, (column, values) in enumerate(lists.items()):
        choices.write(0, list_index, TEMPLATE_HEADERS[column], bold)
        for r, value in enumerate(values, start=1):
            choices.write_string(r, list_index, value)
        if values:
            letter = chr(ord("A") + list_index)
            col = columns.index(column)
            roster.data_validation(1, col, VALIDATED_ROWS, col, {
                "validate": "list", "source": f"=Lists!${letter}$2:${letter}${len(values) + 1}",
                "error_title": f"Unknown {TEMPLATE_HEADERS[column]}",
                "error_message": "Choose a value from the list (rosterflow knows only these).",
            })
    dob = columns.index("date_of_birth")
    roster.data_validation(1, dob, VALIDATED_ROWS, dob, {
        "validate": "date", "criteria": "between", "minimum": dt.date(1990, 1, 1), "maximum": dt.date.today(),
        "error_message": "Enter a real date of birth, e.g. 2015-04-03.",
    })
    instructions.write_row(0, 0, ["Column", "Required", "What to enter"], bold)
    for r, column in enumerate(columns, start=1):
        instructions.write_row(r, 0, [TEMPLATE_HEADERS[column], "required" if column in REQUIRED_COLUMNS else "optional",
                                      CANONICAL_COLUMNS[column]])
    notes = [
        "One row per student per class. A student in two classes has two rows with the same Student ID.",
        "Keep IDs as text so leading zeros stay (the ID columns are formatted as Text).",
        "Dates of birth: a date cell or YYYY-MM-DD. Text like 03/04/2015 is refused: it is ambiguous.",
        "Do not hide roster rows or sheets: hidden sheets are never read, and a migration holds them.",
        "In a yearly migration, students missing from the sheets are removed (restorable).",
    ]
    for r, note in enumerate(notes, start=len(columns) + 3):
        instructions.write(r, 0, note)
    instructions.set_column(0, 0, 22)
    instructions.set_column(2, 2, 80)
    if rows is not None:
        for r, row in enumerate(rows.select(columns).iter_rows(), start=1):
            for c, value in enumerate(row):
                if isinstance(value, dt.date):
                    roster.write_datetime(r, c, value, date)
                elif value is not None:
                    roster.write_string(r, c, str(neutralize(value)))
    roster.activate()
    workbook.close()
    return path


def write_template(con: duckdb.DuckDBPyConnection, path: Path) -> Path:
    """The empty batch template, with drop-downs of the warehouse's schools and course codes."""
    schools = [r[0] for r in con.execute("SELECT name FROM schools ORDER BY name").fetchall()]
    courses = [r[0] for r in con.execute("SELECT course_code FROM courses ORDER BY course_code").fetchall()]
    return _write_workbook(Path(path), {"school": schools, "course_code": courses}, None)


def export_roster(con: duckdb.DuckDBPyConnection, school: str, path: Path) -> tuple[Path, int]:
    """A school's current students in the template, with their latest class, ready to edit into
    next year's migration. Returns the path and the number of students."""
    found = con.execute("SELECT school_id, name FROM schools WHERE lower(name) = lower(?)", [school]).fetchall()
    if not found:
        raise ValueError(f"No school named {school!r}: list them with `rosterflow school list`.")
    school_id, school_name = found[0]
    rows = con.sql(
        "WITH latest AS (SELECT e.student_key, c.period, c.course_code, t.first_name AS tf, t.last_name AS tl,"
        "   t.email, row_number() OVER (PARTITION BY e.student_key ORDER BY e.created_at DESC, c.class_id DESC) AS n"
        "   FROM enrollments e JOIN classes c USING (class_id) JOIN teachers t USING (teacher_id))"
        " SELECT $name AS school, l.tf AS teacher_first, l.tl AS teacher_last, l.email AS teacher_email,"
        "   l.period AS class_period, l.course_code, s.first_name AS student_first, s.last_name AS student_last,"
        "   s.student_id, s.ssid, s.other_id, s.date_of_birth, s.grade"
        " FROM students s LEFT JOIN latest l ON l.student_key = s.student_key AND l.n = 1"
        " WHERE s.school_id = $school AND s.status IN ('active', 'temporary')"
        " ORDER BY s.last_name, s.first_name",
        params={"name": school_name, "school": school_id},
    ).pl()
    schools = [r[0] for r in con.execute("SELECT name FROM schools ORDER BY name").fetchall()]
    courses = [r[0] for r in con.execute("SELECT course_code FROM courses ORDER BY course_code").fetchall()]
    return _write_workbook(Path(path), {"school": schools, "course_code": courses}, rows), rows.height
