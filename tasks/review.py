"""The manual-review queue: list items with their candidates, record decisions, close the stage."""

from __future__ import annotations

from typing import Any

import json

import duckdb

from tasks.holds import held_review_ids
from warehouse import batches
from warehouse import requests
from warehouse.connection import first_row, transaction
from warehouse.handle import Warehouse
from warehouse.requests import Request

ACTIONS = ("link", "new", "exclude", "unsure")
# An unsure reviewer escalates the item: recorded like a decision, but it still blocks the batch.
OPEN_STATUSES = ("pending", "escalated")
EDITABLE_STATUSES = (batches.STATUS_OPEN, batches.STATUS_IN_REVIEW, batches.STATUS_AWAITING_APPROVAL, batches.STATUS_HELD)


class ReviewError(ValueError):
    """A review decision that cannot be applied; the message says why and what to do."""


def review_items(con: duckdb.DuckDBPyConnection, batch_id: int, pending_only: bool = False,
                 escalated_only: bool = False) -> list[dict[str, Any]]:
    """Review items of a batch: the row with its provenance, the reason, the decision and the
    candidates side by side with the fields that agree and differ.

    ``pending_only``: items still needing a decision (pending or escalated) now: not those of a
    school the migration holds, which are asked once its corrected sheet is in; ``escalated_only``:
    items a reviewer was unsure of."""
    held = held_review_ids(con, batch_id) if pending_only else []
    items = con.sql(
        "SELECT r.review_id, r.row_no, r.reason, r.status, r.action, r.student_key, r.reviewer, r.decided_at,"
        " s.file_name, s.sheet, s.excel_row, v.first_name, v.last_name, v.date_of_birth, v.student_id, v.ssid,"
        " v.other_id, v.grade, sc.name AS school"
        " FROM review_items r JOIN staged_rows s ON s.batch_id = r.batch_id AND s.row_no = r.row_no"
        " JOIN valid_rows v ON v.batch_id = r.batch_id AND v.row_no = r.row_no"
        " LEFT JOIN schools sc ON sc.school_id = v.school_id"
        " WHERE r.batch_id = $b AND (NOT $pending OR list_contains($open, r.status))"
        " AND (NOT $escalated OR r.status = 'escalated') AND NOT list_contains($held, r.review_id)"
        " ORDER BY r.review_id",
        params={"b": batch_id, "pending": pending_only, "open": list(OPEN_STATUSES), "escalated": escalated_only,
                "held": held},
    )
    item_columns = [d[0] for d in items.description]
    items = items.fetchall()
    candidates = con.sql(
        "SELECT c.review_id, c.rank, c.student_key, c.score, c.agreement, st.first_name, st.last_name,"
        " st.date_of_birth, st.student_id, st.ssid, st.other_id, st.grade, st.status, sc.name AS school"
        " FROM review_candidates c JOIN review_items r USING (review_id)"
        " JOIN students st ON st.student_key = c.student_key LEFT JOIN schools sc ON sc.school_id = st.school_id"
        " WHERE r.batch_id = $b ORDER BY c.review_id, c.rank",
        params={"b": batch_id},
    )
    candidate_columns = [d[0] for d in candidates.description]
    by_item: dict[int, list[dict]] = {}
    for values in candidates.fetchall():
        candidate = dict(zip(candidate_columns, values))
        by_item.setdefault(candidate.pop("review_id"), []).append(candidate)
    result = []
    for values in items:
        item = dict(zip(item_columns, values))
        item["candidates"] = by_item.get(item["review_id"], [])
        result.append(item)
    return result


