"""Matching speed and memory: 10k rows against 100k students, and 1M against 1M.

    python -m benchmarks.matching_speed [--cases 10000:100000 1000000:1000000] [--repeat 3]

Districts come from benchmarks/districts.py (seeded, cached as Parquet in benchmarks/.cache).
Each measurement runs in a fresh child process that reads the two frames and calls
``match_rows`` once, so its peak memory is its own; the time covers the matcher only. Reports the
median seconds over the repeats, rows per second, and the child's peak RSS in MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks.districts import generate

CACHE = Path(__file__).parent / ".cache"


def frames(rows: int, students: int, seed: int = 7) -> tuple[Path, Path]:
    """Parquet files of ``rows`` incoming rows and ``students`` existing students (generated once)."""
    incoming_path = CACHE / f"match-{rows}-{students}-{seed}-incoming.parquet"
    existing_path = CACHE / f"match-{rows}-{students}-{seed}-existing.parquet"
    if not (incoming_path.exists() and existing_path.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        incoming, existing, _ = generate(students, seed)
        if rows < incoming.height:
            incoming = incoming.sample(rows, seed=seed).sort("row_no")
        existing.write_parquet(existing_path)
        incoming.write_parquet(incoming_path)
    return incoming_path, existing_path


def _child(incoming_path: str, existing_path: str) -> None:
    from tasks.matching import MatchConfig, match_rows

    incoming, existing = pl.read_parquet(incoming_path), pl.read_parquet(existing_path)
    start = time.perf_counter()
    decisions = match_rows(incoming, existing, MatchConfig())
    seconds = time.perf_counter() - start
    counts = dict(decisions["decision"].value_counts().rows())
    print(json.dumps({"seconds": seconds, "rows": incoming.height, "students": existing.height,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "decisions": counts}))


def measure(rows: int, students: int, repeat: int) -> dict:
    """Median time and peak memory of matching ``rows`` against ``students``."""
    incoming_path, existing_path = frames(rows, students)
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-m", "benchmarks.matching_speed", "--child", str(incoming_path),
                              str(existing_path)], check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = statistics.median(r["seconds"] for r in runs)
    return {"rows": runs[0]["rows"], "students": runs[0]["students"], "median_seconds": round(seconds, 2),
            "runs": [round(r["seconds"], 2) for r in runs], "rows_per_second": int(runs[0]["rows"] / seconds),
            "peak_mb": round(max(r["peak_mb"] for r in runs)), "decisions": runs[0]["decisions"]}


def main() -> None:
    """Run the speed benchmark and print one JSON line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10000:100000", "1000000:1000000"],
                        help="ROWS:STUDENTS pairs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    for case in args.cases:
        rows, students = (int(x) for x in case.split(":"))
        print(json.dumps(measure(rows, students, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
