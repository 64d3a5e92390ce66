"""Commands that bring rosters in and start batches: `register`, `migrate`, and a collecting migration's
`upload`, `uploads` and `all-uploaded`; with the text that says where a batch stands or why it failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosterflow.cli.output import ACTOR_CLI, AddCommand, issue_lines, print_result, working_on
from rosterflow.cli.progress import progress_bars

if TYPE_CHECKING:
    import polars as pl

    from tasks.isolated_read import Reader


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
    from tasks.isolated_read import start_reader

    # The reader's child process starts before this command's own imports (the warehouse, the
    # contracts, the tables): it starts Python and imports the parser meanwhile, on the other core,
    # and is ready when the files are to be read. A batch that only collects uploads reads nothing.
    with contextlib.nullcontext() if collecting else start_reader() as reader:
        return _open_and_advance(args, mode, collecting, reader)


def _open_and_advance(args: argparse.Namespace, mode: str, collecting: bool, reader: Reader | None) -> int:
    from flows.config import MigrationConfig, RegistrationConfig
    from tasks.pipeline import advance_batch, interrupted_batch_of, open_batch
    from tasks.ingest import BatchTooLarge
    from tasks.validate import batch_issues

    files = [str(Path(f).resolve()) for f in args.files]
    common = {"files": files, "term": args.term, "subscription_type": args.subscription, "sheet": args.sheet,
              "warehouse_path": str(args.warehouse)}
    if mode == "migration":
        config = MigrationConfig(**common, schools=args.school or [], max_removal_share=args.max_removal_share,
                                 max_sheet_shrink=args.max_sheet_shrink)
    else:
        config = RegistrationConfig(**common)
    with contextlib.ExitStack() as working:
        with args.wh.write() as con:
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
                print_result({"batch_id": batch_id, "status": "collecting"}, args.json,
                             f"Batch {batch_id}: collecting uploads.\n  next: rosterflow upload {batch_id} FILE ... "
                             f"(as teachers send sheets), then rosterflow all-uploaded {batch_id} --by NAME")
                return 0
            # Taken before the warehouse is let go, so nobody sees the new batch as interrupted.
            working.enter_context(working_on(args, batch_id))
        # The stages hold the warehouse only to read their inputs and to write their results.
        try:
            with progress_bars(args) as bars:
                result = advance_batch(args.wh, batch_id, bars, reader)
        except BatchTooLarge as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    with args.wh.read() as con:
        issues = batch_issues(con, batch_id)
    return report_progress(args, result, issues)


def report_progress(args: argparse.Namespace, result: dict[str, Any], issues: pl.DataFrame) -> int:
    """Print where the batch stands; a failed batch prints its file errors to stderr and exits 2."""
    from warehouse import batches

    if result["status"] != batches.STATUS_FAILED:
        print_result(result, args.json, progress_text(result, issues))
        return 0
    if args.json:
        print_result(result, True)
    print(failure_text(result), file=sys.stderr)
    return 2


def failure_text(result: dict[str, Any]) -> str:
    """Why a failed batch did nothing: its file errors, and what to do next."""
    batch_id = result["batch_id"]
    errors = result["ingest"]["file_errors"]
    lines = [f"error: batch {batch_id} failed: {len(errors)} file(s) could not be read, so nothing else was done."]
    for error in errors:
        where = error["file_name"] + (f" sheet {error['sheet']}" if error.get("sheet") else "")
        lines.append(f"  FILE ERROR {where}: {error['problem']} {error['fix']}")
    lines.append(f"Fix the files and run the command again; batch {batch_id} is kept for the record "
                 "(`rosterflow batch list --all`).")
    return "\n".join(lines)


def progress_text(result: dict[str, Any], issues: pl.DataFrame) -> str:
    """Where a batch stands: rows read, errors (the first 20), matches, and the next command to run."""
    import polars as pl

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
        lines.append(f"  next: rosterflow plan {batch_id} (it shows the plan's VERSION), then "
                     f"rosterflow approve {batch_id} --plan VERSION --approver NAME")
    return "\n".join(lines)


def cmd_register(args: argparse.Namespace) -> int:
    return _run(args, "registration")


def cmd_migrate(args: argparse.Namespace) -> int:
    return _run(args, "migration")


def cmd_upload(args: argparse.Namespace) -> int:
    from tasks.ingest import BatchTooLarge
    from tasks.pipeline import advance_batch
    from tasks.uploads import add_upload
    from tasks.validate import batch_issues

    results = []
    with args.wh.write() as con:
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
            print_result(results, True)
        return 0
    # A held batch took a corrected sheet: read, validate and match it again now.
    try:
        with progress_bars(args) as bars:
            progress = advance_batch(args.wh, args.batch, bars)
    except BatchTooLarge as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with args.wh.read() as con:
        issues = batch_issues(con, args.batch)
    print_result({"uploads": results, "batch": progress} if args.json else progress, args.json,
                 progress_text(progress, issues))
    return 0


def cmd_uploads(args: argparse.Namespace) -> int:
    from tasks.uploads import list_uploads

    with args.wh.read() as con:
        frame = list_uploads(con, args.batch)
    lines = [
        f"[{u['upload_id']}] {u['file_name']}: {u['rows_read']} rows, teachers {u['teachers'] or '-'}, "
        f"by {u['uploaded_by']} at {u['uploaded_at']:%Y-%m-%d %H:%M}"
        + (f", REPLACED by upload {u['replaced_by']}" if u["replaced_by"] else "")
        + (f", PROBLEM: {u['problem']}" if u["problem"] else "")
        for u in frame.to_dicts()
    ]
    print_result(frame.to_dicts(), args.json, "\n".join(lines) if lines else "No uploads yet.")
    return 0


def cmd_all_uploaded(args: argparse.Namespace) -> int:
    from tasks.pipeline import advance_batch
    from tasks.uploads import confirm_all_uploaded
    from tasks.validate import batch_issues

    with working_on(args, args.batch):
        with args.wh.write() as con:
            confirm_all_uploaded(con, args.batch, args.by)
        with progress_bars(args) as bars:
            result = advance_batch(args.wh, args.batch, bars)
    with args.wh.read() as con:
        issues = batch_issues(con, args.batch)
    return report_progress(args, result, issues)


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `register`, `migrate`, `upload`, `uploads` and `all-uploaded` to the sub-parsers ``sub``."""
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

