"""The plan as stored, for the people who read it: its version, its tables and its markdown,
read with DuckDB alone.

`rosterflow plan N` of a planned batch (typed often, by an approver waiting for it) prints what the
warehouse recorded: nothing here imports polars, which the plan's computation (``tasks.plan``)
needs and which would take longer to import than the whole command takes without it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import duckdb

from warehouse import batches

# What a plan will do, as stored: its three tables (every row, every column) and its summary.
PLAN_TABLES = ("plan_enrollments", "plan_removals", "plan_temporaries")


# Summary figures that describe the district around the plan, not what committing it does: how many
# subscriptions are left changes with every other batch's commit (running short is a blocker, which
# is in the version), so it does not make an approved plan another version.
NOT_WHAT_IT_DOES = ("version", "subscriptions_available")


def plan_version(con: duckdb.DuckDBPyConnection, batch_id: int) -> str | None:
    """The plan's version: a short digest of what committing it would do, recomputed from the warehouse
    (every row of its tables, in any order, and its summary's counts, guard and blockers). The same plan
    always has the same version; any change to what would be committed gives another. None: no plan.

    An approval names the version its approver was shown, and only that version is committed."""
    summary = batches.stage_result(con, batch_id, "plan")
    if summary is None:
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in summary.items() if k not in NOT_WHAT_IT_DOES},
                             sort_keys=True, default=str).encode())
    for table in PLAN_TABLES:
        # Table names are this module's constants. Each row (every column) is hashed and the hashes
        # summed, so the order is irrelevant and a million-row plan is digested in a few
        # hundredths of a second (serialising every row to text took seconds, inside the holds
        # that plan and approve).
        count, tables_digest = con.execute(
            f"SELECT count(*), coalesce(sum(hash(t))::VARCHAR, '') FROM {table} t WHERE batch_id = ?",
            [batch_id]).fetchall()[0]
        digest.update(f"\n{table}:{count}:{tables_digest}".encode())
    return digest.hexdigest()[:12]


# The tables a person reads (each query's parameter ``$b`` is the batch): classes (students to
# register, with * where some are already enrolled), students per class, and removals per school.
PLAN_TABLE_QUERIES = {
    "classes":
        "SELECT sc.name AS school, p.teacher_first || ' ' || p.teacher_last || ' (' || p.teacher_email || ')' AS teacher,"
        " p.term || coalesce(' - ' || p.class_period, '') AS term_period, p.course_code AS course,"
        " count(*) FILTER (WHERE NOT p.already_enrolled) AS to_register,"
        " bool_or(p.already_enrolled) AS some_already_enrolled, bool_or(p.teacher_is_new) AS new_teacher,"
        " p.class_id IS NULL AS new_class,"
        " CASE WHEN bool_or(p.already_enrolled) THEN '*' ELSE '' END"
        "   || (count(*) FILTER (WHERE NOT p.already_enrolled))::VARCHAR AS students"
        " FROM plan_enrollments p JOIN schools sc USING (school_id) WHERE p.batch_id = $b"
        " GROUP BY ALL ORDER BY school, teacher, term_period, course",
    "students":
        "SELECT sc.name AS school, p.term || coalesce(' - ' || p.class_period, '') AS term_period,"
        " p.course_code AS course, p.teacher_email, p.last_name, p.first_name, p.student_action,"
        " p.already_enrolled FROM plan_enrollments p JOIN schools sc USING (school_id)"
        " WHERE p.batch_id = $b ORDER BY school, term_period, course, last_name, first_name",
    "removals":
        "SELECT sc.name AS school, s.student_key, s.first_name, s.last_name, s.student_id, s.grade"
        " FROM plan_removals r JOIN students s USING (student_key) JOIN schools sc ON sc.school_id = r.school_id"
        " WHERE r.batch_id = $b ORDER BY school, last_name, first_name",
    "removals_by_school":
        "WITH active AS (SELECT school_id, count(*) AS active FROM students WHERE status = 'active' GROUP BY ALL)"
        " SELECT sc.name AS school, count(*) AS students_to_remove, a.active AS active_students,"
        " round(count(*) / a.active, 4) AS share FROM plan_removals r JOIN schools sc USING (school_id)"
        " LEFT JOIN active a USING (school_id) WHERE r.batch_id = $b GROUP BY sc.name, a.active ORDER BY school",
    "new_teachers":
        "SELECT DISTINCT sc.name AS school, p.teacher_first, p.teacher_last, p.teacher_email"
        " FROM plan_enrollments p JOIN schools sc USING (school_id) WHERE p.batch_id = $b AND p.teacher_is_new"
        " ORDER BY school, teacher_last, teacher_first",
    # Names are never changed from a sheet: the approver sees where a sheet spells a linked
    # student differently (a nickname, a typo, a new surname) and that the registered name stays.
    "name_differences":
        "SELECT DISTINCT sc.name AS school, p.first_name AS sheet_first, p.last_name AS sheet_last,"
        " s.first_name AS registered_first, s.last_name AS registered_last, s.student_key"
        " FROM plan_enrollments p JOIN students s USING (student_key) JOIN schools sc ON sc.school_id = p.school_id"
        " WHERE p.batch_id = $b AND (lower(trim(p.first_name)) <> lower(s.first_name)"
        "   OR lower(trim(p.last_name)) <> lower(s.last_name))"
        " ORDER BY school, registered_last, registered_first",
    # Temporary students the batch makes permanent (with the sheet row that does it), and those a
    # migration keeps unlinked: it never removes them.
    "temporary_links":
        "SELECT sc.name AS school, t.student_key, s.first_name, s.last_name, p.first_name AS sheet_first,"
        " p.last_name AS sheet_last, p.student_id AS sheet_student_id, p.ssid AS sheet_ssid,"
        " p.other_id AS sheet_other_id, t.reason"
        " FROM plan_temporaries t JOIN students s USING (student_key)"
        " JOIN plan_enrollments p ON p.batch_id = t.batch_id AND p.student_key = t.student_key"
        " JOIN schools sc ON sc.school_id = p.school_id WHERE t.batch_id = $b AND t.action = 'link'"
        " QUALIFY row_number() OVER (PARTITION BY t.student_key ORDER BY p.row_no) = 1"
        " ORDER BY school, s.last_name, s.first_name",
    "temporary_kept":
        "SELECT coalesce(sc.name, '(no school)') AS school, t.student_key, s.first_name, s.last_name, s.ssid,"
        " s.other_id, s.date_of_birth, s.created_at"
        " FROM plan_temporaries t JOIN students s USING (student_key) LEFT JOIN schools sc ON sc.school_id = t.school_id"
        " WHERE t.batch_id = $b AND t.action = 'keep' ORDER BY school, s.last_name, s.first_name",
}


def plan_table_rows(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, list[dict[str, Any]]]:
    """The plan's tables (``PLAN_TABLE_QUERIES``), each a list of rows keyed by column name."""
    tables = {}
    for name, query in PLAN_TABLE_QUERIES.items():
        result = con.execute(query, {"b": batch_id})
        columns = [d[0] for d in result.description]
        tables[name] = [dict(zip(columns, row)) for row in result.fetchall()]
    return tables


def table_rows(table: Any) -> list[dict[str, Any]]:
    """A plan table as rows: rows already (``plan_table_rows``), or a polars frame's."""
    return table if isinstance(table, list) else table.to_dicts()


def preview_markdown(summary: dict[str, Any]) -> str:
    """The plan so far, while rows are in review, as markdown: what it would do without them."""
    lines = [f"## {summary['mode'].title()} for {summary['term']}: the plan so far (a preview, not for approval)", "",
             f"**{summary.get('rows_pending_review', 0)} row(s) wait for review** and are left out below; the plan "
             "to approve is made when they are decided.", ""]
    return "\n".join(lines + plan_summary_lines(summary))


def plan_in_brief(summary: dict[str, Any]) -> str:
    """The plan's counts in one plain sentence (no markdown), for a form field's description that
    the Prefect UI shows whatever the window's size, beside the decision itself."""
    parts = [f"registers {summary['students_new']} new and {summary['students_existing']} existing student(s)"
             + (f", restores {summary['students_restored']}" if summary["students_restored"] else ""),
             f"makes {summary['enrollments_new']} new enrollment(s) in {summary['classes_new']} new class(es)",
             f"adds {summary['teachers_new']} teacher(s)",
             f"uses {summary['subscriptions_needed']} {summary['subscription_type']} subscription(s) of "
             f"{summary['subscriptions_available']} available (not reversible)"]
    if summary["mode"] == "migration":
        parts.append(f"removes {summary['removals']} student(s) (restorable)")
    text = f"Plan version {summary.get('version')}: it " + ", ".join(parts) + "."
    if summary["held_schools"] or summary["hold_all"]:
        text += f" Held: {'all schools' if summary['hold_all'] else ', '.join(summary['held_schools'])}."
    if summary["guard"]:
        text += " The mass-removal guard stops it: " + "; ".join(
            f"{guard['school']} {guard['reason']}" for guard in summary["guard"]) + "."
    if summary["blockers"]:
        text += " It cannot be approved: " + "; ".join(summary["blockers"]) + "."
    return text


def plan_summary_lines(summary: dict[str, Any]) -> list[str]:
    """The plan's counts, holds, guard and blockers, as markdown lines."""
    lines = [
        f"You are about to use **{summary['subscriptions_needed']} {summary['subscription_type']} subscriptions** "
        f"({summary['subscriptions_available']} available). This is **not reversible** for subscriptions.",
        "",
        f"- new students: {summary['students_new']}; existing students: {summary['students_existing']}; "
        f"restored: {summary['students_restored']}",
        f"- new enrollments: {summary['enrollments_new']}; already enrolled (not charged): {summary['already_enrolled']}",
        f"- new teachers: {summary['teachers_new']}; new classes: {summary['classes_new']}",
    ]
    if summary["mode"] == "migration":
        by_school = ", ".join(f"{school} {n}" for school, n in summary.get("temporary_kept_by_school", {}).items())
        lines.append(f"- **students to remove: {summary['removals']}** (restorable); unlinked temporary students kept: "
                     f"{summary['temporary_kept']}" + (f" ({by_school})" if by_school else ""))
        leavers = summary.get("expected_leavers_by_school") or []
        if leavers:
            lines.append(f"- expected leavers (of the removals; not counted by the mass-removal guard): "
                         f"{summary.get('expected_leavers', 0)}: " + "; ".join(
                             f"{r['school']}, highest grade {r['highest_grade']}: {r['students']}" for r in leavers))
    if summary.get("temporary_links"):
        lines.append(f"- temporary students made permanent: {summary['temporary_links']}")
    if summary["held_schools"] or summary["hold_all"]:
        lines.append(f"- **held** (invalid rows; fix and upload again): "
                     f"{'all schools' if summary['hold_all'] else ', '.join(summary['held_schools'])}")
    for guard in summary["guard"]:
        lines.append(f"- **guard**: {guard['school']} {guard['reason']}; approving needs the override")
    for blocker in summary["blockers"]:
        lines.append(f"- **cannot approve**: {blocker}")
    return lines


def plan_markdown(summary: dict[str, Any], tables: dict[str, Any]) -> str:
    """The summary an approver reads before deciding, as markdown. ``tables``: ``plan_table_rows``
    (or ``tasks.plan.plan_tables``' frames)."""
    tables = {name: table_rows(table) for name, table in tables.items()}
    lines = [
        f"## {summary['mode'].title()} for {summary['term']}",
        "",
        f"Plan version **{summary.get('version')}**: an approval names this version, and only it is committed.",
        "",
        *plan_summary_lines(summary),
    ]
    lines += ["", "| School | Teacher | Term - Period | Course | Students to register |", "|---|---|---|---|---|"]
    for row in tables["classes"]:
        lines.append(f"| {row['school']} | {row['teacher']} | {row['term_period']} | {row['course']} | {row['students']} |")
    lines.append("")
    if any("*" in str(row["students"]) for row in tables["classes"]):
        lines.append("\\* some students in this class are already enrolled: they are not registered again or charged.")
    if tables["new_teachers"]:
        lines += ["", "| School | New teacher | Email |", "|---|---|---|"]
        for row in tables["new_teachers"]:
            lines.append(f"| {row['school']} | {row['teacher_first']} {row['teacher_last']} | {row['teacher_email']} |")
    if tables["removals_by_school"]:
        lines += ["", "| School | Students to remove | Active students | Share |", "|---|---|---|---|"]
        for row in tables["removals_by_school"]:
            share = f"{row['share']:.1%}" if row["share"] is not None else ""
            lines.append(f"| {row['school']} | {row['students_to_remove']} | {row['active_students']} | {share} |")
    links = tables.get("temporary_links")
    if links:
        lines += ["", f"{len(links)} temporary student(s) become permanent (same key, enrollments and login):", "",
                  "| School | Temporary student | Sheet row | Why |", "|---|---|---|---|"]
        for row in links:
            lines.append(f"| {row['school']} | {row['first_name']} {row['last_name']} ({row['student_key']}) | "
                         f"{row['sheet_first']} {row['sheet_last']} | {row['reason']} |")
    kept = tables.get("temporary_kept")
    if kept:
        lines += ["", f"{len(kept)} unlinked temporary student(s) kept (a migration never removes them):", "",
                  "| School | Temporary student | SSID | Other ID |", "|---|---|---|---|"]
        for row in kept:
            lines.append(f"| {row['school']} | {row['first_name']} {row['last_name']} ({row['student_key']}) | "
                         f"{row['ssid'] or ''} | {row['other_id'] or ''} |")
    differences = tables["name_differences"]
    if differences:
        lines += ["", f"{len(differences)} linked student(s) are spelled differently in the sheets; the registered "
                  "names are kept:", "", "| School | In the sheet | Registered |", "|---|---|---|"]
        for row in differences[:25]:
            lines.append(f"| {row['school']} | {row['sheet_first']} {row['sheet_last']} | "
                         f"{row['registered_first']} {row['registered_last']} |")
    return "\n".join(lines)
