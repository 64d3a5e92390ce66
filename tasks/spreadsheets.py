"""Reading roster spreadsheets without losing a row.

Every cell is read as text (type inference from the first rows turns a later text ID into null),
the header row is found and its names mapped from common aliases, and every row keeps its file,
sheet and Excel row number.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import fastexcel
import numpy as np
import polars as pl
import xlrd

from schemas.columns import CANONICAL_COLUMNS, REQUIRED_COLUMNS
from tasks.read_limits import ReadLimits

HEADER_SEARCH_ROWS = 20
INVISIBLE_CHARACTERS = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060\u00ad"), None)

HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "school": ("school", "school name", "campus"),
    "teacher_first": ("teacher first name", "teacher first", "teacher given name"),
    "teacher_last": ("teacher last name", "teacher last", "teacher surname", "teacher family name"),
    "teacher_email": ("teacher email", "teacher e mail", "teacher email address"),
    "class_period": ("class period", "period"),
    "course_code": (
        "course code", "course", "course product", "course product name abbreviation",
        "course product names abbreviations", "aleks course product names abbreviations",
    ),
    "student_first": ("student first name", "first name", "student first", "given name", "first"),
    "student_last": ("student last name", "last name", "student last", "surname", "family name", "last"),
    "student_id": ("student id", "student number", "local id", "district id", "id"),
    "ssid": ("ssid", "state student id", "state id", "statewide student id"),
    "other_id": ("other id", "alternate id", "alt id"),
    "date_of_birth": ("date of birth", "dob", "birth date", "birthdate", "birthday"),
    "grade": ("grade", "grade level", "year level", "year"),
}
_ALIAS_TO_COLUMN = {alias: column for column, aliases in HEADER_ALIASES.items() for alias in aliases}
assert set(HEADER_ALIASES) == set(CANONICAL_COLUMNS)


class SpreadsheetError(ValueError):
    """A whole file or sheet cannot be read; the message says which and how to fix it."""

    def __init__(self, file_name: str, sheet: str | None, problem: str, fix: str):
        self.file_name, self.sheet, self.problem, self.fix = file_name, sheet, problem, fix
        where = f"{file_name}" + (f", sheet {sheet!r}" if sheet else "")
        super().__init__(f"{where}: {problem} {fix}")


@dataclass
class SheetRead:
    """The rows of one sheet, as text, with their provenance."""

    file_name: str
    sha256: str
    sheet: str
    rows: pl.DataFrame
    non_empty_rows: int
    # (problem, fix) pairs about the sheet as a whole: reported as warnings, the rows go on.
    warnings: list[tuple[str, str]] = field(default_factory=list)
    hidden_sheets: list[str] = field(default_factory=list)


def normalize_header(text: str | None) -> str:
    """Fold a header cell for alias lookup: case, NBSP, BOM, zero-width, punctuation, spacing."""
    if text is None:
        return ""
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE_CHARACTERS).lower()
    text = re.sub(r"\(.*?\)|\*", " ", text)
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """'xlsx' or 'xls' from the file's first bytes, whatever its extension says."""
    head = path.read_bytes()[:8] if path.stat().st_size < 4096 else path.open("rb").read(8)
    if not head:
        raise SpreadsheetError(
            path.name, None, "the file is empty (0 bytes): it was not saved or copied whole.",
            "Open the workbook in Excel, save it as .xlsx, and upload that file.",
        )
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        with path.open("rb") as handle:
            if "EncryptedPackage".encode("utf-16-le") in handle.read(1 << 20):
                raise SpreadsheetError(
                    path.name, None, "the file is password-protected.",
                    "Open it in Excel and save it without a password, then upload it again.",
                )
        return "xls"
    raise SpreadsheetError(
        path.name, None, "the file is not an Excel workbook (.xlsx or .xls).",
        "Save it from Excel as .xlsx and upload that file.",
    )


@dataclass(frozen=True)
class SheetFacts:
    """What an .xlsx sheet says about itself before it is parsed."""

    first_row: int
    last_row: int | None
    last_column: int | None
    used_range: str | None = None  # as the sheet declares it, e.g. "A1:M31"


