"""Partial uploads: sheets collected over days, duplicates ignored, corrections replace, nothing
read until everything is in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.pipeline import advance_batch, open_batch
from tasks.uploads import UploadError, add_upload, confirm_all_uploaded, list_uploads
from tests.sheets import roster_row, write_roster
from warehouse import catalog
from warehouse.connection import opened


def test_collect_replace_and_compile(tmp_path: Path, warehouse_path: Path):
    morgan = [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2")]
    corrected = [roster_row(first="Ana", student_id="1"), roster_row(first="Ben", student_id="2"),
                 roster_row(first="Cy", student_id="3")]
    cooper = [roster_row(first="Di", student_id="4", email="acooper@example.org", teacher=("Allison", "Cooper")),
              roster_row(first="Ana", student_id="1", email="acooper@example.org", teacher=("Allison", "Cooper"),
                         school="Summerwind High School")]
    (tmp_path / "fixed").mkdir()
    first = write_roster(tmp_path / "morgan.xlsx", morgan)
    second = write_roster(tmp_path / "fixed" / "morgan.xlsx", corrected)
    third = write_roster(tmp_path / "cooper.xlsx", cooper)
    with opened(warehouse_path) as con:
        catalog.add_schools(con, ["ABC High School", "Summerwind High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        batch = open_batch(con, "collect", "migration", {"files": [], "term": "Fall 2026", "subscription_type": "K12"},
                           "test", collecting=True)
        assert advance_batch(con, batch)["status"] == "collecting"  # nothing is read yet
        one = add_upload(con, batch, first, tmp_path / "store", "Morgan")
        assert add_upload(con, batch, first, tmp_path / "store", "Morgan")["duplicate"]
        two = add_upload(con, batch, second, tmp_path / "store", "Morgan")
        assert two["replaced"] == [one["upload_id"]]
        add_upload(con, batch, third, tmp_path / "store", "Cooper")
        uploads = list_uploads(con, batch)
        assert uploads.height == 3 and uploads["replaced_by"].null_count() == 2
        confirm_all_uploaded(con, batch, "Pat Admin")
        with pytest.raises(UploadError, match="no longer takes uploads"):
            add_upload(con, batch, first, tmp_path / "store", "Morgan")
        progress = advance_batch(con, batch)
        issues = con.sql("SELECT file_name, excel_row, column_name, problem FROM validation_issues").pl()
    # Compiled from the corrected sheet and Cooper's: 3 + 2 rows; Ana is in two schools.
    assert progress["ingest"]["rows_staged"] == 5
    assert {f["file_name"] for f in progress["ingest"]["files"]} == {"morgan.xlsx", "cooper.xlsx"}
    two_schools = issues.filter(issues["problem"].str.contains("two different schools"))
    assert set(two_schools["file_name"]) == {"morgan.xlsx", "cooper.xlsx"}
