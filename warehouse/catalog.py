"""Reference data an administrator maintains: schools, courses and subscriptions."""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse import batches
from warehouse.connection import ArrowStream, first_row, transaction


def add_schools(con: duckdb.DuckDBPyConnection, names: list[str], actor: str) -> int:
    """Add schools by name (existing names are left alone); return how many were added."""
    frame = pl.DataFrame({"name": [n.strip() for n in names if n and n.strip()]}, schema={"name": pl.String})
    # School names are matched case-insensitively, so "Lincoln" and "LINCOLN" are one school.
    frame = frame.unique(subset=pl.col("name").str.to_lowercase(), keep="first", maintain_order=True)
    with transaction(con):
        con.register("school_frame", ArrowStream(frame))
        # Fetched as rows, not with .pl() (which imports pyarrow): a handful of rows.
        added = pl.DataFrame(con.execute(
            "INSERT INTO schools (name) SELECT name FROM school_frame"
            " WHERE lower(name) NOT IN (SELECT lower(name) FROM schools) RETURNING school_id, name"
        ).fetchall(), schema={"school_id": pl.Int64, "name": pl.String}, orient="row")
        con.unregister("school_frame")
        batches.audit_many(con, actor, "school.create", "school", None,
                           added.select(pl.col("school_id").alias("entity_key"), pl.col("name").alias("detail")))
    return added.height


def add_courses(con: duckdb.DuckDBPyConnection, courses: dict[str, str], actor: str) -> int:
    """Add course codes with their names to the catalog; return how many were added."""
    frame = pl.DataFrame({"course_code": [c.strip().upper() for c in courses],
                          "name": list(courses.values())}, schema={"course_code": pl.String, "name": pl.String})
    with transaction(con):
        con.register("course_frame", ArrowStream(frame))
        added = pl.DataFrame(con.execute(
            "INSERT INTO courses SELECT course_code, name FROM course_frame"
            " WHERE course_code NOT IN (SELECT course_code FROM courses) RETURNING course_code"
        ).fetchall(), schema={"course_code": pl.String}, orient="row")
        con.unregister("course_frame")
        batches.audit_many(con, actor, "course.create", "course", None,
                           added.select(pl.col("course_code").alias("entity_key"), pl.lit("").alias("detail")))
    return added.height


def set_subscriptions(
    con: duckdb.DuckDBPyConnection, subscription_type: str, available: int, actor: str, school: str | None = None
) -> None:
    """Set the available count of a subscription type for the district (no school) or one school."""
    if available < 0:
        raise ValueError("The number of available subscriptions cannot be negative.")
    with transaction(con):
        school_id = None
        if school:
            row = first_row(con.execute("SELECT school_id FROM schools WHERE lower(name) = lower(?)", [school]))
            if row is None:
                raise ValueError(f"No school named {school!r}: add it first with `rosterflow school add`.")
            school_id = row[0]
        con.execute(
            "DELETE FROM subscriptions WHERE subscription_type = ? AND school_id IS NOT DISTINCT FROM ?",
            [subscription_type, school_id],
        )
        con.execute("INSERT INTO subscriptions VALUES (?, ?, ?)", [subscription_type, school_id, available])
        batches.audit(con, actor, "subscription.set", "subscription", subscription_type, None,
                      {"school": school, "available": available})
