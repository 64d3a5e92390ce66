"""The command line on bad input: a clear refusal, a non-zero exit, nothing half-done, no traceback."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rosterflow.cli import main
from tests.sheets import roster_row, write_roster
from warehouse.handle import opened
from warehouse.locks import lock_holder, lock_path

ROOT = Path(__file__).parent.parent
TERM, SUB = "Fall 2026", "K12 - 12 Month"


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def run(run_cli, warehouse: Path, tmp_path: Path):
    """Run one command against the ``warehouse`` fixture's file; return (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        return run_cli("--warehouse", str(warehouse), "--outbox", str(tmp_path / "outbox"), *args)

    return invoke


def _statuses(warehouse: Path) -> list[str]:
    with opened(warehouse) as con:
        return [r[0] for r in con.execute("SELECT status FROM batches ORDER BY batch_id").fetchall()]


# --- 3. an empty path, a pattern that matches nothing, an empty folder ---------------------------

def test_an_empty_path_is_refused_and_does_not_read_the_current_folder(run, warehouse, tmp_path, monkeypatch):
    here = tmp_path / "unrelated"
    here.mkdir()
    write_roster(here / "other.xlsx", [roster_row()])
    monkeypatch.chdir(here)
    run("init")
    code, out, err = run("register", "", "--term", TERM, "--subscription", SUB)
    assert code == 2 and "empty path" in err and "next:" not in out
    assert _statuses(warehouse) == []


@pytest.mark.parametrize("what", ["pattern", "folder"])
def test_a_pattern_or_folder_without_workbooks_fails_the_batch(what, run, warehouse, tmp_path):
    empty = tmp_path / "inbox"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a roster")
    target = str(empty / "*.xlsx") if what == "pattern" else str(empty)
    run("init")
    code, out, err = run("register", target, "--term", TERM, "--subscription", SUB)
    assert code == 2 and "FILE ERROR" in err and "next:" not in out + err
    assert ("matches no roster file" if what == "pattern" else "no roster files") in err
    assert _statuses(warehouse) == ["failed"]


# --- 4. files that cannot be read: the batch fails, kept for the audit ---------------------------

def _text(tmp: Path) -> Path:
    path = tmp / "notes.xlsx"
    path.write_text("School,Student First Name\nABC,Ana\n")
    return path


def _png(tmp: Path) -> Path:
    path = tmp / "picture.xlsx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    return path


def _zip(tmp: Path) -> Path:
    path = tmp / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return path


def _zero(tmp: Path) -> Path:
    path = tmp / "zero.xlsx"
    path.write_bytes(b"")
    return path


def _truncated(tmp: Path) -> Path:
    good = write_roster(tmp / "good.xlsx", [roster_row()])
    path = tmp / "cut.xlsx"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "missing.xlsx"


def _empty_folder(tmp: Path) -> Path:
    folder = tmp / "nothing-here"
    folder.mkdir()
    return folder


UNREADABLE = {"missing file": _missing, "folder without workbooks": _empty_folder, "text named .xlsx": _text,
              "PNG named .xlsx": _png, "zip named .xlsx": _zip, "zero-byte .xlsx": _zero, "truncated .xlsx": _truncated}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_unreadable_file_fails_the_batch_with_its_error_and_fix(case, run, warehouse, tmp_path):
    bad = UNREADABLE[case](tmp_path)
    good = write_roster(tmp_path / "fine.xlsx", [roster_row()])
    run("init")
    code, out, err = run("register", str(good), str(bad), "--term", TERM, "--subscription", SUB)
    assert code == 2, (out, err)
    assert "next:" not in out + err and "held" not in out
    assert "FILE ERROR" in err and bad.name in err and "failed" in err
    assert _statuses(warehouse) == ["failed"]
    # Kept for the audit with its file issue, hidden from the list unless --all.
    code, out, _ = run("batch", "list", "--json")
    assert code == 0 and json.loads(out) == []
    assert [b["status"] for b in json.loads(run("batch", "list", "--all", "--json")[1])] == ["failed"]
    issues = json.loads(run("batch", "issues", "1", "--json")[1])
    assert any(i["file"].endswith(bad.name) and i["severity"] == "error" for i in issues)
    # Nothing further runs on it.
    code, _, err = run("plan", "1")
    assert code == 2 and "failed" in err
    code, _, err = run("batch", "resume", "1")
    assert code == 2 and "cannot be resumed" in err


