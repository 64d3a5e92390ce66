"""Commands of the inbox of recorded decisions: `inbox` lists the decisions waiting to be applied
(their command ended while the warehouse was busy), `inbox apply` applies them, each exactly once.
"""

from __future__ import annotations

import argparse
import sys

from rosterflow.cli.output import REQUEST_APPLIERS, AddCommand, print_result, table_text
from warehouse import requests


def cmd_inbox_list(args: argparse.Namespace) -> int:
    waiting = requests.pending(args.warehouse)
    rows = [{"request": r.request_id, "kind": r.kind, "batch": r.batch_id, "by": r.submitted_by,
             "submitted": r.submitted_at} for r in waiting]
    if args.json or not rows:
        print_result(rows, args.json, "No decisions are waiting: every recorded decision was applied.")
        return 0
    import polars as pl

    print(table_text(pl.DataFrame(rows)))
    print("Apply them with `rosterflow inbox apply`.")
    return 0


def cmd_inbox_apply(args: argparse.Namespace) -> int:
    """Apply every waiting decision in the order they were submitted; exit 2 if any was refused."""
    waiting = requests.pending(args.warehouse)
    if not waiting:
        print_result([], args.json, "No decisions are waiting.")
        return 0
    worst = 0
    for request in waiting:
        applier = REQUEST_APPLIERS.get(request.kind)
        if applier is None:
            print(f"error: request {request.request_id} is a {request.kind!r}, which this version of rosterflow "
                  "cannot apply; it is left in the inbox.", file=sys.stderr)
            worst = 2
            continue
        print(f"Applying request {request.request_id} ({request.kind}, batch {request.batch_id}, "
              f"by {request.submitted_by}, {request.submitted_at}):", file=sys.stderr)
        worst = max(worst, applier(args, request))
    return worst


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `inbox` and `inbox apply` to the sub-parsers ``sub``."""
    inbox = sub.add_parser("inbox", help="decisions recorded while the warehouse was busy").add_subparsers(
        dest="inbox_command", required=True)
    command("list", cmd_inbox_list, "list the decisions waiting to be applied", inbox)
    command("apply", cmd_inbox_apply, "apply the waiting decisions, each exactly once", inbox)
