"""Commands of the manual-review queue: `review list/decide/export/import`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rosterflow.cli.output import REQUEST_APPLIERS, AddCommand, apply_recorded, print_result, working_on
from rosterflow.cli.progress import progress_bars
from warehouse import requests
from warehouse.requests import Request

REVIEW_DECIDE = "review.decide"


def cmd_review_list(args: argparse.Namespace) -> int:
    from tasks.review import review_items

    with args.wh.read() as con:
        items = review_items(con, args.batch, pending_only=not args.all, escalated_only=args.escalated)
    if args.json:
        print_result(items, True)
        return 0
    if not items:
        print("Nothing to review.")
    for item in items:
        print(f"[{item['review_id']}] {item['first_name']} {item['last_name']}  born {item['date_of_birth']}  "
              f"ID {item['student_id'] or '-'}  ({item['file_name']}, sheet {item['sheet']}, row {item['excel_row']})")
        print(f"     why: {item['reason']}   status: {item['status']}" +
              (f" -> {item['action']} by {item['reviewer']}" if item["action"] else ""))
        for c in item["candidates"]:
            print(f"     candidate {c['rank']}: {c['first_name']} {c['last_name']}  born {c['date_of_birth']}  "
                  f"ID {c['student_id'] or '-'}  {c['school']}  score {c['score']:.0f}: {c['agreement']}")
    return 0


def cmd_review_decide(args: argparse.Namespace) -> int:
    request = Request(
        request_id=args.request_id or requests.new_request_id(), kind=REVIEW_DECIDE, batch_id=args.batch,
        submitted_by=args.reviewer,
        payload={"reviewer": args.reviewer, "source": "decide",
                 "decisions": [{"review_id": args.item, "action": args.action, "candidate": args.candidate}]})
    return apply_recorded(args, request)


def apply_review_decide(args: argparse.Namespace, request: Request) -> int:
    """Apply a recorded `review decide` (now, or later from the inbox) and say where the batch stands."""
    from tasks.pipeline import advance_batch
    from tasks.review import apply_review_request

    with working_on(args, request.batch_id):
        try:
            with args.wh.write(request.batch_id, "review") as con:
                outcome = apply_review_request(con, request)
        except (ValueError, LookupError):
            requests.forget(args.warehouse, request.request_id)  # refused (no such batch): nothing to apply later
            raise
        requests.forget(args.warehouse, request.request_id)
        if outcome["problems"]:
            print("error: " + " ".join(outcome["problems"]), file=sys.stderr)
            return 2
        with progress_bars(args) as bars:
            progress = advance_batch(args.wh, request.batch_id, bars)
    pending = progress["review"]["pending"]
    decided = request.payload["decisions"][0]
    again = " (this request was already applied)" if outcome.get("already_applied") else ""
    print_result({**outcome, "review_id": decided["review_id"], "changed": bool(outcome["applied"]),
                  "pending": pending, "status": progress["status"]}, args.json,
                 f"Item {decided['review_id']}: {decided['action']}{' (unchanged)' if not outcome['applied'] else ''}"
                 f"{again}; {pending} pending")
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    from tasks.review_sheet import export_review_xlsx

    with args.wh.read() as con:
        path = export_review_xlsx(con, args.batch, Path(args.xlsx), pending_only=args.pending)
    print_result({"path": str(path)}, args.json, f"Review sheet: {path} (fill the decision column, then "
                                                 f"`rosterflow review import {args.batch} {path} --reviewer NAME`)")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    from tasks.pipeline import advance_batch
    from tasks.review import ReviewError
    from tasks.review_sheet import import_review_xlsx

    with working_on(args, args.batch):
        try:
            with args.wh.write() as con:
                counts = import_review_xlsx(con, args.batch, Path(args.path), args.reviewer)
        except ReviewError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        with progress_bars(args) as bars:
            progress = advance_batch(args.wh, args.batch, bars)
    pending = progress["review"]["pending"]
    print_result({**counts, "pending": pending, "status": progress["status"]}, args.json,
                 f"{counts['applied']} decision(s) applied, {counts['unchanged']} unchanged, {counts['skipped']} left "
                 f"empty; {pending} pending")
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `review` and its commands to the sub-parsers ``sub``."""
    REQUEST_APPLIERS[REVIEW_DECIDE] = apply_review_decide
    review = sub.add_parser("review", help="the manual-review queue").add_subparsers(dest="review_command",
                                                                                    required=True)
    p = command("list", cmd_review_list, "list review items with their candidates", review)
    p.add_argument("batch", type=int)
    p.add_argument("--all", action="store_true", help="include decided items")
    p.add_argument("--escalated", action="store_true", help="only items a reviewer was unsure of")
    p = command("decide", cmd_review_decide, "decide one review item", review)
    p.add_argument("batch", type=int)
    p.add_argument("item", type=int)
    p.add_argument("--action", required=True, choices=["link", "new", "exclude", "unsure"],
                   help="unsure escalates the item: recorded, but it still needs a decision")
    p.add_argument("--candidate", type=int, help="candidate number, for link")
    p.add_argument("--reviewer", required=True)
    p.add_argument("--request-id", help="an id for this decision, so a script can repeat it safely: the same id "
                   "is applied once")
    p.set_defaults(records_request=True)
    p = command("export", cmd_review_export, "write the review queue to a spreadsheet to decide in Excel", review)
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", required=True, help="where to write the workbook")
    p.add_argument("--pending", action="store_true", help="only items still needing a decision")
    p = command("import", cmd_review_import, "apply the decisions of a filled-in review spreadsheet", review)
    p.add_argument("batch", type=int)
    p.add_argument("path")
    p.add_argument("--reviewer", required=True)
