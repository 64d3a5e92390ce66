"""Time every stage of a registration and the following migration on a generated district, and how
long each held the warehouse.

    python -m benchmarks.pipeline --students-per-school 3334 --repeat 3
    python -m benchmarks.pipeline --migration-rows 1000000 --repeat 1

Sheets are generated (seeded) into benchmarks/.cache before timing. Reports the median seconds of
each stage (messages: every teacher's roster written to the outbox and read back) over the repeats
(a fresh warehouse each time), rows per second, peak memory, and the longest write hold and read
hold of each run with its stage (medians over the runs): while a hold lasts, every other command
waits.

``--migration-rows N`` measures a migration of the N-row sheet of ``benchmarks.ingest`` (saved with
shared strings, as Excel saves it) against a warehouse already holding those students (written
directly in bulk, plus 5% who left: no password is hashed) through ingest, validation, matching,
review (decided by the benchmark) and plan: the stages that read a large sheet. Each repeat runs in
a fresh process, taking turns with a raw fastexcel read of the same sheet, so its peak memory (the
reader's child process included) is its own; it reports each stage (ingest: reading the files into
staged rows; validate: cleaning and checking them; write: both stored in one transaction), the
whole ingest-to-plan, its ratio to the raw read and the peak memory. The commit is left out: it
hashes a password per new student, which is not what this measures.

    python -m benchmarks.pipeline --migration-rows 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

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
from warehouse.connection import insert_frame, transaction
from warehouse.handle import Warehouse

CACHE = Path(__file__).parent / ".cache"


def _timed(timings: dict, name: str, function, *args):
    start = time.perf_counter()
    result = function(*args)
    timings.setdefault(name, []).append(time.perf_counter() - start)
    return result


def _decide_reviews(wh: Warehouse, batch: int) -> None:
    """Link every pending item to its first candidate (a new student when it is claimed)."""
    with wh.write(batch=batch, stage="review decisions") as con:
        for item in review_items(con, batch, pending_only=True):
            try:
                decide_review(con, batch, item["review_id"], "link", "bench", 1)
            except ReviewError:  # the candidate is claimed by another row: a new student here
                decide_review(con, batch, item["review_id"], "new", "bench")


def _stages_to_plan(wh: Warehouse, mode: str, batch: int, files: list[str], timings: dict) -> tuple[dict, dict, dict]:
    """Ingest + validate, match, review (decided by the benchmark) and plan, timing each."""
    ingest, _ = _timed(timings, f"{mode}.ingest_validate", ingest_and_validate, wh, batch, files, None, 1_048_575)
    match = _timed(timings, f"{mode}.match", match_batch, wh, batch, MatchConfig())
    _decide_reviews(wh, batch)
    close_review(wh, batch)
    plan = _timed(timings, f"{mode}.plan", build_plan, wh, batch)
    return ingest, match, plan


def run_once(district, warehouse: Path, timings: dict) -> tuple[dict, Warehouse]:
    """One registration and one migration through every stage, timing each, through one handle."""
    wh = Warehouse(warehouse, who="benchmark")
    with wh.write(stage="catalog") as con:
        catalog.add_schools(con, list(district.schools), "bench")
        catalog.add_courses(con, district.courses, "bench")
        catalog.set_subscriptions(con, district.subscription_type, 10**7, "bench")
        secret = add_approver(con, "bench")["secret"]
    counts = {}
    for mode, files, term in (("registration", district.registration_files, district.registration_term),
                              ("migration", district.migration_files, district.migration_term)):
        config = {"files": [str(f) for f in files], "term": term, "subscription_type": district.subscription_type}
        with wh.write(stage="open") as con:
            batch = open_batch(con, f"bench-{mode}", mode, config, "bench")
        ingest, match, plan = _stages_to_plan(wh, mode, batch, config["files"], timings)
        with wh.write(batch=batch, stage="approve") as con:
            decide_batch(con, batch, "bench", True, plan["removals"], bool(plan["guard"]), secret=secret,
                         plan_version=plan["version"])
        # The commit and the messages hold the warehouse themselves, only to read and to write.
        commit = _timed(timings, f"{mode}.commit", commit_batch, wh, batch, "bench")
        # Each teacher's roster written, read back whole, recorded; then the plain passwords go.
        _timed(timings, f"{mode}.messages", build_messages, wh, batch, warehouse.parent / "outbox", MailSettings())
        counts[mode] = {"rows": ingest["rows_staged"], **match, "removed": commit["students_removed"],
                        "created": commit["students_created"]}
    return counts, wh


def seed_students(wh: Warehouse, sheet: Path) -> None:
    """The large sheet's students as already registered (the same IDs and names; the sheet is read
    once, outside the timings), plus 5% more in each school who are not in the sheet: the leavers."""
    from benchmarks.ingest import COURSES, SCHOOLS

    import fastexcel

    rows = fastexcel.read_excel(sheet).load_sheet(0, dtypes="string").to_polars()
    school_ids = pl.DataFrame({"School": SCHOOLS, "school_id": range(1, len(SCHOOLS) + 1)},
                              schema={"School": pl.String, "school_id": pl.Int64})
    students = rows.join(school_ids, on="School").select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("student_key"),
        pl.col("Student First Name").alias("first_name"), pl.col("Student Last Name").alias("last_name"),
        pl.col("Student ID").alias("student_id"), pl.col("SSID").alias("ssid"),
        pl.col("Date of Birth").str.slice(0, 10).str.to_date().alias("date_of_birth"),
        pl.col("Grade").alias("grade"), "school_id")
    leavers = students.sample(fraction=0.05, seed=7).with_columns(
        student_key=pl.col("student_key") + 10_000_000, student_id=pl.lit("L") + pl.col("student_id"),
        ssid=pl.lit("L") + pl.col("ssid"), first_name=pl.lit("Left"))
    students = pl.concat([students, leavers]).with_columns(status=pl.lit("active"))
    with wh.write(stage="catalog") as con:
        catalog.add_schools(con, SCHOOLS, "bench")
        catalog.add_courses(con, {c: c for c in COURSES}, "bench")
        catalog.set_subscriptions(con, "K12", 10**8, "bench")
        assert dict(con.execute("SELECT name, school_id FROM schools").fetchall()) == dict(
            zip(SCHOOLS, range(1, len(SCHOOLS) + 1))), "schools were not numbered as expected"
        with transaction(con):
            insert_frame(con, "students", students)


def run_migration_once(sheet: Path, seeded: Path) -> dict:
    """A migration of the large sheet against its students, up to the plan, through one handle, on a
    copy of the seeded warehouse; in the calling process (``--child``: a fresh one)."""
    import schemas.roster  # noqa: F401  (imported before the clock, as the raw read imports fastexcel)
    import tasks.validate  # noqa: F401
    from benchmarks.ingest import time_parts

    spent: dict[str, float] = {}
    time_parts(spent)
    folder = Path(tempfile.mkdtemp())
    try:
        warehouse = folder / "w.duckdb"
        shutil.copy(seeded, warehouse)
        wh = Warehouse(warehouse, who="benchmark")
        config = {"files": [str(sheet)], "term": "Fall 2027", "subscription_type": "K12", "max_removal_share": 0.2}
        with wh.write(stage="open") as con:
            batch = open_batch(con, "bench-migration", "migration", config, "bench")
        timings: dict[str, list[float]] = {}
        start = time.perf_counter()
        ingest, match, plan = _stages_to_plan(wh, "migration", batch, config["files"], timings)
        whole = time.perf_counter() - start
    finally:
        shutil.rmtree(folder)
    seconds = {
        "ingest": spent["read_files"],
        "validate": spent["check_rows"],
        "write_staged_and_valid": spent["store_staged"] + spent["store_validation"],
        "ingest_validate": timings["migration.ingest_validate"][0],
        "match": timings["migration.match"][0],
        "plan": timings["migration.plan"][0],
        "ingest_to_plan": whole,
    }
    by_stage: dict[str, float] = {}
    for hold in wh.holds:
        name = f"{hold.mode}.{hold.stage}"
        by_stage[name] = max(by_stage.get(name, 0.0), hold.seconds)
    return {"seconds": seconds, "counts": {"rows": ingest["rows_staged"], **match, "removals": plan["removals"],
                                           "blockers": plan["blockers"]},
            "holds": longest_holds(wh), "holds_by_stage": by_stage}


def seeded_warehouse(sheet: Path) -> Path:
    """A warehouse holding the sheet's students (and the leavers), made once per sheet and cached."""
    seeded = CACHE / f"seeded-{sheet.stem}.duckdb"
    if not seeded.exists():
        partial = seeded.with_suffix(".part.duckdb")
        partial.unlink(missing_ok=True)
        seed_students(Warehouse(partial, who="benchmark"), sheet)
        partial.rename(seeded)
    return seeded


