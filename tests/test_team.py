"""A team at once: several commands and flow runs on one warehouse, none failing for another.

The commands run as separate processes, as people start them: each must wait its turn for the
warehouse, end with exit 0 or a documented refusal, and leave the warehouse as the same work done
one after another would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rosterflow.sample_district import HEADER, SampleDistrict
from tasks.exports import write_xlsx
from tests.sheets import roster_row, write_roster
from warehouse import requests
from warehouse.handle import opened

ROOT = Path(__file__).parent.parent
APPROVER = "Pat Admin"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _start(warehouse: Path, *args: str, **env: str) -> subprocess.Popen:
    """Start one `rosterflow` command in its own process."""
    return subprocess.Popen([sys.executable, "-m", "rosterflow.cli", "--warehouse", str(warehouse),
                             "--outbox", str(warehouse.parent / "outbox"), *args],
                            cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cli(warehouse: Path, *args: str, **env: str) -> tuple[int, str, str]:
    child = _start(warehouse, *args, **env)
    out, err = child.communicate(timeout=600)
    return child.returncode, out, err


def _ok(warehouse: Path, *args: str) -> str:
    """Run one command in this process (preparing and replaying; the team's commands run as
    processes of their own); return its output."""
    from rosterflow.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--warehouse", str(warehouse), "--outbox", str(warehouse.parent / "outbox"), *args])
    assert code == 0, (args, out.getvalue(), err.getvalue())
    return out.getvalue()


def approve_args(batch_id: int, plan: dict) -> list[str]:
    """The arguments of `approve` for a plan just shown (the approver's secret is in the environment)."""
    return ["approve", str(batch_id), "--approver", APPROVER, "--plan", plan["summary"]["version"],
            "--remove-count", str(plan["summary"]["removals"])]


def _lincoln_sheet(path: Path) -> Path:
    """A registration of 24 students at a school of their own."""
    rows = [roster_row(first=f"Kid{i:02d}", last=f"Lincolnson{i:02d}", student_id=f"77{i:04d}",
                       dob=f"2013-{1 + i % 12:02d}-{1 + i % 27:02d}", school="Lincoln Elementary",
                       email="mlee@example.org", teacher=("Mary", "Lee"), period=f"Period {1 + i % 3}")
            for i in range(24)]
    return write_roster(path, rows)


def _with_dates_fixed(source: Path, target: Path) -> Path:
    """A copy of a sample migration sheet whose birth dates typed as text (m/d/Y) are real dates."""
    sheet = pl.read_excel(source, engine="calamine", infer_schema_length=0)
    column = HEADER["date_of_birth"]
    fixed = sheet.with_columns(pl.coalesce(pl.col(column).str.to_date("%m/%d/%Y", strict=False).cast(pl.String),
                                           pl.col(column)).alias(column))
    return write_xlsx(target, {"Roster": fixed})


def _prepare(warehouse: Path, district: SampleDistrict, lincoln: Path, monkeypatch) -> dict:
    """The state the team starts from: an approver (their secret in the environment, for every
    command started after), Summerwind registered and committed, its migration waiting for review
    (batch 2), and Lincoln's registration planned and waiting for approval (batch 3)."""
    high, middle, summerwind = district.registration_files
    _ok(warehouse, "init")
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", json.loads(_ok(warehouse, "approver", "add", APPROVER,
                                                                    "--json"))["secret"])
    for school in (*district.schools, "Lincoln Elementary"):
        _ok(warehouse, "school", "add", school)
    for code, name in district.courses.items():
        _ok(warehouse, "course", "add", code, name)
    _ok(warehouse, "subscription", "set", district.subscription_type, "1000")
    _ok(warehouse, "register", str(summerwind), "--term", district.registration_term,
        "--subscription", district.subscription_type)
    plan = json.loads(_ok(warehouse, "plan", "1", "--json"))
    _ok(warehouse, *approve_args(1, plan))
    # Summerwind's sheet as its teachers corrected it: with its invalid row the school would be held,
    # and a held school's rows are not reviewed until it is corrected.
    summerwind_migration = _with_dates_fixed(district.migration_files[2], warehouse.parent / "summerwind-fixed.xlsx")
    migration = json.loads(_ok(warehouse, "migrate", str(summerwind_migration), "--term", district.migration_term,
                                "--subscription", district.subscription_type, "--json"))
    assert migration["batch_id"] == 2 and migration["status"] == "in_review", migration
    _ok(warehouse, "register", str(lincoln), "--term", district.migration_term, "--subscription", district.subscription_type)
    lincoln_plan = json.loads(_ok(warehouse, "plan", "3", "--json"))
    items = json.loads(_ok(warehouse, "review", "list", "2", "--json"))
    return {"lincoln_plan": lincoln_plan, "items": [item["review_id"] for item in items]}


