"""The `rosterflow` command: the same operations as the flows, from a terminal.

Read commands take ``--json``. Writes go through the same stage functions the flows use, so a
batch started here can be reviewed and approved here, in the Prefect UI, or both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from flows.config import MigrationConfig, RegistrationConfig
from rosterflow.settings import load_settings
from tasks.approve import ApprovalError, decide_batch
from tasks.commit import CommitError, commit_batch
from tasks.ingest import BatchTooLarge
from tasks.messages import (MessageBuildFailed, MessageError, build_messages, deliver, failed_builds,
                            message_center, purge_sent_files, reconcile_plain_passwords, send_messages)
from tasks.pipeline import advance_batch, interrupted_batch_of, interrupted_batches, open_batch
from tasks.plan import plan_markdown, plan_tables
from tasks.report import write_plan_xlsx
from tasks.review import ReviewError, decide_review, review_items
from tasks.review_sheet import export_review_xlsx, import_review_xlsx
from tasks.restore import restore_students
from tasks.template import export_roster, write_template
from tasks import temporary
from tasks.uploads import add_upload, confirm_all_uploaded, list_uploads
from tasks.validate import batch_issues, write_issue_report
from warehouse import batches, catalog
from warehouse.connection import WAREHOUSE_ERRORS, WarehouseError, opened, warehouse_problem
from warehouse.locks import BatchBusy, batch_lock, lock_holder

ACTOR_CLI = "cli"

# The largest count a person may set (subscriptions, removals): far above any district, far
# below the warehouse's 64-bit columns, so a slip of the keyboard is caught.
MAX_COUNT = 1_000_000_000_000


def count_arg(text: str) -> int:
    """An argparse type: a whole number from 0 to ``MAX_COUNT``, or a clear refusal."""
    try:
        value = int(text.strip().replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give a count such as 204") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value:,} is more than {MAX_COUNT:,}; check the number")
    return value


def _working_on(args: argparse.Namespace, batch_id: int):
    """Hold the batch's lock while this command advances it (see ``warehouse.locks``)."""
    return batch_lock(args.warehouse, batch_id, f"`rosterflow {args.command}` on the command line")


def _print(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text if text is not None else data)


