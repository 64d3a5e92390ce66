"""The reader's child process started ahead of its files: the same limits, the same results, and
nothing left running when it is not needed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tasks.isolated_read import read_roster_files, start_reader
from tasks.pipeline import ingest_and_validate, open_batch
from tasks.spreadsheets import ReadLimits, SheetRead, SpreadsheetError
from tests.sheets import roster_row, write_roster
from tests.test_bad_files import damaged_range_no_dimension, formula_without_cached_value, merged_school_cells
from warehouse import batches, catalog
from warehouse.handle import Warehouse


def test_a_reader_started_ahead_is_held_to_the_memory_limit_and_a_fresh_child_reads_the_next_file(tmp_path: Path):
    hostile = damaged_range_no_dimension(tmp_path)  # the parser would allocate hundreds of GiB
    good = write_roster(tmp_path / "good.xlsx", [roster_row()])
    with start_reader() as reader:
        refused, read = read_roster_files([str(hostile), str(good)], None, ReadLimits(), reader)
    assert isinstance(refused, SpreadsheetError) and refused.file_name == hostile.name
    assert "could not be parsed within" in refused.problem, refused
    assert isinstance(read, SheetRead) and read.rows.height == 1


def test_a_reader_started_ahead_finds_formulas_without_values_and_merged_cells(tmp_path: Path):
    formulas, merged = formula_without_cached_value(tmp_path), merged_school_cells(tmp_path)
    with start_reader() as reader:
        with_formula, with_merge = read_roster_files([str(formulas), str(merged)], None, ReadLimits(), reader)
    assert with_formula.rows["formula_cells"].to_list() == ["student_first"], with_formula.rows
    assert with_merge.rows["school"].to_list() == ["ABC High School"] * 3
    assert any("A2:A4 are merged" in problem for problem, _ in with_merge.warnings)


def test_a_reader_started_ahead_and_never_given_files_is_ended(tmp_path: Path):
    with start_reader() as reader:
        pid = reader.process.pid
        assert read_roster_files([], None, ReadLimits(), reader) == []
    assert reader.process is None
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(pid, 0)
    with start_reader() as unused:
        pid = unused.process.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_read_returns_once_the_results_are_in_and_the_child_then_ends_by_itself(tmp_path: Path):
    # The parent goes on when the child says its results are complete, not when it has ended; the
    # child then ends by itself and is reaped (a zombie, or a child left waiting, answers signal 0).
    good = write_roster(tmp_path / "good.xlsx", [roster_row()])
    with start_reader() as reader:
        pid = reader.process.pid
        (read,) = read_roster_files([str(good)], None, ReadLimits(), reader)
    assert isinstance(read, SheetRead) and read.rows.height == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the reader child {pid} was still there (or not reaped) 30 s after its read")


def test_a_reader_ended_before_its_files_blames_no_file(tmp_path: Path):
    good = write_roster(tmp_path / "good.xlsx", [roster_row()])
    with start_reader() as reader:
        reader.process.kill()
        reader.process.wait()
        (read,) = read_roster_files([str(good)], None, ReadLimits(), reader)
    assert isinstance(read, SheetRead) and read.rows.height == 1


def test_ingest_and_validate_returns_the_validation_it_recorded(tmp_path: Path, warehouse_path: Path, monkeypatch):
    sheet = write_roster(tmp_path / "roster.xlsx", [roster_row(), roster_row(first="Bo", student_id="1002"),
                                                     roster_row(first="Cy", student_id="1003", school="Unknown")])
    wh = Warehouse(warehouse_path, who="test")
    with wh.write() as con:
        catalog.add_schools(con, ["ABC High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        batch = open_batch(con, "k", "registration", {"files": [str(sheet)], "term": "T", "subscription_type": "S"},
                           "test")
    # The rows are validated as they were read, beside the write of the staged rows: never read back.
    import tasks.validate

    def no_reading_back(*args):
        raise AssertionError("the staged rows were read back to be validated")

    monkeypatch.setattr(tasks.validate, "load_staged", no_reading_back)
    ingested, validated = ingest_and_validate(wh, batch, [str(sheet)], None, 1000)
    with wh.read() as con:
        assert validated == batches.stage_result(con, batch, "validate")
    assert ingested["rows_staged"] == 3 and validated["rows_valid"] == 2, validated
    # Ingest read its inputs (the catalog) and wrote its results once, in short holds; the validation
    # computed beside was written at once, with no read hold before it.
    assert [(h.mode, h.stage) for h in wh.holds if h.batch == batch] == [
        ("read", "ingest"), ("write", "ingest"), ("write", "validate")]