def _team_commands(district: SampleDistrict, prepared: dict, export_to: Path) -> list[list[str]]:
    """What the team does at once: two registrations, a migration, reviewers listing, deciding and
    exporting, a plan and an approval."""
    high, middle, _ = district.registration_files
    commands = [
        ["register", str(high), "--term", district.migration_term, "--subscription", district.subscription_type],
        ["register", str(middle), "--term", district.migration_term, "--subscription", district.subscription_type],
        ["migrate", str(district.migration_files[0]), "--term", district.migration_term,
         "--subscription", district.subscription_type],
        ["review", "list", "2"],
        ["review", "export", "2", "--xlsx", str(export_to)],
        ["plan", "3"],
        approve_args(3, prepared["lincoln_plan"]),
    ]
    for item in prepared["items"]:
        commands.append(["review", "decide", "2", str(item), "--action", "new", "--reviewer", "Rita Reviewer"])
    return commands


def _counts(warehouse: Path) -> dict:
    """What the warehouse holds, independent of the order the work happened in."""
    with opened(warehouse, read_only=True) as con:
        counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                  for table in ("students", "teachers", "classes", "enrollments", "subscription_usage", "commit_markers",
                                "issued_credentials")}
        counts["batches"] = sorted(con.execute("SELECT mode, status FROM batches").fetchall())
        counts["decisions"] = sorted(con.execute(
            "SELECT status, action FROM review_items WHERE batch_id = 2").fetchall())
        counts["commits_per_batch"] = con.execute(
            "SELECT batch_id, count(*) FROM audit_log WHERE action = 'batch.commit' GROUP BY batch_id ORDER BY batch_id"
        ).fetchall()
        counts["subscriptions_left"] = con.execute("SELECT sum(available) FROM subscriptions").fetchall()[0][0]
    return counts


@pytest.fixture(scope="module")
def prepared_start(district, tmp_path_factory) -> tuple[Path, dict, str]:
    """The state the team starts from (see ``_prepare``), made once for the module; returns the
    warehouse, what was prepared and the approver's secret. Each test works on a copy."""
    folder = tmp_path_factory.mktemp("team")
    with pytest.MonkeyPatch.context() as env:
        prepared = _prepare(folder / "w.duckdb", district, _lincoln_sheet(folder / "lincoln.xlsx"), env)
        secret = os.environ["ROSTERFLOW_APPROVER_SECRET"]
    return folder / "w.duckdb", prepared, secret


def _copy_of_start(prepared_start: tuple[Path, dict, str], warehouse: Path, monkeypatch) -> dict:
    """Copy the prepared warehouse to ``warehouse``, give commands the approver's secret, and return
    what was prepared."""
    template, prepared, secret = prepared_start
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, warehouse)
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", secret)
    return prepared


@pytest.mark.slow
def test_a_team_working_at_once_ends_as_the_same_work_done_one_after_another(district, prepared_start, tmp_path,
                                                                             monkeypatch):
    together = tmp_path / "together" / "w.duckdb"
    prepared = _copy_of_start(prepared_start, together, monkeypatch)
    assert prepared["items"], "the migration should have rows to review"
    start = tmp_path / "start.duckdb"
    shutil.copy(together, start)
    commands = _team_commands(district, prepared, tmp_path / "together" / "review.xlsx")
    assert len(commands) >= 6
    children = [(command, _start(together, *command)) for command in commands]
    finished = []
    for command, child in children:
        out, err = child.communicate(timeout=900)
        finished.append((command, child.returncode, out, err))
    for command, _, out, err in finished:
        assert "Traceback" not in err, (command, err)
    for command, code, out, err in finished:
        # `plan 3` may run after the approval committed the batch; everything else must succeed.
        assert code == 0, (command, out, err)

    one_by_one = tmp_path / "one-by-one" / "w.duckdb"
    one_by_one.parent.mkdir()
    shutil.copy(start, one_by_one)
    for command in _team_commands(district, prepared, tmp_path / "one-by-one" / "review.xlsx"):
        _ok(one_by_one, *command)

    assert _counts(together) == _counts(one_by_one)
    counts = _counts(together)
    assert counts["commits_per_batch"] == [(1, 1), (3, 1)]  # each approved batch committed exactly once
    assert all(status == "decided" for status, _ in counts["decisions"])


