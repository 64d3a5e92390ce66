"""The flows on a real (temporary) Prefect server: pause for review, pause for approval, commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.flow_runs import resume_flow_run

from flows.config import (BatchRunConfig, MigrationConfig, MigrationForm, MigrationTuning, RegistrationConfig,
                          RegistrationForm, RegistrationTuning)
from flows.migration import yearly_migration
from flows.pipeline import review_description
from flows.registration import batch_registration
from tasks.temporary import create_temporary_student
from tests.batch_helpers import APPROVER, approver_secret
from warehouse.handle import opened

pytestmark = pytest.mark.slow


def _approval(warehouse: Path, **answers) -> dict:
    """The approval form's answers from the registered approver Pat Admin (the plan version is the
    one the form was prefilled with)."""
    with opened(warehouse) as con:
        secret = approver_secret(con)
    return {"approver": APPROVER, "approver_secret": secret, "approve": True, **answers}


def _schema(flow_run_id: str) -> dict:
    """The JSON schema of the form the run waits for."""
    state = _run_state(flow_run_id)
    with get_client(sync_client=True) as client:
        return json.loads(client.read_flow_run_input(flow_run_id, state.state_details.run_input_keyset["schema"]))


def _as_the_ui_sends(flow_run_id: str, answers: dict) -> dict:
    """``answers`` with every other field of the form at its prefilled value, as the UI sends a form."""
    properties = _schema(flow_run_id)["properties"]
    return {**{name: p["default"] for name, p in properties.items() if "default" in p}, **answers}


def _resume(flow_run_id: str, answers: dict) -> None:
    resume_flow_run(flow_run_id, run_input=_as_the_ui_sends(flow_run_id, answers))


def _response(flow_run_id: str, description_key: str):
    """The submitted form Prefect keeps for a wait (beside its description)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run_input(flow_run_id, description_key.replace("-description", "-response"))


def _flow_args(config: BatchRunConfig, monkeypatch) -> tuple:
    """The run form and the deployment's tuning of a whole configuration, as a run gets them; its
    warehouse and outbox become the settings (a run reads them from the environment)."""
    monkeypatch.setenv("ROSTERFLOW_WAREHOUSE", config.warehouse_path)
    monkeypatch.setenv("ROSTERFLOW_OUTBOX", config.outbox_dir)
    form, tuning = ((MigrationForm, MigrationTuning) if isinstance(config, MigrationConfig)
                    else (RegistrationForm, RegistrationTuning))
    return (form.model_validate(config.model_dump(include=set(form.model_fields))),
            tuning.model_validate(config.model_dump(include=set(tuning.model_fields))))