def _cell_position(ref: str) -> tuple[int, int]:
    letters = "".join(ch for ch in ref if ch.isalpha()).upper()
    digits = "".join(ch for ch in ref if ch.isdigit())
    column = 0
    for ch in letters:
        column = column * 26 + (ord(ch) - 64)
    return int(digits or 1), column


def xlsx_sheet_facts(path: Path, limits: ReadLimits = ReadLimits()) -> dict[str, SheetFacts]:
    """Check an .xlsx archive's sizes and read each sheet's declared range, without parsing it.

    Raises ``SpreadsheetError`` for a zip bomb or an archive that is not a workbook. The reader
    drops leading empty rows, so each sheet's first stored row is returned to number rows truly.
    """
    facts: dict[str, SheetFacts] = {}
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise SpreadsheetError(path.name, None, f"the file is a damaged workbook ({error}).",
                               "Open it in Excel, save it again as .xlsx, and upload that file.") from error
    with archive:
        entries = archive.infolist()
        total = sum(entry.file_size for entry in entries)
        packed = sum(entry.compress_size for entry in entries) or 1
        if total > limits.max_uncompressed_bytes or (total > (64 << 20) and total / packed > limits.max_compression_ratio):
            raise SpreadsheetError(
                path.name, None,
                f"the workbook unpacks to {total / 2**20:,.0f} MB from {packed / 2**20:,.1f} MB (a zip bomb or a "
                "damaged file); it was not opened.",
                "Copy the roster rows into a new workbook (or the rosterflow template) and upload that.",
            )
        names = {entry.filename for entry in entries}
        if "xl/workbook.xml" not in names:
            raise SpreadsheetError(path.name, None, "the file is a zip archive but not an Excel workbook.",
                                   "Save the roster from Excel as .xlsx and upload that file.")
        for name, member in _sheet_members(archive).items():
            facts[name] = _sheet_head_facts(archive, member)
    return facts


def _sheet_members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Each sheet's name and the archive member holding its XML."""
    names = set(archive.namelist())
    workbook = archive.read("xl/workbook.xml").decode("utf-8", "replace")
    rels = archive.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace") \
        if "xl/_rels/workbook.xml.rels" in names else ""
    targets = {}
    for attributes in re.findall(r"<Relationship\b([^>]*)>", rels):
        rid = re.search(r'\bId="([^"]+)"', attributes)
        target = re.search(r'\bTarget="([^"]+)"', attributes)
        if rid and target:
            targets[rid.group(1)] = target.group(1)
    members = {}
    for attributes in re.findall(r"<(?:\w+:)?sheet\b([^>]*)>", workbook):
        name = re.search(r'\bname="([^"]+)"', attributes)
        rid = re.search(r'\br:id="([^"]+)"', attributes)
        if not name or not rid:
            continue
        target = targets.get(rid.group(1), "").lstrip("/")
        member = target if target.startswith("xl/") else f"xl/{target}"
        if member in names:
            members[html.unescape(name.group(1))] = member
    return members


def _sheet_head_facts(archive: zipfile.ZipFile, member: str) -> SheetFacts:
    """The declared range and the first row holding a value (styled empty rows do not count: the
    reader skips them too)."""
    head = b""
    first_row, last_row, last_column, used_range = None, None, None, None
    row_pattern = re.compile(rb'<(?:\w+:)?row\b([^>]*?)(/?)>(.*?)(?:</(?:\w+:)?row>|(?=<(?:\w+:)?row\b)|$)', re.S)
    with archive.open(member) as sheet_xml:
        while first_row is None and len(head) < (1 << 23):
            chunk = sheet_xml.read(1 << 16)
            if not chunk:
                break
            head += chunk
            dimension = re.search(rb'<(?:\w+:)?dimension\s+ref="([A-Za-z0-9:$]+)"', head)
            if dimension and last_row is None:
                used_range = dimension.group(1).decode().replace("$", "")
                last_row, last_column = _cell_position(used_range.split(":")[-1])
            for attributes, self_closing, body in row_pattern.findall(head):
                number = re.search(rb'\br="(\d+)"', attributes)
                if not self_closing and number and re.search(rb"<(?:\w+:)?(?:v|is)\b", body):
                    first_row = int(number.group(1))
                    break
    return SheetFacts(first_row or 1, last_row, last_column, used_range)


