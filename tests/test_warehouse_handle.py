"""The warehouse handle: several processes on one warehouse wait their turn instead of failing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from warehouse.handle import Warehouse, WarehouseBusy, current_holders, locks_dir

ROOT = Path(__file__).parent.parent


def _hold_in_child(warehouse: Path, mode: str, seconds: float, ready: Path) -> subprocess.Popen:
    """Another process that holds the warehouse (reading or writing) for ``seconds``, touching
    ``ready`` once it holds it."""
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from warehouse.handle import Warehouse
        wh = Warehouse(Path({str(warehouse)!r}), who="the nightly migration")
        with getattr(wh, {mode!r})(batch=7, stage="ingest") as con:
            con.execute("SELECT 1").fetchall()
            Path({str(ready)!r}).touch()
            time.sleep({seconds})
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, "the holding process ended early"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return child


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    with Warehouse(path).write() as con:
        con.execute("CREATE TABLE notes (n INTEGER)")
    return path


def test_a_writer_waits_for_another_process_and_says_who_holds_it(warehouse, tmp_path):
    child = _hold_in_child(warehouse, "write", 2.0, tmp_path / "ready")
    notices: list[str] = []
    wh = Warehouse(warehouse, who="`rosterflow school add`", on_wait=notices.append)
    started = time.monotonic()
    with wh.write() as con:
        waited = time.monotonic() - started
        con.execute("INSERT INTO notes VALUES (1)")
    assert child.wait(30) == 0
    assert waited > 0.5, "the writer did not wait for the other process"
    assert notices and "the nightly migration" in notices[0] and "batch 7" in notices[0] \
        and "stage ingest" in notices[0] and "writing" in notices[0], notices
    with wh.read() as con:
        assert con.execute("SELECT count(*) FROM notes").fetchall() == [(1,)]


def test_readers_share_the_warehouse_and_a_writer_waits_for_them(warehouse, tmp_path):
    child = _hold_in_child(warehouse, "read", 2.0, tmp_path / "ready")
    reader = Warehouse(warehouse, busy_timeout=0.5)
    with reader.read() as con:  # no wait: reading is shared
        assert con.execute("SELECT count(*) FROM notes").fetchall() == [(0,)]
    holders = current_holders(warehouse)
    assert [h["mode"] for h in holders] == ["read"] and holders[0]["who"] == "the nightly migration"
    with pytest.raises(WarehouseBusy) as refused:
        with Warehouse(warehouse, busy_timeout=0.5).write():
            pass
    assert "the nightly migration" in str(refused.value) and "nothing was done" in str(refused.value)
    with Warehouse(warehouse).write() as con:  # waits for the reader, then writes
        con.execute("INSERT INTO notes VALUES (2)")
    assert child.wait(30) == 0


def test_a_busy_warehouse_after_the_timeout_is_one_sentence_and_exit_2(warehouse, tmp_path):
    child = _hold_in_child(warehouse, "write", 8.0, tmp_path / "ready")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ROSTERFLOW_BUSY_TIMEOUT": "1"}
        done = subprocess.run([sys.executable, "-m", "rosterflow.cli", "--warehouse", str(warehouse), "batch", "list"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        child.kill()
        child.wait()
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The warehouse") and "still busy after 1.0 s" in last
    assert "the nightly migration" in last and "ROSTERFLOW_BUSY_TIMEOUT" in last
    assert "Waiting for the warehouse" in done.stderr  # it said who it waited for while waiting


def test_a_bad_busy_timeout_setting_is_refused_clearly(warehouse):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROSTERFLOW_BUSY_TIMEOUT": "ten minutes"}
    done = subprocess.run([sys.executable, "-m", "rosterflow.cli", "--warehouse", str(warehouse), "batch", "list"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ROSTERFLOW_BUSY_TIMEOUT='ten minutes' is not a number of seconds" in done.stderr


def test_a_killed_holder_leaves_nothing_held(warehouse, tmp_path):
    child = _hold_in_child(warehouse, "write", 60.0, tmp_path / "ready")
    assert [h["who"] for h in current_holders(warehouse)] == ["the nightly migration"]
    child.kill()
    child.wait()
    assert current_holders(warehouse) == []  # its record is left, but nobody holds it
    with Warehouse(warehouse, busy_timeout=2).write() as con:
        con.execute("INSERT INTO notes VALUES (3)")
    assert not list(locks_dir(warehouse).glob("holder-*.json"))  # the dead record was cleared


def test_a_waiting_writer_goes_before_readers_that_arrive_after_it(warehouse, tmp_path):
    """A steady stream of readers must not starve a writer: readers arriving while a writer waits
    queue behind it."""
    child = _hold_in_child(warehouse, "read", 3.0, tmp_path / "ready")
    code = textwrap.dedent(f"""
        from pathlib import Path
        from warehouse.handle import Warehouse
        with Warehouse(Path({str(warehouse)!r}), who="writer").write() as con:
            con.execute("INSERT INTO notes VALUES (4)")
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # The writer is waiting for the first reader once it holds the turnstile (a fixed pause was not
    # enough on a busy machine, where starting the writer's interpreter can take longer).
    turnstile = os.open(locks_dir(warehouse) / "turnstile.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(turnstile, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never waited"
            time.sleep(0.02)
    finally:
        os.close(turnstile)
    with Warehouse(warehouse).read() as con:  # arrives after the writer: sees its row
        seen = con.execute("SELECT count(*) FROM notes WHERE n = 4").fetchall()
    assert writer.wait(30) == 0 and child.wait(30) == 0
    assert seen == [(1,)]


def test_the_same_handle_can_be_entered_again_but_not_upgraded(warehouse):
    wh = Warehouse(warehouse)
    with wh.write() as outer, wh.read() as inner:
        assert inner is outer
    with wh.read():
        with pytest.raises(RuntimeError, match="only to read"):
            with wh.write():
                pass
        with pytest.raises(RuntimeError, match="another handle"):
            with Warehouse(warehouse).read():
                pass
    assert [hold.mode for hold in wh.holds] == ["write", "read"]


def test_reading_a_warehouse_of_an_older_schema_upgrades_it_first_and_keeps_the_plan_rows(tmp_path: Path):
    # A warehouse made before match results and plan rows lost their primary-key index (migrations
    # 1-12), with a row in each: a read upgrades it (a read-only connection cannot) and reads on.
    from tests.batch_helpers import warehouse_at_version
    from warehouse.connection import migration_scripts

    path = tmp_path / "old.duckdb"
    con = warehouse_at_version(path, below=13)
    try:
        con.execute("INSERT INTO match_results VALUES (1, 1, 'matched', 5, 'student_id', 100.0, 'id equal')")
        con.execute("INSERT INTO plan_enrollments (batch_id, row_no, school_id, teacher_email, teacher_first,"
                    " teacher_last, teacher_is_new, term, course_code, student_action, first_name, last_name,"
                    " already_enrolled) VALUES (1, 1, 1, 't@x.org', 'T', 'Eacher', false, 'Fall', 'ALGE1',"
                    " 'existing', 'Ana', 'Silva', false)")
    finally:
        con.close()
    wh = Warehouse(path)
    with wh.read() as con:
        assert [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] \
            == [version for version, _, _ in migration_scripts()]
        assert con.execute("SELECT row_no, decision, student_key FROM match_results").fetchall() == [(1, "matched", 5)]
        assert con.execute("SELECT row_no, first_name FROM plan_enrollments").fetchall() == [(1, "Ana")]
    assert [(hold.mode, hold.stage) for hold in wh.holds] == [("write", "upgrade"), ("read", None)]
    with wh.read():
        pass
    assert [hold.mode for hold in wh.holds] == ["write", "read", "read"]