def check_decision(
    con: duckdb.DuckDBPyConnection,
    batch_id: int,
    review_id: int,
    action: str,
    reviewer: str,
    candidate_rank: int | None = None,
) -> dict[str, Any]:
    """Check one decision without writing anything; raise ``ReviewError`` saying why it cannot be
    applied. Returns the item's row number, its current decision and the student to link."""
    if action not in ACTIONS:
        raise ReviewError(f"Unknown action {action!r}: use one of {', '.join(ACTIONS)}.")
    if not reviewer or not reviewer.strip():
        raise ReviewError("Name the reviewer: every decision records who made it.")
    batch = batches.get_batch(con, batch_id)
    if batch["status"] not in EDITABLE_STATUSES:
        raise ReviewError(f"Batch {batch_id} is {batch['status']}: its review decisions can no longer change.")
    item = first_row(con.execute(
        "SELECT status, action, student_key, row_no FROM review_items WHERE review_id = ? AND batch_id = ?",
        [review_id, batch_id],
    ))
    if item is None:
        raise ReviewError(f"Batch {batch_id} has no review item {review_id}: list them with `rosterflow review list {batch_id}`.")
    student_key = None
    if action == "link":
        if candidate_rank is None:
            raise ReviewError("Linking needs the candidate's number (1 is the best candidate).")
        found = first_row(con.execute(
            "SELECT student_key FROM review_candidates WHERE review_id = ? AND rank = ?", [review_id, candidate_rank]
        ))
        if found is None:
            count = first_row(con.execute("SELECT count(*) FROM review_candidates WHERE review_id = ?", [review_id]))[0]
            raise ReviewError(f"Review item {review_id} has no candidate {candidate_rank} (it has {count}).")
        student_key = int(found[0])
        claimed = con.execute(
            "SELECT row_no FROM match_results WHERE batch_id = ? AND decision = 'matched' AND student_key = ?"
            " UNION SELECT row_no FROM review_items WHERE batch_id = ? AND action = 'link' AND student_key = ?"
            " AND review_id <> ?",
            [batch_id, student_key, batch_id, student_key, review_id],
        ).fetchall()
        other_people = other_people_claiming(con, batch_id, item[3], [r[0] for r in claimed])
        if other_people:
            raise ReviewError(
                f"Student {student_key} is already linked to another person's row ({', '.join(other_people)}); "
                "one student can be linked to one person only."
            )
    return {"review_id": review_id, "row_no": item[3], "status": item[0], "previous": item[1],
            "previous_key": item[2], "action": action, "student_key": student_key,
            "changed": not (item[0] != "pending" and item[1] == action and item[2] == student_key)}


def apply_decisions(con: duckdb.DuckDBPyConnection, batch_id: int, checked: list[dict[str, Any]], reviewer: str,
                     source: str) -> None:
    """Write checked, changed decisions in bulk, audit each, and send the batch back to review.
    The caller holds the transaction."""
    # The decisions as list parameters unnested side by side: one statement however many, no frame needed.
    con.execute(
        "UPDATE review_items SET status = d.status, action = d.action, student_key = d.student_key,"
        " reviewer = $reviewer, decided_at = current_timestamp"
        " FROM (SELECT unnest($ids::BIGINT[]) AS review_id, unnest($actions::VARCHAR[]) AS action,"
        " unnest($keys::BIGINT[]) AS student_key, unnest($statuses::VARCHAR[]) AS status) d"
        " WHERE review_items.review_id = d.review_id",
        {"reviewer": reviewer, "ids": [c["review_id"] for c in checked], "actions": [c["action"] for c in checked],
         "keys": [c["student_key"] for c in checked],
         "statuses": ["escalated" if c["action"] == "unsure" else "decided" for c in checked]},
    )
    batches.audit_many(con, reviewer, "review.decide", "review_item", batch_id, {
        "entity_key": [str(c["review_id"]) for c in checked],
        "detail": [json.dumps({"action": c["action"], "student_key": c["student_key"], "previous": c["previous"],
                               "source": source}) for c in checked],
    })
    batches.clear_stages(con, batch_id, ("review", "plan", "approve"))
    batches.set_status(con, batch_id, batches.STATUS_IN_REVIEW)


def decide_review(
    con: duckdb.DuckDBPyConnection,
    batch_id: int,
    review_id: int,
    action: str,
    reviewer: str,
    candidate_rank: int | None = None,
) -> dict[str, Any]:
    """Record a reviewer's decision on one item: link to candidate N, new student, exclude, or
    unsure (escalated: recorded, but the item still needs a decision).

    Idempotent (the same decision again changes nothing) and changeable until the batch is approved.
    A changed decision makes the plan stale, so the plan is computed again before approval.
    """
    checked = check_decision(con, batch_id, review_id, action, reviewer, candidate_rank)
    if not checked["changed"]:
        return {"review_id": review_id, "changed": False}
    with transaction(con):
        apply_decisions(con, batch_id, [checked], reviewer.strip(), "decide")
    return {"review_id": review_id, "changed": True}


