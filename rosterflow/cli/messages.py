"""Commands of the message center (rosters and confirmations): `messages list/send/build/purge`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from rosterflow.cli.output import AddCommand, print_result
from rosterflow.cli.progress import progress_bars
from rosterflow.settings import load_settings


def cmd_messages_list(args: argparse.Namespace) -> int:
    import polars as pl

    from tasks.messages import failed_builds, message_center

    with args.wh.read() as con:
        messages = message_center(con, args.batch)
        builds = failed_builds(con, args.batch)
    rows = messages.with_columns(pl.col("created_at", "sent_at", "files_purged_at").cast(pl.String)).to_dicts()
    # A batch whose messages could not be built shows as one failed entry, so it is never missed.
    failures = [{"batch_id": b["batch_id"], "kind": "build", "status": "failed", "error": b["error"],
                 "attempts": b["attempts"], "plain_passwords": b["plain_passwords"],
                 "next": f"rosterflow messages build {b['batch_id']}"} for b in builds.to_dicts()]
    if args.json:
        print_result(rows + failures, True)
        return 0
    if not rows and not failures:
        print("No messages.")
    for f in failures:
        print(f"batch {f['batch_id']}  BUILD FAILED: {f['error']}; {f['plain_passwords']} plain password(s) kept; "
              f"messages held. Fix it and run `{f['next']}`")
    for m in rows:
        print(f"[{m['message_id']}] batch {m['batch_id']}  {m['status']:<7} to {m['recipient']}: {m['subject']}"
              + (f"  ({m['error']})" if m["error"] else "")
              + (f"  [files purged {m['files_purged_at'][:10]}]" if m["files_purged_at"] else ""))
    return 0


def cmd_messages_build(args: argparse.Namespace) -> int:
    import polars as pl

    from tasks.messages import MessageBuildFailed, MessageError, build_messages

    mail = load_settings().mail
    try:
        with progress_bars(args) as bars:
            messages = build_messages(args.wh, args.batch, Path(args.outbox), mail, bars("messages written"))
    except MessageBuildFailed as failure:
        print(f"error: batch {args.batch}: messages could not be written: {failure.reason}. Fix it and run "
              f"`rosterflow messages build {args.batch}` again.", file=sys.stderr)
        return 1
    except MessageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = messages["status"].value_counts().sort("status").rows()
    print_result(messages.with_columns(pl.col("created_at", "sent_at", "files_purged_at").cast(pl.String)).to_dicts(),
                 args.json, f"Batch {args.batch}: {messages.height} message(s), every issued password read back from "
                            f"them ({', '.join(f'{n} {status}' for status, n in counts)}); plain passwords purged."
                 + ("" if mail.smtp_host else " No SMTP server is configured: they are in the outbox."))
    return 0


def cmd_messages_purge(args: argparse.Namespace) -> int:
    from tasks.messages import purge_sent_files

    before = dt.datetime.combine(args.sent_before, dt.time())
    with args.wh.write() as con:
        result = purge_sent_files(con, before, args.actor)
    lines = [f"Deleted {path}" for path in result["deleted"]]
    lines.append(f"{len(result['deleted'])} file(s) of {result['messages']} message(s) sent before "
                 f"{args.sent_before} deleted.")
    if result["kept_unsent"]:
        lines.append(f"Kept the files of {result['kept_unsent']} message(s) not sent yet: they are the only copy "
                     f"of their passwords (`rosterflow messages list`).")
    if result["kept_sent_since"]:
        lines.append(f"Kept {result['kept_sent_since']} message(s) sent on or after {args.sent_before}.")
    for path in result["kept_shared_attachments"]:
        lines.append(f"Kept {path}: a message not purged yet shares it.")
    print_result(result, args.json, "\n".join(lines))
    return 0


def cmd_messages_send(args: argparse.Namespace) -> int:
    from tasks.messages import failed_builds, send_messages

    mail = load_settings().mail
    if not mail.smtp_host:
        print("error: no SMTP server is configured (set ROSTERFLOW_SMTP_HOST); messages stay in the outbox.",
              file=sys.stderr)
        return 2
    outcome = send_messages(args.wh, mail, args.batch)
    with args.wh.read() as con:
        held = failed_builds(con, args.batch)
    print_result(outcome, args.json, f"{outcome['sent']} sent, {outcome['failed']} failed"
                 + "".join(f"\nbatch {b}: held (its messages failed to build): run `rosterflow messages build {b}`"
                           for b in held["batch_id"].to_list()))
    return 0 if outcome["failed"] == 0 else 1


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `messages` and its commands to the sub-parsers ``sub``."""
    messages = sub.add_parser("messages", help="the message center: rosters and confirmations").add_subparsers(
        dest="messages_command", required=True)
    p = command("list", cmd_messages_list, "list messages with their status", messages)
    p.add_argument("--batch", type=int)
    p = command("send", cmd_messages_send, "send messages not sent yet (written, or failed before)", messages)
    p.add_argument("--batch", type=int)
    p = command("build", cmd_messages_build,
                "write a committed batch's messages again after a failure (sent ones are kept)", messages)
    p.add_argument("batch", type=int)
    p = command("purge", cmd_messages_purge, "delete the outbox files of messages sent before a date", messages)
    p.add_argument("--sent-before", type=dt.date.fromisoformat, required=True, metavar="YYYY-MM-DD")