def xls_sheet_facts(path: Path) -> dict[str, SheetFacts]:
    """The first used row of each sheet of an .xls workbook (1-based), read with xlrd."""
    try:
        book = xlrd.open_workbook(str(path), on_demand=True)
    except xlrd.XLRDError as error:
        raise SpreadsheetError(path.name, None, f"the .xls workbook cannot be opened ({error}).",
                               "Open it in Excel, save it as .xlsx, and upload that file.") from error
    facts = {}
    try:
        for name in book.sheet_names():
            sheet = book.sheet_by_name(name)
            first = next((r for r in range(sheet.nrows)
                          if any(cell.ctype not in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK) for cell in sheet.row(r))),
                         0)
            used = f"A1:{_column_letter(max(sheet.ncols, 1) - 1)}{max(sheet.nrows, 1)}"
            facts[name] = SheetFacts(first + 1, sheet.nrows, sheet.ncols, used)
            book.unload_sheet(name)
    finally:
        book.release_resources()
    return facts


def declared_sheet_facts(path: Path) -> dict[str, SheetFacts]:
    """Each sheet's declared range, without parsing it (empty when the file cannot tell: the
    reader will report it)."""
    try:
        file_format = detect_format(path)
        return xlsx_sheet_facts(path) if file_format == "xlsx" else xls_sheet_facts(path)
    except (SpreadsheetError, OSError):
        return {}


def declared_data_rows(facts: SheetFacts) -> int | None:
    """At most how many rows below a header the sheet's declared range holds (the header is at
    least on its first used row; title rows above it are counted, so this is an upper bound)."""
    return None if facts.last_row is None else max(facts.last_row - facts.first_row, 0)


STRAY_CELLS_FIX = ("Delete the rows below the roster and the columns right of it (select them, right-click, "
                   "Delete; clearing them is not enough), save, and upload again.")


def check_sheet_size(file_name: str, sheet: str, facts: SheetFacts, limits: ReadLimits) -> None:
    """Refuse, before parsing, a sheet whose declared range is absurd or reaches Excel's last row.

    The limit on rows is on data rows: the declared range less the header and the title rows
    that may sit above it (the exact count is checked once the header is found)."""
    where = f"{facts.used_range}" if facts.used_range else "its used range"
    if facts.last_column is not None and facts.last_column > limits.max_columns:
        raise SpreadsheetError(
            file_name, sheet,
            f"the sheet's used range is {where}: it reaches column {facts.last_column:,} "
            f"({_column_letter(facts.last_column - 1)}) while a roster has about 13 columns, so a stray cell "
            "far to the right (or below) stretches it; it was not opened because reading it would need far too "
            "much memory.",
            STRAY_CELLS_FIX,
        )
    if facts.last_row is None:
        return
    if facts.last_row >= 1_048_576:
        raise SpreadsheetError(
            file_name, sheet,
            f"the sheet's used range is {where}: it reaches row {facts.last_row:,}, Excel's last row, so "
            "either rows were cut off or a stray cell far below the roster stretches it; it was not opened.",
            STRAY_CELLS_FIX + " If the roster really is that long, split it into several files.",
        )
    if declared_data_rows(facts) - (HEADER_SEARCH_ROWS - 1) > limits.max_rows:
        raise SpreadsheetError(
            file_name, sheet,
            f"the sheet's used range is {where}: about {declared_data_rows(facts):,} rows below the header, "
            f"and at most {limits.max_rows:,} student rows are accepted.",
            "Split the roster into several files; if the roster is shorter, a stray cell below it stretches "
            "the used range: " + STRAY_CELLS_FIX[0].lower() + STRAY_CELLS_FIX[1:],
        )


