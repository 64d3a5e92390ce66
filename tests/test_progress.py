"""Long stages tell their progress: the plain functions through a callback (counts that never go
down, ending at the total), the command line as bars on a terminal and nothing otherwise."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tasks.credentials import hash_passwords
from tasks.matching import match_rows
from tasks.pipeline import ingest_and_validate, open_batch
from tasks.progress import Ticker
from tests.batch_helpers import add_catalog
from tests.sheets import roster_row, write_roster
from warehouse.handle import Warehouse

ROOT = Path(__file__).resolve().parent.parent
SCHOOL, SUB = "ABC High School", "K12"


def recorder() -> tuple[list[tuple[int, int]], callable]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def assert_counts_up_to(calls: list[tuple[int, int]], total: int) -> None:
    assert calls, "progress was never told"
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done), calls  # increasing, never repeated
    assert all(d <= t for d, t in calls), calls
    assert calls[-1] == (total, total)


def test_a_ticker_tells_about_a_hundred_times_and_always_the_end():
    calls, progress = recorder()
    ticker = Ticker(progress, 10_007)
    for done in range(10_008):
        ticker.tell(done)
    assert_counts_up_to(calls, 10_007)
    assert len(calls) <= 102


def test_hashing_passwords_tells_each_one_hashed():
    calls, progress = recorder()
    hashes = hash_passwords([f"FROG{i}MOON" for i in range(23)], progress)
    assert len(hashes) == 23
    assert_counts_up_to(calls, 23)
    assert calls[0] == (0, 23)


def test_reading_a_roster_tells_the_rows_read(tmp_path: Path):
    warehouse = add_catalog(tmp_path / "w.duckdb", [SCHOOL], {"ALGE1": "Algebra 1"}, SUB, 100)
    rows = [roster_row(first=f"Ana{chr(97 + i)}", student_id=str(1000 + i)) for i in range(12)]
    sheet = write_roster(tmp_path / "roster.xlsx", rows)
    wh = Warehouse(warehouse, who="test")
    with wh.write() as con:
        batch = open_batch(con, "progress", "registration", {"files": [str(sheet)], "term": "Fall 2026",
                                                             "subscription_type": SUB}, "test")
    calls, progress = recorder()
    ingest, _ = ingest_and_validate(wh, batch, [str(sheet)], None, 1_000, progress)
    assert ingest["rows_staged"] == 12
    assert_counts_up_to(calls, 12)
    assert calls[0][0] == 0


def test_matching_tells_the_rows_decided():
    people = {"row_no": [1, 2, 3], "first_name": ["Ana", "Liam", "Noah"], "last_name": ["Silva", "Lee", "Kim"],
              "date_of_birth": [None, None, None], "student_id": ["7", None, None], "ssid": [None] * 3,
              "other_id": [None] * 3}
    incoming = pl.DataFrame(people, schema_overrides={"date_of_birth": pl.Date, "ssid": pl.String,
                                                     "other_id": pl.String})
    existing = incoming.rename({"row_no": "student_key"})
    calls, progress = recorder()
    decisions = match_rows(incoming, existing, progress=progress)
    assert decisions.height == 3
    assert_counts_up_to(calls, 3)


@pytest.fixture(scope="module")
def catalog_and_sheet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("progress-cli")
    warehouse = add_catalog(folder / "w.duckdb", [SCHOOL], {"ALGE1": "Algebra 1"}, SUB, 100)
    sheet = write_roster(folder / "roster.xlsx", [roster_row(first="Mia", student_id="3"),
                                                  roster_row(first="Owen", student_id="4")])
    return warehouse, sheet


def register_args(warehouse: Path, sheet: Path) -> list[str]:
    return [sys.executable, "-m", "rosterflow.cli", "--warehouse", str(warehouse), "register", str(sheet),
            "--term", "Fall 2026", "--subscription", SUB, "--new"]


def cli_env(warehouse: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "ROSTERFLOW_OUTBOX": str(warehouse.parent / "outbox"),
            "ROSTERFLOW_UPLOADS": str(warehouse.parent / "uploads"), "TERM": "xterm", "COLUMNS": "100"}


def test_the_command_line_draws_no_bar_when_its_output_is_not_a_terminal(catalog_and_sheet):
    warehouse, sheet = catalog_and_sheet
    done = subprocess.run(register_args(warehouse, sheet), cwd=ROOT, env=cli_env(warehouse), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rows read" not in done.stderr + done.stdout
    assert "\x1b[" not in done.stderr + done.stdout  # no cursor movement or colour either


def test_the_command_line_draws_bars_at_a_terminal(catalog_and_sheet):
    warehouse, sheet = catalog_and_sheet
    controller, terminal = pty.openpty()
    child = subprocess.Popen(register_args(warehouse, sheet), cwd=ROOT, env=cli_env(warehouse), stdin=terminal,
                             stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 300)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert child.wait(timeout=300) == 0, shown.decode(errors="replace")
    os.close(controller)
    text = shown.decode(errors="replace")
    assert "rows read" in text and "rows matched" in text
    # ... and the bars do not hide the result.
    assert "awaiting_approval" in text or "approval" in text
