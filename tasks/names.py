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