def migration_report(rows: int, repeat: int) -> dict:
    """The migration of ``rows`` rows, ``repeat`` times in fresh processes taking turns with the raw read."""
    from benchmarks.ingest import run as run_raw, sheet_path

    sheet = sheet_path(rows, "shared")
    seeded = seeded_warehouse(sheet)
    raws, runs = [], []
    for _ in range(repeat):
        raws.append(run_raw("raw", sheet))
        done = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--child", str(sheet), str(seeded)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the migration run failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seconds = {name: statistics.median(r["seconds"][name] for r in runs) for name in runs[0]["seconds"]}
    raw = statistics.median(r["seconds"] for r in raws)
    holds_by_stage = {name: round(statistics.median(r["holds_by_stage"].get(name, 0.0) for r in runs), 3)
                      for name in sorted({n for r in runs for n in r["holds_by_stage"]})}
    return {
        "migration_rows": rows, "registered_students": rows + round(rows * 0.05), "repeat": repeat,
        "counts": runs[-1]["counts"],
        "median_seconds": {name: round(value, 3) for name, value in seconds.items()},
        "raw_read_s": round(raw, 3),
        "ingest_to_plan_ratio_to_raw_read": round(seconds["ingest_to_plan"] / raw, 2),
        "rows_per_second": {name: round(rows / value) for name, value in seconds.items() if value},
        **hold_report([r["holds"] for r in runs]),
        "longest_hold_by_stage_median_seconds": holds_by_stage,
        "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
        "raw_read_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in raws)),
    }


