"""Writing .xlsx files that are safe to open: no cell can run as a formula or become a link, every
sheet name is one Excel accepts, and files holding passwords are readable by their owner only."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import xlsxwriter

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Excel refuses these in a sheet name, a name longer than 31 characters, a name starting or ending
# with an apostrophe, and two names that differ only in case; "History" is reserved.
SHEET_NAME_FORBIDDEN = set('/:?[]*\\')
SHEET_NAME_MAX = 31
SHEET_NAME_RESERVED = {"history"}
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def neutralize(value: object) -> object:
    """Text that a spreadsheet could take as a formula gets a leading apostrophe (OWASP)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def sheet_name(name: str, taken: set[str]) -> str:
    """A legal sheet name for ``name`` that is not in ``taken`` (compared without case, as Excel
    does), which it then joins: forbidden characters become '-', control characters are dropped,
    apostrophes at either end are stripped, the name is cut to 31 characters, and a name already
    taken gets a numbered suffix ("... (2)") that fits inside the 31."""
    cleaned = "".join("-" if ch in SHEET_NAME_FORBIDDEN else ch for ch in str(name) if ch.isprintable())
    cleaned = cleaned.strip().strip("'").strip() or "Sheet"
    candidate, number = cleaned[:SHEET_NAME_MAX].rstrip().strip("'"), 1
    while not candidate or candidate.casefold() in taken or candidate.casefold() in SHEET_NAME_RESERVED:
        number += 1
        suffix = f" ({number})"
        candidate = cleaned[: SHEET_NAME_MAX - len(suffix)].rstrip().strip("'") + suffix
    taken.add(candidate.casefold())
    return candidate


def sheet_names(names: Iterable[str]) -> list[str]:
    """Legal, distinct sheet names for ``names``, in order (see ``sheet_name``)."""
    taken: set[str] = set()
    return [sheet_name(name, taken) for name in names]


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as folders only their owner can open (0700, whatever
    the umask). Folders that already existed above ``path`` are left as they are; ``path`` itself
    is always set to 0700."""
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in {path, *missing}:
        os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def create_private_file(path: Path) -> Path:
    """Create (or truncate) ``path`` readable and writable by its owner only (0600) before anything
    is written to it, so its contents are never readable by others, not even for a moment."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.close(descriptor)
    os.chmod(path, PRIVATE_FILE_MODE)   # the umask may have taken bits away; 0600 exactly
    return path


def write_private_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a file only its owner can read (0600)."""
    create_private_file(path)
    with open(path, "wb") as out:
        out.write(data)
    return path


def write_xlsx(path: Path, sheets: dict[str, pl.DataFrame], titles: dict[str, str] | None = None,
               private: bool = False) -> Path:
    """Write each frame to its own sheet with a bold header; every string is written as text.

    Sheet names come from the keys made legal and distinct by ``sheet_name``. A key with a title
    in ``titles`` gets it in bold in the first row (the full name a shortened sheet name stands
    for) and its table starts on the second row. ``private`` writes the file 0600 in a 0700 folder
    (files holding passwords).
    """
    path = Path(path)
    if private:
        private_dir(path.parent)
        create_private_file(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    bold = workbook.add_format({"bold": True})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    titles = titles or {}
    for (key, frame), name in zip(sheets.items(), sheet_names(sheets)):
        sheet = workbook.add_worksheet(name)
        header_row = 0
        if key in titles:
            sheet.write_string(0, 0, str(neutralize(titles[key])), bold)
            header_row = 1
        sheet.write_row(header_row, 0, frame.columns, bold)
        for row_index, row in enumerate(frame.iter_rows(), start=header_row + 1):
            for col_index, value in enumerate(row):
                if isinstance(value, dt.date):
                    sheet.write_datetime(row_index, col_index, value, date_format)
                elif value is not None:
                    sheet.write(row_index, col_index, neutralize(value))
        for col_index, column in enumerate(frame.columns):
            sheet.set_column(col_index, col_index, max(12, min(40, len(column) + 2)))
    workbook.close()
    if private:
        os.chmod(path, PRIVATE_FILE_MODE)
    return path