def _run_in_thread(flow, *args) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["status"] = flow(*args)
        except BaseException as error:  # the test asserts on it
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for_pause(flow_name: str, known: set, timeout: float = 90) -> tuple[str, str]:
    """The id of the newest paused run of ``flow_name`` and the key of the input it waits for."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs():
                if run.state and run.state.is_paused() and (run.id, run.state.id) not in known:
                    flow = client.read_flow(run.flow_id)
                    if flow.name == flow_name:
                        known.add((run.id, run.state.id))
                        return str(run.id), run.state.state_details.run_input_keyset["description"]
            time.sleep(0.5)
    raise AssertionError(f"no paused run of {flow_name} within {timeout} s")


def _description(flow_run_id: str, key: str) -> str:
    """The markdown shown above the form the run waits for (kept by Prefect as a JSON string)."""
    with get_client(sync_client=True) as client:
        return json.loads(client.read_flow_run_input(flow_run_id, key))


def _run_state(flow_run_id: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))[0].state


def test_migration_flow_waits_for_review_and_approval_then_commits(prefect_server, district, district_warehouse: Path,
                                                                    tmp_path: Path, monkeypatch):
    seen: set = set()
    registration = RegistrationConfig(files=[str(p) for p in district.registration_files],
                                      term=district.registration_term, subscription_type=district.subscription_type,
                                      warehouse_path=str(district_warehouse), outbox_dir=str(tmp_path / "outbox"),
                                      wait_poll_seconds=1)
    thread, outcome = _run_in_thread(batch_registration, *_flow_args(registration, monkeypatch))
    run_id, key = _wait_for_pause("batch-registration", seen)
    # While the run waits, nothing holds the warehouse: another process-level open succeeds.
    with opened(district_warehouse) as con:
        assert con.execute("SELECT status FROM batches").fetchall() == [("awaiting_approval",)]
        shown = con.execute("SELECT json_extract_string(result, '$.version') FROM batch_stages"
                            " WHERE stage = 'plan'").fetchall()[0][0]
        # Meanwhile the office creates a temporary record of one of the sheet's students (same name and
        # SSID): the plan made again links it instead of creating that student, so the plan shown is out
        # of date. (A temporary student nobody in the sheets matches would leave the plan as shown, and
        # the approval given for it would stand.)
        first, last, ssid = con.execute("SELECT first_name, last_name, ssid FROM valid_rows WHERE ssid IS NOT NULL"
                                        " ORDER BY row_no LIMIT 1").fetchall()[0]
        create_temporary_student(con, first, last, ssid=ssid, school=district.schools[0], actor="Office")
    assert f"plan version {shown}" in _description(run_id, key)
    # A registration removes nobody: its approval form has no removal count (nor guard override), and
    # what the run needs is required (no "(Optional)" label), prefilled with the version shown.
    schema = _schema(run_id)
    assert "removals_acknowledged" not in schema["properties"] and "override_guard" not in schema["properties"]
    assert {"approver", "approver_secret", "plan_version"} <= set(schema["required"])
    assert schema["properties"]["plan_version"]["default"] == shown
    _resume(run_id, _approval(district_warehouse, plan_version=shown))
    run_id, key = _wait_for_pause("batch-registration", seen)
    # Nothing was committed: the run matched and planned again and shows why with the new plan.
    assert "The plan changed since it was shown (students changed since it was matched: 1 × temporary.create)" \
        in _description(run_id, key)
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM commit_markers").fetchall() == [(0,)]
    # A wrong secret is not accepted, and the run asks again: the reason on top, what was filled kept
    # (never the secret).
    _resume(run_id, {**_approval(district_warehouse), "approver_secret": "guessed", "comment": "checked the plan"})
    run_id, key = _wait_for_pause("batch-registration", seen)
    assert _description(run_id, key).startswith("**Not accepted:** The approver secret given for Pat Admin is not theirs")
    kept = {name: p.get("default") for name, p in _schema(run_id)["properties"].items()}
    assert (kept["approver"], kept["comment"], kept["approve"], kept["approver_secret"]) == (
        "Pat Admin", "checked the plan", True, "")
    _resume(run_id, _approval(district_warehouse))
    thread.join(120)
    assert outcome == {"status": "committed"}
    # The run told the progress of its long stages as artifacts, each at 100% when done.
    with get_client(sync_client=True) as client:
        progress = {(a.key, a.data) for a in client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))) if a.type == "progress"}
    assert progress == {("rows-read-batch-1", 100.0), ("rows-matched-batch-1", 100.0),
                        ("passwords-hashed-batch-1", 100.0), ("messages-written-batch-1", 100.0)}

    migration = MigrationConfig(files=[str(p) for p in district.migration_files], term=district.migration_term,
                                subscription_type=district.subscription_type, warehouse_path=str(district_warehouse),
                                outbox_dir=str(tmp_path / "outbox"), wait_poll_seconds=1)
    thread, outcome = _run_in_thread(yearly_migration, *_flow_args(migration, monkeypatch))
    run_id, key = _wait_for_pause("yearly-migration", seen)
    # Before anyone reviews, the plan so far is published (the rows in review left out).
    with get_client(sync_client=True) as client:
        preview = [a for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                   if a.key == "plan-preview-batch-2"]
    assert preview and "row(s) wait for review" in preview[-1].data and "students to remove" in preview[-1].data
    description = _description(run_id, key)
    assert description.startswith("# Review batch 2:") and "|" not in description  # short: no wide table
    # Each item is a drop-down whose title names the row and why it is asked, and whose options are
    # its candidates themselves (name, birth date, ID, school, score), never preselected.
    schema = _schema(run_id)
    assert schema["required"] == ["reviewer"]
    fields = {name: p for name, p in schema["properties"].items() if name.startswith("item_")}
    with opened(district_warehouse) as con:
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT r.review_id, v.first_name, v.last_name, v.date_of_birth, s.file_name, s.sheet, s.excel_row,"
            " st.first_name, st.last_name, st.date_of_birth, st.student_id, sc.name FROM review_items r"
            " JOIN valid_rows v USING (batch_id, row_no) JOIN staged_rows s USING (batch_id, row_no)"
            " JOIN review_candidates c ON c.review_id = r.review_id AND c.rank = 1"
            " JOIN students st ON st.student_key = c.student_key JOIN schools sc ON sc.school_id = st.school_id"
            " WHERE r.batch_id = 2").fetchall()}
    assert fields and {int(name.removeprefix("item_")) for name in fields} <= set(rows)
    links = {}
    for name, field in fields.items():
        first, last, born, file_name, sheet, excel_row, c_first, c_last, c_born, c_id, c_school = rows[
            int(name.removeprefix("item_"))]
        assert f"{first} {last}, born {born} ({file_name}, sheet {sheet}, row {excel_row}). Why asked: " in field["title"]
        assert field["default"] == "decide later"
        assert field["enum"][0] == "decide later" and field["enum"][-3:] == ["new student", "exclude", "unsure"]
        assert field["enum"][1].startswith(f"link 1: {c_first} {c_last}, born {c_born}, ")
        assert f"{c_school} (score " in field["enum"][1] and (c_id is None or f"ID {c_id}, " in field["enum"][1])
        links[name] = field["enum"][1]
    items = [int(name.removeprefix("item_")) for name in links]
    # Without a name nothing is decided: the same form comes back, the reason on top, the choices kept.
    _resume(run_id, {"reviewer": "  ", **links})
    run_id, key = _wait_for_pause("yearly-migration", seen)
    assert _description(run_id, key).startswith("**Not accepted:** Name the reviewer")
    assert {name: p["default"] for name, p in _schema(run_id)["properties"].items() if name in links} == links
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM review_items WHERE status <> 'pending'").fetchall() == [(0,)]
    _resume(run_id, {"reviewer": "Rita Reviewer"})  # the choices kept are sent as the UI sends them

    run_id, key = _wait_for_pause("yearly-migration", seen)
    assert "students to remove" in _description(run_id, key)
    # The run shows the plan as artifacts: the summary in markdown and each table.
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))}
    assert {"plan-batch-2", "plan-classes-batch-2", "plan-students-batch-2", "plan-removals-batch-2",
            "plan-removals-by-school-batch-2", "plan-name-differences-batch-2"} <= keys
    # A wrong acknowledgement is refused and the run asks again.
    _resume(run_id, _approval(district_warehouse, removals_acknowledged=999))
    run_id, key = _wait_for_pause("yearly-migration", seen)
    assert _description(run_id, key).startswith("**Not accepted:** This batch removes")
    assert "removals_acknowledged" in _schema(run_id)["required"]
    with opened(district_warehouse) as con:
        removals = con.execute("SELECT count(*) FROM plan_removals WHERE batch_id = 2").fetchall()[0][0]
        assert con.execute("SELECT count(*) FROM students WHERE status = 'deleted'").fetchall()[0][0] == 0
    _resume(run_id, _approval(district_warehouse, removals_acknowledged=removals))
    thread.join(120)
    # Prefect keeps the submitted form without the secret.
    kept = json.loads(_response(run_id, key))
    assert kept["approver"] == "Pat Admin" and kept["removals_acknowledged"] == removals
    assert "approver_secret" not in kept
    assert outcome == {"status": "committed"}
    assert _run_state(run_id).is_completed()
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM students WHERE status = 'deleted'").fetchall()[0][0] == removals
        audit = dict(con.execute("SELECT action, count(*) FROM audit_log GROUP BY action").fetchall())
    assert audit["review.decide"] == len(items)
    assert audit["batch.approve"] == 2 and audit["student.remove"] == removals


def test_a_migration_waits_until_all_sheets_are_uploaded(prefect_server, district, district_warehouse: Path,
                                                        tmp_path: Path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    seen: set = set()
    config = MigrationConfig(files=[str(inbox)], term="Fall {year}", subscription_type=district.subscription_type,
                             warehouse_path=str(district_warehouse), outbox_dir=str(tmp_path / "outbox"),
                             wait_for_all_uploads=True, wait_poll_seconds=1)
    thread, outcome = _run_in_thread(yearly_migration, *_flow_args(config, monkeypatch))
    run_id, key = _wait_for_pause("yearly-migration", seen)
    assert "0 file(s) so far" in _description(run_id, key)
    # A sheet arrives; an unticked confirmation asks again, now listing it.
    (inbox / district.migration_files[0].name).write_bytes(district.migration_files[0].read_bytes())
    _resume(run_id, {"confirmed_by": "Pat Admin", "all_uploaded": False})
    run_id, key = _wait_for_pause("yearly-migration", seen)
    assert district.migration_files[0].name in _description(run_id, key)
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM staged_rows").fetchall() == [(0,)]
    _resume(run_id, {"confirmed_by": "Pat Admin", "all_uploaded": True})
    run_id, key = _wait_for_pause("yearly-migration", seen)  # now the batch is read and waits for approval
    assert "Approve batch" in _description(run_id, key)
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM staged_rows").fetchall()[0][0] > 0
    _resume(run_id, _approval(district_warehouse, approve=False))
    thread.join(120)
    assert outcome == {"status": "rejected"}
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM commit_markers").fetchall() == [(0,)]


def _deployment_parameters(config: RegistrationConfig) -> dict:
    """What the run form sends: the form's fields only (the worker's settings name the warehouse)."""
    return {"config": config.model_dump(mode="json", include=set(RegistrationForm.model_fields))}


def _start_worker(name: str, log: Path, warehouse: Path) -> subprocess.Popen:
    """Serve the registration deployment in a process of its own, with the test's warehouse and outbox
    as its settings."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "ROSTERFLOW_WAREHOUSE": str(warehouse), "ROSTERFLOW_OUTBOX": str(log.parent / "outbox")}
    return subprocess.Popen([sys.executable, "-m", "tests.deployment_worker", name], env=env,
                            cwd=Path(__file__).parent.parent, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait_for_state(flow_run_id, check, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _run_state(flow_run_id)
        if state is not None and check(state):
            return state
        time.sleep(0.5)
    raise AssertionError(f"run {flow_run_id} did not reach the expected state within {timeout} s: {state}")


def test_a_deployed_run_waits_suspended_and_survives_a_worker_restart(prefect_server, district,
                                                                      district_warehouse: Path, tmp_path: Path):
    from prefect.deployments import run_deployment

    log = tmp_path / "worker.log"
    worker = _start_worker("suspension-test", log, district_warehouse)
    try:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("batch-registration/suspension-test")
                    break
                except Exception:
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise AssertionError(f"the worker did not serve the deployment: {log.read_text()}")
                    time.sleep(0.5)
        config = RegistrationConfig(files=[str(p) for p in district.registration_files],
                                    term=district.registration_term, subscription_type=district.subscription_type,
                                    warehouse_path=str(district_warehouse), outbox_dir=str(tmp_path / "outbox"))
        run = run_deployment("batch-registration/suspension-test", parameters=_deployment_parameters(config),
                             timeout=0)
        state = _wait_for_state(run.id, lambda s: s.is_paused())
        # Suspended, not paused: the run's process has exited, so a restart of the worker loses
        # nothing, and the warehouse is free for everyone else.
        assert state.name == "Suspended"
        with opened(district_warehouse) as con:
            assert con.execute("SELECT status FROM batches").fetchall() == [("awaiting_approval",)]
        worker.kill()
        worker.wait(30)
        worker = _start_worker("suspension-test", log, district_warehouse)
        _resume(run.id, _approval(district_warehouse))
        final = _wait_for_state(run.id, lambda s: s.is_final(), timeout=180)
        assert final.is_completed(), log.read_text()[-3000:]
        with opened(district_warehouse) as con:
            assert con.execute("SELECT count(*) FROM commit_markers").fetchall() == [(1,)]
            assert con.execute("SELECT count(*) FROM students").fetchall()[0][0] > 0
            approvals = con.execute("SELECT count(*) FROM audit_log WHERE action = 'batch.approve'").fetchall()
        assert approvals == [(1,)]
    finally:
        worker.kill()
        worker.wait(30)


def _wait_for_deployment(name: str, worker: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                return
            except Exception:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise AssertionError(f"the worker did not serve the deployment: {log.read_text()}")
                time.sleep(0.5)
def test_two_deployed_runs_approved_at_the_same_moment_both_commit_exactly_once(prefect_server, district,
                                                                                 district_warehouse: Path, tmp_path: Path):
    """Two runs of the deployment (each in a process of its own, as `make serve` runs them) wait for
    approval on one warehouse; both approvals are submitted at the same moment. Neither is lost:
    both batches commit, each exactly once."""
    from prefect.deployments import run_deployment

    log = tmp_path / "worker.log"
    worker = _start_worker("two-at-once", log, district_warehouse)
    try:
        _wait_for_deployment("batch-registration/two-at-once", worker, log)
        runs = []
        for files in (district.registration_files[:1], district.registration_files[1:2]):
            config = RegistrationConfig(files=[str(p) for p in files], term=district.registration_term,
                                        subscription_type=district.subscription_type,
                                        warehouse_path=str(district_warehouse), outbox_dir=str(tmp_path / "outbox"))
            runs.append(run_deployment("batch-registration/two-at-once",
                                       parameters=_deployment_parameters(config), timeout=0).id)
        for run_id in runs:
            assert _wait_for_state(run_id, lambda s: s.is_paused(), timeout=240).name == "Suspended", log.read_text()[-3000:]
        answers = {run_id: _as_the_ui_sends(run_id, _approval(district_warehouse)) for run_id in runs}
        both_ready = threading.Barrier(2)

        refused: list = []

        def approve(run_id):
            both_ready.wait()
            # The test server keeps its state in SQLite, which refuses a write now and then under
            # concurrent requests ("database is locked"); the UI shows that error and the person
            # submits again. Such a refused submission is not lost input: it was never accepted.
            for attempt in range(5):
                try:
                    resume_flow_run(run_id, run_input=answers[run_id])
                    return
                except Exception as error:  # noqa: BLE001 - recorded, asserted below
                    refused.append(repr(error))
                    time.sleep(1)

        approvers = [threading.Thread(target=approve, args=(run_id,)) for run_id in runs]
        for thread in approvers:
            thread.start()
        for thread in approvers:
            thread.join(60)
        assert all("locked" in error for error in refused), refused
        for run_id in runs:
            final = _wait_for_state(run_id, lambda s: s.is_final(), timeout=300)
            assert final.is_completed(), (final, log.read_text()[-3000:])
        with opened(district_warehouse) as con:
            audit = dict(((batch_id, action), n) for batch_id, action, n in con.execute(
                "SELECT batch_id, action, count(*) FROM audit_log WHERE action IN"
                " ('batch.commit', 'batch.approve', 'batch.plan_stale') GROUP BY ALL").fetchall())
            statuses = con.execute("SELECT status FROM batches ORDER BY batch_id").fetchall()
        assert statuses == [("committed",), ("committed",)]
        for batch_id in (1, 2):
            assert audit[(batch_id, "batch.commit")] == 1  # each committed exactly once
            # An approval recorded again only after its batch was planned again (the other committed
            # first) and came out the very version approved.
            assert audit[(batch_id, "batch.approve")] == 1 + audit.get((batch_id, "batch.plan_stale"), 0)
    finally:
        worker.kill()
        worker.wait(30)


def test_messages_that_cannot_be_written_after_the_commit_fail_the_run_with_the_reason(
        prefect_server, district, district_warehouse: Path, tmp_path: Path, monkeypatch):
    def unwritable(group):
        raise OSError("No space left on device")

    monkeypatch.setattr("tasks.messages.roster_sheets", unwritable)
    config = RegistrationConfig(files=[str(p) for p in district.registration_files], term=district.registration_term,
                                subscription_type=district.subscription_type, warehouse_path=str(district_warehouse),
                                outbox_dir=str(tmp_path / "outbox"), wait_poll_seconds=1)
    thread, outcome = _run_in_thread(batch_registration, *_flow_args(config, monkeypatch))
    run_id, _ = _wait_for_pause("batch-registration", set())
    _resume(run_id, _approval(district_warehouse))
    thread.join(120)
    state = _run_state(run_id)
    assert state.is_failed() and outcome.get("status") != "committed"
    assert "committed; messages could not be written: OSError: No space left on device" in state.message
    assert "rosterflow messages build" in state.message
    with opened(district_warehouse) as con:
        assert con.execute("SELECT status FROM batches").fetchall() == [("committed",)]
        assert con.execute("SELECT status FROM message_builds").fetchall() == [("failed",)]
        assert con.execute("SELECT count(*) FROM issued_credentials").fetchall() == [(108,)]


def test_a_run_whose_file_cannot_be_read_ends_failed_with_the_reason(prefect_server, district,
                                                                     district_warehouse: Path, tmp_path: Path,
                                                                     monkeypatch):
    from prefect.exceptions import FailedRun

    broken = tmp_path / "broken.xlsx"
    broken.write_text("not a workbook")
    config = RegistrationConfig(files=[str(district.registration_files[0]), str(broken)],
                                term=district.registration_term, subscription_type=district.subscription_type,
                                warehouse_path=str(district_warehouse), outbox_dir=str(tmp_path / "outbox"))
    with pytest.raises(FailedRun, match="broken.xlsx"):
        batch_registration(*_flow_args(config, monkeypatch))
    with opened(district_warehouse) as con:
        assert con.execute("SELECT status FROM batches").fetchall() == [("failed",)]
        assert con.execute("SELECT count(*) FROM match_results").fetchall() == [(0,)]


def test_a_scheduled_migration_with_an_empty_inbox_ends_failed_with_the_reason(prefect_server, district,
                                                                             district_warehouse: Path, tmp_path: Path,
                                                                             monkeypatch):
    """The yearly schedule's run over an inbox nobody filled must alert, not end green."""
    from prefect.exceptions import FailedRun

    inbox = tmp_path / "inbox"
    (inbox / "migration").mkdir(parents=True)
    monkeypatch.setenv("ROSTERFLOW_INBOX", str(inbox))
    monkeypatch.setenv("ROSTERFLOW_WAREHOUSE", str(district_warehouse))
    monkeypatch.setenv("ROSTERFLOW_OUTBOX", str(tmp_path / "outbox"))
    # What the yearly-migration deployment's schedule passes (deployments.serve).
    form = MigrationForm(files=["migration"], term="Fall {year}", subscription_type=district.subscription_type)
    state = yearly_migration(form, return_state=True)
    assert state.is_failed()
    assert str(inbox / "migration") in state.message and "no roster files" in state.message
    with pytest.raises(FailedRun, match="no roster files"):
        state.result()
    with opened(district_warehouse) as con:
        assert con.execute("SELECT status FROM batches").fetchall() == [("failed",)]


@pytest.mark.parametrize("entry, named", [
    (r"C:\Users\pat\Documents\roster.xlsx", "is a path on your own computer"),
    ("missing.xlsx", "is not on the server running the flow"),
])
def test_a_run_naming_files_not_on_the_server_is_refused_before_any_batch(prefect_server, district,
                                                                         district_warehouse: Path, tmp_path: Path,
                                                                         monkeypatch, entry: str, named: str):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("ROSTERFLOW_INBOX", str(inbox))
    monkeypatch.setenv("ROSTERFLOW_WAREHOUSE", str(district_warehouse))
    form = RegistrationForm(files=[str(district.registration_files[0]), entry], term=district.registration_term,
                            subscription_type=district.subscription_type)
    state = batch_registration(form, return_state=True)
    assert state.is_failed() and state.name == "Refused"
    assert named in state.message and str(inbox) in state.message
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchall() == [(0,)]


def test_a_batch_held_whole_ends_failed_named_held_with_the_blockers(prefect_server, district,
                                                                        district_warehouse: Path, tmp_path: Path,
                                                                        monkeypatch):
    """A registration needing subscriptions the district has none of is held whole by its plan: the
    run says so instead of ending Completed."""
    config = RegistrationConfig(files=[str(p) for p in district.registration_files], term=district.registration_term,
                             subscription_type="No Such Subscription", warehouse_path=str(district_warehouse),
                             outbox_dir=str(tmp_path / "outbox"), wait_poll_seconds=1)
    state = batch_registration(*_flow_args(config, monkeypatch), return_state=True)
    assert state.is_failed() and state.name == "Held", state
    assert "is held, nothing was committed" in state.message
    with opened(district_warehouse) as con:
        assert con.execute("SELECT count(*) FROM commit_markers").fetchall() == [(0,)]


def test_the_review_forms_heading_counts_its_rows():
    assert review_description(2, 1, 1).startswith("# Review batch 2: 1 row needs a decision\n")
    assert review_description(2, 25, 20).startswith("# Review batch 2: 25 rows need a decision\n")
