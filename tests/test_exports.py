"""Exported workbooks: no cell can run as a formula."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl

from tasks.exports import neutralize, write_xlsx


def test_formula_like_text_is_written_as_inert_text(tmp_path: Path):
    frame = pl.DataFrame({"name": ["=HYPERLINK(\"http://x\",\"click\")", "+1", "-2", "@SUM(A1)", "Ana"]})
    path = write_xlsx(tmp_path / "out.xlsx", {"Sheet": frame})
    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml  # no formula cells at all
    read = pl.read_excel(path, engine="calamine")
    assert read["name"].to_list() == ["'=HYPERLINK(\"http://x\",\"click\")", "'+1", "'-2", "'@SUM(A1)", "Ana"]
    assert neutralize(5) == 5
