"""The review queue as a spreadsheet: export it, decide in Excel, import it back.

One row per review item: the decision column (a drop-down), the row as the sheet gave it with its
file, sheet and Excel row, the reason it was not automatic, and its candidates side by side, every
candidate cell that differs from the row shaded. Importing checks every decision first; one bad
decision applies none, and the error names each bad cell.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import xlsxwriter

from tasks.exports import neutralize
from tasks.review import (ReviewError, apply_decisions, check_decision, field_differs, other_people_claiming,
                          review_items)
from warehouse import batches
from warehouse.connection import transaction

SHEET = "Review"
ROW_FIELDS = (("first_name", "first name"), ("last_name", "last name"), ("date_of_birth", "date of birth"),
              ("student_id", "student ID"), ("ssid", "SSID"), ("other_id", "other ID"), ("school", "school"),
              ("grade", "grade"))
CANDIDATE_FIELDS = ROW_FIELDS + (("status", "status"), ("score", "score"), ("agreement", "agreement"))
DECISION_PATTERN = re.compile(r"^\s*(?:(link)\s*(?:to\s*)?(?:candidate\s*)?(\d+)|(new)|(exclude)|(unsure))\s*$", re.I)


class ReviewImportError(ReviewError):
    """A review sheet with decisions that cannot be applied; ``problems`` lists each bad cell."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path.name}: {len(problems)} decision(s) cannot be applied, so none was:\n  "
                         + "\n  ".join(problems))


def decision_text(item: dict[str, Any]) -> str:
    """How a recorded decision reads in the decision column ('link 2', 'new', ...)."""
    if item["action"] == "link":
        rank = next((c["rank"] for c in item["candidates"] if c["student_key"] == item["student_key"]), None)
        return f"link {rank}" if rank is not None else ""
    return item["action"] or ""


def export_review_xlsx(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, pending_only: bool = False) -> Path:
    """Write the batch's review queue (decided items too, with their decision, so the sheet
    round-trips) to ``path`` with a drop-down decision column and an instructions sheet."""
    items = review_items(con, batch_id, pending_only=pending_only)
    most = max((len(item["candidates"]) for item in items), default=1) or 1
    choices = [f"link {n}" for n in range(1, most + 1)] + ["new", "exclude", "unsure"]
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False})
    bold = workbook.add_format({"bold": True, "text_wrap": True, "valign": "top"})
    decision_format = workbook.add_format({"bg_color": "#FFF2CC", "bold": True})
    differs = workbook.add_format({"bg_color": "#F8CBAD"})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    differs_date = workbook.add_format({"num_format": "yyyy-mm-dd", "bg_color": "#F8CBAD"})
    sheet = workbook.add_worksheet(SHEET)
    header = ["review_id", "decision", "status", "decided_by", "file", "sheet", "excel_row", "reason",
              *[f"row {label}" for _, label in ROW_FIELDS]]
    for n in range(1, most + 1):
        header += [f"candidate {n} {label}" for _, label in CANDIDATE_FIELDS]
    sheet.write_row(0, 0, header, bold)
    sheet.freeze_panes(1, 2)

    def put(r: int, c: int, value: Any, shaded: bool = False) -> None:
        if isinstance(value, dt.date):
            sheet.write_datetime(r, c, dt.datetime(value.year, value.month, value.day),
                                 differs_date if shaded else date_format)
        elif value is not None:
            sheet.write(r, c, neutralize(value), differs if shaded else None)
        elif shaded:
            sheet.write_blank(r, c, None, differs)

    for r, item in enumerate(items, start=1):
        sheet.write_number(r, 0, item["review_id"])
        sheet.write(r, 1, decision_text(item), decision_format)
        for c, value in enumerate([item["status"], item["reviewer"], item["file_name"], item["sheet"],
                                   item["excel_row"], item["reason"]], start=2):
            put(r, c, value)
        column = 8
        for field, _ in ROW_FIELDS:
            put(r, column, item[field])
            column += 1
        for n in range(most):
            candidate = item["candidates"][n] if n < len(item["candidates"]) else None
            for field, _ in CANDIDATE_FIELDS:
                if candidate is not None:
                    value = round(candidate[field]) if field == "score" else candidate[field]
                    put(r, column, value, field in dict(ROW_FIELDS) and field_differs(field, item.get(field), value))
                column += 1
    if items:
        sheet.data_validation(1, 1, len(items), 1, {
            "validate": "list", "source": choices, "error_title": "Decision",
            "error_message": "Choose link N (candidate N), new, exclude or unsure; or leave it empty.",
        })
    sheet.set_column(0, 0, 9)
    sheet.set_column(1, 1, 11)
    sheet.set_column(7, 7, 40)
    sheet.set_column(8, len(header), 14)

    notes = workbook.add_worksheet("Instructions")
    notes.set_column(0, 0, 110)
    for r, line in enumerate([
        f"Review queue of batch {batch_id}: one row per spreadsheet row the matcher could not decide.",
        "Fill the yellow 'decision' column: 'link N' (the row is candidate N), 'new' (a new student),",
        "'exclude' (leave the row out of this batch) or 'unsure' (escalate: it still needs a decision).",
        "Leave it empty to decide later. Shaded candidate cells differ from the row.",
        "Do not change review_id. Import the sheet with:",
        f"  rosterflow review import {batch_id} <this file> --reviewer \"Your Name\"",
        "Every decision is checked first; if any cannot be applied, none is, and each problem is listed",
        "with its sheet row and column.",
    ]):
        notes.write(r, 0, line)
    workbook.close()
    return path


