"""`make serve`: a local Prefect server with both rosterflow deployments and its UI.

Starts `prefect server start` (state under var/prefect) unless one already answers, then serves
`batch-registration` (run on demand from the UI form) and `yearly-migration` (also on a yearly
cron, 06:00 on 1 August in the district's time zone, over the sheets in the inbox's `migration`
folder). Where it serves, the inbox, the time zone and the warehouse are settings
(``rosterflow.settings``): ``ROSTERFLOW_HOST``, ``ROSTERFLOW_PORT``, ``ROSTERFLOW_INBOX``,
``ROSTERFLOW_TIMEZONE``, ``ROSTERFLOW_WAREHOUSE``.

Several runs go at once (``ROSTERFLOW_CONCURRENT_RUNS``, default 4): `serve` starts each flow run
in a process of its own, up to that limit, and later runs wait in the Prefect queue. The runs
share one warehouse: each task waits its turn for it (see ``warehouse.handle``), and a run waiting
for people holds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rosterflow.settings import Settings, load_settings

YEARLY_CRON = "0 6 1 8 *"
# Relative to the inbox folder, resolved when the scheduled run starts (not when `make serve` did).
MIGRATION_FOLDER = "migration"


def api_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}/api"


def ui_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}/"


def _healthy(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url(settings)}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(settings: Settings) -> subprocess.Popen | None:
    """Start a Prefect server in the background unless one is already up; wait until it answers."""
    if _healthy(settings):
        return None
    log = Path(os.environ["PREFECT_HOME"]) / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", settings.host, "--port", str(settings.port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    for _ in range(120):
        if _healthy(settings):
            return server
        if server.poll() is not None:
            raise SystemExit(f"prefect server exited with {server.returncode}; see {log}")
        time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"prefect server did not answer within 60 s; see {log}")


def prefect_environment(settings: Settings) -> dict[str, str]:
    """The Prefect settings that put the server, its UI and the flow runs on the configured host and
    port. `prefect server start --port` alone does not reach the UI, which would call the API on 4200:
    the UI's API address is set too."""
    return {
        "PREFECT_SERVER_API_HOST": settings.host,
        "PREFECT_SERVER_API_PORT": str(settings.port),
        "PREFECT_UI_API_URL": api_url(settings),
        "PREFECT_API_URL": api_url(settings),
    }


def deployments():
    """The two deployments: registration on demand; migration on demand and on the yearly cron, in
    the district's time zone, over the inbox's migration folder. Both carry their tuning (limits,
    waits, matcher thresholds) as parameters kept out of the run form."""
    from prefect.schedules import Cron

    from flows.config import MigrationTuning, RegistrationTuning
    from flows.migration import yearly_migration
    from flows.registration import batch_registration

    settings = load_settings()
    registration = batch_registration.to_deployment(
        name="batch-registration",
        description="Upload sheets, review, approve: classes, teachers, students and enrollments for a term. "
        f"Put the roster files in the inbox folder {settings.inbox_dir.resolve()} and name them in the form.",
        parameters={"tuning": RegistrationTuning().model_dump(mode="json")},
    )
    migration = yearly_migration.to_deployment(
        name="yearly-migration",
        description=f"Yearly migration of the sheets in {settings.inbox_dir.resolve() / MIGRATION_FOLDER}, "
        f"every 1 August at 06:00 ({settings.timezone}); also runnable on demand with other files.",
        schedule=Cron(YEARLY_CRON, timezone=settings.timezone),
        parameters={"config": {"files": [MIGRATION_FOLDER], "term": "Fall {year}",
                               "subscription_type": "K12 - 12 Month"},
                    "tuning": MigrationTuning().model_dump(mode="json")},
    )
    return registration, migration


def main() -> None:
    """Start (or reuse) the server and serve both deployments until interrupted."""
    settings = load_settings()
    # Prefect reads these at import time, so they are set before Prefect is imported.
    os.environ.setdefault("PREFECT_HOME", str(Path("var/prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.update(prefect_environment(settings))
    server = start_server(settings)
    from prefect import serve

    (settings.inbox_dir / MIGRATION_FOLDER).mkdir(parents=True, exist_ok=True)
    print(f"Prefect UI: {ui_url(settings)}  (review and approval forms open from a paused run)")
    print(f"Inbox for roster files: {settings.inbox_dir.resolve()}")
    try:
        serve(*deployments(), limit=settings.concurrent_runs)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
