"""Validate: clean and type the staged rows, report every problem with file, sheet, row and column.

Rows with an error are kept out of ``valid_rows`` and reported; rows with warnings go on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandera.errors
import polars as pl

from schemas.roster import FORMULA_PREFIXES, ValidRosterRow
from tasks.exports import write_xlsx
from tasks.names import folded_names
from warehouse import batches
from warehouse.connection import ArrowStream, insert_frame
from warehouse.handle import Warehouse

TEXT_COLUMNS = (
    "school", "teacher_first", "teacher_last", "teacher_email", "class_period", "course_code",
    "student_first", "student_last", "student_id", "ssid", "other_id", "date_of_birth", "grade",
)
NAME_COLUMNS = ("teacher_first", "teacher_last", "student_first", "student_last")
ID_COLUMNS = ("student_id", "ssid", "other_id")
INVISIBLE_PATTERN = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
FORMULA_PATTERN = "^[" + "".join("\\" + p for p in FORMULA_PREFIXES) + "]"
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}( 00:00:00(\.0+)?)?$"

# What each pandera check means to a person filling in the sheet, and how to fix it.
CHECK_MESSAGES: dict[str, tuple[str, str]] = {
    "not_nullable": ("is required but empty", "Fill in the cell."),
    "str_length": ("is required but empty", "Fill in the cell."),
    "str_matches": ("has characters that are not allowed", "Use letters, digits and hyphens only; for an email use name@domain.org."),
    "greater_than_or_equal_to": ("is before 1990-01-01", "Check the year of the date of birth."),
    "isin": ("is not a known grade", "Use PK, K or 1-12."),
    "field_uniqueness": ("appears twice", "Remove the duplicate row."),
}


def _issue(frame: pl.DataFrame, mask: pl.Expr, column: str, problem: str, fix: str, severity: str = "error") -> pl.DataFrame:
    return frame.filter(mask).select(
        "row_no",
        pl.lit(column).alias("column_name"),
        pl.col(f"raw_{column}").alias("value") if f"raw_{column}" in frame.columns else pl.lit(None, pl.String).alias("value"),
        pl.lit(severity).alias("severity"),
        pl.lit(problem).alias("problem"),
        pl.lit(fix).alias("fix"),
    )


def _clean_text(column: str) -> pl.Expr:
    return (
        pl.col(column)
        .str.replace_all(INVISIBLE_PATTERN, "")
        .str.replace_all("\u00a0", " ")
        .str.normalize("NFC")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .replace("", None)
    )


# A cell needs cleaning only if it has a character outside printable ASCII or stray spaces; most
# cells do not, and the full cleaning (NFC, invisible characters) is the costliest step.
NEEDS_CLEANING_PATTERN = r"[^\x21-\x7e ]|^ | $|  |^$"
# Every cell a rule on the cells as read or the cleaning looks at: one that needs cleaning, or one
# that starts like a formula (one with spaces before its = needs cleaning too). One regular
# expression pass over each column finds them all; the rules then look at those few cells alone.
FLAGGED_PATTERN = NEEDS_CLEANING_PATTERN + "|" + FORMULA_PATTERN


def _raw_rules(column: str) -> tuple[tuple[pl.Expr, str, str, str, str], tuple[pl.Expr, str, str, str, str]]:
    """The rules on a column's cells as read: (mask, column, problem, fix, severity), for a cell
    that starts like a formula, and for one with invisible characters (these can only be in cells
    that need cleaning, so that rule runs on them alone)."""
    raw = pl.col(column)
    formula = (raw.str.contains(r"^\s*" + FORMULA_PATTERN[1:]), column,
               "starts like a spreadsheet formula (=, +, - or @)",
               "Remove the leading character; rosterflow never runs formulas and escapes them on export.", "warning")
    invisible = (raw.str.contains(INVISIBLE_PATTERN), column,
                 "contains invisible characters (zero-width space, BOM or soft hyphen); they were removed",
                 "Retype the cell to be sure it says what you mean.", "warning")
    return formula, invisible


def usual_id_lengths(frame: pl.DataFrame, column: str) -> dict[str, int]:
    """Per file, the length its all-digit IDs should have: the length at least 80% of them share,
    or the length its IDs written with leading zeros share (at least 80% of those). A cell that
    kept its zeros (0012345) shows the district pads its IDs; shorter all-digit IDs in the same
    file are then numbers Excel stripped, however many there are. A file whose IDs simply vary in
    length, with no zero-led ones and no dominant length, has none."""
    digits = frame.filter(pl.col(column).str.contains(r"^\d+$")).select(
        "file_name", length=pl.col(column).str.len_chars(), zero_led=pl.col(column).str.starts_with("0"))
    if digits.is_empty():
        return {}

    def dominant(rows: pl.DataFrame) -> pl.DataFrame:
        return (rows.group_by("file_name", "length").len()
                .with_columns(share=pl.col("len") / pl.col("len").sum().over("file_name"))
                .filter(pl.col("share") >= 0.8).select("file_name", "length"))

    lengths = pl.concat([dominant(digits), dominant(digits.filter("zero_led"))]).group_by("file_name").agg(
        pl.col("length").max())
    return dict(lengths.iter_rows())


def _clean_rules(frame: pl.DataFrame) -> list[tuple[pl.Expr, str, str, str, str]]:
    """Rules on the cleaned cells: identifiers Excel damaged, dates that are not dates."""
    rules = []
    for column in ID_COLUMNS:
        rules.append((pl.col(column).str.contains(r"^\d+\.\d+$|[eE]\+\d+$"), column,
                      "looks like a number Excel reformatted (decimal point or exponent), so digits may be lost",
                      "Format the column as Text in Excel and type the ID again.", "error"))
        # Excel keeps 15 significant digits of a number: a longer ID typed into a number cell
        # comes back with its last digits changed (12345678901234567890 -> ...69216).
        rules.append((pl.col(column).str.contains(r"^\d{16,}$"), column,
                      "has more than 15 digits: if Excel stored it as a number, digits may be lost",
                      "Format the column as Text in Excel and type the ID again.", "warning"))
        # A numeric cell formatted 00000 reads as 123: the zeros lived only in the display format,
        # so such an ID is shorter than its file's usual length.
        usual = usual_id_lengths(frame, column)
        if not usual:
            continue
        usual_length = pl.col("file_name").replace_strict(usual, default=None, return_dtype=pl.UInt32)
        value = pl.col(column).str.strip_chars()
        rules.append((
            pl.col(column).str.contains(r"^\d+$") & (pl.col(column).str.len_chars() < usual_length), column,
            pl.format("has {} digits where this file's IDs have {}: Excel drops the leading zeros of a number, "
                      "so it is probably {}", value.str.len_chars(), usual_length, value.str.zfill(usual_length)),
            "Format the column as Text in Excel (select it, Format Cells, Text) and type the ID again with its "
            "leading zeros.",
            "warning"))
    if "formula_cells" in frame.columns and frame["formula_cells"].is_not_null().any():
        for column in TEXT_COLUMNS:
            rules.append((pl.col("formula_cells").str.contains(f"(^|,){column}(,|$)"), column,
                          "is a formula with no saved value (the file was not saved by Excel after it was filled)",
                          "Open the file in Excel and save it, or type the value instead of the formula.", "error"))
    dob = pl.col("date_of_birth")
    bare_number = dob.str.contains(r"^\d+(\.\d+)?$")
    rules.append((bare_number, "date_of_birth", "is a bare number (an Excel date serial or a typo), not a date",
                  "Format the cell as a date, or type it as YYYY-MM-DD.", "error"))
    rules.append((dob.is_not_null() & ~bare_number & pl.col("birth_date").is_null(), "date_of_birth",
                  "is not a date in an accepted format (text like 03/04/2015 is ambiguous)",
                  "Use an Excel date cell or type YYYY-MM-DD, e.g. 2015-04-03.", "error"))
    rules.append((pl.col("birth_date") > pl.lit(dt.date.today()), "date_of_birth", "is in the future",
                  "Check the year of the date of birth.", "error"))
    return rules


def _rule_issues(frame: pl.DataFrame, raw: pl.DataFrame, rules: list[tuple]) -> pl.DataFrame:
    """Evaluate every rule's mask in one parallel pass; only rules that fire are turned into rows."""
    masks = frame.select([mask.fill_null(False).alias(f"rule_{i}") for i, (mask, *_) in enumerate(rules)])
    fired = [i for i, count in enumerate(masks.sum().row(0)) if count]
    found = [_fired(raw, masks[f"rule_{i}"], rules[i]) for i in fired]
    return pl.concat(found, how="vertical") if found else pl.DataFrame(schema=_ISSUE_SCHEMA)


