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
from tasks.pipeline import advance_batch, ingest_and_validate, open_batch
from tasks.plan import build_plan
from tasks.review import ReviewError, close_review, decide_review, review_items
from warehouse import catalog
from warehouse.handle import Warehouse, opened

CACHE = Path(__file__).parent / ".cache"


def planned_registration(district, warehouse: Path) -> int:
    """A warehouse with the district's catalog and its registration planned (not timed)."""
    with opened(warehouse) as con:
        catalog.add_schools(con, list(district.schools), "bench")
        catalog.add_courses(con, district.courses, "bench")
        catalog.set_subscriptions(con, district.subscription_type, 10**7, "bench")
        config = {"files": [str(f) for f in district.registration_files], "term": district.registration_term,
                  "subscription_type": district.subscription_type}
        batch = open_batch(con, "bench-approve", "registration", config, "bench")
        ingest_and_validate(con, batch, config["files"], None, 1_048_575)
        match_batch(con, batch, MatchConfig())
        for item in review_items(con, batch, pending_only=True):
            try:
                decide_review(con, batch, item["review_id"], "link", "bench", 1)
            except ReviewError:  # the candidate is claimed by another row: a new student here
                decide_review(con, batch, item["review_id"], "new", "bench")
        close_review(con, batch)
        build_plan(con, batch)
    return batch


def approve_once(warehouse: Path, batch: int) -> dict:
    """Approve, commit and write the messages as `rosterflow approve` does; the timings and holds."""
    wh = Warehouse(warehouse, who="benchmarks.approve")
    started = time.perf_counter()
    with wh.write(batch=batch, stage="approve") as con:
        plan = advance_batch(con, batch)["plan"]
        decision = decide_batch(con, batch, "bench", True, plan["removals"], bool(plan["guard"]))
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
            batch = planned_registration(district, folder / "w.duckdb")
            runs.append(approve_once(folder / "w.duckdb", batch))
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
