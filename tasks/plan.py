"""Plan: what the commit will do, computed from the batch before anyone approves it.

The plan names every enrollment (marking students already in the class, who are not charged),
new teachers and classes, students to remove in a migration (with the mass-removal guard), and the
subscriptions needed against those available. Nothing changes until the batch is approved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from tasks.holds import held_schools
from tasks.names import fold_name_expr
from tasks.plan_view import PLAN_TABLE_QUERIES, plan_version, preview_markdown
from warehouse import batches
from warehouse.connection import insert_frame
from warehouse.handle import Warehouse


class PlanError(RuntimeError):
    """The plan cannot be made yet; the message says what is missing."""


def _resolved_rows(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    return con.sql(
        "SELECT v.*, m.decision, m.student_key AS matched_key, r.action, r.student_key AS reviewed_key,"
        " s.status AS student_status, st.file_name, st.excel_row"
        " FROM valid_rows v JOIN match_results m USING (batch_id, row_no)"
        " JOIN staged_rows st ON st.batch_id = v.batch_id AND st.row_no = v.row_no"
        " LEFT JOIN review_items r USING (batch_id, row_no)"
        " LEFT JOIN students s ON s.student_key = coalesce(m.student_key, r.student_key)"
        " WHERE v.batch_id = $b ORDER BY v.row_no",
        params={"b": batch_id},
    ).pl()


def _protected_students(con: duckdb.DuckDBPyConnection, batch_id: int) -> set[int]:
    """Existing students a migration must not remove although no valid row links them: those an
    invalid row may be (same identifier, or same first and last name, in any school), the
    candidates of rows a reviewer excluded, and those of rows not asked yet (a held school's)."""
    rows = con.sql(
        "WITH bad AS (SELECT DISTINCT st.* FROM validation_issues i JOIN staged_rows st"
        "   ON st.batch_id = i.batch_id AND st.row_no = i.row_no WHERE i.batch_id = $b AND i.severity = 'error')"
        " SELECT s.student_key FROM students s JOIN bad ON trim(bad.student_id) = s.student_id"
        "   OR trim(bad.ssid) = s.ssid OR trim(bad.other_id) = s.other_id"
        "   OR (lower(trim(bad.student_first)) = lower(s.first_name) AND lower(trim(bad.student_last)) = lower(s.last_name))"
        " UNION SELECT c.student_key FROM review_items r JOIN review_candidates c USING (review_id)"
        "   WHERE r.batch_id = $b AND (r.action = 'exclude' OR r.status <> 'decided')",
        params={"b": batch_id},
    ).pl()
    return set(rows["student_key"].to_list())


def shrunken_sheets(con: duckdb.DuckDBPyConnection, batch_id: int, max_shrink: float) -> list[dict[str, Any]]:
    """Sheets of this batch with more than ``max_shrink`` fewer rows than the same file and sheet
    had in the last committed batch: a truncated or filtered sheet would remove real students."""
    rows = con.sql(
        "WITH now AS (SELECT file_name, sheet, sum(rows_read) AS rows_now FROM batch_files WHERE batch_id = $b"
        "   GROUP BY ALL),"
        " earlier AS (SELECT f.file_name, f.sheet, f.batch_id AS last_batch, sum(f.rows_read) AS rows_before"
        "   FROM batch_files f JOIN commit_markers c USING (batch_id) WHERE f.batch_id <> $b"
        "   GROUP BY f.file_name, f.sheet, f.batch_id),"
        " before AS (SELECT *, row_number() OVER (PARTITION BY file_name, sheet ORDER BY last_batch DESC) AS recency"
        "   FROM earlier)"
        " SELECT now.file_name, now.sheet, rows_now, rows_before, last_batch FROM now JOIN before USING (file_name, sheet)"
        " WHERE recency = 1 AND rows_now < rows_before * (1 - $shrink) ORDER BY file_name, sheet",
        params={"b": batch_id, "shrink": max_shrink},
    ).pl()
    return rows.to_dicts()


@dataclass
class PlanInputs:
    """Everything the plan reads from the warehouse, read in one short hold."""

    batch: dict[str, Any]
    rows: pl.DataFrame
    hold_all: bool
    held_schools: list[int]
    hold_reasons: list[str]
    teachers: pl.DataFrame
    classes: pl.DataFrame
    enrolled: pl.DataFrame
    temporary: pl.DataFrame
    school_names: dict[int, str]
    pools: pl.DataFrame
    id_holders: pl.DataFrame = field(default_factory=pl.DataFrame)
    # A migration's only:
    named_school_ids: set[int] = field(default_factory=set)
    students: pl.DataFrame = field(default_factory=pl.DataFrame)
    protected: set[int] = field(default_factory=set)
    shrunken: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Plan:
    """The computed plan, before it is written: its summary, enrollments, removals and temporaries."""

    result: dict[str, Any]
    enrollments: pl.DataFrame
    removals: pl.DataFrame
    temporaries: pl.DataFrame


def load_plan_inputs(con: duckdb.DuckDBPyConnection, batch_id: int, preview: bool = False) -> PlanInputs:
    """Read what the plan needs; raise ``PlanError`` while review items are pending (unless
    ``preview``: the plan so far, rows still in review left out)."""
    if not preview and batches.stage_result(con, batch_id, "review") is None:
        raise PlanError(f"Batch {batch_id} still has review items pending: decide them first.")
    batch = batches.get_batch(con, batch_id)
    config, mode = batch["config"], batch["mode"]
    hold_all, held, hold_reasons = (False, [], [])
    if mode == "migration":
        hold_all, held, hold_reasons = held_schools(con, batch_id)
    classes = con.sql(
        "SELECT c.class_id, c.school_id, t.email AS teacher_email, c.period AS class_period, c.course_code"
        " FROM classes c JOIN teachers t USING (teacher_id) WHERE c.term = $term",
        params={"term": batch["term"]},
    ).pl()
    inputs = PlanInputs(
        batch=batch, rows=_resolved_rows(con, batch_id), hold_all=hold_all, held_schools=held,
        hold_reasons=hold_reasons,
        teachers=con.sql("SELECT teacher_id, email AS teacher_email FROM teachers").pl(),
        classes=classes,
        # Only this term's classes can be joined: their enrollments are all that is read.
        enrolled=con.sql(
            "SELECT e.class_id, e.student_key, true AS already_enrolled FROM enrollments e"
            " JOIN classes c USING (class_id) WHERE c.term = $term", params={"term": batch["term"]}).pl(),
        temporary=con.sql(
            "SELECT student_key, school_id, ssid AS temporary_ssid, other_id AS temporary_other_id FROM students"
            " WHERE status = 'temporary' ORDER BY student_key").pl(),
        school_names=dict(con.execute("SELECT school_id, name FROM schools").fetchall()),
        pools=con.sql("SELECT school_id, available FROM subscriptions WHERE subscription_type = $t",
                      params={"t": batch["subscription_type"]}).pl(),
    )
    inputs.id_holders = identifier_holders(con, batch_id)
    if mode == "migration":
        named = [s.lower() for s in config.get("schools") or []]
        inputs.named_school_ids = {r[0] for r in con.execute(
            "SELECT school_id FROM schools WHERE list_contains(?, lower(name))", [named]).fetchall()}
        inputs.students = con.sql("SELECT student_key, school_id, status, grade FROM students").pl()
        inputs.protected = _protected_students(con, batch_id)
        inputs.shrunken = shrunken_sheets(con, batch_id, float(config.get("max_sheet_shrink", 0.25)))
    return inputs


ID_COLUMNS = ("student_id", "ssid", "other_id")


def identifier_holders(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    """Students already holding an identifier that a row of the batch, made a new student by the
    matcher or a reviewer, carries: ``row_no, id_column, value, holder`` (name and key)."""
    joins = " UNION ALL ".join(
        f"SELECT n.row_no, '{c}' AS id_column, n.{c} AS value,"
        f" s.first_name || ' ' || s.last_name || ' (student ' || s.student_key || ')' AS holder"
        f" FROM new_rows n JOIN students s ON s.{c} = n.{c} WHERE s.status <> 'linked'"
        for c in ID_COLUMNS)
    return con.sql(
        "WITH new_rows AS (SELECT v.* FROM valid_rows v JOIN match_results m USING (batch_id, row_no)"
        "   LEFT JOIN review_items r USING (batch_id, row_no)"
        "   WHERE v.batch_id = $b AND (m.decision = 'new' OR r.action = 'new')) " + joins + " ORDER BY row_no, id_column",
        params={"b": batch_id},
    ).pl()


def identifier_blockers(planned: pl.DataFrame, id_holders: pl.DataFrame) -> list[str]:
    """New students the plan would create with an identifier that is not theirs alone: two
    different children (folded names or birth date differ) with one new ID would become one student
    (the commit makes one student per new identifier), and a new student with a registered
    student's ID would give two students one ID. Either blocks approval until the sheet is
    corrected or the row excluded in review."""
    new_rows = planned.filter(pl.col("student_action") == "new").with_columns(
        where=pl.format("{} {} ({} row {})", pl.col("first_name"), pl.col("last_name"), pl.col("file_name"),
                        pl.col("excel_row")),
        person=pl.concat_str([fold_name_expr("first_name"), fold_name_expr("last_name"),
                              pl.col("date_of_birth").cast(pl.String).fill_null("")], separator="|"))
    blockers = []
    fix = "correct the ID in the sheet and upload it again, or exclude the row that is not the ID's student in review"
    for column in ID_COLUMNS:
        people = (new_rows.filter(pl.col(column).is_not_null()).sort("row_no").unique([column, "person"], keep="first",
                                                                                     maintain_order=True)
                  .group_by(column, maintain_order=True).agg("where").filter(pl.col("where").list.len() > 1))
        for value, rows in people.iter_rows():
            blockers.append(f"{' and '.join(rows)} would become one new student with {column} '{value}', "
                            f"though they are different children: {fix}")
    if id_holders.height:
        held = id_holders.join(planned.filter(pl.col("student_action") == "new").select(
            "row_no", where=pl.format("{} {} ({} row {})", pl.col("first_name"), pl.col("last_name"),
                                      pl.col("file_name"), pl.col("excel_row"))), on="row_no")
        for row in held.unique(["row_no", "id_column"], keep="first", maintain_order=True).to_dicts():
            blockers.append(f"{row['where']} would be a new student with {row['id_column']} '{row['value']}', "
                            f"which is {row['holder']}'s: {fix}")
    return blockers


def temporary_links(planned: pl.DataFrame, temporary: pl.DataFrame, batch_id: int, mode: str) -> pl.DataFrame:
    """Temporary students a planned row makes permanent, one row each with the reason.

    A row linked to a temporary student links it when it brings the temporary record's SSID or
    other ID. In a migration (the SIS's own list) any row linked to it does, by the matcher or a
    reviewer: there is no permanent student to link it to by hand. A registration row linked to it
    otherwise (by name) only enrolls it, and it stays temporary.
    """
    return (
        planned.filter(pl.col("student_status") == "temporary")
        .join(temporary.drop("school_id"), on="student_key")
        .with_columns(
            reason=pl.when(pl.col("ssid") == pl.col("temporary_ssid")).then(pl.lit("same SSID"))
            .when(pl.col("other_id") == pl.col("temporary_other_id")).then(pl.lit("same other ID"))
            .when(pl.lit(mode == "migration")).then(pl.lit("a migration row is linked to it"))
        )
        .drop_nulls("reason")
        .sort("row_no")
        .unique("student_key", keep="first", maintain_order=True)
        .select(pl.lit(batch_id, pl.Int64).alias("batch_id"), pl.col("student_key").cast(pl.Int64),
                pl.col("school_id").cast(pl.Int64), pl.lit("link").alias("action"), "reason")
    )


def _count_by_school(names: dict[int, str], frame: pl.DataFrame) -> dict[str, int]:
    """How many rows of ``frame`` (with ``school_id``) per school name; no school is '(no school)'."""
    counts = frame.group_by("school_id").agg(pl.len().alias("n")).to_dicts()
    return dict(sorted((names.get(c["school_id"], "(no school)"), int(c["n"])) for c in counts))


def resolve_rows(inputs: PlanInputs) -> pl.DataFrame:
    """Each valid row with its student (matched or linked by a reviewer), excluded or held."""
    return inputs.rows.with_columns(
        student_key=pl.when(pl.col("decision") == "matched").then(pl.col("matched_key"))
        .when(pl.col("action") == "link").then(pl.col("reviewed_key")),
        excluded=(pl.col("action") == "exclude").fill_null(False),
        held=pl.lit(inputs.hold_all) | pl.col("school_id").is_in(inputs.held_schools),
        # Not decided yet (only in a preview, or in a held school): neither new nor linked.
        pending_review=(pl.col("decision") == "review") & (pl.col("action").is_null() | (pl.col("action") == "unsure")),
    )


def plan_rows(rows: pl.DataFrame, inputs: PlanInputs, batch_id: int) -> pl.DataFrame:
    """The rows to commit, joined to their teacher, class and enrollment, with what happens to
    each student (new, existing, restored) and which new rows are one person."""
    planned = rows.filter(~pl.col("excluded") & ~pl.col("held") & ~pl.col("pending_review"))
    return (
        planned.join(inputs.teachers, on="teacher_email", how="left")
        .join(inputs.classes, on=["school_id", "teacher_email", "class_period", "course_code"], how="left",
              nulls_equal=True)
        .join(inputs.enrolled, on=["class_id", "student_key"], how="left")
        .with_columns(
            teacher_is_new=pl.col("teacher_id").is_null(),
            already_enrolled=pl.col("already_enrolled").fill_null(False),
            student_action=pl.when(pl.col("student_key").is_null()).then(pl.lit("new"))
            .when(pl.col("student_status") == "deleted").then(pl.lit("restore"))
            .otherwise(pl.lit("existing")),
            # Rows of one new person (one per class) become one student: the same identifier, or the
            # same name and birth date at the same school. Anything less stays a person of its own.
            new_person_key=pl.when(pl.col("student_key").is_null()).then(
                pl.coalesce(
                    pl.concat_str(pl.lit("id:"), pl.col("student_id")),
                    pl.concat_str(pl.lit("ssid:"), pl.col("ssid")),
                    pl.concat_str(pl.lit("other:"), pl.col("other_id")),
                    pl.concat_str(pl.lit("name:"), pl.col("school_id").cast(pl.String), pl.lit("|"),
                                  pl.col("first_name").str.to_lowercase(), pl.lit("|"),
                                  pl.col("last_name").str.to_lowercase(), pl.lit("|"),
                                  pl.col("date_of_birth").cast(pl.String)),
                    pl.concat_str(pl.lit("row:"), pl.col("row_no").cast(pl.String)),
                )
            ),
            term=pl.lit(inputs.batch["term"]),
            batch_id=pl.lit(batch_id, pl.Int64),
        )
    )


PLAN_ENROLLMENT_COLUMNS = (
    "batch_id", "row_no", "school_id", "teacher_email", "teacher_first", "teacher_last", "teacher_is_new",
    "term", "class_period", "course_code", "class_id", "student_key", "student_action", "new_person_key",
    "student_id", "ssid", "other_id", "date_of_birth", "grade", "first_name", "last_name", "already_enrolled",
)


# Grades as the template allows them (validation refuses others), youngest first.
GRADE_ORDER = ("PK", "K", *[str(g) for g in range(1, 13)])


def highest_grades(students: pl.DataFrame) -> pl.DataFrame:
    """Each school's highest grade: the highest grade (PK < K < 1 < ... < 12) among its active
    students, as registered before this migration, i.e. last year's grades. Its students are
    expected to leave in a yearly migration: they graduate or move up to the next school.

    A school whose active students are all in one grade (or have no known grade) has none: one
    grade gives no evidence that it is the school's last, and counting every student as a leaver
    would switch the mass-removal guard off. Returns ``school_id, highest_grade``."""
    ranked = students.filter((pl.col("status") == "active") & pl.col("grade").is_in(GRADE_ORDER)).with_columns(
        grade_rank=pl.col("grade").replace_strict({g: i for i, g in enumerate(GRADE_ORDER)}, return_dtype=pl.Int32))
    per_school = ranked.group_by("school_id").agg(pl.col("grade_rank").max().alias("top"),
                                                 pl.col("grade_rank").n_unique().alias("grades"))
    return per_school.filter(pl.col("grades") > 1).select(
        "school_id", highest_grade=pl.col("top").replace_strict(dict(enumerate(GRADE_ORDER)), return_dtype=pl.String))


def percent(share: float, limit: float | None = None) -> str:
    """A share as a person reads it, never rounded onto its limit: 0.105 -> '10.5%', 0.05 -> '5%',
    and 0.1004 against a 10% limit -> '10.04%' (not '10.0%')."""
    value = share * 100
    if value == round(value):
        return f"{value:.0f}%"
    for decimals in range(1, 5):
        text = f"{value:.{decimals}f}"
        if limit is None or float(text) != limit * 100:
            return f"{text}%"
    return f"{value}%"


def migration_removals(inputs: PlanInputs, rows: pl.DataFrame, links: pl.DataFrame,
                       batch_id: int) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, Any]]]:
    """A migration's removals (active students of the covered schools no row links), the unlinked
    temporary students it keeps, and the guard: schools losing too many students, schools with no
    rows, sheets much shorter than last time.

    Removals in a school's highest grade (``highest_grades``) are expected leavers (column
    ``expected_leaver``): still removed, restorably, and listed apart, but not counted toward the
    share of the school's active students the guard allows (``max_removal_share``)."""
    config = inputs.batch["config"]
    covered = set(inputs.named_school_ids) if config.get("schools") else set(rows["school_id"].unique().to_list())
    in_scope = set(covered)
    covered -= set(inputs.held_schools)
    if inputs.hold_all:
        covered = set()
    # Kept as frames and anti-joined: a million linked keys made into a Python set, sorted and
    # turned back into a literal list cost seconds of a large migration's plan.
    kept = pl.concat([rows.select(pl.col("student_key").drop_nulls().cast(pl.Int64)),
                      pl.DataFrame({"student_key": sorted(inputs.protected)}, schema={"student_key": pl.Int64})])
    students = inputs.students.filter(pl.col("school_id").is_in(sorted(covered)))
    removals = students.filter(pl.col("status") == "active").join(
        kept.unique(), on="student_key", how="anti", maintain_order="left",
    ).join(highest_grades(students), on="school_id", how="left", maintain_order="left").select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"), "student_key", "school_id",
        expected_leaver=(pl.col("grade") == pl.col("highest_grade")).fill_null(False), highest_grade="highest_grade")
    # A migration never removes a temporary student (the removals above take active ones only):
    # those of its schools, or of no school, that no row links are kept and listed.
    temporary_kept = inputs.temporary.filter(
        (pl.col("school_id").is_null() | pl.col("school_id").is_in(sorted(in_scope)))
        & ~pl.col("student_key").is_in(links["student_key"].implode())
    ).select(pl.lit(batch_id, pl.Int64).alias("batch_id"), pl.col("student_key").cast(pl.Int64),
             pl.col("school_id").cast(pl.Int64), pl.lit("keep").alias("action"),
             pl.lit("no row of the migration links it").alias("reason"))
    active = students.filter(pl.col("status") == "active").group_by("school_id").agg(pl.len().alias("active"))
    per_school = (
        active.join(removals.group_by("school_id").agg(pl.len().alias("removals"),
                                                      pl.col("expected_leaver").sum().alias("leavers"),
                                                      pl.col("highest_grade").first()), on="school_id", how="left")
        .join(rows.group_by("school_id").agg(pl.len().alias("rows")), on="school_id", how="left")
        .with_columns(pl.col("removals", "leavers", "rows").fill_null(0))
        .sort("school_id")
    )
    max_share = float(config.get("max_removal_share", 0.10))
    names = inputs.school_names
    guard = []
    for school in per_school.to_dicts():
        counted = school["removals"] - school["leavers"]
        share = counted / school["active"] if school["active"] else 0.0
        entry = {"school": names[school["school_id"]], "removals": school["removals"],
                 "expected_leavers": school["leavers"], "active": school["active"], "share": share}
        if school["rows"] == 0 and school["active"] > 0:
            guard.append({**entry, "reason": f"the school has active students and no rows in this migration "
                                             f"({school['active']} active students)"})
        elif share > max_share:
            leavers = (f", not counting {school['leavers']} expected leavers of its highest grade "
                       f"{school['highest_grade']}" if school["leavers"] else "")
            guard.append({**entry, "reason": f"removes {counted} of {school['active']} ({percent(share, max_share)}) "
                                             f"of the school's active students{leavers} (limit {percent(max_share)})"})
    max_shrink = float(config.get("max_sheet_shrink", 0.25))
    for sheet in inputs.shrunken:
        drop = 1 - sheet["rows_now"] / sheet["rows_before"]
        guard.append({"school": f"{sheet['file_name']} (sheet {sheet['sheet']})", "removals": int(removals.height),
                      "active": None, "share": drop,
                      "reason": f"has {sheet['rows_now']} rows where batch {sheet['last_batch']} had "
                                f"{sheet['rows_before']} ({percent(drop, max_shrink)} fewer, limit {percent(max_shrink)}): "
                                "a truncated or filtered sheet would remove real students"})
    return removals, temporary_kept, guard


