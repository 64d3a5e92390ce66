"""The run form a data team fills in the Prefect UI, the settings `make serve` takes, and the
refusal of files that are not on the machine running the flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import MigrationForm, RegistrationForm, RunRefused, resolve_run_files, run_config
from rosterflow.settings import SettingsError, load_settings
from tasks.report import validation_summary


def _settings(monkeypatch, tmp_path: Path, **env: str):
    monkeypatch.setenv("ROSTERFLOW_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("ROSTERFLOW_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.setenv("ROSTERFLOW_INBOX", str(tmp_path / "inbox"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize("entry", [r"C:\Users\pat\Documents\roster.xlsx", "C:/Users/pat/roster.xlsx",
                                   r"\\district-fs\rosters\roster.xlsx", r"Downloads\roster.xlsx"])
def test_a_path_on_the_users_own_computer_is_refused_naming_it_and_the_inbox(tmp_path: Path, entry: str):
    with pytest.raises(RunRefused) as refused:
        resolve_run_files([entry], tmp_path)
    message = str(refused.value)
    assert repr(entry) in message and "is a path on your own computer" in message
    assert f"copy roster.xlsx into {tmp_path}" in message and "`roster.xlsx`" in message


def test_a_missing_file_is_refused_naming_where_it_was_looked_for(tmp_path: Path):
    with pytest.raises(RunRefused) as refused:
        resolve_run_files(["fall/roster.xlsx", "/srv/nowhere/x.xlsx", "fall/*.xlsx", " "], tmp_path)
    message = str(refused.value)
    assert message.startswith("Nothing was started: ")
    assert f"'fall/roster.xlsx' is not on the server running the flow (looked for {tmp_path}/fall/roster.xlsx)" in message
    assert "'/srv/nowhere/x.xlsx' is not on the server" in message
    assert "'fall/*.xlsx' matches nothing" in message and "an empty entry names no file" in message


def test_a_run_naming_no_file_is_refused(tmp_path: Path):
    with pytest.raises(RunRefused, match=f"no roster file is named: put the files in {tmp_path}"):
        resolve_run_files([], tmp_path)


def test_names_in_the_inbox_resolve_there_and_full_paths_stay(tmp_path: Path):
    (tmp_path / "fall").mkdir()
    (tmp_path / "fall" / "roster.xlsx").write_bytes(b"")
    elsewhere = tmp_path / "elsewhere.xlsx"
    elsewhere.write_bytes(b"")
    assert resolve_run_files(["fall/roster.xlsx", "fall", "fall/*.xlsx", f'"{elsewhere}"'], tmp_path) == [
        str(tmp_path / "fall" / "roster.xlsx"), str(tmp_path / "fall"), str(tmp_path / "fall" / "*.xlsx"),
        str(elsewhere)]


def test_a_run_takes_the_warehouse_outbox_and_inbox_from_settings_and_the_tuning_from_the_deployment(
        tmp_path: Path, monkeypatch):
    settings = _settings(monkeypatch, tmp_path)
    (tmp_path / "inbox" / "migration").mkdir(parents=True)
    form = MigrationForm(files=["migration"], term="Fall {year}", subscription_type="K12", schools=["ABC"])
    config = run_config(form, None, settings)
    assert config.files == [str(tmp_path / "inbox" / "migration")]
    assert config.warehouse_path == str(tmp_path / "w.duckdb") and config.outbox_dir == str(tmp_path / "outbox")
    assert config.schools == ["ABC"] and config.max_removal_share == 0.10 and config.max_rows == 1_048_576
    from flows.config import RegistrationTuning

    registration = run_config(RegistrationForm(files=["migration"], term="T", subscription_type="S"),
                              RegistrationTuning(max_rows=5), settings)
    assert registration.max_rows == 5 and not hasattr(registration, "schools")


def test_the_run_forms_show_only_what_a_data_team_sets():
    from flows.migration import yearly_migration
    from flows.registration import batch_registration

    for flow, fields in ((batch_registration, {"files", "term", "subscription_type"}),
                         (yearly_migration, {"files", "term", "subscription_type", "schools", "wait_for_all_uploads"})):
        schema = flow.parameters.model_dump()
        assert set(schema["properties"]) == {"config"}  # the tuning is the deployment's, not the form's
        form = schema["definitions"][schema["properties"]["config"]["$ref"].rsplit("/", 1)[1]]
        assert set(form["properties"]) == fields
        assert "inbox folder" in form["properties"]["files"]["description"]
        assert "e.g. `fall-2026/roster.xlsx`" in form["properties"]["files"]["description"]


def test_the_schedule_shows_the_district_time_zone_and_reads_the_inbox_when_it_runs(tmp_path: Path, monkeypatch):
    from deployments.serve import deployments, prefect_environment

    settings = _settings(monkeypatch, tmp_path, ROSTERFLOW_TIMEZONE="America/Chicago", ROSTERFLOW_PORT="4391",
                         ROSTERFLOW_HOST="0.0.0.0")
    registration, migration = deployments()
    (schedule,) = migration.schedules
    assert schedule.schedule.cron == "0 6 1 8 *" and schedule.schedule.timezone == "America/Chicago"
    assert "(America/Chicago)" in migration.description
    # Relative to the inbox, resolved when the run starts: not a path fixed when `make serve` started.
    assert migration.parameters["config"]["files"] == ["migration"]
    assert migration.parameters["tuning"]["max_removal_share"] == 0.10
    assert "match" in registration.parameters["tuning"] and not registration.schedules
    assert prefect_environment(settings) == {
        "PREFECT_SERVER_API_HOST": "0.0.0.0", "PREFECT_SERVER_API_PORT": "4391",
        "PREFECT_UI_API_URL": "http://0.0.0.0:4391/api", "PREFECT_API_URL": "http://0.0.0.0:4391/api"}


@pytest.mark.parametrize("name, value, says", [
    ("ROSTERFLOW_TIMEZONE", "Mars/Olympus", "is not a time zone"),
    ("ROSTERFLOW_PORT", "99999", "must be a whole number from 1 to 65535"),
    ("ROSTERFLOW_HOST", "http://x", "is not a host name or address"),
])
def test_unusable_serving_settings_are_refused_by_name(monkeypatch, name: str, value: str, says: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=says) as refused:
        load_settings()
    assert name in str(refused.value)


def test_serving_settings_default_to_the_local_machine(monkeypatch):
    for name in ("ROSTERFLOW_TIMEZONE", "TZ", "ROSTERFLOW_PORT", "ROSTERFLOW_HOST", "ROSTERFLOW_INBOX"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.timezone, settings.host, settings.port, settings.inbox_dir) == (
        "UTC", "127.0.0.1", 4200, Path("var/inbox"))


def test_the_validation_headline_counts_problems_even_when_there_are_none():
    assert validation_summary(3, 0, 108) == "Batch 3: 0 problems in 108 rows"
    assert validation_summary(3, 1, 1) == "Batch 3: 1 problem in 1 row"