@dataclass
class SheetCells:
    """What the sheet's XML says that the parsed values do not: merged ranges and formulas saved
    without their value (they read as empty)."""

    # (first row, first column, last row, last column), 1-based, inclusive
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)
    # (row, column), 1-based
    formulas_without_value: set[tuple[int, int]] = field(default_factory=set)


_CELL = re.compile(rb'<(?:\w+:)?c\b([^>]*?)(?<!/)>(.*?)</(?:\w+:)?c>', re.S)
_FORMULA = re.compile(rb'<(?:\w+:)?f\b')
_VALUE = re.compile(rb'<(?:\w+:)?v\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?v>)', re.S)
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="\$?([A-Za-z]+\$?\d+)(?::\$?([A-Za-z]+\$?\d+))?"')


def xlsx_sheet_cells(path: Path, sheet: str) -> SheetCells:
    """Merged ranges and formulas without a saved value in one sheet of an .xlsx, streamed (a
    sheet's XML can be hundreds of MB; it is read in 1 MB pieces cut at row boundaries)."""
    cells = SheetCells()
    with zipfile.ZipFile(path) as archive:
        member = _sheet_members(archive).get(sheet)
        if member is None or not _mentions_formulas_or_merges(archive, member):
            return cells
        with archive.open(member) as sheet_xml:
            pending, formulas_seen = b"", False
            while True:
                chunk = sheet_xml.read(1 << 20)
                buffer = pending + chunk
                # Cut after the last row tag: no cell spans it. Past the rows (merged ranges come
                # after them) cut after the last complete tag.
                cut = len(buffer) if not chunk else buffer.rfind(b"row>") + 4
                past_rows = not chunk or cut < 4
                if chunk and cut < 4:
                    cut = buffer.rfind(b">") + 1 if len(buffer) > (1 << 22) or b"sheetData>" in buffer else 0
                part, pending = buffer[:cut], buffer[cut:]
                # One cheap test per piece: every formula group has a closing </f> (the cells that
                # share it may only say <f .../>, so once one is seen every later piece is parsed).
                formulas_seen = formulas_seen or b"f>" in part
                if formulas_seen:
                    for attributes, body in _CELL.findall(part):
                        if not _FORMULA.search(body):
                            continue
                        value = _VALUE.search(body)
                        text_result = re.search(rb'\bt="(?:str|inlineStr)"', attributes)
                        # An empty value with t="str" is a formula whose result is "": truly empty.
                        if value is None or (not (value.group(1) or b"").strip() and not text_result):
                            ref = re.search(rb'\br="([A-Za-z]+\d+)"', attributes)
                            if ref:
                                cells.formulas_without_value.add(_cell_position(ref.group(1).decode()))
                if past_rows and b"mergeCell" in part:
                    for first, last in _MERGE.findall(part):
                        top = _cell_position(first.decode().replace("$", ""))
                        bottom = _cell_position((last or first).decode().replace("$", ""))
                        cells.merged.append((top[0], top[1], bottom[0], bottom[1]))
                if not chunk:
                    break
    return cells


def sheet_cells(path: Path, file_format: str, sheet: str | None) -> SheetCells:
    """The merged ranges and formulas without a saved value of one sheet, of either format."""
    if sheet is None:
        return SheetCells()
    return xlsx_sheet_cells(path, sheet) if file_format == "xlsx" else xls_sheet_cells(path, sheet)


def _mentions_formulas_or_merges(archive: zipfile.ZipFile, member: str) -> bool:
    """Whether a sheet's XML has a formula (``</f>``) or a merged range at all: one fast pass of
    byte searches, so the common sheet with neither costs little more than unzipping it."""
    overlap = b""
    with archive.open(member) as sheet_xml:
        while chunk := sheet_xml.read(1 << 22):
            piece = overlap + chunk
            if b"f>" in piece or b"<mergeCell " in piece:
                return True
            overlap = chunk[-16:]
    return False