def expected_leavers_by_school(names: dict[int, str], removals: pl.DataFrame) -> list[dict[str, Any]]:
    """Per school, its highest grade and how many of its removals are that grade's expected leavers."""
    if "expected_leaver" not in removals.columns:
        return []
    leavers = removals.filter("expected_leaver").group_by("school_id", "highest_grade").agg(pl.len().alias("students"))
    return sorted(({"school": names.get(r["school_id"], "(no school)"), "highest_grade": r["highest_grade"],
                    "students": int(r["students"])} for r in leavers.to_dicts()), key=lambda r: r["school"])


def subscription_needs(enrollments: pl.DataFrame, pools: pl.DataFrame) -> tuple[int, int, int, int]:
    """(needed, available, needed from the district pool, the district pool): each school uses its
    own pool first; only what it lacks comes from the shared district pool."""
    to_enroll = enrollments.filter(~pl.col("already_enrolled"))
    needed_by_school = to_enroll.group_by("school_id").agg(pl.len().alias("needed"))
    district_pool = int(pools.filter(pl.col("school_id").is_null())["available"].sum())
    from_district = needed_by_school.join(pools.drop_nulls("school_id"), on="school_id", how="left").select(
        (pl.col("needed") - pl.col("available").fill_null(0)).clip(lower_bound=0).sum()
    ).item() or 0
    available = district_pool + int(pools.filter(pl.col("school_id").is_in(needed_by_school["school_id"].implode()))
                                    ["available"].sum())
    return to_enroll.height, available, int(from_district), district_pool


