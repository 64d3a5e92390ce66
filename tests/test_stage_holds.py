"""Stages hold the warehouse only to read their inputs and to write their results: what another
process changes in between is re-checked in the write, and other commands get their turn while a
large batch is read, validated and matched."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasks.ingest
import tasks.validate
from tasks.pipeline import ingest_and_validate, open_batch
from tests.sheets import rewrite_sheet_xml, roster_row, write_roster
from warehouse import batches, catalog
from warehouse.connection import transaction
from warehouse.handle import Warehouse

WORKTREE = Path(__file__).resolve().parent.parent


def _setup(wh: Warehouse, sheet: Path) -> int:
    with wh.write() as con:
        catalog.add_schools(con, ["ABC High School"], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "test")
        config = {"files": [str(sheet)], "term": "Fall 2026", "subscription_type": "K12"}
        return open_batch(con, "holds", "registration", config, "test")


def test_a_stage_another_process_finished_meanwhile_keeps_its_result(warehouse_path: Path):
    wh = Warehouse(warehouse_path, who="test")
    with wh.write() as con:
        batch = batches.create_or_get_batch(con, "run", "registration", "Fall", "K12", {}, "test")
    stored = []

    def compute(_):
        # Another process finishes the stage while this one computes with the warehouse closed.
        with Warehouse(warehouse_path, who="other").write() as con, transaction(con):
            batches.record_stage(con, batch, "match", {"by": "other"})
        return {"by": "me"}

    def store(con, computed):
        stored.append(computed)
        batches.record_stage(con, batch, "match", computed)
        return computed

    assert batches.run_stage(wh, batch, "match", lambda con: None, compute, store) == {"by": "other"}
    assert stored == []
    with wh.read() as con:
        assert batches.stage_result(con, batch, "match") == {"by": "other"}


def test_a_stage_whose_inputs_changed_meanwhile_computes_again(warehouse_path: Path):
    wh = Warehouse(warehouse_path, who="test")
    with wh.write() as con:
        batch = batches.create_or_get_batch(con, "run", "registration", "Fall", "K12", {}, "test")
    computed = []

    def load(con):
        return sorted(name for (name,) in con.execute("SELECT name FROM schools").fetchall())

    def compute(schools):
        computed.append(schools)
        if len(computed) == 1:  # another process adds a school while this one computes
            with Warehouse(warehouse_path, who="other").write() as con:
                catalog.add_schools(con, ["Late School"], "other")
        return {"schools": schools}

    def store(con, result):
        batches.record_stage(con, batch, "validate", result)
        return result

    result = batches.run_stage(wh, batch, "validate", load, compute, store, actions=batches.CATALOG_CHANGES)
    assert computed == [[], ["Late School"]] and result == {"schools": ["Late School"]}


def test_a_school_added_while_the_files_are_read_is_known_to_validation(warehouse_path: Path, tmp_path: Path,
                                                                          monkeypatch):
    sheet = write_roster(tmp_path / "roster.xlsx", [roster_row(), roster_row(first="Bo", student_id="1002",
                                                                            school="Late School")])
    wh = Warehouse(warehouse_path, who="test")
    batch = _setup(wh, sheet)
    read_files = tasks.ingest.read_files

    def read_while_a_school_is_added(*args):
        with Warehouse(warehouse_path, who="other").write() as con:
            catalog.add_schools(con, ["Late School"], "other")
        return read_files(*args)

    monkeypatch.setattr(tasks.ingest, "read_files", read_while_a_school_is_added)
    ingest, validated = ingest_and_validate(wh, batch, [str(sheet)], None, 1000)
    assert ingest["rows_staged"] == 2 and validated["rows_valid"] == 2, validated
    # The files were read once, the catalog twice before the staged rows were written (the first write
    # saw the new school and let go); the validation computed beside that write, against the new
    # catalog, was written after it. Each hold was short and none wrote while reading.
    assert [(h.mode, h.stage) for h in wh.holds if h.batch == batch] == [
        ("read", "ingest"), ("write", "ingest"), ("read", "ingest"), ("write", "ingest"), ("write", "validate")]


def test_a_school_added_between_the_staged_rows_and_their_validation_is_known_to_it(
        warehouse_path: Path, tmp_path: Path, monkeypatch):
    # The rows are validated beside the write of the staged rows, against the catalog read before;
    # a school added after that write makes that validation stale: it is done again from the warehouse.
    sheet = write_roster(tmp_path / "roster.xlsx", [roster_row(), roster_row(first="Bo", student_id="1002",
                                                                            school="Late School")])
    wh = Warehouse(warehouse_path, who="test")
    batch = _setup(wh, sheet)
    check_rows = tasks.validate.check_rows

    def school_added_before_validation_is_written(*args):
        # Beside the staged rows' write: the school is added once that write lets go.
        validation = check_rows(*args)
        if not added:
            with Warehouse(warehouse_path, who="other").write() as con:
                catalog.add_schools(con, ["Late School"], "other")
            added.append(True)
        return validation

    added: list[bool] = []
    monkeypatch.setattr(tasks.validate, "check_rows", school_added_before_validation_is_written)
    ingest, validated = ingest_and_validate(wh, batch, [str(sheet)], None, 1000)
    assert ingest["rows_staged"] == 2 and validated["rows_valid"] == 2, validated
    with wh.read() as con:
        assert con.execute("SELECT count(*) FROM valid_rows WHERE batch_id = ?", [batch]).fetchone()[0] == 2
    # The validation computed beside was not stored: the stage ran again from the warehouse.
    assert added and [(h.mode, h.stage) for h in wh.holds if h.batch == batch][-3:] == [
        ("write", "validate"), ("read", "validate"), ("write", "validate")]


def _large_roster(path: Path, rows: int) -> Path:
    """A one-sheet roster of ``rows`` distinct students in 40 classes. The rows are written straight
    into the sheet's XML as text cells: a writer takes about a minute for 50,000 rows here."""
    rng = random.Random(rows)
    firsts = ["Ana", "Liam", "Noah", "Emma", "Olivia", "Mia", "Lucas", "Ethan", "Sofia", "Jose"]
    lasts = ["Silva", "Garcia", "Nguyen", "Smith", "Johnson", "Brown", "Lee", "Patel", "Kim", "Pena"]
    xml = []
    for r in range(2, rows + 2):
        teacher = rng.randrange(10)
        born = dt.date(2008 + rng.randrange(8), rng.randint(1, 12), rng.randint(1, 28))
        values = ["ABC High School", f"T{teacher}", "Teacher", f"t{teacher}@example.org", f"Period {rng.randint(1, 4)}",
                  "ALGE1", rng.choice(firsts), rng.choice(lasts), f"{r:08d}", "", "", born.isoformat(),
                  str(rng.randint(1, 12))]
        xml.append(f'<row r="{r}">' + "".join(f'<c r="{column}{r}" t="inlineStr"><is><t>{value}</t></is></c>'
                                             for column, value in zip("ABCDEFGHIJKLM", values) if value) + "</row>")
    header = write_roster(path.with_name(path.stem + "-header.xlsx"), [])
    rewrite_sheet_xml(header, header.with_name(path.stem + "-rows.xlsx"), rb"</row></sheetData>",
                      ("</row>" + "".join(xml) + "</sheetData>").encode())
    return rewrite_sheet_xml(header.with_name(path.stem + "-rows.xlsx"), path, rb'<dimension ref="A1:M1"/>',
                             f'<dimension ref="A1:M{rows + 1}"/>'.encode())


