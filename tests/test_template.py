"""The batch template and a school's exported roster: what a data team fills in and sends back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest

from tasks.spreadsheets import SpreadsheetError, read_roster_file
from tasks.template import export_roster, write_template
from tests.batch_helpers import approve_and_commit, start
from warehouse.handle import opened


def test_the_template_reads_back_and_offers_the_warehouse_choices(district_warehouse: Path, tmp_path: Path):
    with opened(district_warehouse) as con:
        path = write_template(con, tmp_path / "template.xlsx")
    # Its header is recognized; blank, it is refused as a sheet with no student rows.
    with pytest.raises(SpreadsheetError, match="header row \\(Excel row 1\\) but no student rows") as blank:
        read_roster_file(path)
    assert blank.value.sheet == "Roster"
    with zipfile.ZipFile(path) as archive:
        roster_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<dataValidation" in roster_xml and "Lists!$A$2:$A$4" in roster_xml
    lists = pl.read_excel(path, sheet_name="Lists", engine="calamine")
    assert set(lists["School"].drop_nulls()) == {"ABC High School", "ABC Middle School", "Summerwind High School"}
    instructions = pl.read_excel(path, sheet_name="Instructions", engine="calamine")
    assert "required" in instructions["Required"].to_list()


def test_an_exported_roster_migrates_back_with_no_change(district, district_warehouse: Path, tmp_path: Path):
    progress = start(district_warehouse, "registration", district.registration_files, district.registration_term,
                     district.subscription_type)
    approve_and_commit(district_warehouse, progress["batch_id"])
    with opened(district_warehouse) as con:
        path, count = export_roster(con, "ABC High School", tmp_path / "abc.xlsx")
    assert count == 36
    again = start(district_warehouse, "migration", [path], "Fall 2026", district.subscription_type,
                  schools=["ABC High School"])
    assert again["validate"]["rows_invalid"] == 0
    assert again["match"] == {"matched": 36, "review": 0, "new": 0}
    assert again["plan"]["removals"] == 0 and again["plan"]["students_new"] == 0
