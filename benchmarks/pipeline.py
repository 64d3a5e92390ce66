"""Time every stage of a registration and the following migration on a generated district.

    python -m benchmarks.pipeline --students-per-school 3334 --repeat 3

Sheets are generated (seeded) into benchmarks/.cache before timing. Reports the median seconds of
each stage (messages: every teacher's roster written to the outbox and read back) over the repeats (a fresh warehouse each time), rows per second, and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rosterflow.sample_district import generate_district
from tasks.approve import decide_batch
from tasks.approvers import add_approver
from tasks.commit import commit_batch
from tasks.match import match_batch
from tasks.messages import MailSettings, build_messages
from tasks.matching import MatchConfig
from tasks.pipeline import ingest_and_validate, open_batch
from tasks.plan import build_plan
from tasks.review import ReviewError, close_review, decide_review, review_items
from warehouse import catalog
from warehouse.handle import opened

CACHE = Path(__file__).parent / ".cache"


def _timed(timings: dict, name: str, function, *args):
    start = time.perf_counter()
    result = function(*args)
    timings.setdefault(name, []).append(time.perf_counter() - start)
    return result


def run_once(district, warehouse: Path, timings: dict) -> dict:
    """One registration and one migration through every stage, timing each."""
    with opened(warehouse) as con:
        catalog.add_schools(con, list(district.schools), "bench")
        catalog.add_courses(con, district.courses, "bench")
        catalog.set_subscriptions(con, district.subscription_type, 10**7, "bench")
        secret = add_approver(con, "bench")["secret"]
        counts = {}
        for mode, files, term in (("registration", district.registration_files, district.registration_term),
                                  ("migration", district.migration_files, district.migration_term)):
            config = {"files": [str(f) for f in files], "term": term, "subscription_type": district.subscription_type}
            batch = open_batch(con, f"bench-{mode}", mode, config, "bench")
            ingest, _ = _timed(timings, f"{mode}.ingest_validate", ingest_and_validate, con, batch, config["files"],
                               None, 1_048_575)
            match = _timed(timings, f"{mode}.match", match_batch, con, batch, MatchConfig())
            for item in review_items(con, batch, pending_only=True):
                try:
                    decide_review(con, batch, item["review_id"], "link", "bench", 1)
                except ReviewError:  # the candidate is claimed by another row: a new student here
                    decide_review(con, batch, item["review_id"], "new", "bench")
            close_review(con, batch)
            plan = _timed(timings, f"{mode}.plan", build_plan, con, batch)
            decide_batch(con, batch, "bench", True, plan["removals"], bool(plan["guard"]), secret=secret,
                         plan_version=plan["version"])
            commit = _timed(timings, f"{mode}.commit", commit_batch, con, batch, "bench")
            # Each teacher's roster written, read back whole, recorded; then the plain passwords go.
            _timed(timings, f"{mode}.messages", build_messages, con, batch, warehouse.parent / "outbox", MailSettings())
            counts[mode] = {"rows": ingest["rows_staged"], **match, "removed": commit["students_removed"],
                            "created": commit["students_created"]}
    return counts


def main() -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students-per-school", type=int, default=3334)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # Generation is seeded, so the sheets are the same on every run (written outside the timings).
    district = generate_district(CACHE / f"district-{args.students_per_school}", seed=7,
                                 students_per_school=args.students_per_school)
    timings: dict[str, list[float]] = {}
    counts = {}
    for _ in range(args.repeat):
        folder = Path(tempfile.mkdtemp())
        counts = run_once(district, folder / "w.duckdb", timings)
        shutil.rmtree(folder)
    report = {
        "students_per_school": args.students_per_school,
        "repeat": args.repeat,
        "counts": counts,
        "median_seconds": {name: round(statistics.median(values), 3) for name, values in timings.items()},
        "rows_per_second": {
            name: round(counts[name.split(".")[0]]["rows"] / statistics.median(values))
            for name, values in timings.items()
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
