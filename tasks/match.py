"""Match stage: every valid row of a batch gets a decision; ambiguous rows become review items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from schemas.roster import MatchDecisionRow
from tasks.matching import MatchConfig, match_rows
from tasks.progress import Progress
from warehouse import batches
from warehouse.connection import ArrowStream
from warehouse.handle import Warehouse


# What identifies a row's student across re-reads of the sheets (valid_rows alias v).
ROW_KEY = ("concat_ws('|', coalesce(lower(v.first_name), ''), coalesce(lower(v.last_name), ''),"
           " coalesce(CAST(v.date_of_birth AS VARCHAR), ''), coalesce(v.student_id, ''), coalesce(v.ssid, ''),"
           " coalesce(v.other_id, ''), coalesce(CAST(v.school_id AS VARCHAR), ''))")


@dataclass
class MatchInputs:
    """What matching reads: the batch's valid rows and every student that is a person of its own."""

    incoming: pl.DataFrame
    existing: pl.DataFrame


@dataclass
class MatchOutcome:
    """The matcher's decisions, the review items and their candidates, before they are written."""

    result: dict[str, Any]
    decisions: pl.DataFrame
    reviews: pl.DataFrame
    candidates: pl.DataFrame


def load_match_inputs(con: duckdb.DuckDBPyConnection, batch_id: int) -> MatchInputs:
    """The batch's valid rows and the students they are matched against (any status but 'linked')."""
    # The file and Excel row name a row in the matcher's explanations (the row that keeps a shared ID).
    incoming = con.sql(
        "SELECT v.row_no, v.first_name, v.last_name, v.date_of_birth, v.student_id, v.ssid, v.other_id, v.school_id,"
        " v.grade, s.file_name, s.excel_row FROM valid_rows v"
        " JOIN staged_rows s ON s.batch_id = v.batch_id AND s.row_no = v.row_no"
        " WHERE v.batch_id = $b ORDER BY v.row_no",
        params={"b": batch_id},
    ).pl()
    # A temporary record linked by hand (status 'linked') is no person of its own any more: its
    # person is the student it was linked to, so it is never a candidate.
    existing = con.sql(
        "SELECT student_key, first_name, last_name, date_of_birth, student_id, ssid, other_id, school_id, grade"
        " FROM students WHERE status <> 'linked'"
    ).pl()
    return MatchInputs(incoming, existing)


def compute_matches(inputs: MatchInputs, config: MatchConfig, progress: Progress | None = None) -> MatchOutcome:
    """Decide every row (no warehouse access): matched, review (with ranked candidates) or new;
    ``progress(rows decided, rows)`` is told as they are."""
    decisions = match_rows(inputs.incoming, inputs.existing, config, progress)
    MatchDecisionRow.validate(decisions.drop("candidates"), lazy=True)
    reviews = decisions.filter(pl.col("decision") == "review")
    candidates = reviews.select("row_no", "candidates").explode("candidates").drop_nulls("candidates").unnest("candidates")
    candidates = candidates.with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("row_no"))
    counts = decisions["decision"].value_counts()
    result = {d: int(counts.filter(pl.col("decision") == d)["count"].sum()) for d in ("matched", "review", "new")}
    return MatchOutcome(result, decisions, reviews, candidates)