def test_an_unknown_sheet_fails_the_batch(run, warehouse, tmp_path):
    good = write_roster(tmp_path / "fine.xlsx", [roster_row()])
    run("init")
    code, out, err = run("register", str(good), "--sheet", "Nope", "--term", TERM, "--subscription", SUB)
    assert code == 2 and "FILE ERROR fine.xlsx" in err and "next:" not in out
    assert _statuses(warehouse) == ["failed"]


# --- 5. a batch that does not exist ---------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["batch", "issues", "999"], ["batch", "show", "999"], ["batch", "resume", "999"],
    ["review", "list", "999"], ["review", "export", "999", "--xlsx", "{tmp}/queue.xlsx"],
    ["messages", "list", "--batch", "999"], ["uploads", "999"], ["plan", "999"],
    ["restore", "--batch", "999", "--by", "Pat Admin"], ["batch", "issues", "999", "--xlsx", "{tmp}/report.xlsx"],
])
def test_a_batch_that_does_not_exist_is_named_and_nothing_is_written(command, run, tmp_path):
    run("init")
    code, out, err = run(*[part.replace("{tmp}", str(tmp_path)) for part in command])
    assert code == 2 and "No batch 999: list batches with `rosterflow batch list`." in err
    assert out == "" and not list(tmp_path.glob("*.xlsx"))


# --- 6. counts ------------------------------------------------------------------------------------

def test_a_count_above_32_bits_is_stored(run):
    code, _, err = run("subscription", "set", "Huge", "2147483648")
    assert code == 0, err
    assert json.loads(run("subscription", "list", "--json")[1])[0]["available"] == 2147483648


@pytest.mark.parametrize("value, message", [("-5", "negative"), ("1.5", "not a whole number"), ("lots", "not a whole number"),
                                            ("99999999999999999999999", "check the number")])
