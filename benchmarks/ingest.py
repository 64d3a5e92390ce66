"""Ingest + validate against the raw spreadsheet read, at 10k, 100k and 1M rows.

    python -m benchmarks.ingest [--sizes 10000 100000 1000000] [--repeat 3]

Sheets are generated once (seeded) and cached in benchmarks/.cache. Each measurement runs in a
fresh child process so its peak memory is its own (the parser's child process included). Reports
median seconds, the ratio rosterflow / raw read, and peak RSS in MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
SCHOOLS = [f"School {i:02d}" for i in range(20)]
COURSES = ["ALGE1", "ALGE2", "GEOM", "LV3", "LV4"]
HEADER = ["School", "Teacher First Name", "Teacher Last Name", "Teacher Email", "Class Period", "Course Code",
          "Student First Name", "Student Last Name", "Student ID", "SSID", "Other ID", "Date of Birth", "Grade"]


def sheet_path(rows: int) -> Path:
    """The cached roster of ``rows`` rows, generated on first use."""
    import xlsxwriter

    path = CACHE / f"ingest-{rows}.xlsx"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(rows)
    partial = path.with_suffix(".part.xlsx")
    workbook = xlsxwriter.Workbook(str(partial), {"constant_memory": True})
    sheet = workbook.add_worksheet("Roster")
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, HEADER)
    firsts = ["Ana", "Liam", "Noah", "Emma", "Olivia", "Mia", "Lucas", "Ethan", "Sofia", "José"]
    lasts = ["Silva", "Garcia", "Nguyen", "Smith", "Johnson", "Brown", "Lee", "Patel", "Kim", "Peña"]
    for r in range(1, rows + 1):
        school = rng.randrange(len(SCHOOLS))
        teacher = school * 10 + rng.randrange(10)
        sheet.write_row(r, 0, [SCHOOLS[school], f"T{teacher}", "Teacher", f"t{teacher}@example.org",
                               f"Period {rng.randint(1, 6)}", rng.choice(COURSES), rng.choice(firsts),
                               rng.choice(lasts), f"{r:08d}", f"S{r:09d}"])
        sheet.write_datetime(r, 11, dt.datetime(2008 + rng.randrange(10), rng.randint(1, 12), rng.randint(1, 28)),
                             date_format)
        sheet.write(r, 12, str(rng.randint(1, 12)))
    workbook.close()
    partial.rename(path)
    return path


def measure_raw(path: Path) -> float:
    import fastexcel

    start = time.perf_counter()
    fastexcel.read_excel(path).load_sheet(0).to_polars()
    return time.perf_counter() - start


def measure_rosterflow(path: Path) -> float:
    from tasks.pipeline import ingest_and_validate, open_batch
    from warehouse import catalog
    from warehouse.handle import Warehouse

    with tempfile.TemporaryDirectory() as folder:
        wh = Warehouse(Path(folder) / "w.duckdb", who="benchmark")
        with wh.write() as con:
            catalog.add_schools(con, SCHOOLS, "bench")
            catalog.add_courses(con, {c: c for c in COURSES}, "bench")
            config = {"files": [str(path)], "term": "Fall 2026", "subscription_type": "K12"}
            batch = open_batch(con, "bench", "migration", config, "bench")
        start = time.perf_counter()
        ingest, result = ingest_and_validate(wh, batch, [str(path)], None, 1_048_575)
        elapsed = time.perf_counter() - start
    assert ingest["rows_staged"] == result["rows_staged"] and not ingest["file_errors"], ingest
    return elapsed


def _child(kind: str, path: str) -> None:
    elapsed = measure_raw(Path(path)) if kind == "raw" else measure_rosterflow(Path(path))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": max(own, children) / 1024}))


def run(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--child", kind, str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    report = []
    for size in args.sizes:
        path = sheet_path(size)
        raw = [run("raw", path) for _ in range(args.repeat)]
        ours = [run("rosterflow", path) for _ in range(args.repeat)]
        raw_s = statistics.median(r["seconds"] for r in raw)
        ours_s = statistics.median(r["seconds"] for r in ours)
        report.append({
            "rows": size, "raw_read_s": round(raw_s, 3), "ingest_validate_s": round(ours_s, 3),
            "ratio": round(ours_s / raw_s, 2),
            "raw_peak_mb": round(max(r["peak_rss_mb"] for r in raw)),
            "ingest_validate_peak_mb": round(max(r["peak_rss_mb"] for r in ours)),
        })
        print(json.dumps(report[-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
