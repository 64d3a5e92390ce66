"""`make demo`: a sample district's registration, then next year's migration, end to end.

The demo acts as the data team, the reviewer and the administrator through the `rosterflow`
command line, printing each command as a person would type it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import polars as pl

from rosterflow import cli
from rosterflow.sample_district import HEADER, generate_district
from tasks.exports import write_xlsx

DEMO_DIR = Path("var/demo")


def rosterflow(*args: str, quiet: bool = False) -> dict | list | None:
    """Run one `rosterflow` command as typed, print it and its output; return parsed --json output."""
    argv = ["--warehouse", str(DEMO_DIR / "warehouse.duckdb"), "--outbox", str(DEMO_DIR / "outbox"), *args]
    if not quiet:
        print(f"\n$ rosterflow {shlex.join(args)}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    output = buffer.getvalue()
    if code != 0:
        raise SystemExit(f"demo step failed (exit {code}): rosterflow {shlex.join(args)}")
    if "--json" in args:
        data = json.loads(output)
        if not quiet:
            print(f"  (batch {data['batch_id']}: {data['status']})" if isinstance(data, dict) and "batch_id" in data
                  else "  (json)")
        return data
    if not quiet:
        print(output.rstrip())
    return None


def decide_like_a_reviewer(batch: int) -> int:
    """Link a row to its best candidate when the evidence supports it, else create a new student."""
    items = rosterflow("review", "list", str(batch))  # shown to the reader
    items = rosterflow("review", "list", str(batch), "--json", quiet=True)
    for item in items:
        best = item["candidates"][0] if item["candidates"] else None
        same_person = best is not None and best["last_name"] == item["last_name"] and best["score"] >= 80
        if same_person:
            rosterflow("review", "decide", str(batch), str(item["review_id"]), "--action", "link",
                       "--candidate", "1", "--reviewer", "Rita Reviewer")
        else:
            rosterflow("review", "decide", str(batch), str(item["review_id"]), "--action", "new",
                       "--reviewer", "Rita Reviewer")
    return len(items)


def main() -> int:
    """Run the demo and print what happened and where the outputs are."""
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    district = generate_district(DEMO_DIR / "sheets", seed=2026)
    print("rosterflow demo: a sample district with 3 schools, registered for", district.registration_term,
          "then migrated to", district.migration_term)

    rosterflow("init")
    # The demo's approver: registered once, their secret (printed once) given to approve as a person
    # would (here through the environment variable the command reads).
    approver = rosterflow("approver", "add", "Pat Admin", "--json", quiet=True)
    print('\n$ rosterflow approver add "Pat Admin"\n  (the first approver; their secret is printed once)')
    os.environ["ROSTERFLOW_APPROVER_SECRET"] = approver["secret"]
    rosterflow("school", "add", *district.schools)
    rosterflow("course", "add", *[f"{code}={name}" for code, name in district.courses.items()])
    rosterflow("subscription", "set", district.subscription_type, str(district.subscriptions_available))

    print("\n== Year 1: batch registration ==")
    registration = rosterflow("register", *map(str, district.registration_files), "--term", district.registration_term,
                              "--subscription", district.subscription_type, "--json")
    batch = str(registration["batch_id"])
    rosterflow("plan", batch)
    version = rosterflow("plan", batch, "--json", quiet=True)["summary"]["version"]
    rosterflow("approve", batch, "--plan", version, "--approver", "Pat Admin")

    print("\n== Year 2: yearly migration (partial sheets from each school) ==")
    migration = rosterflow("migrate", *map(str, district.migration_files), "--term", district.migration_term,
                           "--subscription", district.subscription_type, "--json")
    batch = str(migration["batch_id"])
    rosterflow("batch", "issues", batch)
    resolved = decide_like_a_reviewer(int(batch))
    plan = rosterflow("plan", batch, "--json", quiet=True)
    issues = rosterflow("batch", "issues", batch, "--json", quiet=True)
    invalid = [i for i in issues if i["severity"] == "error" and i["row"] is not None]
    for school in plan["summary"]["held_schools"]:
        print(f"\n== {school} is held by its invalid row: the data team fixes the sheet and uploads it to "
              f"batch {batch} ==")
        source = next(p for p in district.migration_files if school.lower().replace(" ", "-") in p.name)
        sheet = pl.read_excel(source, engine="calamine", infer_schema_length=0)
        bad_rows = {i["row"] for i in invalid if i["file"] == source.name}
        fixed = sheet.with_row_index("excel_row", offset=2).with_columns(
            pl.when(pl.col("excel_row").is_in(sorted(bad_rows)))
            .then(pl.col(HEADER["date_of_birth"]).str.to_date("%m/%d/%Y", strict=False).cast(pl.String))
            .otherwise(pl.col(HEADER["date_of_birth"]))
            .alias(HEADER["date_of_birth"])
        ).drop("excel_row")
        corrected = write_xlsx(source.with_name(source.stem + "-corrected.xlsx"), {"Roster": fixed})
        # The corrected sheet replaces the one with the same teachers; review decisions already made stand.
        rosterflow("upload", batch, str(corrected), "--by", "Pat Admin")
        resolved += decide_like_a_reviewer(int(batch))
        plan = rosterflow("plan", batch, "--json", quiet=True)
    rosterflow("plan", batch)
    plan = rosterflow("plan", batch, "--json", quiet=True)
    rosterflow("approve", batch, "--plan", plan["summary"]["version"], "--approver", "Pat Admin",
               "--remove-count", str(plan["summary"]["removals"]))

    batches = rosterflow("batch", "list", "--json", quiet=True)
    summaries = {}
    for b in batches:
        shown = rosterflow("batch", "show", str(b["batch_id"]), "--json", quiet=True)
        summaries[b["batch_id"]] = shown["results"]
    migrations = [s for b, s in summaries.items() if s["plan"]["mode"] == "migration"]
    automatic = sum(s["match"]["matched"] for s in migrations)
    new_students = sum(s["commit"]["students_created"] for s in migrations)
    removed = sum(s["commit"]["students_removed"] for s in migrations)

    print("\n== What happened ==")
    print(f"Registration: {summaries[1]['commit']['students_created']} students, "
          f"{summaries[1]['commit']['classes_created']} classes, {summaries[1]['commit']['teachers_created']} teachers.")
    print(f"Migration: {automatic} rows matched automatically, {resolved} review items resolved, "
          f"{new_students} new students, {removed} students removed (restorable).")
    for issue in invalid:
        print(f"Invalid row reported: {issue['file']}, sheet {issue['sheet']}, row {issue['row']}, column "
              f"{issue['column']}: {issue['value']!r} {issue['problem']}")
    print(f"\nWarehouse: {DEMO_DIR / 'warehouse.duckdb'}\nTeacher rosters and confirmations: {DEMO_DIR / 'outbox'}"
          f"\nSheets used: {DEMO_DIR / 'sheets'}")
    ok = automatic >= 1 and resolved >= 1 and new_students >= 1 and removed >= 1 and invalid
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
