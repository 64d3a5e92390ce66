"""Commands about approvers: `approver add|list|remove`, and how approve, reject and restore get the
approver's secret (``ROSTERFLOW_APPROVER_SECRET``, else a prompt in a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from rosterflow.cli.output import AddCommand, print_result, table_text
from rosterflow.settings import load_settings

if TYPE_CHECKING:
    from tasks.approvers import ApproverError

SECRET_HINT = ("Give the approver's secret in ROSTERFLOW_APPROVER_SECRET, or run the command in a terminal to be "
               "asked for it.")


def approver_secret(name: str | None) -> str | None:
    """The secret of approver ``name``: from the environment, else asked for (not echoed) when a person
    is at a terminal; None when neither can give it."""
    secret = load_settings().approver_secret
    if secret:
        return secret
    if sys.stdin.isatty():
        return getpass.getpass(f"Approver secret for {name or '(no name)'}: ") or None
    return None


def refused(error: ApproverError) -> int:
    """Say why the approver was refused (and how to give a secret, when none was given); exit 2."""
    print(f"error: {error}" + (f" {SECRET_HINT}" if error.reason == "no secret given" else ""), file=sys.stderr)
    return 2


def cmd_approver_add(args: argparse.Namespace) -> int:
    from tasks.approvers import ApproverError, add_approver, list_approvers

    with args.wh.read() as con:
        first = not list_approvers(con).height
    secret = None if first or not args.by else approver_secret(args.by)
    try:
        with args.wh.write() as con:
            added = add_approver(con, args.name, args.by, secret)
    except ApproverError as error:
        return refused(error)
    lines = [f"Approver {added['name']} added" + (
        " as the first approver, without anyone's secret (there was nobody to vouch). From now on, adding or "
        "removing an approver needs an existing approver's name and secret (--by NAME)." if added["first"]
        else f" by {added['added_by']}."),
        f"Their secret, shown this once (only its hash is kept; give it to {added['name']} and nobody else):",
        f"  {added['secret']}",
        "approve, reject and restore ask for it (or read it from ROSTERFLOW_APPROVER_SECRET)."]
    print_result(added, args.json, "\n".join(lines))
    return 0


def cmd_approver_list(args: argparse.Namespace) -> int:
    from tasks.approvers import list_approvers

    with args.wh.read() as con:
        frame = list_approvers(con, include_removed=args.all)
    print_result(frame.to_dicts(), args.json,
                 table_text(frame) if frame.height else "No approver is registered: add one with "
                 "`rosterflow approver add NAME`.")
    return 0


def cmd_approver_remove(args: argparse.Namespace) -> int:
    from tasks.approvers import ApproverError, remove_approver

    secret = approver_secret(args.by)
    try:
        with args.wh.write() as con:
            removed = remove_approver(con, args.name, args.by, secret)
    except ApproverError as error:
        return refused(error)
    print_result(removed, args.json, f"Approver {removed['name']} removed by {removed['removed_by']} (kept, marked "
                 "removed, for the audit).")
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `approver add|list|remove` to the sub-parsers ``sub``."""
    approver = sub.add_parser("approver", help="who may approve, reject and restore").add_subparsers(
        dest="approver_command", required=True)
    p = command("add", cmd_approver_add, "register an approver (prints their secret once)", approver)
    p.add_argument("name")
    p.add_argument("--by", help="an existing approver (needed once one exists); their secret is asked for")
    command("list", cmd_approver_list, "list the approvers (never their secrets)", approver).add_argument(
        "--all", action="store_true", help="include removed approvers")
    p = command("remove", cmd_approver_remove, "remove an approver (kept, marked removed, for the audit)", approver)
    p.add_argument("name")
    p.add_argument("--by", required=True, help="an existing approver; their secret is asked for")
