"""Contracts for roster rows at each stage: as read, as validated, as matched."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

from schemas.columns import CANONICAL_COLUMNS, REQUIRED_COLUMNS  # noqa: F401 (re-exported)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
GRADES = ["PK", "K"] + [str(g) for g in range(1, 13)]
OLDEST_BIRTH_DATE = dt.date(1990, 1, 1)
FORMULA_PREFIXES = ("=", "+", "-", "@")


class StagedRosterRow(pa.DataFrameModel):
    """A spreadsheet row as read: every cell as text, with where it came from."""

    batch_id: int = pa.Field(nullable=False)
    # Unique per batch: the warehouse's primary key (batch_id, row_no) enforces it on insert.
    row_no: int = pa.Field(nullable=False)
    file_name: str = pa.Field(nullable=False)
    sha256: str = pa.Field(nullable=False, str_length={"min_value": 64, "max_value": 64})
    sheet: str = pa.Field(nullable=False)
    excel_row: int = pa.Field(nullable=False, ge=1)
    school: str = pa.Field(nullable=True)
    teacher_first: str = pa.Field(nullable=True)
    teacher_last: str = pa.Field(nullable=True)
    teacher_email: str = pa.Field(nullable=True)
    class_period: str = pa.Field(nullable=True)
    course_code: str = pa.Field(nullable=True)
    student_first: str = pa.Field(nullable=True)
    student_last: str = pa.Field(nullable=True)
    student_id: str = pa.Field(nullable=True)
    ssid: str = pa.Field(nullable=True)
    other_id: str = pa.Field(nullable=True)
    date_of_birth: str = pa.Field(nullable=True)
    grade: str = pa.Field(nullable=True)
    # The roster columns (comma-separated) whose cells are formulas saved without a value: they
    # read as empty, and validation says why.
    formula_cells: str = pa.Field(nullable=True)

    class Config:
        strict = True


class ValidRosterRow(pa.DataFrameModel):
    """A cleaned, typed row: the contract every later stage relies on.

    Relational rules (known school, known course, one name per teacher email) are checked by the
    validate stage against the warehouse; these are the per-cell rules.
    """

    row_no: int = pa.Field(nullable=False, unique=True)
    school: str = pa.Field(nullable=False, str_length={"min_value": 1})
    teacher_first: str = pa.Field(nullable=False, str_length={"min_value": 1})
    teacher_last: str = pa.Field(nullable=False, str_length={"min_value": 1})
    teacher_email: str = pa.Field(nullable=False, str_matches=EMAIL_PATTERN)
    class_period: str = pa.Field(nullable=True)
    course_code: str = pa.Field(nullable=False, str_length={"min_value": 1})
    student_first: str = pa.Field(nullable=False, str_length={"min_value": 1})
    student_last: str = pa.Field(nullable=False, str_length={"min_value": 1})
    student_id: str = pa.Field(nullable=True, str_matches=r"^[A-Za-z0-9\-]+$")
    ssid: str = pa.Field(nullable=True, str_matches=r"^[A-Za-z0-9\-]+$")
    other_id: str = pa.Field(nullable=True, str_matches=r"^[A-Za-z0-9\-]+$")
    date_of_birth: dt.date = pa.Field(nullable=True, ge=OLDEST_BIRTH_DATE)
    grade: str = pa.Field(nullable=True, isin=GRADES)


class MatchDecisionRow(pa.DataFrameModel):
    """One matching decision per valid row."""

    row_no: int = pa.Field(nullable=False, unique=True)
    decision: str = pa.Field(isin=["matched", "review", "new"])
    student_key: int = pa.Field(nullable=True)
    rule: str = pa.Field(nullable=False)
    score: float = pa.Field(nullable=True, ge=0, le=100)
    explanation: str = pa.Field(nullable=False)

    @pa.dataframe_check
    def matched_rows_name_a_student(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("decision") != "matched") | pl.col("student_key").is_not_null()
        )
