"""`make serve`: a local Prefect server with both rosterflow deployments, UI at http://127.0.0.1:4200.

Starts `prefect server start` (state under var/prefect) unless one already answers, then serves
`batch-registration` (run on demand from the UI form) and `yearly-migration` (also on a yearly
cron: the sheets dropped in var/inbox/migration on 1 August).

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

HOST, PORT = "127.0.0.1", 4200
API_URL = f"http://{HOST}:{PORT}/api"
YEARLY_CRON = "0 6 1 8 *"
MIGRATION_INBOX = "var/inbox/migration"


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{API_URL}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server() -> subprocess.Popen | None:
    """Start a Prefect server in the background unless one is already up; wait until it answers."""
    if _healthy():
        return None
    log = Path("var/prefect/server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(PORT)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    for _ in range(120):
        if _healthy():
            return server
        if server.poll() is not None:
            raise SystemExit(f"prefect server exited with {server.returncode}; see {log}")
        time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"prefect server did not answer within 60 s; see {log}")


def main() -> None:
    """Start (or reuse) the server and serve both deployments until interrupted."""
    # Prefect reads these at import time, so they are set before the flows are imported.
    os.environ.setdefault("PREFECT_HOME", str(Path("var/prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_API_HOST", HOST)
    os.environ.setdefault("PREFECT_SERVER_API_PORT", str(PORT))
    os.environ.setdefault("PREFECT_UI_API_URL", API_URL)
    os.environ["PREFECT_API_URL"] = API_URL
    server = start_server()
    from prefect import serve

    from rosterflow.settings import load_settings
    from flows.migration import yearly_migration
    from flows.registration import batch_registration

    Path(MIGRATION_INBOX).mkdir(parents=True, exist_ok=True)
    registration = batch_registration.to_deployment(
        name="batch-registration",
        description="Upload sheets, review, approve: classes, teachers, students and enrollments for a term.",
    )
    migration = yearly_migration.to_deployment(
        name="yearly-migration",
        description=f"Yearly migration of the sheets in {MIGRATION_INBOX}; also runnable on demand with other files.",
        cron=YEARLY_CRON,
        parameters={"config": {"files": [str(Path(MIGRATION_INBOX).resolve())], "term": "Fall {year}",
                               "subscription_type": "K12 - 12 Month"}},
    )
    print(f"Prefect UI: http://{HOST}:{PORT}/  (review and approval forms open from a paused run)")
    try:
        serve(registration, migration, limit=load_settings().concurrent_runs)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