def _table(frame: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        return str(frame)


def _show_query(args: argparse.Namespace, query: str, empty_text: str = "Nothing yet.") -> int:
    """Print a fixed reference query (no user values) as a table, or as JSON with --json."""
    with opened(args.warehouse) as con:
        frame = con.sql(query).pl()
    _print(frame.to_dicts(), args.json, _table(frame) if frame.height else empty_text)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        # Batches committed before messages were read back may still hold plain passwords.
        passwords = reconcile_plain_passwords(con)
    lines = [f"Warehouse ready at {args.warehouse}"]
    lines += [f"Batch {b['batch_id']}: {b['passwords']} plain password(s) purged (every one read back from its "
              f"messages)" for b in passwords["purged"]]
    lines += [f"Batch {b['batch_id']} still holds {b['passwords']} plain password(s): {b['reason']}. "
              f"Run `rosterflow messages build {b['batch_id']}`" for b in passwords["waiting"]]
    _print({"warehouse": str(args.warehouse), "plain_passwords": passwords}, args.json, "\n".join(lines))
    return 0


def cmd_school_add(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        added = catalog.add_schools(con, args.names, args.actor)
    _print({"added": added}, args.json, f"{added} school(s) added")
    return 0


def cmd_school_list(args: argparse.Namespace) -> int:
    return _show_query(args, "SELECT school_id, name FROM schools ORDER BY name", "No schools yet.")


def cmd_school_requests(args: argparse.Namespace) -> int:
    return _show_query(args, "SELECT name, first_batch, rows_waiting, requested_at, status FROM school_requests"
                       " ORDER BY requested_at", "No school requests.")


def cmd_template(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        path = write_template(con, args.out)
    print(f"Template written to {path}")
    return 0


def cmd_export_roster(args: argparse.Namespace) -> int:
    out = args.out or Path(f"roster-{args.school.lower().replace(' ', '-')}.xlsx")
    with opened(args.warehouse) as con:
        path, count = export_roster(con, args.school, out)
    print(f"{count} students of {args.school} written to {path}")
    return 0


def cmd_course_add(args: argparse.Namespace) -> int:
    courses = {}
    for item in args.courses:
        code, _, name = item.partition("=")
        courses[code] = name or code
    with opened(args.warehouse) as con:
        added = catalog.add_courses(con, courses, args.actor)
    _print({"added": added}, args.json, f"{added} course(s) added")
    return 0


def cmd_course_list(args: argparse.Namespace) -> int:
    return _show_query(args, "SELECT course_code, name FROM courses ORDER BY course_code", "No courses yet.")


def cmd_subscription_set(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        catalog.set_subscriptions(con, args.type, args.available, args.actor, args.school)
    _print({"type": args.type, "available": args.available, "school": args.school}, args.json,
           f"{args.type}: {args.available} available" + (f" at {args.school}" if args.school else " (district)"))
    return 0


def cmd_subscription_list(args: argparse.Namespace) -> int:
    return _show_query(args, "SELECT s.subscription_type, coalesce(sc.name, '(district)') AS school, s.available"
                       " FROM subscriptions s LEFT JOIN schools sc USING (school_id) ORDER BY 1, 2", "No subscriptions yet.")


def _run(args: argparse.Namespace, mode: str) -> int:
    collecting = getattr(args, "collect", False)
    if not args.files and not collecting:
        print("error: name the roster files (or folders), or use --collect to gather uploads first.",
              file=sys.stderr)
        return 2
    if any(not f.strip() for f in args.files):
        # An empty path would resolve to the current folder and read whatever workbooks are there.
        print("error: an empty path names no file; name the roster files or the folder that holds them.",
              file=sys.stderr)
        return 2
    files = [str(Path(f).resolve()) for f in args.files]
    common = {"files": files, "term": args.term, "subscription_type": args.subscription, "sheet": args.sheet,
              "warehouse_path": str(args.warehouse)}
    if mode == "migration":
        config = MigrationConfig(**common, schools=args.school or [], max_removal_share=args.max_removal_share,
                                 max_sheet_shrink=args.max_sheet_shrink)
    else:
        config = RegistrationConfig(**common)
    with opened(args.warehouse) as con:
        if files and not args.new:
            earlier = interrupted_batch_of(con, args.warehouse, mode, files)
            if earlier is not None:
                print(f"error: batch {earlier} over the same files was interrupted before it finished; finish it "
                      f"with `rosterflow batch resume {earlier}` (or start another batch anyway with --new).",
                      file=sys.stderr)
                return 2
        batch_id = open_batch(con, f"cli:{uuid.uuid4()}", mode, config.model_dump(mode="json"), args.actor,
                              collecting=collecting)
        if collecting:
            _print({"batch_id": batch_id, "status": "collecting"}, args.json,
                   f"Batch {batch_id}: collecting uploads.\n  next: rosterflow upload {batch_id} FILE ... "
                   f"(as teachers send sheets), then rosterflow all-uploaded {batch_id} --by NAME")
            return 0
        with _working_on(args, batch_id):
            try:
                result = advance_batch(con, batch_id)
            except BatchTooLarge as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        issues = batch_issues(con, batch_id)
    return _report_progress(args, result, issues)


def _report_progress(args: argparse.Namespace, result: dict[str, Any], issues: pl.DataFrame) -> int:
    """Print where the batch stands; a failed batch prints its file errors to stderr and exits 2."""
    if result["status"] != batches.STATUS_FAILED:
        _print(result, args.json, _progress_text(result, issues))
        return 0
    if args.json:
        _print(result, True)
    print(_failure_text(result), file=sys.stderr)
    return 2


def _failure_text(result: dict[str, Any]) -> str:
    batch_id = result["batch_id"]
    errors = result["ingest"]["file_errors"]
    lines = [f"error: batch {batch_id} failed: {len(errors)} file(s) could not be read, so nothing else was done."]
    for error in errors:
        where = error["file_name"] + (f" sheet {error['sheet']}" if error.get("sheet") else "")
        lines.append(f"  FILE ERROR {where}: {error['problem']} {error['fix']}")
    lines.append(f"Fix the files and run the command again; batch {batch_id} is kept for the record "
                 "(`rosterflow batch list --all`).")
    return "\n".join(lines)


def issue_lines(issues: pl.DataFrame) -> list[str]:
    """One line per issue: severity, file, sheet, row, column, value, problem and fix."""
    lines = []
    for row in issues.to_dicts():
        where = f"{row['file']}" + (f" sheet {row['sheet']}" if row["sheet"] else "")
        if row["row"] is not None:
            where += f" row {row['row']} column {row['column']}: {row['value']!r}"
        lines.append(f"{row['severity'].upper()} {where} {row['problem']}. {row['fix']}")
    return lines


def _progress_text(result: dict[str, Any], issues: pl.DataFrame) -> str:
    batch_id = result["batch_id"]
    lines = [f"Batch {batch_id}: {result['status']}"]
    ingest, validated = result["ingest"], result["validate"]
    lines.append(f"  read {ingest['rows_staged']} rows from {len(ingest['files'])} file(s); "
                 f"{validated['rows_valid']} valid, {validated['rows_invalid']} with errors, "
                 f"{validated['warnings']} warning(s)")
    for error in ingest["file_errors"]:
        lines.append(f"  FILE ERROR {error['file_name']}: {error['problem']} {error['fix']}")
    errors = issues.filter((pl.col("severity") == "error") & pl.col("row").is_not_null())
    lines += ["  " + line for line in issue_lines(errors.head(20))]
    if errors.height > 20:
        lines.append(f"  ... {errors.height - 20} more: rosterflow batch issues {batch_id}")
    match = result["match"]
    lines.append(f"  matched {match['matched']}, to review {match['review']}, new {match['new']}")
    if result["review"]["pending"]:
        lines.append(f"  next: rosterflow review list {batch_id}")
    elif "plan" in result:
        plan = result["plan"]
        lines.append(f"  plan: {plan['students_new']} new students, {plan['enrollments_new']} enrollments, "
                     f"{plan['removals']} removals, {plan['subscriptions_needed']} subscriptions")
        lines.append(f"  next: rosterflow plan {batch_id}, then rosterflow approve {batch_id} --approver NAME")
    return "\n".join(lines)


def cmd_register(args: argparse.Namespace) -> int:
    return _run(args, "registration")


def cmd_migrate(args: argparse.Namespace) -> int:
    return _run(args, "migration")


def cmd_upload(args: argparse.Namespace) -> int:
    results = []
    with opened(args.warehouse) as con:
        for file in args.files:
            result = add_upload(con, args.batch, Path(file), args.uploads, args.by)
            results.append(result)
            if not args.json:
                if result["duplicate"]:
                    which = f" (upload {result['upload_id']})" if result["upload_id"] else ""
                    print(f"{file}: already uploaded{which}; nothing changed")
                else:
                    note = f"; replaces upload {', '.join(map(str, result['replaced']))}" if result["replaced"] else ""
                    if result.get("replaced_files") and not result["replaced"]:
                        note = f"; replaces {', '.join(result['replaced_files'])}"
                    problem = f"; PROBLEM: {result['problem']}" if result["problem"] else ""
                    print(f"{file}: upload {result['upload_id']}, {result['rows_read']} rows, teachers "
                          f"{', '.join(result['teachers']) or '-'}{note}{problem}")
        if not any(r.get("reopened") for r in results):
            if args.json:
                _print(results, True)
            return 0
        # A held batch took a corrected sheet: read, validate and match it again now.
        try:
            progress = advance_batch(con, args.batch)
        except BatchTooLarge as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        issues = batch_issues(con, args.batch)
    _print({"uploads": results, "batch": progress} if args.json else progress, args.json,
           _progress_text(progress, issues))
    return 0


def cmd_uploads(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        frame = list_uploads(con, args.batch)
    lines = [
        f"[{u['upload_id']}] {u['file_name']}: {u['rows_read']} rows, teachers {u['teachers'] or '-'}, "
        f"by {u['uploaded_by']} at {u['uploaded_at']:%Y-%m-%d %H:%M}"
        + (f", REPLACED by upload {u['replaced_by']}" if u["replaced_by"] else "")
        + (f", PROBLEM: {u['problem']}" if u["problem"] else "")
        for u in frame.to_dicts()
    ]
    _print(frame.to_dicts(), args.json, "\n".join(lines) if lines else "No uploads yet.")
    return 0


def cmd_all_uploaded(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con, _working_on(args, args.batch):
        confirm_all_uploaded(con, args.batch, args.by)
        result = advance_batch(con, args.batch)
        issues = batch_issues(con, args.batch)
    return _report_progress(args, result, issues)


def cmd_batch_list(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        frame = con.sql("SELECT batch_id, mode, term, subscription_type, status, created_at, decided_by FROM batches"
                        " ORDER BY batch_id").pl()
        interrupted = interrupted_batches(con, args.warehouse)
    frame = frame.with_columns(
        status=pl.when(pl.col("batch_id").is_in(interrupted)).then(pl.lit(batches.STATUS_INTERRUPTED))
        .otherwise(pl.col("status")))
    hidden = frame.filter(pl.col("status") == batches.STATUS_FAILED).height
    if not args.all:
        frame = frame.filter(pl.col("status") != batches.STATUS_FAILED)
    text = _table(frame) if frame.height else "No batches yet."
    if interrupted:
        text += "\ninterrupted: its process stopped before the batch reached review or approval; " \
                "finish it with `rosterflow batch resume N`."
    if hidden and not args.all:
        text += f"\n{hidden} failed batch(es) not shown (files that could not be read): `rosterflow batch list --all`."
    _print(frame.to_dicts(), args.json, text)
    return 0


def cmd_batch_resume(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
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
        with _working_on(args, args.batch):
            result = advance_batch(con, args.batch)
        issues = batch_issues(con, args.batch)
    return _report_progress(args, result, issues)


def cmd_batch_show(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        batch = batches.get_batch(con, args.batch)
        batch["status"] = batches.shown_status(batch["status"], lock_holder(args.warehouse, args.batch) is not None)
        batch["results"] = {stage: batches.stage_result(con, args.batch, stage) for stage in batch["stages"]}
        issues = batch_issues(con, args.batch)
    batch["issues"] = issues.to_dicts()
    text = json.dumps({k: v for k, v in batch.items() if k != "issues"}, indent=2, default=str)
    if issues.height:
        text += "\n\nIssues:\n" + "\n".join(issue_lines(issues))
    _print(batch, args.json, text)
    return 0


def cmd_issues(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        issues = batch_issues(con, args.batch)
        if args.xlsx:
            write_issue_report(con, args.batch, args.xlsx)
            print(f"Report written to {args.xlsx}", file=sys.stderr)
    _print(issues.to_dicts(), args.json, "\n".join(issue_lines(issues)) if issues.height else "No issues.")
    return 0


def cmd_review_list(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        items = review_items(con, args.batch, pending_only=not args.all, escalated_only=args.escalated)
    if args.json:
        _print(items, True)
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
    with opened(args.warehouse) as con, _working_on(args, args.batch):
        try:
            result = decide_review(con, args.batch, args.item, args.action, args.reviewer, args.candidate)
            progress = advance_batch(con, args.batch)
        except ReviewError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    pending = progress["review"]["pending"]
    _print({**result, "pending": pending, "status": progress["status"]}, args.json,
           f"Item {args.item}: {args.action}{' (unchanged)' if not result['changed'] else ''}; {pending} pending")
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        path = export_review_xlsx(con, args.batch, Path(args.xlsx), pending_only=args.pending)
    _print({"path": str(path)}, args.json, f"Review sheet: {path} (fill the decision column, then "
                                           f"`rosterflow review import {args.batch} {path} --reviewer NAME`)")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con, _working_on(args, args.batch):
        try:
            counts = import_review_xlsx(con, args.batch, Path(args.path), args.reviewer)
            progress = advance_batch(con, args.batch)
        except ReviewError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    pending = progress["review"]["pending"]
    _print({**counts, "pending": pending, "status": progress["status"]}, args.json,
           f"{counts['applied']} decision(s) applied, {counts['unchanged']} unchanged, {counts['skipped']} left "
           f"empty; {pending} pending")
    return 0


def cmd_messages_list(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        messages = message_center(con, args.batch)
        builds = failed_builds(con, args.batch)
    rows = messages.with_columns(pl.col("created_at", "sent_at", "files_purged_at").cast(pl.String)).to_dicts()
    # A batch whose messages could not be built shows as one failed entry, so it is never missed.
    failures = [{"batch_id": b["batch_id"], "kind": "build", "status": "failed", "error": b["error"],
                 "attempts": b["attempts"], "plain_passwords": b["plain_passwords"],
                 "next": f"rosterflow messages build {b['batch_id']}"} for b in builds.to_dicts()]
    if args.json:
        _print(rows + failures, True)
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
    mail = load_settings().mail
    with opened(args.warehouse) as con:
        try:
            messages = build_messages(con, args.batch, Path(args.outbox), mail)
        except MessageBuildFailed as failure:
            print(f"error: batch {args.batch}: messages could not be written: {failure.reason}. Fix it and run "
                  f"`rosterflow messages build {args.batch}` again.", file=sys.stderr)
            return 1
        except MessageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    counts = messages["status"].value_counts().sort("status").rows()
    _print(messages.with_columns(pl.col("created_at", "sent_at", "files_purged_at").cast(pl.String)).to_dicts(),
           args.json, f"Batch {args.batch}: {messages.height} message(s), every issued password read back from them "
                      f"({', '.join(f'{n} {status}' for status, n in counts)}); plain passwords purged."
           + ("" if mail.smtp_host else " No SMTP server is configured: they are in the outbox."))
    return 0


def cmd_messages_purge(args: argparse.Namespace) -> int:
    before = dt.datetime.combine(args.sent_before, dt.time())
    with opened(args.warehouse) as con:
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
    _print(result, args.json, "\n".join(lines))
    return 0


def cmd_messages_send(args: argparse.Namespace) -> int:
    mail = load_settings().mail
    if not mail.smtp_host:
        print("error: no SMTP server is configured (set ROSTERFLOW_SMTP_HOST); messages stay in the outbox.",
              file=sys.stderr)
        return 2
    with opened(args.warehouse) as con:
        outcome = send_messages(con, mail, args.batch)
        held = failed_builds(con, args.batch)
    _print(outcome, args.json, f"{outcome['sent']} sent, {outcome['failed']} failed"
           + "".join(f"\nbatch {b}: held (its messages failed to build): run `rosterflow messages build {b}`"
                     for b in held["batch_id"].to_list()))
    return 0 if outcome["failed"] == 0 else 1


def cmd_plan(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con, _working_on(args, args.batch):
        progress = advance_batch(con, args.batch)
        if progress["status"] == batches.STATUS_FAILED:
            print(_failure_text(progress), file=sys.stderr)
            return 2
        if "plan" not in progress:
            print(f"error: batch {args.batch} has {progress['review']['pending']} review item(s) pending.",
                  file=sys.stderr)
            return 2
        tables = plan_tables(con, args.batch)
        if args.xlsx:
            print(f"Plan workbook: {write_plan_xlsx(con, args.batch, Path(args.xlsx))}", file=sys.stderr)
    summary = progress["plan"]
    data = {"summary": summary, **{name: frame.to_dicts() for name, frame in tables.items()}}
    _print(data, args.json, plan_markdown(summary, tables))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    approve = args.command == "approve"
    with opened(args.warehouse) as con:
        try:
            advance_batch(con, args.batch)
            decision = decide_batch(con, args.batch, args.approver, approve, args.remove_count,
                                    args.override_guard, args.comment or "", load_settings().approvers)
            if not decision["approved"]:
                _print(decision, args.json, f"Batch {args.batch} rejected by {decision['approver']}: nothing changed.")
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
                _print(summary, True)
            print(failure.advice, file=sys.stderr)
            return 1
    summary["outbox"] = delivered["outbox"]
    summary["messages"] = {k: delivered[k] for k in ("messages", "sent", "failed")}
    _print(summary, args.json, f"Batch {args.batch} committed: " + json.dumps(summary, indent=2))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        result = restore_students(con, args.by, args.student or None, args.batch, load_settings().approvers)
    lines = [f"Restored {len(result['restored'])} student(s)."]
    lines += [f"  not restored: student {r['student_key']}: {r['reason']}" for r in result["refused"]]
    _print(result, args.json, "\n".join(lines))
    return 0 if not result["refused"] else 2


def cmd_temp_add(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        student = temporary.create_temporary_student(
            con, args.first, args.last, ssid=args.ssid, other_id=args.other_id, date_of_birth=args.dob,
            school=args.school, grade=args.grade, actor=args.actor)
    _print(student, args.json,
           f"Temporary student {student['student_key']}: {student['first_name']} {student['last_name']}\n"
           f"  login {student['login_name']}  password {student['password']}  (shown once: give it to the teacher)")
    return 0


def cmd_temp_list(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        frame = temporary.list_temporary_students(con, unlinked_only=not args.all)
    _print(frame.to_dicts(), args.json, _table(frame) if frame.height else "No temporary students.")
    return 0


def cmd_temp_find(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        frame = temporary.find_temporary_candidates(con, name=args.name, ssid=args.ssid, other_id=args.other_id)
    _print(frame.to_dicts(), args.json, _table(frame) if frame.height else "No student found.")
    return 0


def cmd_temp_link(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        result = temporary.link_temporary_student(con, args.temporary_key, args.student_key, args.actor)
    _print(result, args.json,
           f"Temporary student {args.temporary_key} linked to student {args.student_key}: "
           f"{len(result['enrollments_moved'])} enrollment(s) moved, {len(result['already_enrolled'])} already there")
    return 0


def cmd_temp_delete(args: argparse.Namespace) -> int:
    with opened(args.warehouse) as con:
        result = temporary.delete_temporary_student(con, args.key, args.actor)
    _print(result, args.json, f"Temporary student {args.key} deleted.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="rosterflow", description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=settings.warehouse_path, help="DuckDB warehouse file")
    parser.add_argument("--outbox", type=Path, default=settings.outbox_dir, help="where rosters are written")
    parser.add_argument("--uploads", type=Path, default=settings.uploads_dir, help="where uploaded sheets are kept")
    parser.add_argument("--actor", default=ACTOR_CLI, help="name recorded in the audit log for admin changes")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str, parent=sub, json_flag: bool = True) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        # The global options are accepted after the command too, as people type them.
        p.add_argument("--warehouse", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--outbox", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--uploads", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--actor", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    command("init", cmd_init, "create the warehouse (or upgrade its schema)")
    school = sub.add_parser("school", help="schools").add_subparsers(dest="school_command", required=True)
    command("add", cmd_school_add, "add schools", school).add_argument("names", nargs="+")
    command("list", cmd_school_list, "list schools", school)
    command("requests", cmd_school_requests, "schools named in sheets but not in rosterflow", school)
    course = sub.add_parser("course", help="course catalog").add_subparsers(dest="course_command", required=True)
    command("add", cmd_course_add, "add courses as CODE=Name", course).add_argument("courses", nargs="+")
    command("list", cmd_course_list, "list courses", course)
    subscription = sub.add_parser("subscription", help="subscriptions").add_subparsers(dest="sub_command", required=True)
    p = command("set", cmd_subscription_set, "set available subscriptions of a type", subscription)
    p.add_argument("type")
    p.add_argument("available", type=count_arg, help="a whole number, 0 or more")
    p.add_argument("--school", help="a school's own pool (default: the district's)")
    command("list", cmd_subscription_list, "list subscriptions", subscription)

    for name, handler, help_text in (("register", cmd_register, "start a batch registration from files"),
                                     ("migrate", cmd_migrate, "start a yearly migration from files")):
        p = command(name, handler, help_text)
        p.add_argument("files", nargs="+" if name == "register" else "*")
        p.add_argument("--term", required=True)
        p.add_argument("--subscription", required=True, help="subscription type to consume")
        p.add_argument("--sheet", help="sheet name (default: the one visible roster sheet)")
        if name == "migrate":
            p.add_argument("--school", action="append", help="a school the migration covers (repeatable)")
            p.add_argument("--max-removal-share", type=float, default=0.10)
            p.add_argument("--max-sheet-shrink", type=float, default=0.25,
                           help="hold a sheet with this share fewer rows than last time")
            p.add_argument("--collect", action="store_true",
                           help="collect sheets with `rosterflow upload` until `rosterflow all-uploaded`")
        p.add_argument("--new", action="store_true",
                       help="start a new batch even if one over the same files was interrupted")
    p = command("upload", cmd_upload, "add teachers' sheets to a collecting migration")
    p.add_argument("batch", type=int)
    p.add_argument("files", nargs="+")
    p.add_argument("--by", default=ACTOR_CLI, help="who uploads (recorded)")
    command("uploads", cmd_uploads, "list a collecting migration's uploads").add_argument("batch", type=int)
    p = command("all-uploaded", cmd_all_uploaded, "confirm every sheet is uploaded; the batch then runs")
    p.add_argument("batch", type=int)
    p.add_argument("--by", required=True, help="the administrator confirming")

    batch = sub.add_parser("batch", help="batches").add_subparsers(dest="batch_command", required=True)
    command("list", cmd_batch_list, "list batches (failed ones with --all)", batch).add_argument(
        "--all", action="store_true", help="include failed batches (files that could not be read)")
    command("resume", cmd_batch_resume, "finish an interrupted batch (up to review or approval)", batch).add_argument(
        "batch", type=int)
    command("show", cmd_batch_show, "show a batch, its stages and issues", batch).add_argument("batch", type=int)
    p = command("issues", cmd_issues, "the validation report of a batch", batch)
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", type=Path, help="also write the report as an .xlsx file")
    p = command("template", cmd_template, "write the batch template (.xlsx) with the warehouse's drop-downs",
                json_flag=False)
    p.add_argument("--out", type=Path, default=Path("rosterflow-template.xlsx"))
    p = command("export-roster", cmd_export_roster, "write a school's current students in the template",
                json_flag=False)
    p.add_argument("--school", required=True)
    p.add_argument("--out", type=Path)

    review = sub.add_parser("review", help="the manual-review queue").add_subparsers(dest="review_command", required=True)
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
    p = command("export", cmd_review_export, "write the review queue to a spreadsheet to decide in Excel", review)
    p.add_argument("batch", type=int)
    p.add_argument("--xlsx", required=True, help="where to write the workbook")
    p.add_argument("--pending", action="store_true", help="only items still needing a decision")
    p = command("import", cmd_review_import, "apply the decisions of a filled-in review spreadsheet", review)
    p.add_argument("batch", type=int)
    p.add_argument("path")
    p.add_argument("--reviewer", required=True)

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
    p = command("restore", cmd_restore, "bring back removed students (approvers only)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--student", type=int, action="append", help="a removed student's key (repeatable)")
    target.add_argument("--batch", type=int, help="restore everyone this batch removed")
    p.add_argument("--by", required=True, help="the approver restoring")

    student = sub.add_parser("student", help="students").add_subparsers(dest="student_command", required=True)
    temp = student.add_parser("temp", help="temporary students (before the SIS has them)").add_subparsers(
        dest="temp_command", required=True)
    p = command("add", cmd_temp_add, "create a temporary student (prints its login and password)", temp)
    p.add_argument("--first", required=True, help="first name")
    p.add_argument("--last", required=True, help="last name")
    p.add_argument("--ssid")
    p.add_argument("--other-id")
    p.add_argument("--dob", help="date of birth, YYYY-MM-DD")
    p.add_argument("--school")
    p.add_argument("--grade")
    command("list", cmd_temp_list, "list unlinked temporary students", temp).add_argument(
        "--all", action="store_true", help="include those already linked")
    p = command("find", cmd_temp_find, "find students by name (any case and accents), SSID or other ID", temp)
    p.add_argument("--name")
    p.add_argument("--ssid")
    p.add_argument("--other-id")
    p = command("link", cmd_temp_link, "link a temporary student to a permanent one (enrollments move)", temp)
    p.add_argument("temporary_key", type=int)
    p.add_argument("student_key", type=int)
    command("delete", cmd_temp_delete, "delete a temporary student that was never used", temp).add_argument(
        "key", type=int)
    return parser


def _require_batch(args: argparse.Namespace) -> None:
    """Every command that names a batch refuses an unknown one before doing (or writing) anything."""
    if getattr(args, "batch", None) is None:
        return
    with opened(args.warehouse, read_only=not args.warehouse.exists()) as con:
        batches.require_batch(con, args.batch)


def _failure_sentence(args: argparse.Namespace, error: BaseException) -> str:
    """One sentence for an error opening or writing a file: the warehouse's own, or another's."""
    filename = getattr(error, "filename", None)
    if isinstance(error, OSError) and filename and Path(filename).resolve() != Path(args.warehouse).resolve() \
            and not str(filename).startswith(str(args.warehouse)):
        return f"cannot write {filename}: {error.strerror or error}. Choose another path or make its folder writable."
    return warehouse_problem(args.warehouse, error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rosterflow` console script.

    Errors end in one sentence and exit 2; ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        _require_batch(args)
        return args.handler(args)
    except (WarehouseError, BatchBusy) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WAREHOUSE_ERRORS as error:
        # Failing to write mid-command: a full disk, a lock, a read-only folder.
        if args.debug:
            raise
        print(f"error: {_failure_sentence(args, error)}", file=sys.stderr)
        return 2
    except (ValueError, LookupError) as error:
        # Domain errors (unknown batch, school, bad decision) carry a message meant for the user.
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
