"""The `rosterflow` command line, as a data team, a reviewer and an administrator use it."""

from __future__ import annotations

import json

import polars as pl



def test_registration_then_migration_with_review_and_approval(run, district, tmp_path, monkeypatch):
    assert run("init")[0] == 0
    code, out, _ = run("approver", "add", "Pat Admin", "--json")
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", json.loads(out)["secret"])
    run("school", "add", *district.schools)
    run("course", "add", *[f"{c}={n}" for c, n in district.courses.items()])
    run("subscription", "set", district.subscription_type, "500")
    code, out, _ = run("register", *map(str, district.registration_files), "--term", district.registration_term,
                       "--subscription", district.subscription_type, "--json")
    batch = json.loads(out)
    assert code == 0 and batch["status"] == "awaiting_approval"
    code, out, _ = run("plan", str(batch["batch_id"]), "--json", "--xlsx", str(tmp_path / "plan.xlsx"))
    summary = json.loads(out)["summary"]
    assert summary["subscriptions_needed"] == 108
    assert pl.read_excel(tmp_path / "plan.xlsx", sheet_name="Classes")["to_register"].sum() == 108
    assert pl.read_excel(tmp_path / "plan.xlsx", sheet_name="Summary").row(0) == ("version", summary["version"])
    code, out, _ = run("approve", str(batch["batch_id"]), "--approver", "Pat Admin", "--plan", summary["version"],
                       "--json")
    assert code == 0 and json.loads(out)["students_created"] == 108
    # Six teachers: six rosters, six copies and one confirmation, written (no SMTP server here).
    messages = json.loads(run("messages", "list", "--batch", str(batch["batch_id"]), "--json")[1])
    assert len(messages) == 13 and {m["status"] for m in messages} == {"written"}
    code, _, err = run("messages", "send")
    assert code == 2 and "ROSTERFLOW_SMTP_HOST" in err

    code, out, _ = run("migrate", *map(str, district.migration_files), "--term", district.migration_term,
                       "--subscription", district.subscription_type, "--json")
    migration = json.loads(out)["batch_id"]
    code, out, _ = run("batch", "issues", str(migration))
    assert "ERROR migration-summerwind-high-school.xlsx sheet Roster row 9 column date_of_birth" in out
    items = json.loads(run("review", "list", str(migration), "--json")[1])
    assert items and all(item["candidates"] for item in items)
    # Approving with items pending is refused, and says why.
    code, _, err = run("approve", str(migration), "--approver", "Pat Admin", "--plan", "0123456789ab")
    assert code == 2 and f"no plan yet: show it with `rosterflow plan {migration}` first" in err
    for item in items:
        code, out, _ = run("review", "decide", str(migration), str(item["review_id"]), "--action", "link",
                           "--candidate", "1", "--reviewer", "Rita Reviewer")
        assert code == 0
    # The same decision again is a no-op.
    code, out, _ = run("review", "decide", str(migration), str(items[0]["review_id"]), "--action", "link",
                       "--candidate", "1", "--reviewer", "Rita Reviewer")
    assert "(unchanged)" in out
    plan = json.loads(run("plan", str(migration), "--json")[1])["summary"]
    code, _, err = run("approve", str(migration), "--approver", "Pat Admin", "--plan", plan["version"],
                       "--remove-count", "0")
    assert code == 2 and f"removes {plan['removals']} students" in err
    code, out, _ = run("approve", str(migration), "--approver", "Pat Admin", "--plan", plan["version"],
                       "--remove-count", str(plan["removals"]), "--json")
    committed = json.loads(out)
    assert code == 0 and committed["students_removed"] == plan["removals"]
    assert any(path.endswith(".xlsx") for path in committed["outbox"])
    shown = json.loads(run("batch", "show", str(migration), "--json")[1])
    assert shown["status"] == "committed" and shown["decided_by"] == "Pat Admin"


def test_errors_are_messages_not_tracebacks(run):
    run("init")
    code, _, err = run("batch", "show", "42")
    assert code == 2 and "No batch 42" in err
    code, _, err = run("subscription", "set", "K12", "5", "--school", "Nowhere")
    assert code == 2 and "No school named 'Nowhere'" in err


def test_export_roster_names_its_file_after_a_school_with_a_slash_in_the_current_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("school", "add", "Lincoln K-8/Middle School")
    code, out, err = run("export-roster", "--school", "Lincoln K-8/Middle School")
    assert code == 0, err
    assert (tmp_path / "roster-lincoln-k-8-middle-school.xlsx").is_file()
    assert not (tmp_path / "roster-lincoln-k-8").exists()