def xls_sheet_cells(path: Path, sheet: str) -> SheetCells:
    """Merged ranges of one sheet of an .xls (xlrd lists them only with formatting information).
    An .xls always stores a formula's value, so there are no formulas without one."""
    try:
        book = xlrd.open_workbook(str(path), on_demand=True, formatting_info=True)
    except (xlrd.XLRDError, NotImplementedError):
        return SheetCells()
    try:
        found = book.sheet_by_name(sheet)
        return SheetCells(merged=[(rlo + 1, clo + 1, rhi, chi) for rlo, rhi, clo, chi in found.merged_cells])
    except xlrd.XLRDError:
        return SheetCells()
    finally:
        book.release_resources()


def _column_letter(position: int) -> str:
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _find_header(frame: pl.DataFrame) -> tuple[int, dict[int, str], list[str]] | None:
    """The index of the header row, the canonical column of each header cell, and the canonical
    columns that more than one header cell claims."""
    for index in range(min(HEADER_SEARCH_ROWS, frame.height)):
        mapping: dict[int, str] = {}
        duplicates: list[str] = []
        for position, cell in enumerate(frame.row(index)):
            column = _ALIAS_TO_COLUMN.get(normalize_header(cell))
            if column and column in mapping.values():
                first = next(p for p, c in mapping.items() if c == column)
                duplicates.append(f"{column} (columns {_column_letter(first)} and {_column_letter(position)})")
            elif column:
                mapping[position] = column
        # Four known headers mark the header row even when one is misspelt, so a typo is reported
        # as the missing column it is rather than as "no header".
        if len(mapping) >= 4:
            return index, mapping, duplicates
    return None


def read_roster_file(path: Path, sheet: str | None = None, limits: ReadLimits = ReadLimits()) -> SheetRead:
    """Read one roster workbook into text rows with provenance.

    ``sheet`` names the sheet to read; without it, the one visible sheet that carries a roster
    header is read. Hidden sheets are never read silently: a hidden roster sheet is reported.
    Raises ``SpreadsheetError`` with the file, sheet, problem and fix when the file cannot be used.
    """
    path = Path(path)
    _check_file_size(path, limits)
    file_format = detect_format(path)
    sha256 = file_sha256(path)
    facts = xlsx_sheet_facts(path, limits) if file_format == "xlsx" else xls_sheet_facts(path)
    reader = _open_workbook(path, file_format)
    # The cell scan (merged ranges, formulas without values) unzips the sheet again: it runs on
    # the other core while the reader parses, for the sheet that is most likely the roster.
    scanner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sheet-cells")
    likely = sheet if sheet is not None else (reader.sheet_names or [None])[0]
    early: Future[SheetCells] = scanner.submit(sheet_cells, path, file_format, likely)
    try:
        headered, hidden_sheets = _sheets_with_roster_header(path, reader, facts, sheet, limits)
        roster = _the_roster_sheet(path, reader.sheet_names, sheet, headered, hidden_sheets)
        header_row = (facts[roster.name].first_row if roster.name in facts else 1) + roster.header_index
        _check_header_columns(path.name, roster, header_row)
        cells = early.result() if roster.name == likely else sheet_cells(path, file_format, roster.name)
    finally:
        scanner.shutdown(wait=False, cancel_futures=True)
    rows, non_empty, warnings = _student_rows(roster, header_row, cells)
    _check_student_row_count(path.name, roster.name, rows, header_row, limits)
    return SheetRead(
        file_name=path.name,
        sha256=sha256,
        sheet=roster.name,
        rows=rows.select(["excel_row", *CANONICAL_COLUMNS, "formula_cells"]),
        non_empty_rows=int(non_empty.sum()),
        warnings=warnings,
        hidden_sheets=hidden_sheets,
    )


def _check_file_size(path: Path, limits: ReadLimits) -> None:
    """Refuse a file larger than the limit before anything of it is read."""
    if path.stat().st_size > limits.max_file_bytes:
        raise SpreadsheetError(path.name, None,
                               f"the file is {path.stat().st_size / 2**20:,.0f} MB; at most "
                               f"{limits.max_file_bytes / 2**20:,.0f} MB are accepted.",
                               "Split the roster into several files and upload them together.")


