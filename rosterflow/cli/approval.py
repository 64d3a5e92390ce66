"""Commands that decide a batch: `plan` (what it will do, and its version), `approve` (commit exactly
that version and deliver its messages) and `reject`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rosterflow.cli.intake import failure_text
from rosterflow.cli.output import REQUEST_APPLIERS, AddCommand, apply_recorded, count_arg, print_result, working_on
from rosterflow.settings import load_settings
from rosterflow.cli.approvers import approver_secret, refused
from rosterflow.cli.progress import progress_bars
from warehouse import requests
from warehouse.requests import Request

APPROVE, REJECT = "batch.approve", "batch.reject"


def cmd_plan(args: argparse.Namespace) -> int:
    from tasks.pipeline import advance_batch, batch_position, settled_progress
    from tasks.plan_view import plan_markdown, plan_table_rows, plan_version
    from warehouse import batches

    def shown(con) -> tuple[dict, dict]:
        return {**progress["plan"], "version": plan_version(con, args.batch)}, plan_table_rows(con, args.batch)

    with working_on(args, args.batch):
        # A batch already planned, with no student changed since it was matched, is shown as the
        # warehouse recorded it, in one read.
        with args.wh.read(batch=args.batch, stage="plan") as con:
            progress = settled_progress(args.batch, *batch_position(con, args.batch))
            summary, tables = shown(con) if progress is not None and "plan" in progress else (None, None)
        if progress is None:
            # Showing the plan matches again when students changed since the batch was matched.
            with progress_bars(args) as bars:
                progress = advance_batch(args.wh, args.batch, bars)
    if progress["status"] == batches.STATUS_FAILED:
        print(failure_text(progress), file=sys.stderr)
        return 2
    if "plan" not in progress:
        print(f"error: batch {args.batch} has {progress['review']['pending']} review item(s) pending.",
              file=sys.stderr)
        return 2
    if summary is None or args.xlsx:
        with args.wh.read(batch=args.batch, stage="plan") as con:
            if summary is None:
                summary, tables = shown(con)
            if args.xlsx:
                from tasks.report import write_plan_xlsx

                print(f"Plan workbook: {write_plan_xlsx(con, args.batch, Path(args.xlsx))}", file=sys.stderr)
    print_result({"summary": summary, **tables}, args.json, plan_markdown(summary, tables) + (
        "" if summary["blockers"] else f"\n\nTo approve it: `rosterflow approve {args.batch} --plan "
        f"{summary['version']} --approver NAME" + (f" --remove-count {summary['removals']}" if summary.get("removals")
                                                     else "") + (" --override-guard" if summary["guard"] else "") + "`"))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """Decide exactly the plan shown: the version named by --plan, by the approver proven by their
    secret. Nothing here matches or plans again (only `rosterflow plan N` does). The decision is
    recorded first (without the secret) and applied when the warehouse is free."""
    approve = args.command == "approve"
    if approve and not (args.plan or "").strip():
        print(f"error: name the plan version you approve: `rosterflow plan {args.batch}` shows it; then "
              f"`rosterflow approve {args.batch} --plan VERSION --approver NAME`.", file=sys.stderr)
        return 2
    request = Request(
        request_id=args.request_id or requests.new_request_id(), kind=APPROVE if approve else REJECT,
        batch_id=args.batch, submitted_by=args.approver,
        payload={"approver": args.approver, "plan_version": args.plan, "removals_acknowledged": args.remove_count,
                 "override_guard": args.override_guard, "comment": args.comment or ""})
    return apply_recorded(args, request)


def apply_decision(args: argparse.Namespace, request: Request) -> int:
    """Apply a recorded approval or rejection (now, or later from the inbox): the approver gives
    their secret again (it is never recorded); an approval commits and delivers the messages. A
    batch already decided answers with its recorded decision, and one already committed says so."""
    from tasks.approve import ApprovalError, decide_batch
    from tasks.approvers import ApproverError
    from warehouse import batches

    decided = request.payload
    approve = request.kind == APPROVE
    secret = approver_secret(decided["approver"])
    try:
        with working_on(args, request.batch_id), args.wh.write(request.batch_id, "approve") as con:
            batches.require_batch(con, request.batch_id)
            try:
                decision = decide_batch(con, request.batch_id, decided["approver"], approve,
                                        decided["removals_acknowledged"], decided["override_guard"], decided["comment"],
                                        secret=secret, plan_version=decided["plan_version"])
            except ApproverError as error:
                return refused(error)
            except ApprovalError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
    finally:
        # Decided or refused, the request has had its answer; only a wait that ran out keeps it.
        requests.forget(args.warehouse, request.request_id)
    if not decision["approved"]:
        print_result(decision, args.json,
                     f"Batch {request.batch_id} rejected by {decision['approver']}: nothing changed.")
        return 0 if not approve else 2
    if not approve:
        print(f"error: batch {request.batch_id} was already approved by {decision['approver']}; it cannot be "
              "rejected now.", file=sys.stderr)
        return 2
    return _commit_and_deliver(args, request.batch_id, decision)


def _commit_and_deliver(args: argparse.Namespace, batch_id: int, decision: dict) -> int:
    from tasks.commit import CommitError, commit_batch
    from tasks.messages import MessageBuildFailed, deliver

    # The commit and the messages hold the warehouse only to read and to write, never while they hash or build.
    try:
        with progress_bars(args) as bars:
            summary = commit_batch(args.wh, batch_id, decision["approver"],
                                   progress=lambda text: print(text, file=sys.stderr, flush=True),
                                   hashed=bars("passwords hashed"))
    except CommitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary.get("already_committed"):
        print_result(summary, args.json, f"Batch {batch_id} was already committed (approved by "
                     f"{decision['approver']}): nothing was done again.")
        return 0
    try:
        with progress_bars(args) as bars:
            delivered = deliver(args.wh, batch_id, Path(args.outbox), load_settings().mail, bars("messages written"))
    except MessageBuildFailed as failure:
        # The commit stands; the failure is recorded and shown by `rosterflow messages list`.
        summary["messages"] = {"error": failure.reason, "next": f"rosterflow messages build {batch_id}"}
        if args.json:
            print_result(summary, True)
        print(failure.advice, file=sys.stderr)
        return 1
    summary["outbox"] = delivered["outbox"]
    summary["messages"] = {k: delivered[k] for k in ("messages", "sent", "failed")}
    print_result(summary, args.json, f"Batch {batch_id} committed: " + json.dumps(summary, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `plan`, `approve` and `reject` to the sub-parsers ``sub``."""
    p = command("plan", cmd_plan, "show what the batch will do if approved")
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", help="also write the plan as a workbook to this path")
    for name, help_text in (("approve", "approve and commit a batch"), ("reject", "reject a batch")):
        p = command(name, cmd_approve, help_text)
        p.add_argument("batch", type=int)
        p.add_argument("--approver", required=True,
                       help="a registered approver; their secret is read from ROSTERFLOW_APPROVER_SECRET or asked for")
        if name == "approve":
            p.add_argument("--plan", metavar="VERSION",
                           help="the plan version you approve, as `rosterflow plan N` shows it (required)")
        else:
            p.set_defaults(plan=None)
        p.add_argument("--remove-count", type=count_arg, help="the number of students the plan removes")
        p.add_argument("--override-guard", action="store_true")
        p.add_argument("--comment")
        p.add_argument("--request-id", help="an id for this decision, so a script can repeat it safely")
        p.set_defaults(records_request=True)
    REQUEST_APPLIERS[APPROVE] = REQUEST_APPLIERS[REJECT] = apply_decision
