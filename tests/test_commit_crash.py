"""The commit killed at random points: the warehouse holds all of the batch or none of it, and
running the commit again finishes it exactly once."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.approve import decide_batch
from tasks.commit import commit_batch
from tests.batch_helpers import add_district_catalog, approve_and_commit, link_all_reviews, start
from warehouse.handle import opened

pytestmark = pytest.mark.slow
KILLS = 20
CHILD = """
import sys
from tasks.commit import commit_batch
from warehouse.handle import opened
with opened(sys.argv[1]) as con:
    print("ready", flush=True)
    commit_batch(con, int(sys.argv[2]), "crash-test")
print("done", flush=True)
"""


def _batch_footprint(warehouse: Path, batch_id: int) -> dict:
    with opened(warehouse) as con:
        def count(sql: str) -> int:
            return con.execute(sql, [batch_id]).fetchall()[0][0]

        return {
            "marker": count("SELECT count(*) FROM commit_markers WHERE batch_id = ?"),
            "students": count("SELECT count(*) FROM students WHERE created_batch = ?"),
            "classes": count("SELECT count(*) FROM classes WHERE created_batch = ?"),
            "enrollments": count("SELECT count(*) FROM enrollments WHERE created_batch = ?"),
            "usage": count("SELECT count(*) FROM subscription_usage WHERE batch_id = ?"),
            "removed": count("SELECT count(*) FROM students WHERE deleted_batch = ?"),
            "audit": count("SELECT count(*) FROM audit_log WHERE batch_id = ? AND action <> 'batch.plan_stale'"
                           " AND action NOT LIKE 'review.%' AND action NOT IN ('batch.create', 'batch.approve')"),
            "available": con.execute("SELECT sum(available) FROM subscriptions").fetchall()[0][0],
        }


@pytest.fixture(scope="module")
def approved_migration(district, tmp_path_factory) -> tuple[Path, int]:
    """A warehouse with the registration committed and the next migration approved, not committed."""
    warehouse = add_district_catalog(tmp_path_factory.mktemp("crash") / "template.duckdb", district)
    registration = start(warehouse, "registration", district.registration_files, district.registration_term,
                         district.subscription_type)
    approve_and_commit(warehouse, registration["batch_id"])
    migration = link_all_reviews(warehouse, start(warehouse, "migration", district.migration_files,
                                                  district.migration_term, district.subscription_type)["batch_id"])
    with opened(warehouse) as con:
        decide_batch(con, migration["batch_id"], "Pat Admin", True, migration["plan"]["removals"])
    return warehouse, migration["batch_id"]


def test_commit_killed_at_random_points_is_all_or_nothing_and_finishes_once(approved_migration, tmp_path: Path):
    template, batch_id = approved_migration
    before = _batch_footprint(template, batch_id)
    assert before["marker"] == before["students"] == before["enrollments"] == before["removed"] == 0
    finished = tmp_path / "finished.duckdb"
    shutil.copy(template, finished)
    started = time.monotonic()
    with opened(finished) as con:
        commit_batch(con, batch_id, "crash-test")
    duration = time.monotonic() - started
    complete = _batch_footprint(finished, batch_id)
    assert complete["marker"] == 1 and complete["enrollments"] > 0 and complete["removed"] > 0

    rng = random.Random(5)
    outcomes = {"none": 0, "all": 0}
    for attempt in range(KILLS):
        warehouse = tmp_path / f"w{attempt}.duckdb"
        shutil.copy(template, warehouse)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(warehouse), str(batch_id)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, duration * 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait()
        after_kill = _batch_footprint(warehouse, batch_id)
        if after_kill["marker"]:
            assert after_kill == complete, f"kill {attempt}: marker without the whole batch"
            outcomes["all"] += 1
        else:
            assert after_kill == before, f"kill {attempt}: part of the batch without its marker"
            outcomes["none"] += 1
        with opened(warehouse) as con:
            commit_batch(con, batch_id, "crash-test")
            assert commit_batch(con, batch_id, "crash-test")["already_committed"]
        assert _batch_footprint(warehouse, batch_id) == complete
    assert outcomes["none"] >= 1  # the kills did land before the commit finished