def clean_rows(staged: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalize text cells (NFC, invisible characters, spaces) and type them.

    Returns the cleaned frame (keeping each raw cell as ``raw_<column>``) and the issues found.
    One parallel pass finds the cells that need cleaning or start like a formula (``FLAGGED_PATTERN``);
    the rules on cells as read look at those alone, and only the cells that need it are cleaned and
    written back in place.
    """
    raw = staged.select("row_no", "file_name", *TEXT_COLUMNS)
    flagged = raw.select([pl.col(c).str.contains(FLAGGED_PATTERN).fill_null(False) for c in TEXT_COLUMNS])
    # Formula warnings first, then invisible characters, each in column order: where one cell gets
    # both warnings, the formula's is the one kept.
    formula_found, invisible_found = [], []
    columns = {}
    for column in TEXT_COLUMNS:
        values = staged[column]
        if flagged[column].any():
            positions = flagged[column].arg_true()
            cells = pl.DataFrame({"row_no": staged["row_no"].gather(positions), column: values.gather(positions)})
            formula, invisible = _raw_rules(column)
            hits, dirty = cells.select(formula[0].fill_null(False).alias("formula"),
                                       pl.col(column).str.contains(NEEDS_CLEANING_PATTERN).fill_null(False)
                                       .alias("dirty")).get_columns()
            if hits.any():
                formula_found.append(_fired(cells, hits, formula))
            if dirty.any():
                dirty_cells = cells.filter(dirty)
                hits = dirty_cells.select(invisible[0].fill_null(False)).to_series()
                if hits.any():
                    invisible_found.append(_fired(dirty_cells, hits, invisible))
                values = values.scatter(positions.filter(dirty), dirty_cells.select(_clean_text(column)).to_series())
        columns[column] = values
    found = formula_found + invisible_found
    raw_issues = pl.concat(found, how="vertical") if found else pl.DataFrame(schema=_ISSUE_SCHEMA)

    # "Grade 05", "007" and "7" are grade 7: an optional "GRADE " and leading zeros dropped from
    # a number (without a regular expression capturing groups, which took half a second at 1M rows).
    upper = pl.col("grade").str.to_uppercase()
    number = upper.str.strip_prefix("GRADE ")
    unpadded = number.str.strip_chars_start("0")
    grade = pl.when(number.str.contains(r"^\d+$")).then(
        pl.when(unpadded == "").then(pl.lit("0")).otherwise(unpadded)).otherwise(upper)
    dob = pl.col("date_of_birth")
    frame = staged.with_columns(
        *[pl.col(c).alias(f"raw_{c}") for c in TEXT_COLUMNS],
        *[pl.Series(c, columns[c]) for c in TEXT_COLUMNS],
    ).with_columns(
        pl.col("teacher_email").str.to_lowercase(),
        pl.col("course_code").str.to_uppercase(),
        grade.replace({"KG": "K", "KINDERGARTEN": "K"}).alias("grade"),
        birth_date=pl.when(dob.str.contains(ISO_DATE_PATTERN)).then(
            dob.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)),
    )
    clean_issues = _rule_issues(frame, raw, _clean_rules(frame))
    return frame, pl.concat([raw_issues, clean_issues], how="vertical")


def _fired(raw: pl.DataFrame, hits: pl.Series, rule: tuple) -> pl.DataFrame:
    mask, column, problem, fix, severity = rule
    return raw.filter(hits).select(
        "row_no", pl.lit(column).alias("column_name"), pl.col(column).alias("value"),
        pl.lit(severity).alias("severity"),
        (problem if isinstance(problem, pl.Expr) else pl.lit(problem)).alias("problem"), pl.lit(fix).alias("fix"),
    )


def contract_issues(frame: pl.DataFrame) -> pl.DataFrame:
    """Run the ``ValidRosterRow`` contract lazily and turn every failure into an issue row."""
    typed = frame.select(
        "row_no", "school", "teacher_first", "teacher_last", "teacher_email", "class_period", "course_code",
        "student_first", "student_last", "student_id", "ssid", "other_id",
        pl.col("birth_date").alias("date_of_birth"), "grade",
    )
    try:
        ValidRosterRow.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if "index" not in cases.columns:
            raise
        cases = cases.filter(pl.col("index").is_not_null())
        positions = cases["index"].cast(pl.Int64).to_list()
        row_nos = typed["row_no"].gather(positions).to_list()
        rows = []
        for row_no, column, check, value in zip(row_nos, cases["column"].to_list(), cases["check"].to_list(),
                                                cases["failure_case"].to_list()):
            check_name = str(check).split("(")[0]
            problem, fix = CHECK_MESSAGES.get(check_name, (f"fails the check {check}", "Correct the cell."))
            if column == "teacher_email" and check_name == "str_matches":
                problem, fix = "is not an email address", "Type the teacher's email as name@domain.org."
            rows.append({"row_no": row_no, "column_name": column, "value": None if value is None else str(value),
                         "severity": "error", "problem": problem, "fix": fix})
        return pl.DataFrame(rows, schema=_ISSUE_SCHEMA)
    return pl.DataFrame(schema=_ISSUE_SCHEMA)


_ISSUE_SCHEMA = {"row_no": pl.Int64, "column_name": pl.String, "value": pl.String, "severity": pl.String,
                 "problem": pl.String, "fix": pl.String}


def relational_issues(frame: pl.DataFrame, schools: pl.DataFrame, courses: pl.DataFrame) -> pl.DataFrame:
    """Rules across rows and against the warehouse: known schools and courses, one name per teacher
    email, the same whole student twice in a class or in two schools (errors), one identifier on two
    different people (a warning: matching decides whose it is)."""
    known_schools = ", ".join(sorted(schools["name"].to_list())) or "(none yet)"
    issues = [
        _issue(frame, pl.col("school").is_not_null() & pl.col("school_id").is_null(), "school",
               f"is not a school in rosterflow (known schools: {known_schools})",
               "Correct the school name, or ask for the school to be added with `rosterflow school add`."),
    ]
    if courses.height:
        issues.append(
            _issue(frame, pl.col("course_code").is_not_null()
                   & ~pl.col("course_code").is_in(courses["course_code"].implode()), "course_code",
                   "is not in the course catalog",
                   "Use a course code from the catalog (`rosterflow course list`).")
        )
    issues.append(teacher_name_conflicts(frame))
    class_key = ["school_id", "teacher_email", "class_period", "course_code"]
    # The folded names are the costliest part of these rules: folded once, for every rule below.
    frame = with_person(frame)
    issues.append(_duplicate_issues(frame, class_key))
    issues.append(one_student_in_two_schools(frame))
    for id_column in ID_COLUMNS:
        issues.append(shared_id_warnings(frame, id_column))
    return pl.concat(issues, how="vertical")


def person_of(frame: pl.DataFrame) -> pl.Series:
    """A row's student by folded first and last names and date of birth, the names folded once per
    distinct name (``folded_names``)."""
    return frame.select(pl.concat_str([folded_names(frame["student_first"]), folded_names(frame["student_last"]),
                                       pl.col("birth_date").cast(pl.String).fill_null("")], separator="|")
                        .alias("person")).to_series()


def with_person(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``person`` (``person_of``) and ``person_key``, the whole student: ``person``
    and every identifier. Two rows are the same student only when their ``person_key`` is equal;
    an identifier alone may be a typo that landed on another child's. At a million rows the two
    keys take 0.4 s, 0.75 s when every row's names were folded. (As structs of the columns they
    take 0.1 s, but the rules grouping on them then take 0.4 s longer.)"""
    return frame.with_columns(person_of(frame)).with_columns(
        person_key=pl.concat_str([pl.col("person"), *[pl.col(c).fill_null("") for c in ID_COLUMNS]], separator="|"))


def _row_label(with_school: bool = False) -> pl.Expr:
    label = pl.format("{} row {}", pl.col("file_name"), pl.col("excel_row"))
    return pl.format("{} ({})", pl.col("school"), label) if with_school else label


def one_student_in_two_schools(frame: pl.DataFrame) -> pl.DataFrame:
    """The same whole student (same folded names, date of birth and IDs) in two schools: an error
    on each of those rows naming the rows in the other schools. One ID on two different people in
    two schools is not this: it is a question for matching (see ``shared_id_warnings``)."""
    # Only the columns used are copied for the rows kept (nearly all), and the rows' labels are
    # written for the few repeated ones only: at a million rows, 0.31 s instead of 0.48 s.
    rows = frame.lazy().filter(pl.col("student_id").is_not_null() & pl.col("school").is_not_null()).select(
        "row_no", "person_key", "raw_student_id", "school", "file_name", "excel_row",
        school_key=pl.col("school").str.to_lowercase()).collect(engine="in-memory")
    per_person = rows.group_by("person_key").agg(pl.col("school_key").n_unique().alias("schools"))
    repeated = rows.join(per_person.filter(pl.col("schools") > 1), on="person_key", how="semi")
    if repeated.is_empty():
        return pl.DataFrame(schema=_ISSUE_SCHEMA)
    repeated = repeated.with_columns(label=_row_label(with_school=True))
    firsts = repeated.sort("row_no").unique(["person_key", "school_key"], keep="first", maintain_order=True)
    others = (repeated.select("row_no", "person_key", "school_key", "raw_student_id")
              .join(firsts.select("person_key", pl.col("school_key").alias("other_school"), "label"), on="person_key")
              .filter(pl.col("other_school") != pl.col("school_key"))
              .group_by("row_no", "raw_student_id", maintain_order=True).agg(pl.col("label").unique(maintain_order=True)))
    return others.select(
        "row_no", pl.lit("student_id").alias("column_name"), pl.col("raw_student_id").alias("value"),
        pl.lit("error").alias("severity"),
        pl.format("is the same student (same name, date of birth and IDs) as on {}: one student in two schools",
                  pl.col("label").list.join(" and ")).alias("problem"),
        pl.lit("A student belongs to one school: keep the row of the school the student attends and remove the "
               "stale one.").alias("fix"),
    ).sort("row_no")


def shared_id_warnings(frame: pl.DataFrame, id_column: str) -> pl.DataFrame:
    """One identifier on two different people in this batch (the folded names or the date of birth
    differ), in one school or several: usually a typo that landed on another child's ID. A warning
    naming the other person's row, not an error: both rows stay valid and matching decides, linking
    the row whose name and date of birth agree with the ID's registered student and sending the
    other to review with its own candidates."""
    rows = frame.filter(pl.col(id_column).is_not_null())
    if "person" not in rows.columns:
        rows = rows.with_columns(person_of(rows))
    per_id = rows.group_by(id_column).agg(pl.col("person").n_unique().alias("people"))
    shared = rows.join(per_id.filter(pl.col("people") > 1), on=id_column, how="semi")
    if shared.is_empty():
        return pl.DataFrame(schema=_ISSUE_SCHEMA)
    people = shared.sort("row_no").unique([id_column, "person"], keep="first", maintain_order=True).select(
        id_column, pl.col("person").alias("other_person"),
        other=pl.format("{} {} ({})", pl.col("student_first"), pl.col("student_last"), _row_label()))
    others = (shared.select("row_no", id_column, "person", pl.col(f"raw_{id_column}").alias("value"))
              .join(people, on=id_column).filter(pl.col("other_person") != pl.col("person"))
              .group_by("row_no", "value", maintain_order=True).agg(pl.col("other").first()))
    return others.select(
        "row_no", pl.lit(id_column).alias("column_name"), "value", pl.lit("warning").alias("severity"),
        pl.format("is also given to another student, {}, in this batch (different name or date of birth): "
                  "matching links the ID to the student it is registered to and sends the other row to review",
                  pl.col("other")).alias("problem"),
        pl.lit("Check which student the ID belongs to and correct the other row's ID in the sheet.").alias("fix"),
    ).sort("row_no")


def row_spans(rows: list[int]) -> str:
    """Excel rows as short spans: [3, 4, 5, 7] -> "rows 3-5, 7"."""
    rows = sorted(set(rows))
    spans, start = [], None
    for index, row in enumerate(rows):
        if start is None:
            start = row
        if index + 1 == len(rows) or rows[index + 1] != row + 1:
            spans.append(str(start) if start == row else f"{start}-{row}")
            start = None
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(spans)


def teacher_name_conflicts(frame: pl.DataFrame) -> pl.DataFrame:
    """One teacher email used with two teacher names: one issue per email and pair of names,
    naming both names and their rows, at the first row of the second name; every other row of
    the email is an error row pointing to it (which name is right is not known). With three
    names, each is paired with the name seen first."""
    named = frame.filter(pl.col("teacher_email").is_not_null()).with_columns(
        teacher_name=pl.concat_str([pl.col("teacher_first"), pl.col("teacher_last")], separator=" ", ignore_nulls=True))
    per_email = named.group_by("teacher_email").agg(pl.col("teacher_name").n_unique().alias("names"))
    conflicted = named.join(per_email.filter(pl.col("names") > 1), on="teacher_email", how="semi")
    if conflicted.is_empty():
        return pl.DataFrame(schema=_ISSUE_SCHEMA)
    by_name = conflicted.sort("row_no").group_by("teacher_email", "teacher_name", maintain_order=True).agg(
        "row_no", "excel_row", "file_name", "sheet", "raw_teacher_email")
    issues = []
    for _, names in by_name.group_by("teacher_email", maintain_order=True):
        first, *others = names.to_dicts()
        # Each other name is paired with the name seen first, so every issue has a row of its own.
        anchors = {other["row_no"][0]: other for other in others}
        for other in others:
            places = set(zip(first["file_name"] + other["file_name"], first["sheet"] + other["sheet"]))
            issues.append({
                "row_no": other["row_no"][0], "column_name": "teacher_email", "value": other["raw_teacher_email"][0],
                "severity": "error",
                "problem": f"is used for {first['teacher_name']!r} ({_located(first, len(places) > 1)}) "
                           f"and for {other['teacher_name']!r} ({_located(other, len(places) > 1)})",
                "fix": "One email is one teacher: use the same first and last name on every row with this email, "
                       "or give each teacher their own email.",
            })
        shown = others[0]
        for group in (first, *others):
            for row_no, raw in zip(group["row_no"], group["raw_teacher_email"]):
                if row_no not in anchors:
                    issues.append({
                        "row_no": row_no, "column_name": "teacher_email", "value": raw, "severity": "error",
                        "problem": f"is used with two teacher names (see {shown['file_name'][0]} row "
                                   f"{shown['excel_row'][0]})",
                        "fix": "Use the same first and last name on every row with this email.",
                    })
    return pl.DataFrame(issues, schema=_ISSUE_SCHEMA)


def _located(group: dict[str, list], with_files: bool) -> str:
    """A name's rows: "rows 3-7", or per file and sheet when the rows are in several."""
    if not with_files:
        return row_spans(group["excel_row"])
    places: dict[tuple[str, str], list[int]] = {}
    for file_name, sheet, row in zip(group["file_name"], group["sheet"], group["excel_row"]):
        places.setdefault((file_name, sheet), []).append(row)
    return "; ".join(f"{file_name} sheet {sheet} {row_spans(rows)}" for (file_name, sheet), rows in places.items())


def _duplicate_issues(frame: pl.DataFrame, class_key: list[str]) -> pl.DataFrame:
    """A row repeating an earlier row's whole student (``person_key``, see ``with_person``: names,
    date of birth and IDs) in the same class. Rows sharing only an ID may be two children: they
    are not this."""
    keys = [*class_key, "person_key"]
    # Rows are in row order, so the first of each key is the one read first; only the (few)
    # repeats are joined back to it for the message.
    repeated = frame.filter(~pl.struct(keys).is_first_distinct())
    firsts = frame.join(repeated.select(keys).unique(), on=keys, how="semi", nulls_equal=True).unique(
        keys, keep="first", maintain_order=True).select(*keys, pl.col("excel_row").alias("first_excel_row"))
    keyed = repeated.join(firsts, on=keys, how="left", nulls_equal=True)
    return keyed.select(
        "row_no",
        pl.lit("student_last").alias("column_name"),
        pl.col("raw_student_last").alias("value"),
        pl.lit("error").alias("severity"),
        pl.format("repeats the same student (same name, date of birth and IDs) in the same class as Excel row {}",
                  pl.col("first_excel_row")).alias("problem"),
        pl.lit("The two rows are the same student in the same class: delete one of them.").alias("fix"),
    )


@dataclass
class Validation:
    """What validation found, before it is written to the warehouse."""

    result: dict[str, Any]
    valid: pl.DataFrame
    issues: pl.DataFrame
    unknown_schools: pl.DataFrame


def reference_data(con: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The schools and courses rows are checked against.

    Read through the Arrow C stream interface, not ``.pl()``: ``.pl()`` imports pyarrow, which
    nothing else in ingest and validation needs (about 45 MB). For a large read ``.pl()`` is the
    quicker (a million rows: 0.85 s against 1.05 s), so the stages that read many rows keep it."""
    return (pl.DataFrame(con.sql("SELECT school_id, name FROM schools")),
            pl.DataFrame(con.sql("SELECT course_code FROM courses")))


def check_rows(batch_id: int, staged: pl.DataFrame, schools: pl.DataFrame, courses: pl.DataFrame) -> Validation:
    """Clean, type and check the staged rows; no warehouse access, so it can run beside a write."""
    frame, cleaning_issues = clean_rows(staged)
    frame = frame.with_columns(school_key=pl.col("school").str.to_lowercase()).join(
        schools.select(pl.col("school_id"), pl.col("name").str.to_lowercase().alias("school_key")),
        on="school_key", how="left",
    )
    # One issue per cell and severity: the specific cleaning message wins over the contract's generic one.
    issues = pl.concat(
        [cleaning_issues, contract_issues(frame), relational_issues(frame, schools, courses)], how="vertical"
    ).unique(subset=["row_no", "column_name", "severity"], keep="first", maintain_order=True)
    error_rows = issues.filter(pl.col("severity") == "error")["row_no"].unique().implode()
    valid = frame.filter(~pl.col("row_no").is_in(error_rows)).select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"), "row_no", "school_id", "teacher_first", "teacher_last",
        "teacher_email", "class_period", "course_code", pl.col("student_first").alias("first_name"),
        pl.col("student_last").alias("last_name"), "student_id", "ssid", "other_id",
        pl.col("birth_date").alias("date_of_birth"), "grade",
    )
    located = issues.join(staged.select("row_no", "file_name", "sheet", "excel_row"), on="row_no", how="left")
    result = {
        "rows_staged": staged.height,
        "rows_valid": valid.height,
        "rows_invalid": staged.height - valid.height,
        "errors": int((issues["severity"] == "error").sum()),
        "warnings": int((issues["severity"] == "warning").sum()),
    }
    # No row may vanish or double: every valid row is a staged row, once.
    if valid["row_no"].n_unique() != valid.height or not valid["row_no"].is_in(staged["row_no"].implode()).all():
        raise AssertionError(f"batch {batch_id}: validation produced duplicate or unknown rows")
    unknown = frame.filter(pl.col("school").is_not_null() & pl.col("school_id").is_null()).group_by("school").len()
    return Validation(result, valid, located, unknown)


def store_validation(con: duckdb.DuckDBPyConnection, batch_id: int, validation: Validation) -> dict[str, Any]:
    """Write valid rows, issues and school requests, and mark the validate stage finished.
    The caller holds the transaction."""
    con.execute("DELETE FROM valid_rows WHERE batch_id = ?", [batch_id])
    con.execute("DELETE FROM validation_issues WHERE batch_id = ? AND row_no IS NOT NULL", [batch_id])
    insert_frame(con, "valid_rows", validation.valid)
    insert_frame(con, "validation_issues", validation.issues.select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"), "row_no", "file_name", "sheet", "excel_row", "column_name",
        "value", "severity", "problem", "fix"))
    if validation.unknown_schools.height:
        con.register("unknown_schools", ArrowStream(validation.unknown_schools))
        con.execute(
            "INSERT INTO school_requests (name, first_batch, rows_waiting) SELECT school, ?, len FROM unknown_schools"
            " ON CONFLICT (name) DO UPDATE SET rows_waiting = excluded.rows_waiting",
            [batch_id],
        )
        con.unregister("unknown_schools")
    batches.record_stage(con, batch_id, "validate", validation.result)
    return validation.result


def load_staged(con: duckdb.DuckDBPyConnection, batch_id: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What validation reads: the batch's staged rows, and the schools and courses they are checked against."""
    staged = con.sql("SELECT * FROM staged_rows WHERE batch_id = $b ORDER BY row_no", params={"b": batch_id}).pl()
    return (staged, *reference_data(con))


def validate_batch(wh: Warehouse, batch_id: int) -> dict[str, Any]:
    """Validate the batch's staged rows into ``valid_rows`` and ``validation_issues``, holding the
    warehouse only to read them and to write the results.

    The write re-checks that the batch's stages (its ingest: the rows read) and the catalog (schools
    and courses added) are unchanged since the read, else it validates again; a validation another
    process finished meanwhile stands."""
    return batches.run_stage(
        wh, batch_id, "validate", lambda con: load_staged(con, batch_id),
        lambda inputs: check_rows(batch_id, *inputs),
        lambda con, validation: store_validation(con, batch_id, validation), actions=batches.CATALOG_CHANGES)


def batch_issues(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    """Every issue of a batch with file, sheet, Excel row, column, value, problem and fix."""
    return con.sql(
        "SELECT file_name AS file, sheet, excel_row AS row, column_name AS column, value, severity,"
        " problem, fix FROM validation_issues WHERE batch_id = $b"
        " ORDER BY severity, file_name, sheet, excel_row NULLS FIRST, column_name",
        params={"b": batch_id},
    ).pl()


def write_issue_report(con: duckdb.DuckDBPyConnection, batch_id: int, path: Path, private: bool = False) -> Path:
    """The batch's validation report as .xlsx: file, sheet, row, column, value, problem, how to fix.
    Cells that look like formulas are written as inert text. ``private``: 0600 in a 0700 folder
    (the outbox: the report quotes students' rows)."""
    issues = batch_issues(con, batch_id)
    return write_xlsx(Path(path), {"Problems": issues.rename(
        {"file": "File", "sheet": "Sheet", "row": "Row", "column": "Column", "value": "Value",
         "severity": "Severity", "problem": "Problem", "fix": "How to fix"})}, private=private)
