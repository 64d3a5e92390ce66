"""What every command shares: printing a result as text or JSON, tables, issue lines, the count argument
type, the actor name recorded for the command line, and holding a batch's lock while a command advances it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Callable

from warehouse import requests
from warehouse.locks import BatchBusy, batch_lock
from warehouse.requests import Request

if TYPE_CHECKING:
    import polars as pl

ACTOR_CLI = "cli"

# ``build_parser``'s ``command(name, handler, help_text, parent=sub, json_flag=True)``: adds one command
# that also takes the global options after its name, and ``--json`` unless ``json_flag`` is false.
AddCommand = Callable[..., argparse.ArgumentParser]

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


def working_on(args: argparse.Namespace, batch_id: int, wait: bool = True):
    """Hold the batch's lock while this command advances it (see ``warehouse.locks``), waiting for
    another holder as long as for the warehouse (unless ``wait`` is false). Take it before the
    warehouse: ``with working_on(args, batch), args.wh.write() as con``."""
    return batch_lock(args.warehouse, batch_id, f"`rosterflow {args.command}` on the command line",
                      wait=args.wh.busy_timeout if wait else 0, on_wait=args.wh.on_wait)


# How each kind of recorded request is applied: kind -> function(args, request) -> exit code.
# Filled by the command modules (`review decide`, `approve`, `reject`) as they are imported.
REQUEST_APPLIERS: dict[str, Callable[[argparse.Namespace, Request], int]] = {}


def apply_recorded(args: argparse.Namespace, request: Request) -> int:
    """Record a person's decision in the inbox first, then apply it when the warehouse is free.

    If the wait ends (the warehouse or the batch stayed busy), the decision is not lost: it stays
    in the inbox and `rosterflow inbox apply` applies it; applying it twice is harmless."""
    from warehouse.handle import WarehouseBusy

    requests.record(args.warehouse, request)
    try:
        return REQUEST_APPLIERS[request.kind](args, request)
    except (WarehouseBusy, BatchBusy) as busy:
        print(f"error: {busy} Your decision is kept (request {request.request_id}); it is applied when you run "
              f"`rosterflow inbox apply`, and `rosterflow inbox list` shows what is waiting.", file=sys.stderr)
        return 2


def print_result(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as JSON with --json, else ``text`` (or ``data`` itself when no text is given)."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text if text is not None else data)


def table_text(frame: pl.DataFrame) -> str:
    """A frame as a plain-text table, wide enough for the warehouse's lists."""
    import polars as pl

    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        return str(frame)


def rows_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Rows as a plain-text table (a header, a rule, one line per row), for listings shown without polars."""
    cells = [[("" if row[c] is None else f"{row[c]:%Y-%m-%d %H:%M:%S}" if hasattr(row[c], "hour") else str(row[c]))
              for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)


def show_query(args: argparse.Namespace, query: str, empty_text: str = "Nothing yet.") -> int:
    """Print a fixed reference query (no user values) as a table, or as JSON with --json."""
    with args.wh.read() as con:
        frame = con.sql(query).pl()
    print_result(frame.to_dicts(), args.json, table_text(frame) if frame.height else empty_text)
    return 0


def issue_lines(issues: pl.DataFrame) -> list[str]:
    """One line per issue: severity, file, sheet, row, column, value, problem and fix."""
    lines = []
    for row in issues.to_dicts():
        where = f"{row['file']}" + (f" sheet {row['sheet']}" if row["sheet"] else "")
        if row["row"] is not None:
            where += f" row {row['row']} column {row['column']}: {row['value']!r}"
        lines.append(f"{row['severity'].upper()} {where} {row['problem']}. {row['fix']}")
    return lines
