"""Names folded for comparison (accents, case and punctuation dropped): shared by the matcher,
the plan and validation, and light to import (polars only)."""

from __future__ import annotations

import unicodedata

import polars as pl


def fold_name(text: str | None) -> str:
    """Accent-folded, lower-case, letters-only form of a name, for comparison only."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    cleaned = "".join(ch if ch.isalpha() else " " for ch in letters.lower())
    return " ".join(cleaned.split())


def fold_name_expr(column: str) -> pl.Expr:
    """``fold_name`` on a whole column (NFKD, marks dropped, lower case, non-letters to spaces)."""
    return (
        pl.col(column).str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
        .str.replace_all(r"[^\p{L}]+", " ").str.strip_chars().fill_null("")
    )


def folded_names(names: pl.Series) -> pl.Series:
    """``fold_name_expr`` of every value of ``names``, folded once per distinct name and looked up
    for the rest: a roster's names repeat far more than they vary, and folding (a Unicode
    normalisation and two regular expressions) is the costly part. Named as ``names``."""
    values = names.alias("value")  # whatever the Series is named, the two columns below never clash
    distinct = values.unique().to_frame().with_columns(fold_name_expr("value").alias("folded"))
    return values.to_frame().join(distinct, on="value", how="left", nulls_equal=True,
                                  maintain_order="left")["folded"].alias(names.name)