def _open_workbook(path: Path, file_format: str) -> fastexcel.ExcelReader:
    """Open the workbook with the reader, whatever its extension says about its format."""
    try:
        # The reader picks the format by extension; from bytes it decides by content, so an .xlsx
        # named .xls still opens (at the cost of one copy of the file in memory).
        extension_fits = path.suffix.lower() in ((".xlsx", ".xlsm") if file_format == "xlsx" else (".xls",))
        return fastexcel.read_excel(path if extension_fits else path.read_bytes())
    except Exception as error:  # calamine's errors name the format problem; pass it on with the file
        raise SpreadsheetError(
            path.name, None, f"the workbook cannot be opened ({error}).",
            "Open it in Excel, save it as .xlsx, and upload it again.",
        ) from error


@dataclass
class _HeaderedSheet:
    """A sheet with a roster header row, every cell read as text."""

    name: str
    frame: pl.DataFrame
    header_index: int  # the header row's index in ``frame``
    mapping: dict[int, str]  # position in ``frame`` -> canonical column
    duplicates: list[str]  # canonical columns that more than one header cell claims
    excel_columns: list[int]  # each frame column's 0-based Excel column (the reader drops empty leading ones)


def _sheets_with_roster_header(path: Path, reader: fastexcel.ExcelReader, facts: dict[str, SheetFacts],
                               sheet: str | None, limits: ReadLimits) -> tuple[list[_HeaderedSheet], list[str]]:
    """The visible sheets (or the named one) that carry a roster header, and the hidden sheets
    that carry one and were not read (a named sheet is read even when hidden)."""
    headered: list[_HeaderedSheet] = []
    hidden_sheets: list[str] = []
    for name in reader.sheet_names:
        if sheet is not None and name != sheet:
            continue
        if name in facts:
            check_sheet_size(path.name, name, facts[name], limits)
        loaded = reader.load_sheet(name, header_row=None, dtypes="string")
        frame = loaded.to_polars()
        header = _find_header(frame)
        if header is None:
            continue
        if loaded.visible != "visible" and sheet is None:
            hidden_sheets.append(name)
            continue
        header_index, mapping, duplicates = header
        positions = [column.absolute_index for column in loaded.selected_columns]
        headered.append(_HeaderedSheet(name, frame, header_index, mapping, duplicates, positions))
    return headered, hidden_sheets


def _the_roster_sheet(path: Path, sheet_names: list[str], sheet: str | None, headered: list[_HeaderedSheet],
                      hidden_sheets: list[str]) -> _HeaderedSheet:
    """The one sheet to read; refused when the named sheet does not exist, or when no sheet or
    several visible sheets carry a roster header."""
    if sheet is not None and sheet not in sheet_names:
        raise SpreadsheetError(
            path.name, sheet, f"there is no sheet named {sheet!r} (sheets: {', '.join(sheet_names)}).",
            "Name one of the listed sheets.",
        )
    if not headered:
        hidden = f" (hidden sheet {', '.join(map(repr, hidden_sheets))} has one and was not read)" if hidden_sheets else ""
        raise SpreadsheetError(
            path.name, sheet,
            f"no sheet has a roster header row (at least four of the template's column names){hidden}.",
            "Use the rosterflow template (`rosterflow template`) and keep its header row.",
        )
    if len(headered) > 1:
        raise SpreadsheetError(
            path.name, None,
            f"several visible sheets carry a roster header ({', '.join(h.name for h in headered)}).",
            "Keep one roster sheet per file, or name the sheet to read.",
        )
    return headered[0]


def _check_header_columns(file_name: str, roster: _HeaderedSheet, header_row: int) -> None:
    """Refuse a header row that names a column twice or lacks a required column."""
    if roster.duplicates:
        raise SpreadsheetError(
            file_name, roster.name,
            f"the header row (Excel row {header_row}) names the same column twice: "
            f"{'; '.join(roster.duplicates)}.",
            "Keep one of the two columns (or rename the other) and upload again; nothing from this file was used.",
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in roster.mapping.values()]
    if missing:
        found = [cell for cell in roster.frame.row(roster.header_index) if cell]
        raise SpreadsheetError(
            file_name, roster.name,
            f"the header row (Excel row {header_row}) has no column for "
            f"{', '.join(missing)}; found: {', '.join(found)}.",
            "Rename the columns as in the rosterflow template; nothing from this file was used.",
        )


