"""An approval commits exactly the plan version its approver was shown, and the approver proves who
they are with the secret they were given (approve, reject, restore)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from tasks.approve import PlanChanged, decide_batch, decide_from_form
from tasks.plan import build_plan, plan_version
from tests.batch_helpers import (add_district_catalog, approval, approve_and_commit, approver_env, link_all_reviews,
                                 start)
from warehouse import batches
from warehouse.connection import transaction
from warehouse.handle import Warehouse, opened


@pytest.fixture
def cli_warehouse(run, tmp_path: Path, district) -> Path:
    """The `run` fixture's warehouse, with the sample district's catalog; no approver yet."""
    run("init")
    return add_district_catalog(tmp_path / "w.duckdb", district)


def _footprint(warehouse: Path) -> dict:
    with opened(warehouse) as con:
        return {
            "students": con.execute("SELECT status, count(*) FROM students GROUP BY ALL ORDER BY ALL").fetchall(),
            "enrollments": con.execute("SELECT count(*) FROM enrollments").fetchall(),
            "commits": con.execute("SELECT batch_id FROM commit_markers ORDER BY ALL").fetchall(),
            "subscriptions": con.execute("SELECT sum(available) FROM subscriptions").fetchall(),
        }


@pytest.mark.slow
def test_a_plan_that_changed_since_it_was_shown_is_not_committed_until_its_new_version_is_approved(
        run, cli_warehouse: Path, district, monkeypatch):
    registration = start(cli_warehouse, "registration", district.registration_files, district.registration_term,
                         district.subscription_type)
    approve_and_commit(cli_warehouse, registration["batch_id"])
    batch = start(cli_warehouse, "migration", district.migration_files[:1], district.migration_term,
                  district.subscription_type)["batch_id"]
    link_all_reviews(cli_warehouse, batch)
    approver_env(cli_warehouse, monkeypatch)
    code, out, _ = run("plan", str(batch))
    shown = json.loads(run("plan", str(batch), "--json")[1])["summary"]
    assert code == 0 and f"Plan version **{shown['version']}**" in out
    assert f"rosterflow approve {batch} --plan {shown['version']} --approver NAME --remove-count {shown['removals']}" \
        in out
    approve = ["approve", str(batch), "--approver", "Pat Admin", "--remove-count", str(shown["removals"])]

    # Without a version, or with one never shown: refused, with the command that shows it.
    code, _, err = run(*approve)
    assert code == 2 and f"`rosterflow plan {batch}` shows it" in err
    code, _, err = run(*approve, "--plan", "0123456789ab")
    assert code == 2 and f"changed since version 0123456789ab was shown (it is now version {shown['version']})" in err

    # The office adds a student by hand after the plan was shown: the approval of what was shown
    # commits nothing, and says why and what to do.
    code, _, _ = run("student", "temp", "add", "--first", "Zed", "--last", "Quillfeather")
    assert code == 0
    before = _footprint(cli_warehouse)
    code, out, err = run(*approve, "--plan", shown["version"])
    assert code == 2 and out == ""
    assert (f"error: The plan of batch {batch} changed since version {shown['version']} was shown (students changed "
            f"since it was matched: 1 × temporary.create); nothing was committed. Show it again with `rosterflow plan "
            f"{batch}` and approve the version it shows.") in err
    assert _footprint(cli_warehouse) == before
    assert json.loads(run("batch", "show", str(batch), "--json")[1])["status"] != "committed"

    # Only `plan` plans again: the new plan keeps the new temporary student, so it is another version.
    again = json.loads(run("plan", str(batch), "--json")[1])["summary"]
    assert again["version"] != shown["version"] and again["temporary_kept"] == shown["temporary_kept"] + 1
    code, _, err = run(*approve, "--plan", shown["version"])
    assert code == 2 and f"it is now version {again['version']}" in err and _footprint(cli_warehouse) == before
    code, out, _ = run("approve", str(batch), "--approver", "Pat Admin", "--remove-count", str(again["removals"]),
                       "--plan", again["version"], "--json")
    assert code == 0 and json.loads(out)["students_removed"] == again["removals"]
    with opened(cli_warehouse) as con:
        assert batches.stage_result(con, batch, "approve")["plan_version"] == again["version"]


def test_the_plan_version_is_stable_and_changes_with_anything_that_would_be_committed(district,
                                                                                    district_warehouse: Path):
    batch = start(district_warehouse, "registration", district.registration_files, district.registration_term,
                  district.subscription_type)["batch_id"]
    with opened(district_warehouse) as con:
        version = plan_version(con, batch)
        assert len(version) == 12 and batches.stage_result(con, batch, "plan")["version"] == version
        # Made again from the same match: the same version, whatever order its rows were written in.
        with transaction(con):
            batches.clear_stages(con, batch, ("plan",))
    assert build_plan(Warehouse(district_warehouse), batch)["version"] == version
    with opened(district_warehouse) as con:
        assert plan_version(con, batch) == version
        # One cell of what would be committed changed behind the approver's back: another version,
        # and the approval of the version shown is refused.
        shown = approval(con, batch)
        con.execute("UPDATE plan_enrollments SET grade = coalesce(grade, '') || 'x' WHERE batch_id = $b"
                    " AND row_no = (SELECT min(row_no) FROM plan_enrollments WHERE batch_id = $b)", {"b": batch})
        assert plan_version(con, batch) != version
        with pytest.raises(PlanChanged, match=f"its tables were changed after it was made \\(it was made as version "
                                              f"{version}, it is now {plan_version(con, batch)}\\)"):
            decide_batch(con, batch, "Pat Admin", True, **shown)
        assert batches.stage_result(con, batch, "approve") is None


@pytest.mark.slow
def test_approve_reject_and_restore_need_a_registered_approver_who_gives_their_secret(
        run, cli_warehouse: Path, district, monkeypatch):
    monkeypatch.delenv("ROSTERFLOW_APPROVER_SECRET", raising=False)
    batch = str(start(cli_warehouse, "registration", district.registration_files, district.registration_term,
                      district.subscription_type)["batch_id"])
    version = json.loads(run("plan", batch, "--json")[1])["summary"]["version"]
    approve = ["approve", batch, "--plan", version, "--approver", "Pat Admin"]
    before = _footprint(cli_warehouse)

    # Nobody registered: nobody can approve, reject or restore; the message says how to add one.
    for command in (approve, ["reject", batch, "--approver", "Pat Admin"], ["restore", "--batch", batch, "--by", "Pat"]):
        code, _, err = run(*command)
        assert code == 2 and "No approver is registered" in err and "`rosterflow approver add NAME`" in err

    # The first approver is added freely (and told so); the secret is printed once.
    code, out, _ = run("approver", "add", "Pat Admin")
    assert code == 0 and "as the first approver, without anyone's secret" in out
    pat = out.split("nobody else):\n  ")[1].split("\n")[0]
    assert len(pat) >= 22

    # No secret (not at a terminal, nothing in the environment), a wrong one, an unknown name: refused.
    code, _, err = run(*approve)
    assert code == 2 and "No approver secret was given for Pat Admin" in err and "ROSTERFLOW_APPROVER_SECRET" in err
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", pat[::-1])
    for command in (approve, ["reject", batch, "--approver", "Pat Admin"], ["restore", "--batch", batch, "--by",
                                                                             "Pat Admin"]):
        code, _, err = run(*command)
        assert code == 2 and "The approver secret given for Pat Admin is not theirs; nothing was done." in err
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", pat)
    code, _, err = run("approve", batch, "--plan", version, "--approver", "Mallory")
    assert code == 2 and "'Mallory' is not a registered approver (approvers: Pat Admin)" in err
    assert _footprint(cli_warehouse) == before

    # Nobody adds themselves: a second approver needs an existing approver's name and secret.
    monkeypatch.delenv("ROSTERFLOW_APPROVER_SECRET")
    code, _, err = run("approver", "add", "Rita Reviewer")
    assert code == 2 and "adding another needs an existing approver's name and secret" in err
    code, _, err = run("approver", "add", "Rita Reviewer", "--by", "Pat Admin")
    assert code == 2 and "No approver secret was given for Pat Admin" in err
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", pat)
    code, out, _ = run("approver", "add", "Rita Reviewer", "--by", "Pat Admin", "--json")
    rita = json.loads(out)["secret"]
    assert code == 0 and json.loads(out)["added_by"] == "Pat Admin"
    # Removed (kept for the audit), Rita can no longer approve, even with her own secret.
    code, out, _ = run("approver", "remove", "Rita Reviewer", "--by", "Pat Admin")
    assert code == 0 and "removed by Pat Admin" in out
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", rita)
    code, _, err = run("approve", batch, "--plan", version, "--approver", "Rita Reviewer")
    assert code == 2 and "'Rita Reviewer' is not a registered approver" in err
    listed = json.loads(run("approver", "list", "--all", "--json")[1])
    assert [(a["name"], a["removed_at"] is not None) for a in listed] == [("Pat Admin", False), ("Rita Reviewer", True)]
    assert "secret" not in json.dumps(listed)
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", pat)
    code, _, err = run("approver", "remove", "Pat Admin", "--by", "Pat Admin")
    assert code == 2 and "the last approver" in err

    code, out, _ = run(*approve, "--json")
    assert code == 0 and json.loads(out)["students_created"] == 108
    with opened(cli_warehouse) as con:
        audit = con.execute("SELECT actor, action, detail FROM audit_log WHERE action LIKE 'approver.%'"
                            " OR action = 'batch.approve' ORDER BY audit_id").fetchall()
        # Only hashes are kept: neither secret appears anywhere in the approvers table or the audit log.
        stored = json.dumps(con.execute("SELECT * FROM approvers").fetchall(), default=str)
        stored += json.dumps(con.execute("SELECT * FROM audit_log").fetchall(), default=str)
    assert pat not in stored and rita not in stored
    refused = [json.loads(detail)["reason"] for _, action, detail in audit if action == "approver.refused"]
    assert refused.count("wrong secret") == 3 and refused.count("no secret given") == 2
    assert refused.count("no approver registered") == 3 and refused.count("not a registered approver") == 2
    assert "no vouching approver" in refused
    assert ("Pat Admin", "batch.approve") in [(actor, action) for actor, action, _ in audit]


def test_a_refused_approval_form_read_again_without_its_secret_keeps_its_first_verdict(district,
                                                                                       district_warehouse: Path):
    """A suspended run reads its earlier forms back (the secret forgotten): a refusal is judged, audited
    and logged once, and the form that follows shows the first reason, not "no secret given"."""
    batch = start(district_warehouse, "registration", district.registration_files, district.registration_term,
                  district.subscription_type)["batch_id"]
    with opened(district_warehouse) as con:
        version = approval(con, batch)["plan_version"]
    answers = {"approver": "Pat Admin", "approve": True, "plan_version": version, "comment": ""}
    wh = Warehouse(district_warehouse)
    first = decide_from_form(wh, batch, answers, SecretStr("guessed"), "run:approval-0")
    assert first["decision"] is None and "is not theirs" in first["problems"][0]
    again = decide_from_form(wh, batch, answers, None, "run:approval-0")
    assert again["already_applied"] and again["problems"] == first["problems"]
    with opened(district_warehouse) as con:
        refused = con.execute("SELECT count(*) FROM audit_log WHERE action = 'approver.refused'").fetchall()
        assert refused == [(1,)] and batches.stage_result(con, batch, "approve") is None