def test_a_bad_count_is_a_clear_message(value, message, run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["subscription", "set", "Huge", value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# --- 7. a warehouse that cannot be used -----------------------------------------------------------

def _real_warehouse(path: Path) -> bytes:
    with opened(path) as con:
        con.execute("CREATE TABLE filler AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(100000)")
    return path.read_bytes()


def _corrupt(kind: str, path: Path, tmp: Path) -> None:
    if kind == "cut":
        data = _real_warehouse(tmp / "real.duckdb")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "cut inside its header":
        data = _real_warehouse(tmp / "real.duckdb")
        path.write_bytes(data[:5000])
    elif kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(os.urandom(50_000))
    elif kind == "text":
        path.write_text("this is a note, not a database\n" * 50)
    elif kind == ".xlsx":
        path.write_bytes(write_roster(tmp / "roster.xlsx", [roster_row()]).read_bytes())


@pytest.mark.parametrize("kind", ["cut", "cut inside its header", "zero bytes", "random bytes", "text", ".xlsx"])
def test_a_corrupt_warehouse_is_one_sentence_and_is_not_overwritten(kind, run, warehouse, tmp_path):
    _corrupt(kind, warehouse, tmp_path)
    before = warehouse.read_bytes()
    for command in (["batch", "list"], ["school", "add", "ABC High School"], ["init"]):
        code, out, err = run(*command)
        assert code == 2 and out == "", (kind, command, out)
        assert err.startswith("error: ") and str(warehouse) in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
    assert warehouse.read_bytes() == before
    assert not warehouse.with_name(warehouse.name + ".wal").exists()
    # --debug shows the traceback instead.
    with pytest.raises(Exception):
        main(["--warehouse", str(warehouse), "batch", "list", "--debug"])


def _child(args: list[str], preexec=None, prefix: list[str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*(prefix or []), sys.executable, "-m", "rosterflow.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def test_a_read_only_folder_is_one_sentence(tmp_path):
    prefix = []
    if os.geteuid() == 0:
        # Root writes anywhere: the command runs without the capabilities that bypass file modes.
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    folder = tmp_path / "readonly"
    folder.mkdir()
    warehouse = folder / "w.duckdb"
    with opened(warehouse):
        pass
    folder.chmod(0o555)
    warehouse.chmod(0o444)
    before = warehouse.read_bytes()
    try:
        child = _child(["--warehouse", str(warehouse), "school", "add", "ABC High School"], prefix=prefix)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 2, (out, err)
        assert err.startswith("error: ") and str(warehouse) in err and "Traceback" not in err
        assert "cannot be written" in err and len(err.strip().splitlines()) == 1, err
        # A command that only reads opens the warehouse read-only, so it still works.
        child = _child(["--warehouse", str(warehouse), "batch", "list"], prefix=prefix)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0 and "No batches yet." in out, (out, err)
        assert warehouse.read_bytes() == before
    finally:
        folder.chmod(0o755)
        warehouse.chmod(0o644)


@pytest.mark.slow
def test_a_full_disk_is_one_sentence_and_loses_nothing(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with opened(warehouse):
        pass
    with opened(warehouse) as con:
        schools_before = con.execute("SELECT count(*) FROM schools").fetchall()
    limit = 64 * 1024

    def full_disk():
        # No file this process writes may grow past 64 KiB: writing fails with EFBIG, as on a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    names = [f"School number {i} with a long name to fill the log {'x' * 300}" for i in range(600)]
    child = _child(["--warehouse", str(warehouse), "school", "add", *names], preexec=full_disk)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 2, (out, err[-2000:])
    assert err.startswith("error: ") and str(warehouse) in err and "Traceback" not in err
    assert "no room" in err and len(err.strip().splitlines()) == 1, err
    with opened(warehouse) as con:
        assert con.execute("SELECT count(*) FROM schools").fetchall() == schools_before


# --- 8. a batch whose process was killed ---------------------------------------------------------

@pytest.mark.slow
def test_a_killed_registration_is_interrupted_and_resume_finishes_it(run, warehouse, tmp_path):
    run("init")
    run("school", "add", "ABC High School")
    run("course", "add", "ALGE1=Algebra 1")
    run("subscription", "set", SUB, "100000")
    rows = [roster_row(first=f"Kid{i}", last=f"Family{i}", student_id=str(100000 + i)) for i in range(9_000)]
    sheet = write_roster(tmp_path / "big.xlsx", rows)
    child = _child(["--warehouse", str(warehouse), "register", str(sheet), "--term", TERM, "--subscription", SUB])
    # The batch row exists once the command holds its lock; kill it then, in the middle of reading.
    lock = lock_path(warehouse, 1)
    while lock_holder(warehouse, 1) is None:
        assert child.poll() is None, child.communicate()
    assert "register" in lock_holder(warehouse, 1)["who"]
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert lock.exists() and lock_holder(warehouse, 1) is None

    code, out, _ = run("batch", "list", "--json")
    assert [b["status"] for b in json.loads(out)] == ["interrupted"]
    assert "batch resume N" in run("batch", "list")[1]
    # Registering the same files again points at the interrupted batch instead of starting another.
    code, _, err = run("register", str(sheet), "--term", TERM, "--subscription", SUB)
    assert code == 2 and "rosterflow batch resume 1" in err
    assert len(json.loads(run("batch", "list", "--json")[1])) == 1

    code, out, err = run("batch", "resume", "1", "--json")
    assert code == 0, err
    finished = json.loads(out)
    assert finished["status"] == "awaiting_approval" and finished["ingest"]["rows_staged"] == 9_000
    with opened(warehouse) as con:
        assert con.execute("SELECT count(*) FROM staged_rows WHERE batch_id = 1").fetchall() == [(9_000,)]
    assert [b["status"] for b in json.loads(run("batch", "list", "--json")[1])] == ["awaiting_approval"]
    # With --new, another batch of the same files starts anyway (none is interrupted now, too).
    code, _, _ = run("register", str(sheet), "--term", TERM, "--subscription", SUB, "--new", "--json")
    assert code == 0


def test_a_batch_being_worked_on_is_not_interrupted_and_cannot_be_resumed_twice(run, warehouse, tmp_path):
    from warehouse.locks import batch_lock

    run("init")
    run("migrate", "--collect", "--term", TERM, "--subscription", SUB)
    with opened(warehouse) as con:
        con.execute("UPDATE batches SET status = 'open'")
    with batch_lock(warehouse, 1, "flow run abc"):
        assert [b["status"] for b in json.loads(run("batch", "list", "--json")[1])] == ["open"]
        code, _, err = run("batch", "resume", "1")
        assert code == 2 and "Batch 1 is being worked on by flow run abc" in err
    assert [b["status"] for b in json.loads(run("batch", "list", "--json")[1])] == ["interrupted"]