def _student_rows(roster: _HeaderedSheet, header_row: int,
                  cells: SheetCells) -> tuple[pl.DataFrame, pl.Series, list[tuple[str, str]]]:
    """The non-empty rows below the header in canonical columns, with their Excel row and the
    roster cells whose formula was saved without a value; the non-empty mask over every row
    below the header; the warnings about the sheet (columns without a header, merged ranges)."""
    first_data_row = header_row + 1
    column_at = {roster.excel_columns[position] + 1: position for position in roster.mapping}
    data = _through_last_formula_row(roster.frame.slice(roster.header_index + 1), cells, column_at, first_data_row)
    warnings = _unheaded_column_warnings(roster, data)
    non_empty = _non_empty_rows(data)
    data, merge_warnings = _fill_merged_ranges(data, cells.merged, column_at, first_data_row, non_empty)
    warnings += merge_warnings
    formula_cells = _empty_formula_cells(data, cells, column_at, roster.mapping, first_data_row)
    for row in formula_cells:  # a formula saved without its value reads as empty; its row is not empty
        non_empty[row - first_data_row] = True
    rows = _canonical_rows(data, roster.mapping, first_data_row, formula_cells).filter(non_empty)
    return rows, non_empty, warnings


def _through_last_formula_row(data: pl.DataFrame, cells: SheetCells, column_at: dict[int, int],
                              first_data_row: int) -> pl.DataFrame:
    """The data rows, extended with empty rows down to the last roster cell holding a formula
    saved without its value: the reader's range ends at the last cell with a value, so rows made
    only of such formulas at the end of a sheet would otherwise not be rows at all."""
    last = max((row for row, column in cells.formulas_without_value if column in column_at), default=0)
    missing = last - (first_data_row + data.height - 1)
    if missing <= 0:
        return data
    return pl.concat([data, pl.DataFrame({name: [None] * missing for name in data.columns}, schema=data.schema)])


def _unheaded_column_warnings(roster: _HeaderedSheet, data: pl.DataFrame) -> list[tuple[str, str]]:
    """A warning for each column that has values below the header but no header cell."""
    warnings: list[tuple[str, str]] = []
    header_cells = roster.frame.row(roster.header_index)
    for position, name in enumerate(data.columns):
        headed = position in roster.mapping or (header_cells[position] or "").strip()
        if not headed and data[name].drop_nulls().len():
            warnings.append((f"column {_column_letter(roster.excel_columns[position])} has values but no header; "
                             "it was not read", "Give the column a header from the template if it matters."))
    return warnings


def _non_empty_rows(data: pl.DataFrame) -> pl.Series:
    """Whether each row has text in any cell of the whole sheet row, mapped or not.

    Column by column, each looking only at the rows with no text so far: nearly every row has text
    in its first columns, so the other columns are read for the few empty rows alone (at a million
    rows of 13 columns, 0.06 s instead of 0.5 s)."""
    non_empty = np.zeros(data.height, dtype=bool)
    unknown = np.arange(data.height)  # the rows with no text found yet
    for column in data.columns:
        if len(unknown) == 0:
            break
        cells = data[column] if len(unknown) == data.height else data[column].gather(unknown)
        text = (cells.is_not_null() & (cells.str.strip_chars() != "")).fill_null(False).to_numpy()
        non_empty[unknown[text]] = True
        unknown = unknown[~text]
    return pl.Series(non_empty)