def apply_review_request(con: duckdb.DuckDBPyConnection, request: Request) -> dict[str, Any]:
    """Apply a reviewer's submitted decisions (``payload``: ``reviewer``, ``source`` and
    ``decisions``, each ``review_id``, ``action``, ``candidate``) exactly once.

    Each decision is checked against the decisions before it in the same request, and all are
    written in one transaction with the request's id, so the same request again (a retry, a re-run
    after a restart, a second click) changes nothing and returns the first outcome. A decision
    that cannot be accepted is reported in ``problems``; the others are applied. Items already
    decided otherwise since the form was shown are left as decided (``kept``): the form's
    decisions apply to items still pending when the request is applied."""
    done = requests.applied_outcome(con, request.request_id)
    if done is not None:
        return {**done, "already_applied": True}
    reviewer = str(request.payload.get("reviewer") or "").strip()
    source = request.payload.get("source", "decide")
    pending_only = bool(request.payload.get("pending_only"))
    outcome: dict[str, Any] = {"applied": [], "unchanged": [], "kept": [],
                               "problems": list(request.payload.get("problems", []))}
    decided = [d for d in request.payload.get("decisions", []) if d.get("action") not in (None, "", "skip")]
    with transaction(con):
        if decided and not reviewer:
            # One reason, not one per item: nothing is decided without a name.
            outcome["problems"].insert(0, "Name the reviewer in \"Your name\": every decision records who made it; "
                                          "nothing was decided.")
            requests.mark_applied(con, request, outcome)
            return outcome
        for decision in request.payload.get("decisions", []):
            if decision.get("action") in (None, "", "skip"):
                continue
            review_id = int(decision["review_id"])
            try:
                # An escalated item is still open: the form that shows it may decide it.
                if pending_only and first_row(con.execute(
                        "SELECT 1 FROM review_items WHERE review_id = ? AND batch_id = ? AND status = 'decided'",
                        [review_id, request.batch_id])):
                    outcome["kept"].append(review_id)
                    continue
                checked = check_decision(con, request.batch_id, review_id, decision["action"], reviewer,
                                         decision.get("candidate"))
            except ReviewError as error:
                outcome["problems"].append(f"item {review_id}: {error}")
                continue
            if checked["changed"]:
                apply_decisions(con, request.batch_id, [checked], reviewer, source)
                outcome["applied"].append(review_id)
            else:
                outcome["unchanged"].append(review_id)
        requests.mark_applied(con, request, outcome)
    return outcome


def other_people_claiming(con: duckdb.DuckDBPyConnection, batch_id: int, row_no: int, claimed_rows: list[int]) -> list[str]:
    """Excel locations of claimed rows that are a different person from ``row_no``."""
    if not claimed_rows:
        return []
    rows = con.sql(
        "SELECT v.row_no, lower(v.first_name) AS f, lower(v.last_name) AS l, v.date_of_birth AS d, v.student_id AS i,"
        " s.file_name, s.sheet, s.excel_row FROM valid_rows v JOIN staged_rows s USING (batch_id, row_no)"
        " WHERE v.batch_id = $b AND list_contains($rows, v.row_no)",
        params={"b": batch_id, "rows": [row_no, *claimed_rows]},
    )
    columns = [d[0] for d in rows.description]
    rows = [dict(zip(columns, values)) for values in rows.fetchall()]
    me = next(row for row in rows if row["row_no"] == row_no)
    others = []
    for other in (row for row in rows if row["row_no"] != row_no):
        # The same person: the same student ID, or (no conflicting IDs and) the same name and a
        # known, equal birth date. Two different IDs are two different children.
        if me["i"] is not None and other["i"] is not None:
            same = me["i"] == other["i"]
        else:
            same = me["d"] is not None and (me["f"], me["l"], me["d"]) == (other["f"], other["l"], other["d"])
        if not same:
            others.append(f"{other['file_name']} sheet {other['sheet']} row {other['excel_row']}")
    return others


