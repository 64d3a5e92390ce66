"""While an approved batch's passwords are hashed, the warehouse is free: other commands, from other
processes, read and write it, and the commit then finishes whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.approve import decide_batch
from tests.batch_helpers import approval, link_all_reviews, start
from warehouse.handle import current_holders, opened

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
# What `rosterflow approve` does after the decision, in a process of its own. Its progress hook
# pauses at the start of the hash phase until the test says go, so the test can act while the
# commit is hashing (a pause, not a timing).
APPROVER = """
import sys
from pathlib import Path
from tasks.commit import commit_batch
from tasks.messages import MailSettings, deliver
from warehouse.handle import Warehouse

def hashing(text):
    print("hashing:", text, flush=True)
    sys.stdin.readline()

wh = Warehouse(sys.argv[1], who="approve under test")
summary = commit_batch(wh, int(sys.argv[2]), "Pat Admin", progress=hashing)
deliver(wh, int(sys.argv[2]), Path(sys.argv[3]), MailSettings())
print("committed", summary["students_created"], flush=True)
"""


def test_other_commands_read_and_write_the_warehouse_while_a_commit_hashes(district, district_warehouse: Path,
                                                                            tmp_path: Path):
    progress = link_all_reviews(district_warehouse, start(
        district_warehouse, "registration", district.registration_files, district.registration_term,
        district.subscription_type)["batch_id"])
    batch_id = progress["batch_id"]
    with opened(district_warehouse) as con:
        decide_batch(con, batch_id, "Pat Admin", True, progress["plan"]["removals"], **approval(con, batch_id))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROSTERFLOW_WAREHOUSE": str(district_warehouse),
           "ROSTERFLOW_BUSY_TIMEOUT": "20"}
    approver = subprocess.Popen([sys.executable, "-c", APPROVER, str(district_warehouse), str(batch_id),
                                 str(tmp_path / "outbox")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)
    try:
        assert approver.stdout.readline().startswith(f"hashing: Batch {batch_id}: hashing ")
        assert current_holders(district_warehouse) == []

        def rosterflow(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "rosterflow.cli", *args], capture_output=True, text=True,
                                  cwd=ROOT, env=env, timeout=120)

        listed = rosterflow("batch", "list")
        added = rosterflow("school", "add", "Late Bloomer School")
        assert listed.returncode == 0, listed.stderr
        assert str(batch_id) in listed.stdout
        assert added.returncode == 0, added.stderr
        assert approver.poll() is None   # the commit has not ended: both ran during its hash phase
        approver.stdin.write("\n")
        approver.stdin.flush()
        out, _ = approver.communicate(timeout=300)
    finally:
        if approver.poll() is None:
            approver.kill()
    assert approver.returncode == 0 and out.startswith("committed ")
    with opened(district_warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM commit_markers WHERE batch_id = ?", [batch_id]).fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM schools WHERE name = 'Late Bloomer School'").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM issued_credentials").fetchall() == [(0,)]   # messages verified
