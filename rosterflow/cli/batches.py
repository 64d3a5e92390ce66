"""Commands that follow batches: `batch list/resume/show/issues`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rosterflow.cli.intake import report_progress
from rosterflow.cli.output import AddCommand, issue_lines, print_result, rows_text, working_on
from rosterflow.cli.progress import progress_bars
from warehouse.locks import lock_holder


def cmd_batch_list(args: argparse.Namespace) -> int:
    from tasks.pipeline import interrupted_batches
    from warehouse import batches

    # Rows, not a frame: a short listing needs no polars, and people type it often.
    with args.wh.read() as con:
        result = con.execute("SELECT batch_id, mode, term, subscription_type, status, created_at, decided_by"
                             " FROM batches ORDER BY batch_id")
        columns = [d[0] for d in result.description]
        rows = [dict(zip(columns, values)) for values in result.fetchall()]
        interrupted = set(interrupted_batches(con, args.warehouse))
    for row in rows:
        if row["batch_id"] in interrupted:
            row["status"] = batches.STATUS_INTERRUPTED
    hidden = sum(1 for row in rows if row["status"] == batches.STATUS_FAILED)
    if not args.all:
        rows = [row for row in rows if row["status"] != batches.STATUS_FAILED]
    text = rows_text(columns, rows) if rows else "No batches yet."
    if interrupted:
        text += "\ninterrupted: its process stopped before the batch reached review or approval; " \
                "finish it with `rosterflow batch resume N`."
    if hidden and not args.all:
        text += f"\n{hidden} failed batch(es) not shown (files that could not be read): `rosterflow batch list --all`."
    print_result(rows, args.json, text)
    return 0


def cmd_batch_resume(args: argparse.Namespace) -> int:
    from tasks.pipeline import advance_batch
    from tasks.validate import batch_issues
    from warehouse import batches

    with args.wh.read() as con:
        batch = batches.get_batch(con, args.batch)
        if batch["status"] == batches.STATUS_FAILED:
            print(f"error: batch {args.batch} failed because a file could not be read; it cannot be resumed. "
                  f"See `rosterflow batch issues {args.batch}`, fix the files and register them again.",
                  file=sys.stderr)
            return 2
        if batch["status"] == "collecting":
            print(f"error: batch {args.batch} is collecting uploads; when every sheet is in, run "
                  f"`rosterflow all-uploaded {args.batch} --by NAME`.", file=sys.stderr)
            return 2
    # Resuming is for a batch nobody works on: refuse at once if a live process holds it.
    with working_on(args, args.batch, wait=False), progress_bars(args) as bars:
        result = advance_batch(args.wh, args.batch, bars)
    with args.wh.read() as con:
        issues = batch_issues(con, args.batch)
    return report_progress(args, result, issues)


def cmd_batch_show(args: argparse.Namespace) -> int:
    from tasks.validate import batch_issues
    from warehouse import batches

    with args.wh.read() as con:
        batch = batches.get_batch(con, args.batch)
        batch["status"] = batches.shown_status(batch["status"], lock_holder(args.warehouse, args.batch) is not None)
        batch["results"] = {stage: batches.stage_result(con, args.batch, stage) for stage in batch["stages"]}
        issues = batch_issues(con, args.batch)
    batch["issues"] = issues.to_dicts()
    text = json.dumps({k: v for k, v in batch.items() if k != "issues"}, indent=2, default=str)
    if issues.height:
        text += "\n\nIssues:\n" + "\n".join(issue_lines(issues))
    print_result(batch, args.json, text)
    return 0


def cmd_issues(args: argparse.Namespace) -> int:
    from tasks.validate import batch_issues, write_issue_report

    with args.wh.read() as con:
        issues = batch_issues(con, args.batch)
        if args.xlsx:
            write_issue_report(con, args.batch, args.xlsx)
            print(f"Report written to {args.xlsx}", file=sys.stderr)
    print_result(issues.to_dicts(), args.json, "\n".join(issue_lines(issues)) if issues.height else "No issues.")
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `batch` and its commands to the sub-parsers ``sub``."""
    batch = sub.add_parser("batch", help="batches").add_subparsers(dest="batch_command", required=True)
    command("list", cmd_batch_list, "list batches (failed ones with --all)", batch).add_argument(
        "--all", action="store_true", help="include failed batches (files that could not be read)")
    command("resume", cmd_batch_resume, "finish an interrupted batch (up to review or approval)", batch).add_argument(
        "batch", type=int)
    command("show", cmd_batch_show, "show a batch, its stages and issues", batch).add_argument("batch", type=int)
    p = command("issues", cmd_issues, "the validation report of a batch", batch)
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", type=Path, help="also write the report as an .xlsx file")