def match_batch(wh: Warehouse, batch_id: int, config: MatchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Match the batch's valid rows against every student in the warehouse, holding the warehouse
    only to read them and to write the decisions.

    The write re-checks that the batch's stages (validation: the rows matched) and the students
    (commits, temporary students created, linked or deleted, students restored) are unchanged since
    the read, else it matches again; a match another process finished meanwhile stands."""
    return batches.run_stage(
        wh, batch_id, "match", lambda con: load_match_inputs(con, batch_id),
        lambda inputs: compute_matches(inputs, config, progress),
        lambda con, outcome: store_matches(con, batch_id, outcome), actions=batches.STUDENT_CHANGES)


def store_matches(con: duckdb.DuckDBPyConnection, batch_id: int, outcome: MatchOutcome) -> dict[str, Any]:
    """Write the decisions and review items, carry earlier review decisions over, and record the
    match stage. The caller holds the transaction."""
    decisions, reviews, candidates, result = outcome.decisions, outcome.reviews, outcome.candidates, outcome.result
    # Decisions already made survive a re-match where they still apply (same row in review,
    # and for a link, the linked student still among its candidates).
    earlier = con.sql(
        "SELECT row_no, row_key, status, action, student_key, reviewer, decided_at FROM review_items"
        " WHERE batch_id = $b AND status IN ('decided', 'escalated')", params={"b": batch_id}
    ).pl()
    # A row still in review keeps its item's number: a reviewer who listed the items before another
    # batch's commit made this batch match again decides by those numbers.
    known = con.sql("SELECT review_id, row_no, row_key FROM review_items WHERE batch_id = $b",
                    params={"b": batch_id}).pl()
    con.execute("DELETE FROM match_results WHERE batch_id = ?", [batch_id])
    con.execute(
        "DELETE FROM review_candidates WHERE review_id IN (SELECT review_id FROM review_items WHERE batch_id = ?)",
        [batch_id],
    )
    con.execute("DELETE FROM review_items WHERE batch_id = ?", [batch_id])
    con.register("decision_frame", ArrowStream(decisions.drop("candidates")))
    con.execute(
        "INSERT INTO match_results SELECT ?, row_no, decision, student_key, rule, score, explanation"
        " FROM decision_frame",
        [batch_id],
    )
    con.unregister("decision_frame")
    con.register("review_frame", ArrowStream(reviews.select("row_no", "explanation")))
    con.register("known_items", ArrowStream(known))
    con.execute(
        f"INSERT INTO review_items (review_id, batch_id, row_no, reason, status, row_key)"
        f" SELECT coalesce(k.review_id, nextval('review_seq')), ?, f.row_no, f.explanation, 'pending', {ROW_KEY}"
        " FROM review_frame f JOIN valid_rows v ON v.batch_id = ? AND v.row_no = f.row_no"
        f" LEFT JOIN known_items k ON k.row_no = f.row_no AND k.row_key IS NOT DISTINCT FROM {ROW_KEY}"
        " ORDER BY f.row_no",
        [batch_id, batch_id],
    )
    con.unregister("known_items")
    con.unregister("review_frame")
    con.register("candidate_frame", ArrowStream(candidates))
    con.execute(
        "INSERT INTO review_candidates SELECT r.review_id, c.rank, c.student_key, c.score, c.agreement"
        " FROM candidate_frame c JOIN review_items r ON r.batch_id = ? AND r.row_no = c.row_no",
        [batch_id],
    )
    con.unregister("candidate_frame")
    con.register("earlier_decisions", ArrowStream(earlier))
    # A decision follows its row's student (row numbers change when the sheets are read again,
    # e.g. after a corrected sheet is uploaded); items made before row keys existed follow the
    # row number. Of two earlier decisions for one key, the one on the same row wins.
    con.execute(
        "UPDATE review_items SET status = e.status, action = e.action, student_key = e.student_key,"
        " reviewer = e.reviewer, decided_at = e.decided_at FROM ("
        "   SELECT r.review_id, e.* FROM review_items r JOIN earlier_decisions e"
        "     ON (e.row_key IS NOT NULL AND r.row_key = e.row_key) OR (e.row_key IS NULL AND r.row_no = e.row_no)"
        "   WHERE r.batch_id = ?"
        "   QUALIFY row_number() OVER (PARTITION BY r.review_id ORDER BY (r.row_no = e.row_no) DESC,"
        "     e.decided_at DESC) = 1) e"
        " WHERE review_items.review_id = e.review_id AND (e.action <> 'link' OR"
        " e.student_key IN (SELECT student_key FROM review_candidates c WHERE c.review_id = review_items.review_id))",
        [batch_id],
    )
    con.unregister("earlier_decisions")
    batches.set_status(con, batch_id, batches.STATUS_IN_REVIEW if result["review"] else batches.STATUS_OPEN)
    batches.record_stage(con, batch_id, "match", result)
    return result
