"""How long light `rosterflow` commands take from typing to answer, on a small warehouse.

    python -m benchmarks.cli_startup                          # this checkout
    python -m benchmarks.cli_startup --root OLD --root .      # two checkouts (e.g. `git worktree add OLD REV`)

Builds a small warehouse (the sample district: 3 schools; its registration planned, awaiting
approval; its migration waiting for review) through the command line, then runs each command
``--repeat`` times in a fresh interpreter, the checkouts taking turns, and prints per checkout the
median wall-clock seconds and the median CPU seconds (user + system, which other work on the
machine disturbs less) as JSON. Every command pays its imports before it does anything, so this is
mostly start-up. ``review decide`` marks one of the migration's items unsure (escalated) each time,
under another reviewer's name: an escalated item still needs a decision, so every run is a decision
that leaves the batch waiting for review, the same work each time (the decision that closes a review
plans the batch: that is the plan's work, timed by ``benchmarks/pipeline.py``).

Each checkout's bytecode is compiled first (``compileall``), as Python leaves it after a command's
first run on a user's machine: with ``PYTHONDONTWRITEBYTECODE`` set (as on the machines this project
is built on) every command would otherwise compile the project's sources again. ``imports_s`` is
the part of a command spent importing (the top-level imports' cumulative times by ``-X
importtime``, one extra run); the rest is the interpreter's start and the command's own work,
opening and reading the warehouse.
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
PACKAGES = ("rosterflow", "tasks", "flows", "schemas", "warehouse")


def rosterflow(root: Path, warehouse: Path, *args: str, secret: str | None = None) -> subprocess.CompletedProcess:
    """Run one command of the checkout at ``root`` against ``warehouse`` (``secret``: the approver's)."""
    env = {**os.environ, **({"ROSTERFLOW_APPROVER_SECRET": secret} if secret else {}),
           "PYTHONPATH": str(root), "ROSTERFLOW_WAREHOUSE": str(warehouse),
           "ROSTERFLOW_OUTBOX": str(warehouse.parent / "outbox"), "ROSTERFLOW_UPLOADS": str(warehouse.parent / "uploads")}
    done = subprocess.run([sys.executable, "-m", "rosterflow.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"`rosterflow {' '.join(args)}` failed: {done.stderr}")
    return done


def small_warehouse(folder: Path) -> tuple[Path, int, int]:
    """The sample district's catalog and its registration committed, as in `make demo`; then the
    same registration again, planned and awaiting approval, and the migration waiting for review.
    Returns the warehouse, the planned batch and the batch in review."""
    district = generate_district(folder / "district", seed=2026)
    warehouse = folder / "warehouse.duckdb"
    rosterflow(ROOT, warehouse, "init")
    approver = json.loads(rosterflow(ROOT, warehouse, "approver", "add", "Pat Admin", "--json").stdout)
    rosterflow(ROOT, warehouse, "school", "add", *district.schools)
    rosterflow(ROOT, warehouse, "course", "add", *[f"{code}={name}" for code, name in district.courses.items()])
    rosterflow(ROOT, warehouse, "subscription", "set", district.subscription_type, str(district.subscriptions_available))

    def register(*flags: str) -> int:
        return json.loads(rosterflow(ROOT, warehouse, "register", *map(str, district.registration_files), "--term",
                                     district.registration_term, "--subscription", district.subscription_type,
                                     *flags, "--json").stdout)["batch_id"]

    committed = register()
    version = json.loads(rosterflow(ROOT, warehouse, "plan", str(committed), "--json").stdout)["summary"]["version"]
    rosterflow(ROOT, warehouse, "approve", str(committed), "--plan", version, "--approver", "Pat Admin",
               secret=approver["secret"])
    planned = register("--new")
    migration = json.loads(rosterflow(ROOT, warehouse, "migrate", *map(str, district.migration_files), "--term",
                                      district.migration_term, "--subscription", district.subscription_type,
                                      "--json").stdout)
    return warehouse, planned, migration["batch_id"]


def timed(root: Path, warehouse: Path, args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    rosterflow(root, warehouse, *args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_seconds(root: Path, warehouse: Path, args: list[str]) -> float:
    """Seconds one run of the command spends in its top-level imports (``-X importtime``)."""
    env = {**os.environ, "PYTHONPATH": str(root), "ROSTERFLOW_WAREHOUSE": str(warehouse),
           "ROSTERFLOW_OUTBOX": str(warehouse.parent / "outbox"), "ROSTERFLOW_UPLOADS": str(warehouse.parent / "uploads")}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "rosterflow.cli", *args], env=env,
                         capture_output=True, text=True, check=True)
    # Lines are "import time: self | cumulative | name"; a top-level import's name is not indented.
    return sum(int(line.split("|")[1]) for line in out.stderr.splitlines()
               if line.startswith("import time:") and "|" in line and not line.split("|")[2].startswith("  ")
               and line.split("|")[1].strip().isdigit()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, action="append",
                        help="a checkout whose commands are timed (repeatable; default: this one)")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    roots = [root.resolve() for root in options.root or [ROOT]]
    for root in roots:
        subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(root / package) for package in PACKAGES)],
                       check=True)
    with tempfile.TemporaryDirectory() as folder:
        warehouse, planned, in_review = small_warehouse(Path(folder))
        item = json.loads(rosterflow(ROOT, warehouse, "review", "list", str(in_review), "--json").stdout)[0]
        decisions = iter(range(1_000_000))
        commands = {"--help": lambda: ["--help"], "batch list": lambda: ["batch", "list"],
                    "review list": lambda: ["review", "list", str(in_review)], "plan": lambda: ["plan", str(planned)],
                    "review decide": lambda: ["review", "decide", str(in_review), str(item["review_id"]),
                                              "--action", "unsure", "--reviewer", f"reviewer {next(decisions)}"]}
        runs: dict[Path, dict[str, list[tuple[float, float]]]] = {root: {} for root in roots}
        imports: dict[Path, dict[str, float]] = {root: {} for root in roots}
        for name, args in commands.items():
            for _ in range(options.repeat):
                for root in roots:
                    runs[root].setdefault(name, []).append(timed(root, warehouse, args()))
            for root in roots:
                imports[root][name] = import_seconds(root, warehouse, args())
    report = {str(root): {name: {"wall_s": round(statistics.median(w for w, _ in times), 3),
                                 "cpu_s": round(statistics.median(c for _, c in times), 3),
                                 "imports_s": round(imports[root][name], 3)}
                          for name, times in commands_runs.items()}
              for root, commands_runs in runs.items()}
    print(json.dumps({"repeat": options.repeat, "median": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
