"""How long light `rosterflow` commands take from typing to answer, on a small warehouse.

    python -m benchmarks.cli_startup                          # this checkout
    python -m benchmarks.cli_startup --root OLD --root .      # two checkouts (e.g. `git worktree add OLD REV`)

Builds a small warehouse (the sample district: 3 schools; its registration planned, awaiting
approval; its migration waiting for review) through the command line, then runs each command
``--repeat`` times in a fresh interpreter, the checkouts taking turns, and prints per checkout the
median wall-clock seconds and the median CPU seconds (user + system, which other work on the
machine disturbs less) as JSON. Every command pays its imports before it does anything, so this is
mostly start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rosterflow.sample_district import generate_district

ROOT = Path(__file__).resolve().parent.parent


def rosterflow(root: Path, warehouse: Path, *args: str) -> subprocess.CompletedProcess:
    """Run one command of the checkout at ``root`` against ``warehouse``."""
    env = {**os.environ, "PYTHONPATH": str(root), "ROSTERFLOW_WAREHOUSE": str(warehouse),
           "ROSTERFLOW_OUTBOX": str(warehouse.parent / "outbox"), "ROSTERFLOW_UPLOADS": str(warehouse.parent / "uploads")}
    done = subprocess.run([sys.executable, "-m", "rosterflow.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"`rosterflow {' '.join(args)}` failed: {done.stderr}")
    return done


def small_warehouse(folder: Path) -> tuple[Path, int, int]:
    """The sample district's catalog, its registration planned and its migration in review."""
    district = generate_district(folder / "district", seed=2026)
    warehouse = folder / "warehouse.duckdb"
    rosterflow(ROOT, warehouse, "init")
    rosterflow(ROOT, warehouse, "school", "add", *district.schools)
    rosterflow(ROOT, warehouse, "course", "add", *[f"{code}={name}" for code, name in district.courses.items()])
    rosterflow(ROOT, warehouse, "subscription", "set", district.subscription_type, str(district.subscriptions_available))
    registration = json.loads(rosterflow(ROOT, warehouse, "register", *map(str, district.registration_files), "--term",
                                         district.registration_term, "--subscription", district.subscription_type,
                                         "--json").stdout)
    migration = json.loads(rosterflow(ROOT, warehouse, "migrate", *map(str, district.migration_files), "--term",
                                      district.migration_term, "--subscription", district.subscription_type,
                                      "--json").stdout)
    return warehouse, registration["batch_id"], migration["batch_id"]


def timed(root: Path, warehouse: Path, args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    rosterflow(root, warehouse, *args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, action="append",
                        help="a checkout whose commands are timed (repeatable; default: this one)")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    roots = [root.resolve() for root in options.root or [ROOT]]
    with tempfile.TemporaryDirectory() as folder:
        warehouse, planned, in_review = small_warehouse(Path(folder))
        commands = {"--help": ["--help"], "batch list": ["batch", "list"],
                    "review list": ["review", "list", str(in_review)], "plan": ["plan", str(planned)]}
        runs: dict[Path, dict[str, list[tuple[float, float]]]] = {root: {} for root in roots}
        for name, args in commands.items():
            for _ in range(options.repeat):
                for root in roots:
                    runs[root].setdefault(name, []).append(timed(root, warehouse, args))
    report = {str(root): {name: {"wall_s": round(statistics.median(w for w, _ in times), 3),
                                 "cpu_s": round(statistics.median(c for _, c in times), 3)}
                          for name, times in commands_runs.items()}
              for root, commands_runs in runs.items()}
    print(json.dumps({"repeat": options.repeat, "median": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