def read_review_decisions(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The filled-in decisions of a review sheet (row, review id, decision text) and the
    problems found reading it (each naming the sheet row and column)."""
    try:
        frame = pl.read_excel(path, sheet_name=SHEET, infer_schema_length=0)
    except Exception as error:  # calamine's errors say what is wrong with the file
        raise ReviewError(f"{path.name}: cannot read sheet '{SHEET}' ({error}); export the queue again with "
                          "`rosterflow review export`.") from error
    missing = [c for c in ("review_id", "decision") if c not in frame.columns]
    if missing:
        raise ReviewError(f"{path.name}, sheet {SHEET}: column(s) {', '.join(missing)} are missing from the header "
                          "row; export the queue again and fill in only the decision column.")
    decisions, problems = [], []
    for index, (review_id, decision) in enumerate(frame.select("review_id", "decision").iter_rows()):
        excel_row = index + 2
        if decision is None or not decision.strip():
            continue
        where = f"sheet {SHEET}, row {excel_row}"
        try:
            review_id = int(float(review_id))
        except (TypeError, ValueError):
            problems.append(f"{where}, column review_id: {review_id!r} is not a review item number; "
                            "do not edit that column.")
            continue
        match = DECISION_PATTERN.match(decision)
        if match is None:
            problems.append(f"{where}, column decision: {decision!r} is not a decision; use link N, new, exclude "
                            "or unsure.")
            continue
        if match.group(1):
            action, rank = "link", int(match.group(2))
        else:
            action, rank = next(g for g in match.groups()[2:] if g).lower(), None
        decisions.append({"excel_row": excel_row, "review_id": review_id, "action": action, "rank": rank})
    return decisions, problems


def import_review_xlsx(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, reviewer: str) -> dict[str, int]:
    """Apply the decisions of a filled-in review sheet, all or none.

    Every decision is checked against the warehouse (item of this batch, candidate number, one
    student per person, batch still open for review) and against the other rows of the sheet;
    any problem raises ``ReviewImportError`` listing them all, and nothing is written. Otherwise
    the changed decisions are written in one transaction, audited with the reviewer. Returns the
    counts applied, unchanged (already so) and skipped (left empty).
    """
    batches.get_batch(con, batch_id)  # an unknown batch is refused before the sheet is read
    decisions, problems = read_review_decisions(path)
    checked, seen = [], {}
    for decision in decisions:
        where = f"sheet {SHEET}, row {decision['excel_row']}, column decision"
        if decision["review_id"] in seen:
            problems.append(f"{where}: review item {decision['review_id']} is decided again (first at row "
                            f"{seen[decision['review_id']]}); keep one row per item.")
            continue
        seen[decision["review_id"]] = decision["excel_row"]
        try:
            result = check_decision(con, batch_id, decision["review_id"], decision["action"], reviewer,
                                    decision["rank"])
        except ReviewError as error:
            problems.append(f"{where}: {error}")
            continue
        checked.append({**result, "excel_row": decision["excel_row"]})
    # Two rows of the sheet linking one student must be one person.
    links: dict[int, list[dict[str, Any]]] = {}
    for result in checked:
        if result["action"] == "link":
            links.setdefault(result["student_key"], []).append(result)
    for student_key, results in links.items():
        for result in results[1:]:
            if other_people_claiming(con, batch_id, results[0]["row_no"], [result["row_no"]]):
                problems.append(f"sheet {SHEET}, row {result['excel_row']}, column decision: student {student_key} is "
                                f"also linked at row {results[0]['excel_row']} to another person's row; one student "
                                "can be linked to one person only.")
    if problems:
        raise ReviewImportError(path, sorted(problems, key=_sheet_row))
    changed = [c for c in checked if c["changed"]]
    if changed:
        with transaction(con):
            apply_decisions(con, batch_id, changed, reviewer.strip(), f"sheet {path.name}")
    return {"applied": len(changed), "unchanged": len(checked) - len(changed),
            "skipped": _row_count(path) - len(decisions)}


def _sheet_row(problem: str) -> int:
    found = re.search(r", row (\d+),", problem)
    return int(found.group(1)) if found else 0


def _row_count(path: Path) -> int:
    return pl.read_excel(path, sheet_name=SHEET, infer_schema_length=0).height