def compute_plan(inputs: PlanInputs, batch_id: int, preview: bool = False) -> Plan:
    """The plan from what was read (no warehouse access): enrollments, removals, temporaries and
    the summary an approver reads, with what blocks approval. ``preview``: the plan so far while
    rows are in review (they are left out and counted in ``rows_pending_review``)."""
    batch = inputs.batch
    mode = batch["mode"]
    rows = resolve_rows(inputs)
    planned = plan_rows(rows, inputs, batch_id)
    enrollments = planned.select(PLAN_ENROLLMENT_COLUMNS)
    links = temporary_links(planned, inputs.temporary, batch_id, mode)
    temporary_kept = pl.DataFrame(schema=links.schema)
    removals = pl.DataFrame(schema={"batch_id": pl.Int64, "student_key": pl.Int64, "school_id": pl.Int64})
    guard: list[dict[str, Any]] = []
    if mode == "migration":
        removals, temporary_kept, guard = migration_removals(inputs, rows, links, batch_id)

    needed, available, from_district, district_pool = subscription_needs(enrollments, inputs.pools)
    blockers = []
    if from_district > district_pool:
        blockers.append(
            f"the batch needs {needed} '{batch['subscription_type']}' subscriptions; after each school's own pool, "
            f"{from_district} must come from the district pool, which has {district_pool}"
        )
    if inputs.hold_all:
        blockers.append("the whole migration is held: " + "; ".join(inputs.hold_reasons))
    blockers.extend(identifier_blockers(planned, inputs.id_holders))
    if enrollments.is_empty() and removals.is_empty():
        blockers.append("there is nothing to commit")

    new_students = enrollments.filter(pl.col("student_action") == "new")["new_person_key"].n_unique()
    result = {
        "mode": mode,
        "term": batch["term"],
        "subscription_type": batch["subscription_type"],
        "rows_valid": rows.height,
        "rows_excluded_by_review": int(rows["excluded"].sum()),
        "rows_held": int(rows["held"].sum()),
        "held_schools": sorted(inputs.school_names[s] for s in inputs.held_schools if s in inputs.school_names),
        "hold_all": inputs.hold_all,
        "hold_reasons": inputs.hold_reasons,
        "enrollments_new": needed,
        "already_enrolled": enrollments.height - needed,
        "students_new": int(new_students),
        "students_existing": enrollments.filter(pl.col("student_action") == "existing")["student_key"].n_unique(),
        "students_restored": enrollments.filter(pl.col("student_action") == "restore")["student_key"].n_unique(),
        "teachers_new": enrollments.filter(pl.col("teacher_is_new"))["teacher_email"].n_unique(),
        "classes_new": enrollments.filter(pl.col("class_id").is_null())
        .select("school_id", "teacher_email", "class_period", "course_code").unique().height,
        "removals": removals.height,
        "expected_leavers": int(removals["expected_leaver"].sum()) if "expected_leaver" in removals.columns else 0,
        "expected_leavers_by_school": expected_leavers_by_school(inputs.school_names, removals),
        "temporary_kept": temporary_kept.height,
        "temporary_kept_by_school": _count_by_school(inputs.school_names, temporary_kept),
        "temporary_links": links.height,
        "subscriptions_needed": needed,
        "subscriptions_available": int(available),
        "guard": guard,
        "blockers": blockers,
    }
    if preview:
        result["rows_pending_review"] = int((rows["pending_review"] & ~rows["held"]).sum())
    return Plan(result, enrollments, removals, pl.concat([links, temporary_kept]))