def _empty_formula_cells(data: pl.DataFrame, cells: SheetCells, column_at: dict[int, int], mapping: dict[int, str],
                         first_data_row: int) -> dict[int, list[str]]:
    """The roster cells of each data row (by Excel row) that hold a formula saved without its
    value and read as empty."""
    formula_cells: dict[int, list[str]] = {}
    for row, column in sorted(cells.formulas_without_value):
        position = column_at.get(column)  # roster columns only: a helper column's formulas are not rows
        index = row - first_data_row
        if position is None or not 0 <= index < data.height:
            continue
        if (data[data.columns[position]][index] or "").strip():
            continue
        formula_cells.setdefault(row, []).append(mapping[position])
    return formula_cells


def _canonical_rows(data: pl.DataFrame, mapping: dict[int, str], first_data_row: int,
                    formula_cells: dict[int, list[str]]) -> pl.DataFrame:
    """Every data row in the canonical columns (null where the sheet has none), with its Excel row
    and the roster columns whose formula has no saved value."""
    rows = data.select(
        [pl.col(data.columns[position]).alias(column) for position, column in mapping.items()]
    ).with_columns(
        [pl.lit(None, dtype=pl.String).alias(c) for c in CANONICAL_COLUMNS if c not in mapping.values()]
    )
    rows = rows.with_columns(
        excel_row=(pl.int_range(pl.len(), dtype=pl.Int32) + first_data_row)
    )
    return rows.with_columns(formula_cells=pl.col("excel_row").replace_strict(
        {row: ",".join(columns) for row, columns in formula_cells.items()}, default=None, return_dtype=pl.String))


def _check_student_row_count(file_name: str, sheet_name: str, rows: pl.DataFrame, header_row: int,
                             limits: ReadLimits) -> None:
    """Refuse a sheet with no student rows below its header, or with more than the limit."""
    if rows.height == 0:
        raise SpreadsheetError(
            file_name, sheet_name,
            f"the sheet has a header row (Excel row {header_row}) but no student rows below it.",
            "Fill in the students below the header (or upload the sheet that has them); nothing from this file was used.",
        )
    if rows.height > limits.max_rows:
        raise SpreadsheetError(
            file_name, sheet_name,
            f"the sheet holds {rows.height:,} student rows (Excel rows {header_row + 1:,}-"
            f"{rows['excel_row'].max():,}); at most {limits.max_rows:,} are accepted.",
            "Split the roster into several files and upload them in separate batches.",
        )


def _cell_name(row: int, column: int) -> str:
    return f"{_column_letter(column - 1)}{row}"


def _fill_merged_ranges(data: pl.DataFrame, merged: list[tuple[int, int, int, int]], column_at: dict[int, int],
                        first_data_row: int, non_empty: pl.Series) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """Fill each merged range of one column among the data rows (a school or teacher merged down
    several rows) from its top cell, with a warning naming the range; other merged ranges that
    reach the data rows are named (their covered cells are empty). ``column_at`` maps the Excel
    column (1-based) of each roster column to its position in ``data``."""
    warnings: list[tuple[str, str]] = []
    columns = dict(data.to_dict())
    for top, left, bottom, right in merged:
        if bottom < first_data_row or not any(c in column_at for c in range(left, right + 1)):
            continue  # a title or header above the data, or columns that are not read
        name = f"{_cell_name(top, left)}:{_cell_name(bottom, right)}"
        position = column_at.get(left)
        top_index = top - first_data_row
        if left == right and top_index >= 0 and position is not None:
            series = columns[data.columns[position]]
            value = series[top_index] if top_index < data.height else None
            covered = [i for i in range(top_index + 1, min(bottom - first_data_row + 1, data.height)) if non_empty[i]]
            if value is not None and value.strip() and covered:
                columns[data.columns[position]] = series.scatter(covered, value)
                warnings.append((
                    f"{name} are merged: rows {top}-{bottom} each took the merged value {value!r}",
                    "Unmerge the cells and fill every row, so the sheet says what each row means.",
                ))
                continue
        warnings.append((
            f"{name} are merged: only {_cell_name(top, left)} holds a value and the other cells read as empty",
            "Unmerge the cells and fill every row (and column) of the range, then upload again.",
        ))
    return pl.DataFrame(columns), warnings