def _child(sheet: str, seeded: str) -> None:
    measured = run_migration_once(Path(sheet), Path(seeded))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({**measured, "peak_rss_mb": max(own, children) / 1024}))


def longest_holds(wh: Warehouse) -> dict:
    """The run's longest write hold and read hold, with their stage."""
    found = {}
    for mode in ("write", "read"):
        hold = wh.longest_hold(mode)
        if hold is not None:
            found[mode] = {"seconds": hold.seconds, "stage": hold.stage, "batch": hold.batch}
    return found


def hold_report(runs: list[dict]) -> dict:
    """Medians over the runs of the longest write and read hold, the stage each run's longest was
    in, and the longest hold of each stage."""
    report = {}
    for mode in ("write", "read"):
        holds = [run[mode] for run in runs if mode in run]
        if holds:
            report[f"longest_{mode}_hold"] = {
                "median_seconds": round(statistics.median(h["seconds"] for h in holds), 3),
                "max_seconds": round(max(h["seconds"] for h in holds), 3),
                "stages": sorted({h["stage"] for h in holds}),
            }
    return report


def per_stage_holds(handles: list[Warehouse]) -> dict:
    """Per mode and stage, the median over the runs of that stage's longest hold."""
    longest: dict[str, list[float]] = {}
    for wh in handles:
        by_stage: dict[str, float] = {}
        for hold in wh.holds:
            name = f"{hold.mode}.{hold.stage}"
            by_stage[name] = max(by_stage.get(name, 0.0), hold.seconds)
        for name, seconds in by_stage.items():
            longest.setdefault(name, []).append(seconds)
    return {name: round(statistics.median(values), 3) for name, values in sorted(longest.items())}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students-per-school", type=int, default=3334)
    parser.add_argument("--migration-rows", type=int, help="measure a migration of this many rows instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    if args.migration_rows:
        print(json.dumps(migration_report(args.migration_rows, args.repeat), indent=2))
        return
    timings: dict[str, list[float]] = {}
    counts: dict = {}
    runs, handles = [], []
    # Generation is seeded, so the sheets are the same on every run (written outside the timings).
    district = generate_district(CACHE / f"district-{args.students_per_school}", seed=7,
                                 students_per_school=args.students_per_school)
    for _ in range(args.repeat):
        folder = Path(tempfile.mkdtemp())
        counts, wh = run_once(district, folder / "w.duckdb", timings)
        runs.append(longest_holds(wh))
        handles.append(wh)
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
        **hold_report(runs),
        "longest_hold_by_stage_median_seconds": per_stage_holds(handles),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