def store_plan(con: duckdb.DuckDBPyConnection, batch_id: int, plan: Plan) -> dict[str, Any]:
    """Write the plan's tables, set the batch held or awaiting approval, and record the plan stage.
    The caller holds the transaction."""
    con.execute("DELETE FROM plan_enrollments WHERE batch_id = ?", [batch_id])
    con.execute("DELETE FROM plan_removals WHERE batch_id = ?", [batch_id])
    con.execute("DELETE FROM plan_temporaries WHERE batch_id = ?", [batch_id])
    insert_frame(con, "plan_enrollments", plan.enrollments)
    insert_frame(con, "plan_removals", plan.removals.select("batch_id", "student_key", "school_id"))
    insert_frame(con, "plan_temporaries", plan.temporaries.select("batch_id", "student_key", "school_id", "action",
                                                                  "reason"))
    batches.set_status(con, batch_id, batches.STATUS_HELD if plan.result["blockers"] else batches.STATUS_AWAITING_APPROVAL)
    batches.record_stage(con, batch_id, "plan", plan.result)
    # The version is recorded with the summary (for the record; `plan_version` always recomputes it).
    version = plan_version(con, batch_id)
    plan.result["version"] = version
    con.execute("UPDATE batch_stages SET result = ? WHERE batch_id = ? AND stage = 'plan'",
                [json.dumps(plan.result, default=str), batch_id])
    return plan.result


