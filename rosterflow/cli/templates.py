"""Commands that write the spreadsheets districts fill in: `template` (the empty batch template with the
warehouse's drop-downs) and `export-roster` (a school's current students in that template).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rosterflow.cli.output import AddCommand


def cmd_template(args: argparse.Namespace) -> int:
    from tasks.template import write_template

    with args.wh.read() as con:
        path = write_template(con, args.out)
    print(f"Template written to {path}")
    return 0


def roster_file_name(school: str) -> str:
    """A file name in the current folder for a school's roster: a school's name may hold a slash
    ("Lincoln K-8/Middle School") or other characters a file name cannot."""
    return "roster-" + (re.sub(r"[^\w.-]+", "-", school.lower(), flags=re.UNICODE).strip("-.") or "school") + ".xlsx"


def cmd_export_roster(args: argparse.Namespace) -> int:
    from tasks.template import export_roster

    out = args.out or Path(roster_file_name(args.school))
    with args.wh.read() as con:
        path, count = export_roster(con, args.school, out)
    print(f"{count} students of {args.school} written to {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `template` and `export-roster` (neither takes --json) to the sub-parsers ``sub``."""
    p = command("template", cmd_template, "write the batch template (.xlsx) with the warehouse's drop-downs",
                json_flag=False)
    p.add_argument("--out", type=Path, default=Path("rosterflow-template.xlsx"))
    p = command("export-roster", cmd_export_roster, "write a school's current students in the template",
                json_flag=False)
    p.add_argument("--school", required=True)
    p.add_argument("--out", type=Path)
