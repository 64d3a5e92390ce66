"""Exported workbooks: no cell can run as a formula."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import fastexcel
import polars as pl

from tasks.exports import neutralize, sheet_names, write_xlsx


def test_formula_like_text_is_written_as_inert_text(tmp_path: Path):
    frame = pl.DataFrame({"name": ["=HYPERLINK(\"http://x\",\"click\")", "+1", "-2", "@SUM(A1)", "Ana"]})
    path = write_xlsx(tmp_path / "out.xlsx", {"Sheet": frame})
    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml  # no formula cells at all
    read = pl.read_excel(path, engine="calamine")
    assert read["name"].to_list() == ["'=HYPERLINK(\"http://x\",\"click\")", "'+1", "'-2", "'@SUM(A1)", "Ana"]
    assert neutralize(5) == 5


def test_sheet_names_are_legal_distinct_and_excel_accepts_them(tmp_path: Path):
    names = ["Student List Washington Elementary North", "Student List Washington Elementary South",
             "Student List Lincoln K-8/Middle School", "St. Mary's [Annex]: Upper*?\\", "'Quoted'", "ROSTER",
             "roster", "History", "", "x" * 40, "x" * 40]
    legal = sheet_names(names)
    assert legal[:3] == ["Student List Washington Element", "Student List Washington Ele (2)",
                         "Student List Lincoln K-8-Middle"]
    assert legal[3] == "St. Mary's -Annex-- Upper---"
    assert legal[4:8] == ["Quoted", "ROSTER", "roster (2)", "History (2)"]
    assert legal[8] == "Sheet" and legal[9] == "x" * 31 and legal[10] == "x" * 27 + " (2)"
    assert all(len(n) <= 31 and not set(n) & set("/:?[]*\\") and not n.startswith("'") and not n.endswith("'")
               for n in legal)
    assert len({n.casefold() for n in legal}) == len(legal)
    # Excel's rules as xlsxwriter enforces them: the workbook is written and reads back with every sheet.
    path = write_xlsx(tmp_path / "names.xlsx", {n: pl.DataFrame({"a": [i]}) for i, n in enumerate(dict.fromkeys(names))})
    assert fastexcel.read_excel(path).sheet_names == sheet_names(dict.fromkeys(names))


def test_a_title_stands_above_the_table_and_private_files_are_owner_only(tmp_path: Path):
    previous = os.umask(0)   # the modes must not depend on a permissive umask
    try:
        path = write_xlsx(tmp_path / "out" / "deep" / "roster.xlsx", {"Student List X": pl.DataFrame({"a": ["1"]})},
                          titles={"Student List X": "School: X"}, private=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {stat.S_IMODE(p.stat().st_mode) for p in (path.parent, path.parent.parent)} == {0o700}
    rows = fastexcel.read_excel(path).load_sheet(0, header_row=None, dtypes="string").to_polars().rows()
    assert rows[0][0] == "School: X" and rows[1] == ("a",) and rows[2] == ("1",)