def build_plan(wh: Warehouse, batch_id: int) -> dict[str, Any]:
    """Compute the batch's plan into ``plan_enrollments``, ``plan_removals`` and ``plan_temporaries``
    and return its summary, holding the warehouse only to read its inputs and to write the plan.

    The write re-checks that the batch's stages (match, review: a decision reopens the review) and
    its own audited changes, the students (commits, changes by hand) and the catalog (schools,
    courses, subscriptions) are unchanged since the read, else it plans again; a plan another
    process finished meanwhile stands."""
    return batches.run_stage(
        wh, batch_id, "plan", lambda con: load_plan_inputs(con, batch_id),
        lambda inputs: compute_plan(inputs, batch_id), lambda con, plan: store_plan(con, batch_id, plan),
        actions=(*batches.STUDENT_CHANGES, *batches.CATALOG_CHANGES))


def preview_plan(wh: Warehouse, batch_id: int) -> dict[str, Any]:
    """The plan so far while rows wait for review (holds, removals, subscriptions, blockers), rows
    still in review left out and counted: nothing is stored, and it is never approved. Returns
    the summary and its markdown."""
    with wh.read(batch=batch_id, stage="plan-preview") as con:
        inputs = load_plan_inputs(con, batch_id, preview=True)
    summary = compute_plan(inputs, batch_id, preview=True).result
    return {"summary": summary, "markdown": preview_markdown(summary)}


def plan_tables(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, pl.DataFrame]:
    """The plan's tables a person reads (``tasks.plan_view.PLAN_TABLE_QUERIES``) as frames."""
    return {name: con.sql(query, params={"b": batch_id}).pl() for name, query in PLAN_TABLE_QUERIES.items()}
