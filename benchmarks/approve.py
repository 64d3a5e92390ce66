"""Time `approve` of a 10,000-student registration, from the approver's decision to committed with
every message written and read back, and how long it held the warehouse alone.

    python -m benchmarks.approve --students-per-school 3334 --repeat 3

The sheets are generated (seeded) into benchmarks/.cache, and each run takes a fresh warehouse to
its plan outside the timing. The timing calls what `rosterflow approve` calls, through one
``Warehouse`` handle: the decision, ``commit_batch`` and ``deliver`` (no SMTP server: messages go
to the outbox). Reports the medians over the repeats: the whole approve, the commit, the messages,
and the longest write hold with the stage that made it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rosterflow.sample_district import generate_district
from tasks.approve import decide_batch
from tasks.commit import commit_batch
from tasks.match import match_batch
from tasks.matching import MatchConfig
from tasks.messages import MailSettings, deliver
from tasks.approvers import add_approver
from tasks.pipeline import ingest_and_validate, open_batch
from tasks.plan import build_plan, plan_version
from tasks.review import ReviewError, close_review, decide_review, review_items
from warehouse import batches, catalog
from warehouse.handle import Warehouse

CACHE = Path(__file__).parent / ".cache"


def planned_registration(district, warehouse: Path) -> tuple[int, str]:
    """A warehouse with the district's catalog, a registered approver and the registration planned
    (not timed); the batch and the approver's secret."""
    wh = Warehouse(warehouse, who="benchmarks.approve")
    with wh.write() as con:
        catalog.add_schools(con, list(district.schools), "bench")
        catalog.add_courses(con, district.courses, "bench")
        catalog.set_subscriptions(con, district.subscription_type, 10**7, "bench")
        secret = add_approver(con, "bench")["secret"]
        config = {"files": [str(f) for f in district.registration_files], "term": district.registration_term,
                  "subscription_type": district.subscription_type}
        batch = open_batch(con, "bench-approve", "registration", config, "bench")
    ingest_and_validate(wh, batch, config["files"], None, 1_048_575)
    match_batch(wh, batch, MatchConfig())
    with wh.write() as con:
        for item in review_items(con, batch, pending_only=True):
            try:
                decide_review(con, batch, item["review_id"], "link", "bench", 1)
            except ReviewError:  # the candidate is claimed by another row: a new student here
                decide_review(con, batch, item["review_id"], "new", "bench")
    close_review(wh, batch)
    build_plan(wh, batch)
    return batch, secret


def approve_once(warehouse: Path, batch: int, secret: str) -> dict:
    """Approve the plan shown, commit and write the messages as `rosterflow approve` does; the
    timings and holds."""
    wh = Warehouse(warehouse, who="benchmarks.approve")
    with wh.read() as con:
        plan = {**batches.stage_result(con, batch, "plan"), "version": plan_version(con, batch)}
    started = time.perf_counter()
    with wh.write(batch=batch, stage="approve") as con:
        decision = decide_batch(con, batch, "bench", True, plan["removals"], bool(plan["guard"]), secret=secret,
                                plan_version=plan["version"])
    decided = time.perf_counter()
    summary = commit_batch(wh, batch, decision["approver"])
    committed = time.perf_counter()
    delivered = deliver(wh, batch, warehouse.parent / "outbox", MailSettings())
    finished = time.perf_counter()
    longest = wh.longest_hold("write")
    return {"approve_to_committed_with_messages": finished - started, "decision": decided - started,
            "commit": committed - decided, "messages": finished - committed,
            "longest_write_hold": longest.seconds, "longest_write_hold_stage": longest.stage,
            "write_holds": [(hold.stage, round(hold.seconds, 3)) for hold in wh.holds if hold.mode == "write"],
            "students_created": summary["students_created"], "messages_written": delivered["messages"]}


def main() -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students-per-school", type=int, default=3334)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # Generation is seeded, so the sheets are the same on every run (written outside the timings).
    district = generate_district(CACHE / f"district-{args.students_per_school}", seed=7,
                                 students_per_school=args.students_per_school)
    runs = []
    for _ in range(args.repeat):
        folder = Path(tempfile.mkdtemp())
        try:
            batch, secret = planned_registration(district, folder / "w.duckdb")
            runs.append(approve_once(folder / "w.duckdb", batch, secret))
        finally:
            shutil.rmtree(folder)
    timed = ("approve_to_committed_with_messages", "decision", "commit", "messages", "longest_write_hold")
    report = {
        "students_per_school": args.students_per_school,
        "repeat": args.repeat,
        "cores": os.cpu_count(),
        "students_created": runs[-1]["students_created"],
        "messages_written": runs[-1]["messages_written"],
        "median_seconds": {name: round(statistics.median(run[name] for run in runs), 3) for name in timed},
        "longest_write_hold_stage": collections.Counter(run["longest_write_hold_stage"] for run in runs).most_common(1)[0][0],
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
