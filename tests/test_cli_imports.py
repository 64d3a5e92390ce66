"""Commands that start no flow and read no roster import nothing heavy they do not use.

Every `rosterflow` command pays its imports before it does anything: Prefect alone took 1.7 s, pandera
0.6 s, polars 0.35 s, DuckDB 0.25 s. Each command here runs for real, in a fresh interpreter, against a
real warehouse, and reports the modules it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch_helpers import add_catalog, approve_and_commit, start
from tests.sheets import roster_row, write_roster
from warehouse.handle import opened

ROOT = Path(__file__).resolve().parent.parent
SCHOOL, SUB = "ABC High School", "K12"

# Run one command through the real entry point, then write its exit code and the top-level
# packages it loaded to the file named first.
PROBE = """
import json, sys
from rosterflow.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "packages": sorted({name.split(".")[0] for name in sys.modules})}, out)
"""

# What only flows (Prefect, pydantic), reading and validating rosters (pandera, fastexcel, xlrd),
# matching (polars-ds), writing workbooks (xlsxwriter) or drawing progress bars at a terminal (rich) need.
HEAVY = {"prefect", "pydantic", "pandera", "fastexcel", "xlrd", "polars_ds", "xlsxwriter", "flows", "rich"}
# `--help` opens no warehouse and builds no frame.
WAREHOUSE = {"duckdb", "polars"}


@pytest.fixture(scope="module")
def review_queue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A committed registration, then a migration whose two rows without IDs wait for review."""
    folder = tmp_path_factory.mktemp("imports")
    warehouse = folder / "warehouse.duckdb"
    add_catalog(warehouse, [SCHOOL], {"ALGE1": "Algebra 1"}, SUB, 100)
    year1 = [roster_row(first="Mia", last="Clark", student_id="3", dob="2014-03-09"),
             roster_row(first="Owen", last="Price", student_id="4", dob="2012-07-21")]
    approve_and_commit(warehouse, start(warehouse, "registration", [write_roster(folder / "y1.xlsx", year1)],
                                        "Fall 2025", SUB)["batch_id"])
    # No birth date and no ID, a first name a letter off: names alone, and not even the same ones
    # (the very name, nobody else's, at the student's school would be linked).
    year2 = [roster_row(first="Mya", last="Clark", student_id=None, dob=None),
             roster_row(first="Owan", last="Price", student_id=None, dob=None)]
    progress = start(warehouse, "migration", [write_roster(folder / "y2.xlsx", year2)], "Fall 2026", SUB)
    assert progress["match"]["review"] == 2
    return warehouse, progress["batch_id"]


def loaded_by(tmp_path: Path, *args: str) -> set[str]:
    """Run `rosterflow ARGS` in a fresh interpreter; return the top-level packages it imported."""
    record = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(record), *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(record.read_text())
    assert result["code"] == 0, (args, done.stdout, done.stderr)
    return set(result["packages"])


def test_help_and_listing_batches_import_nothing_heavy(review_queue, tmp_path: Path):
    warehouse, _ = review_queue
    assert loaded_by(tmp_path, "--help") & (HEAVY | WAREHOUSE) == set()
    # A short listing reads rows, not frames.
    assert loaded_by(tmp_path, "--warehouse", str(warehouse), "batch", "list") & (HEAVY | {"polars"}) == set()


def test_reviewing_to_the_plan_imports_nothing_heavy(review_queue, tmp_path: Path):
    warehouse, batch_id = review_queue
    at = ["--warehouse", str(warehouse)]
    assert loaded_by(tmp_path, *at, "review", "list", str(batch_id)) & (HEAVY | {"polars"}) == set()
    with opened(warehouse) as con:
        items = [r[0] for r in con.execute("SELECT review_id FROM review_items WHERE batch_id = ? ORDER BY review_id",
                                           [batch_id]).fetchall()]
    # The first decision leaves one pending (no frame needed); the last one closes the review and makes
    # the plan, which is computed with polars.
    decide = ["--action", "link", "--candidate", "1", "--reviewer", "Rita Reviewer"]
    assert loaded_by(tmp_path, *at, "review", "decide", str(batch_id), str(items[0]), *decide) \
        & (HEAVY | {"polars"}) == set()
    assert loaded_by(tmp_path, *at, "review", "decide", str(batch_id), str(items[1]), *decide) & HEAVY == set()
    with opened(warehouse) as con:
        assert con.execute("SELECT status FROM batches WHERE batch_id = ?", [batch_id]).fetchone()[0] \
            == "awaiting_approval"
    # A batch already planned is shown as the warehouse recorded it: read with DuckDB, without polars
    # (whose import took longer than the rest of the command).
    assert loaded_by(tmp_path, *at, "plan", str(batch_id)) & (HEAVY | {"polars", "pyarrow"}) == set()
    assert loaded_by(tmp_path, *at, "plan", str(batch_id), "--json") & (HEAVY | {"polars", "pyarrow"}) == set()


def test_the_reader_can_be_started_before_a_commands_own_imports():
    # `register` and `migrate` start the reader's child process first, so that it imports the parser
    # while the command imports the rest: the module that starts it must import neither itself.
    probe = ("import json, sys; import tasks.isolated_read; "
             "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert set(json.loads(done.stdout)) & (HEAVY | WAREHOUSE | {"pyarrow", "numpy"}) == set()


def test_ingest_and_validation_leave_pyarrow_out(tmp_path: Path):
    # Frames reach DuckDB through the Arrow C stream interface (warehouse.connection.ArrowStream) and
    # the catalog is read without .pl(): pyarrow (about 45 MB) is not in the memory of a roster's
    # ingest and validation.
    sheet = write_roster(tmp_path / "roster.xlsx", [roster_row(), roster_row(first="Bo", student_id="1002")])
    probe = """
import json, sys
from pathlib import Path
from tasks.pipeline import ingest_and_validate, open_batch
from warehouse import catalog
from warehouse.handle import Warehouse
wh = Warehouse(Path(sys.argv[1]), who="probe")
with wh.write() as con:
    catalog.add_schools(con, ["ABC High School"], "probe")
    catalog.add_courses(con, {"ALGE1": "Algebra 1"}, "probe")
    batch = open_batch(con, "k", "registration", {"files": [sys.argv[2]], "term": "T", "subscription_type": "S"}, "probe")
ingested, validated = ingest_and_validate(wh, batch, [sys.argv[2]], None, 1000)
print(json.dumps({"valid": validated["rows_valid"], "pyarrow": "pyarrow" in sys.modules}))
"""
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "w.duckdb"), str(sheet)], cwd=ROOT,
                          capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"valid": 2, "pyarrow": False}, done.stderr