def review_counts(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, Any]:
    """The batch's review items by decision; escalated items count as pending. Undecided items of
    a school the migration holds are not pending: they are asked once its corrected sheet is in."""
    counts = dict(
        con.execute(
            "SELECT coalesce(action, 'pending'), count(*) FROM review_items WHERE batch_id = ?"
            " AND (status = 'decided' OR NOT list_contains(?, review_id)) GROUP BY ALL",
            [batch_id, held_review_ids(con, batch_id)],
        ).fetchall()
    )
    # Escalated items count as pending: the batch waits until someone decides them.
    return {"pending": counts.get("pending", 0) + counts.get("unsure", 0), "escalated": counts.get("unsure", 0),
            "link": counts.get("link", 0), "new": counts.get("new", 0), "exclude": counts.get("exclude", 0)}


def close_review(wh: Warehouse, batch_id: int) -> dict[str, Any]:
    """Finish the review stage when no item is pending; return the counts either way. The
    warehouse is held to write only when there is a stage to close."""
    with wh.read(batch=batch_id, stage="review") as con:
        done = batches.stage_result(con, batch_id, "review")
        if done is not None:
            return done
        result = review_counts(con, batch_id)
    if result["pending"]:
        return result
    with wh.write(batch=batch_id, stage="review") as con, transaction(con):
        # Re-checked in the write: another process may have closed the stage meanwhile (its
        # result stands), or decided an item 'unsure' or matched the batch again: count again.
        done = batches.stage_result(con, batch_id, "review")
        if done is not None:
            return done
        result = review_counts(con, batch_id)
        if result["pending"] == 0:
            batches.record_stage(con, batch_id, "review", result)
    return result


def field_differs(field: str, row_value: Any, candidate_value: Any) -> bool:
    """Whether a candidate's field says something else than the row's: names compared folded
    (case, accents, spacing), other fields as trimmed text; a missing value differs from nothing."""
    if row_value is None or candidate_value is None:
        return False
    if field in ("first_name", "last_name"):
        # The matcher loads its nickname table when imported; listing or deciding items does not need it.
        from tasks.names import fold_name

        return fold_name(str(row_value)) != fold_name(str(candidate_value))
    return str(row_value).strip().lower() != str(candidate_value).strip().lower()


# The review form's choices for one item (the Prefect UI shows them in a drop-down): one "link N: ..."
# per candidate, numbered as the field's description lists them, and these. An item left at NO_DECISION is not decided (never
# linked); "unsure" escalates it (recorded, still needs a decision).
NO_DECISION = "decide later"
CHOICE_NEW = "new student"
CHOICE_EXCLUDE = "exclude"
CHOICE_UNSURE = "unsure"


def person_text(person: dict[str, Any]) -> str:
    """A person as a reviewer tells them apart: name, birth date, an ID and school, e.g.
    "Caleb Allen, born 2012-12-19, ID 30000006, Summerwind HS"."""
    parts = [f"{person.get('first_name') or ''} {person.get('last_name') or ''}".strip() or "(no name)",
             f"born {person['date_of_birth']}" if person.get("date_of_birth") else "birth date unknown"]
    for field, label in (("student_id", "ID"), ("ssid", "SSID"), ("other_id", "other ID")):
        if person.get(field):
            parts.append(f"{label} {person[field]}")
            break
    else:
        parts.append("no ID")
    if person.get("school"):
        parts.append(str(person["school"]))
    return ", ".join(parts)


CANDIDATE_STATUS = {"deleted": "removed, linking restores", "temporary": "temporary record"}


def candidate_choice(candidate: dict[str, Any]) -> str:
    """The choice that links a row to ``candidate``, e.g. "link 1: Caleb Allen, born 2012-12-19,
    ID 30000006, Summerwind HS (score 88)": numbered as the candidates are in the item's
    description (a drop-down cuts a long option short: what it cuts is there), a removed or
    temporary student saying so first."""
    status = CANDIDATE_STATUS.get(candidate.get("status") or "")
    return (f"link {candidate['rank']}{f' ({status})' if status else ''}: {person_text(candidate)} "
            f"(score {candidate['score']:.0f})")


