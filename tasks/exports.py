"""Writing .xlsx files that are safe to open: no cell can run as a formula or become a link."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import xlsxwriter

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: object) -> object:
    """Text that a spreadsheet could take as a formula gets a leading apostrophe (OWASP)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def write_xlsx(path: Path, sheets: dict[str, pl.DataFrame]) -> Path:
    """Write each frame to its own sheet with a bold header; every string is written as text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    bold = workbook.add_format({"bold": True})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    for name, frame in sheets.items():
        sheet = workbook.add_worksheet(name[:31])
        sheet.write_row(0, 0, frame.columns, bold)
        for row_index, row in enumerate(frame.iter_rows(), start=1):
            for col_index, value in enumerate(row):
                if isinstance(value, dt.date):
                    sheet.write_datetime(row_index, col_index, value, date_format)
                elif value is not None:
                    sheet.write(row_index, col_index, neutralize(value))
        for col_index, column in enumerate(frame.columns):
            sheet.set_column(col_index, col_index, max(12, min(40, len(column) + 2)))
    workbook.close()
    return path
