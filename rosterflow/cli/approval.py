"""Commands that decide a batch: `plan` (what it will do), `approve` (commit it and deliver its messages)
and `reject`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rosterflow.cli.intake import failure_text
from rosterflow.cli.output import AddCommand, count_arg, print_result, working_on
from rosterflow.settings import load_settings
from tasks.approve import ApprovalError, decide_batch
from tasks.commit import CommitError, commit_batch
from tasks.messages import MessageBuildFailed, deliver
from tasks.pipeline import advance_batch
from tasks.plan import plan_markdown, plan_tables
from tasks.report import write_plan_xlsx
from warehouse import batches


def cmd_plan(args: argparse.Namespace) -> int:
    with working_on(args, args.batch):
        progress = advance_batch(args.wh, args.batch)
    if progress["status"] == batches.STATUS_FAILED:
        print(failure_text(progress), file=sys.stderr)
        return 2
    if "plan" not in progress:
        print(f"error: batch {args.batch} has {progress['review']['pending']} review item(s) pending.",
              file=sys.stderr)
        return 2
    with args.wh.read() as con:
        tables = plan_tables(con, args.batch)
        if args.xlsx:
            print(f"Plan workbook: {write_plan_xlsx(con, args.batch, Path(args.xlsx))}", file=sys.stderr)
    summary = progress["plan"]
    data = {"summary": summary, **{name: frame.to_dicts() for name, frame in tables.items()}}
    print_result(data, args.json, plan_markdown(summary, tables))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    approve = args.command == "approve"
    advance_batch(args.wh, args.batch)
    with args.wh.write() as con:
        try:
            decision = decide_batch(con, args.batch, args.approver, approve, args.remove_count,
                                    args.override_guard, args.comment or "", load_settings().approvers)
            if not decision["approved"]:
                print_result(decision, args.json,
                             f"Batch {args.batch} rejected by {decision['approver']}: nothing changed.")
                return 0
            summary = commit_batch(con, args.batch, decision["approver"])
        except (ApprovalError, CommitError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            delivered = deliver(con, args.batch, Path(args.outbox), load_settings().mail)
        except MessageBuildFailed as failure:
            # The commit stands; the failure is recorded and shown by `rosterflow messages list`.
            summary["messages"] = {"error": failure.reason, "next": f"rosterflow messages build {args.batch}"}
            if args.json:
                print_result(summary, True)
            print(failure.advice, file=sys.stderr)
            return 1
    summary["outbox"] = delivered["outbox"]
    summary["messages"] = {k: delivered[k] for k in ("messages", "sent", "failed")}
    print_result(summary, args.json, f"Batch {args.batch} committed: " + json.dumps(summary, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `plan`, `approve` and `reject` to the sub-parsers ``sub``."""
    p = command("plan", cmd_plan, "show what the batch will do if approved")
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", help="also write the plan as a workbook to this path")
    for name, help_text in (("approve", "approve and commit a batch"), ("reject", "reject a batch")):
        p = command(name, cmd_approve, help_text)
        p.add_argument("batch", type=int)
        p.add_argument("--approver", required=True)
        p.add_argument("--remove-count", type=count_arg, help="the number of students the plan removes")
        p.add_argument("--override-guard", action="store_true")
        p.add_argument("--comment")