def review_choices(item: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    """The item's choices, in the order shown, each with the decision it stands for
    (``(action, candidate rank)``; NO_DECISION is ``("skip", None)``)."""
    choices: dict[str, tuple[str, int | None]] = {NO_DECISION: ("skip", None)}
    for candidate in item["candidates"]:
        choices[candidate_choice(candidate)] = ("link", candidate["rank"])
    choices.update({CHOICE_NEW: ("new", None), CHOICE_EXCLUDE: ("exclude", None), CHOICE_UNSURE: ("unsure", None)})
    return choices


def choice_decision(item: dict[str, Any], choice: str | None) -> dict[str, Any] | None:
    """The decision a form's choice stands for (``review_id``, ``action``, ``candidate``), None for
    no decision; raise ``ReviewError`` when the choice is not one of the item's (its candidates
    changed since the form was shown)."""
    if choice in (None, "", NO_DECISION):
        return None
    choices = review_choices(item)
    if choice not in choices:
        raise ReviewError(f"{choice!r} is not one of this item's choices any more (its candidates changed since "
                          "the form was shown); choose again.")
    action, rank = choices[choice]
    return {"review_id": item["review_id"], "action": action, "candidate": rank}


def review_item_title(item: dict[str, Any]) -> str:
    """The item as its form field's title: the row (name, birth date, file, sheet, row) and why it
    is asked."""
    born = f"born {item['date_of_birth']}" if item.get("date_of_birth") else "no birth date"
    return (f"Item {item['review_id']}: {item['first_name']} {item['last_name']}, {born} ({item['file_name']}, "
            f"sheet {item['sheet']}, row {item['excel_row']}). Why asked: {item['reason']}")


def review_item_help(item: dict[str, Any]) -> str:
    """What else the reviewer needs beside the choices: the row's IDs, school and grade, what
    agrees and differs for each candidate, and who was unsure of it."""
    row = {k: item.get(k) for k in ("student_id", "ssid", "other_id")}
    ids = ", ".join(f"{label} {row[k]}" for k, label in (("student_id", "ID"), ("ssid", "SSID"),
                                                        ("other_id", "other ID")) if row[k]) or "no ID"
    text = [f"The row: {ids}, {item.get('school') or 'no school'}, grade {item.get('grade') or '?'}."]
    labels = {"first_name": "first name", "last_name": "last name", "date_of_birth": "birth date",
              "student_id": "ID", "ssid": "SSID", "school": "school", "grade": "grade"}
    for candidate in item["candidates"]:
        differs = [label for field, label in labels.items() if field_differs(field, item.get(field), candidate.get(field))]
        status = CANDIDATE_STATUS.get(candidate.get("status") or "")
        text.append(f"Candidate {candidate['rank']}: {person_text(candidate)}, grade {candidate.get('grade') or '?'}"
                    f"{f', {status}' if status else ''} (score {candidate['score']:.0f}): {candidate['agreement']}"
                    + (f"; differs from the row in {', '.join(differs)}." if differs else "."))
    if item["status"] == "escalated":
        text.append(f"Escalated by {item['reviewer']} (unsure): it needs a decision.")
    return " ".join(text)


def apply_form_choices(wh: Warehouse, batch_id: int, choices: dict[int, str], reviewer: str,
                       request_id: str) -> dict[str, Any]:
    """Apply the review form's choices (item -> the choice's text, see ``review_choices``) once, by
    the form's run-input key: a re-run after a suspension gets the first outcome back, with
    ``already_applied``. Only items still pending are decided: a decision made meanwhile elsewhere
    is kept. A choice that no longer names one of the item's candidates is refused, never guessed.
    Returns ``applied``, ``unchanged``, ``kept`` and ``problems``."""
    with wh.write() as con:
        done = requests.applied_outcome(con, request_id)
        if done is not None:
            return {**done, "already_applied": True}
        items = {item["review_id"]: item for item in review_items(con, batch_id)}
        decisions, problems = [], []
        for review_id, choice in choices.items():
            item = items.get(review_id)
            try:
                if item is None:
                    if choice not in (None, "", NO_DECISION):
                        raise ReviewError(f"batch {batch_id} has no review item {review_id} any more.")
                    continue
                decision = choice_decision(item, choice)
            except ReviewError as error:
                problems.append(f"item {review_id}: {error}")
                continue
            if decision is not None:
                decisions.append(decision)
        request = Request(request_id=request_id, kind="review.decide", batch_id=batch_id, submitted_by=reviewer,
                          payload={"reviewer": reviewer, "source": "form", "pending_only": True,
                                   "decisions": decisions, "problems": problems})
        return apply_review_request(con, request)
