"""The `rosterflow` command: the same operations as the flows, from a terminal.

Read commands take ``--json``. Writes go through the same stage functions the flows use, so a
batch started here can be reviewed and approved here, in the Prefect UI, or both.

This module holds the entry point (``main``: error handling, ``--debug``) and the grammar's global
options (``build_parser``); each concept module adds its own commands:
``catalog`` (init, school, course, subscription), ``intake`` (register, migrate, upload, uploads,
all-uploaded), ``batches`` (batch list/resume/show/issues), ``templates`` (template, export-roster),
``review``, ``inbox`` (decisions recorded while the warehouse was busy), ``messages``, ``approval`` (plan, approve,
reject), ``approvers`` (approver add/list/remove) and ``students`` (restore, student temp);
``output`` holds what they share.

Building the grammar imports nothing heavy: each command imports what it uses (DuckDB, polars, the
tasks) when it runs, so `rosterflow --help` and the short commands answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rosterflow.cli import approval, approvers, batches, catalog, inbox, intake, messages, review, students, templates
from rosterflow.cli.output import ACTOR_CLI
from rosterflow.settings import SettingsError, load_settings
from warehouse.locks import BatchBusy

if TYPE_CHECKING:
    from warehouse.handle import Warehouse

# In the order `rosterflow --help` lists their commands.
COMMAND_MODULES = (catalog, intake, batches, templates, review, inbox, messages, approval, approvers, students)


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

    for module in COMMAND_MODULES:
        module.add_commands(sub, command)
    return parser


def warehouse_handle(args: argparse.Namespace) -> Warehouse:
    """The command's one handle on the warehouse: it waits (saying for whom) while another holds it."""
    from warehouse.handle import Warehouse

    return Warehouse(args.warehouse, who=f"`rosterflow {args.command}` (command line)",
                     busy_timeout=load_settings().busy_timeout, on_wait=lambda text: print(text, file=sys.stderr))


def _require_batch(args: argparse.Namespace) -> None:
    """Every command that names a batch refuses an unknown one before doing (or writing) anything."""
    if getattr(args, "batch", None) is None or getattr(args, "records_request", False):
        # A command that records a person's decision records it before it waits for the warehouse;
        # it checks the batch when it applies the decision.
        return
    from warehouse.batches import require_batch
    from warehouse.connection import WarehouseError

    if not args.warehouse.exists():
        raise WarehouseError(f"No batch {args.batch}: there is no warehouse at {args.warehouse} (create it with "
                             "`rosterflow init`, or point --warehouse at the warehouse file).")
    with args.wh.read() as con:
        require_batch(con, args.batch)


def _failure_sentence(args: argparse.Namespace, error: BaseException) -> str:
    """One sentence for an error opening or writing a file: the warehouse's own, or another's."""
    from warehouse.connection import warehouse_problem

    filename = getattr(error, "filename", None)
    if isinstance(error, OSError) and filename and Path(filename).resolve() != Path(args.warehouse).resolve() \
            and not str(filename).startswith(str(args.warehouse)):
        return f"cannot write {filename}: {error.strerror or error}. Choose another path or make its folder writable."
    return warehouse_problem(args.warehouse, error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rosterflow` console script.

    Errors end in one sentence and exit 2; ``--debug`` shows the traceback instead."""
    try:
        parser = build_parser()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    # Only now, past `--help` and a mistyped command, which need no warehouse.
    from warehouse.connection import WAREHOUSE_ERRORS, WarehouseError

    try:
        args.wh = warehouse_handle(args)
        _require_batch(args)
        return args.handler(args)
    except (WarehouseError, BatchBusy, SettingsError) as error:
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