def _stage_results(warehouse: Path, batch: int) -> dict:
    with Warehouse(warehouse).read() as con:
        results = {stage: batches.stage_result(con, batch, stage) for stage in ("ingest", "validate", "match", "review",
                                                                               "plan")}
        results["valid_rows"] = con.execute("SELECT count(*) FROM valid_rows WHERE batch_id = ?", [batch]).fetchall()
        results["decisions"] = con.execute("SELECT decision, count(*) FROM match_results WHERE batch_id = ?"
                                           " GROUP BY ALL ORDER BY ALL", [batch]).fetchall()
        results["plan_rows"] = con.execute("SELECT count(*) FROM plan_enrollments WHERE batch_id = ?",
                                           [batch]).fetchall()
    return results


def _no_traceback(code: int, err: str) -> None:
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_other_commands_run_while_a_large_migration_is_read_validated_and_matched(tmp_path: Path, run_cli):
    sheet = _large_roster(tmp_path / "large.xlsx", 50_000)
    warehouse, alone = tmp_path / "w.duckdb", tmp_path / "alone.duckdb"
    for args in (("init",), ("school", "add", "ABC High School"), ("course", "add", "ALGE1=Algebra 1"),
                 ("subscription", "set", "K12", "100000")):
        _no_traceback(*run_cli("--warehouse", str(warehouse), *args)[::2])
    shutil.copy(warehouse, alone)
    migrate = ("migrate", str(sheet), "--term", "Fall 2026", "--subscription", "K12", "--json")
    first = subprocess.Popen([sys.executable, "-m", "rosterflow.cli", "--warehouse", str(warehouse), *migrate],
                             cwd=WORKTREE, env={**os.environ, "PYTHONPATH": str(WORKTREE)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Once the batch is open its sheet is read, validated and matched: meanwhile others get their turn.
        listed: list = []
        while not listed:
            assert first.poll() is None, first.communicate()
            code, out, err = run_cli("--warehouse", str(warehouse), "batch", "list", "--json")
            _no_traceback(code, err)
            listed = json.loads(out)
            time.sleep(0.2)
        batch = listed[0]["batch_id"]
        code, out, err = run_cli("--warehouse", str(warehouse), "review", "list", str(batch), "--json")
        _no_traceback(code, err)
        _no_traceback(*run_cli("--warehouse", str(warehouse), "school", "add", "Late School")[::2])
        code, out, err = run_cli("--warehouse", str(warehouse), "batch", "show", str(batch), "--json")
        _no_traceback(code, err)
        assert "plan" not in json.loads(out)["stages"], "the migration was planned before the other commands ran"
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and "Traceback" not in err, err
    assert json.loads(out)["status"] == "awaiting_approval"
    # The same work alone gives the same results (the school added meanwhile names no row).
    code, out, err = run_cli("--warehouse", str(alone), *migrate)
    _no_traceback(code, err)
    assert _stage_results(warehouse, batch) == _stage_results(alone, json.loads(out)["batch_id"])


def test_a_batch_still_waiting_for_review_is_read_twice_and_not_written(tmp_path: Path):
    # What `rosterflow review decide` does after a decision that leaves items pending: where the batch
    # stands is read once, the review's counts once; nothing runs, nothing is written, and the status
    # read first is the answer (opening the warehouse costs about 0.04 s each time).
    from tasks.pipeline import advance_batch
    from tests.batch_helpers import add_catalog, approve_and_commit, start

    warehouse = tmp_path / "warehouse.duckdb"
    add_catalog(warehouse, ["ABC High School"], {"ALGE1": "Algebra 1"}, "K12", 100)
    year1 = [roster_row(first="Mia", last="Clark", student_id="3", dob="2014-03-09"),
             roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21")]
    approve_and_commit(warehouse, start(warehouse, "registration", [write_roster(tmp_path / "y1.xlsx", year1)],
                                        "Fall 2025", "K12")["batch_id"])
    year2 = [roster_row(first="Mya", last="Clark", student_id=None, dob=None),
             roster_row(first="Owan", last="Price", student_id=None, dob=None)]
    batch = start(warehouse, "migration", [write_roster(tmp_path / "y2.xlsx", year2)], "Fall 2026", "K12")["batch_id"]
    wh = Warehouse(warehouse, who="test")
    progress = advance_batch(wh, batch)
    assert progress["review"]["pending"] == 2
    with wh.read() as con:
        assert progress["status"] == batches.get_batch(con, batch)["status"]
    assert [(h.mode, h.stage) for h in wh.holds][:2] == [("read", "advance"), ("read", "review")]
    assert len(wh.holds) == 3  # the two above and the check of the status just made


def test_a_validation_beside_that_failed_is_done_again_from_the_warehouse(warehouse_path: Path, tmp_path: Path,
                                                                          monkeypatch):
    # What fails beside the staged rows' write is not the end: the stage runs as any other, from
    # the rows recorded (and fails there if it fails again).
    sheet = write_roster(tmp_path / "roster.xlsx", [roster_row(), roster_row(first="Bo", student_id="1002")])
    wh = Warehouse(warehouse_path, who="test")
    batch = _setup(wh, sheet)
    check_rows = tasks.validate.check_rows
    calls: list[int] = []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("beside")
        return check_rows(*args)

    monkeypatch.setattr(tasks.validate, "check_rows", fails_once)
    ingest, validated = ingest_and_validate(wh, batch, [str(sheet)], None, 1000)
    assert ingest["rows_staged"] == 2 and validated["rows_valid"] == 2 and len(calls) == 2, validated
    assert [(h.mode, h.stage) for h in wh.holds if h.batch == batch][-2:] == [("read", "validate"),
                                                                              ("write", "validate")]