@pytest.mark.slow
def test_a_decision_made_while_the_warehouse_stays_busy_is_kept_and_applied_once(prepared_start, tmp_path,
                                                                                monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    prepared = _copy_of_start(prepared_start, warehouse, monkeypatch)
    item = prepared["items"][0]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, sys\nfrom pathlib import Path\nfrom warehouse.handle import Warehouse\n"
        f"with Warehouse(Path({str(warehouse)!r}), who='a long migration').write():\n"
        "    print('holding', flush=True)\n    time.sleep(30)\n")], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, out, err = _cli(warehouse, "review", "decide", "2", str(item), "--action", "new", "--reviewer", "Rita",
                              "--request-id", "rita-1", ROSTERFLOW_BUSY_TIMEOUT="1")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "Traceback" not in err, err
    assert "a long migration" in err and "request rita-1" in err and "rosterflow inbox apply" in err
    assert [r.request_id for r in requests.pending(warehouse)] == ["rita-1"]
    listed = json.loads(_ok(warehouse, "inbox", "list", "--json"))
    assert [(r["request"], r["batch"], r["by"]) for r in listed] == [("rita-1", 2, "Rita")]

    _ok(warehouse, "inbox", "apply")
    assert requests.pending(warehouse) == []
    # The same request again (a script retrying) is applied once.
    again = json.loads(_ok(warehouse, "review", "decide", "2", str(item), "--action", "new", "--reviewer", "Rita",
                           "--request-id", "rita-1", "--json"))
    assert again["already_applied"] is True
    with opened(warehouse, read_only=True) as con:
        decided = con.execute("SELECT status, action, reviewer FROM review_items WHERE review_id = ?", [item]).fetchall()
        audited = con.execute("SELECT count(*) FROM audit_log WHERE action = 'review.decide' AND entity_key = ?",
                              [str(item)]).fetchall()
    assert decided == [("decided", "new", "Rita")] and audited == [(1,)]


def test_review_items_keep_their_numbers_when_another_commit_makes_the_batch_match_again(prepared_start, tmp_path,
                                                                                        monkeypatch):
    """A reviewer lists the items, another batch commits (so this one is matched again before its
    next step), and the reviewer decides by the numbers listed: they still name the same rows."""
    warehouse = tmp_path / "w.duckdb"
    prepared = _copy_of_start(prepared_start, warehouse, monkeypatch)
    listed = {item["review_id"]: (item["file_name"], item["excel_row"])
              for item in json.loads(_ok(warehouse, "review", "list", "2", "--json"))}
    _ok(warehouse, *approve_args(3, prepared["lincoln_plan"]))  # batch 3 commits: batch 2 is out of date
    first, *others = prepared["items"]
    _ok(warehouse, "review", "decide", "2", str(first), "--action", "new", "--reviewer", "Rita")  # re-matches
    with opened(warehouse, read_only=True) as con:
        rematched = con.execute("SELECT s.finished_at > m.committed_at FROM batch_stages s, commit_markers m"
                                " WHERE s.batch_id = 2 AND s.stage = 'match' AND m.batch_id = 3").fetchall()
    relisted = {item["review_id"]: (item["file_name"], item["excel_row"])
                for item in json.loads(_ok(warehouse, "review", "list", "2", "--all", "--json"))}
    assert relisted == listed, "the same rows keep the same item numbers"
    for item in others:
        _ok(warehouse, "review", "decide", "2", str(item), "--action", "new", "--reviewer", "Rita")
    assert rematched == [(True,)], "batch 2 was matched again after batch 3 committed"
