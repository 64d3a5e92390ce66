"""Fellegi-Sunter evidence: how much each field's agreement says for or against two records being
one person, estimated from the district's own data.

Every field is compared on an ordered ladder of levels (the first that applies names the pair's
level), like Splink's comparison library. Each level has two probabilities: ``m``, how often the
level occurs when the two records are the same person, and ``u``, how often it occurs when they
are not. The level's weight is ``log2(m / u)`` bits; a missing value weighs nothing.

- ``u`` comes from random pairs of the district's incoming rows and registered students (almost
  all of which are different people); for exact names the value's own frequency among the
  registered students replaces it, so a shared "Smith" says less than a shared "Okonkwo-Hale".
- ``m`` comes from expectation-maximisation over training sessions that each compare every pair
  sharing one field (all pairs born the same day; all pairs with the same full name), so the
  session says nothing about the field it was selected on and learns the others, as Splink does.
  The defaults below act as a prior worth ``prior_pairs`` matched pairs, so a small district leans
  on them and a large one on its own data.
- The share of incoming rows that are registered students (``match_share``) comes from the same
  EM, and makes the prior odds of any one pair: ``match_share / students``.

A row's candidates then compete: the probability that the row is candidate ``c`` is
``λ·LR_c / ((1 - match_share) + Σ λ·LR_k)`` over all its candidates, so a second plausible candidate
lowers the first's probability by itself (no separate margin rule is needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

NAME_LEVELS = ("exact", "accent or case", "nickname", "one keystroke", "part of a double name", "similar 0.92",
               "similar 0.85", "similar 0.70", "different")
LAST_LEVELS = ("exact", "accent or case", "one keystroke", "part of a double surname", "similar 0.92",
               "similar 0.85", "similar 0.70", "different")
DOB_LEVELS = ("exact", "day and month swapped", "one digit", "two digits swapped", "different")
ID_LEVELS = ("exact", "leading zeros", "one edit", "two edits", "different")
MISSING = "missing"
ID_COLUMNS = ("student_id", "ssid", "other_id")

# The engine the matcher's lazy queries run on. polars 2 runs a lazy query on its streaming engine
# unless told otherwise; on these queries (joins and group-bys of frames already in memory) its
# in-memory engine, which also spreads a join over the cores, is as fast at a million rows against
# a million students and faster below: 10k rows against 100k students took 0.87 s instead of
# 1.01 s, 100k against 100k 1.59 s instead of 1.80 s (medians of fresh processes taking turns).
QUERY_ENGINE = "in-memory"

# The fields compared and their ladders; each ID column is its own field.
LADDERS: dict[str, tuple[str, ...]] = {
    "first_name": NAME_LEVELS, "last_name": LAST_LEVELS, "date_of_birth": DOB_LEVELS,
    **{column: ID_LEVELS for column in ID_COLUMNS},
}

# The prior: reasoned values for a district's sheets (typed by people, exported from a student
# information system). m: same person; u: different people. EM moves them with the district's data.
PRIOR_M: dict[str, dict[str, float]] = {
    "first_name": {"exact": 0.87, "accent or case": 0.02, "nickname": 0.03, "one keystroke": 0.03,
                   "part of a double name": 0.01, "similar 0.92": 0.01, "similar 0.85": 0.01, "similar 0.70": 0.005, "different": 0.015},
    "last_name": {"exact": 0.89, "accent or case": 0.02, "part of a double surname": 0.01, "one keystroke": 0.04,
                  "similar 0.92": 0.01, "similar 0.85": 0.01, "similar 0.70": 0.005, "different": 0.015},
    "date_of_birth": {"exact": 0.93, "day and month swapped": 0.015, "one digit": 0.035,
                      "two digits swapped": 0.01, "different": 0.01},
    **{column: {"exact": 0.9, "leading zeros": 0.01, "one edit": 0.04, "two edits": 0.01, "different": 0.04}
       for column in ID_COLUMNS},
}
PRIOR_U: dict[str, dict[str, float]] = {
    "first_name": {"exact": 0.004, "accent or case": 0.0001, "nickname": 0.001, "one keystroke": 0.0005,
                   "part of a double name": 0.0002, "similar 0.92": 0.002, "similar 0.85": 0.01, "similar 0.70": 0.08, "different": 0.9024},
    "last_name": {"exact": 0.002, "accent or case": 0.00005, "part of a double surname": 0.0002,
                  "one keystroke": 0.0005, "similar 0.92": 0.002, "similar 0.85": 0.008, "similar 0.70": 0.05,
                  "different": 0.93725},
    "date_of_birth": {"exact": 0.0002, "day and month swapped": 0.0002, "one digit": 0.004,
                      "two digits swapped": 0.0005, "different": 0.9951},
    **{column: {"exact": 0.00001, "leading zeros": 0.000001, "one edit": 0.0002, "two edits": 0.002,
                "different": 0.997789} for column in ID_COLUMNS},
}
# Names read swapped are the same person's names in the wrong columns; the swap itself is a small
# doubt (the name levels already weigh how well the swapped names agree).
SWAPPED_BITS = -3.0
# Weights are bounded: no single level, however rare among strangers, outweighs this many bits.
MAX_BITS = 20.0


@dataclass
class Evidence:
    """The trained model: m and u per field and level, term frequencies, and the prior odds."""

    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    match_share: float
    students: int
    first_tf: pl.DataFrame  # first_key, first_tf
    last_tf: pl.DataFrame  # last_key, last_tf
    training: dict = field(default_factory=dict)

    def bits(self, field_name: str, level: str) -> float:
        """log2(m/u) of one level, bounded; 0 for a missing value."""
        if level == MISSING:
            return 0.0
        m, u = self.m[field_name][level], self.u[field_name][level]
        return max(-MAX_BITS, min(MAX_BITS, math.log2(m / u)))

    @property
    def prior_bits(self) -> float:
        """log2 of the prior probability that one incoming row and one registered student match."""
        return math.log2(self.match_share / max(self.students, 1))

    def table(self) -> pl.DataFrame:
        """Every field and level with m, u and its weight, for reports and the README."""
        return pl.DataFrame([
            {"field": f, "level": level, "m": self.m[f][level], "u": self.u[f][level], "bits": self.bits(f, level)}
            for f, ladder in LADDERS.items() for level in ladder
        ])


# -- Levels ---------------------------------------------------------------------------------------

def jaro_winkler(a: str, b: str) -> pl.Expr:
    """Jaro-Winkler similarity (0-1, prefix weight 0.1) of two string columns, computed on the
    Arrow columns (the same values as rapidfuzz's ``JaroWinkler.normalized_similarity``)."""
    import polars_ds  # imported here: commands that never match names do not pay for it

    return polars_ds.str_jw(a, b)


def osa_distance(a: str, b: str) -> pl.Expr:
    """Optimal string alignment distance (insertions, deletions, substitutions, neighbours
    swapped) of two string columns."""
    import polars_ds

    return polars_ds.str_osa(a, b).cast(pl.Int32)


def _code(ladder: tuple[str, ...], level: str) -> pl.Expr:
    return pl.lit(len(ladder) if level == MISSING else ladder.index(level), dtype=pl.Int8)


def name_level(folded_a: str, folded_b: str, raw_a: str, raw_b: str, jw: pl.Expr, osa: pl.Expr,
               nickname: pl.Expr | None, part: pl.Expr | None, ladder: tuple[str, ...] = NAME_LEVELS) -> pl.Expr:
    """The ladder of a name on columns, as the level's position in ``ladder`` (its length for
    missing): exact, accent or case, nickname / double-name part, one keystroke, Jaro-Winkler
    bands, different; missing when either side is empty."""
    a, b = pl.col(folded_a), pl.col(folded_b)
    level = (pl.when((a == "") | (b == "")).then(_code(ladder, MISSING))
             .when((a == b) & (pl.col(raw_a) == pl.col(raw_b))).then(_code(ladder, "exact"))
             .when(a == b).then(_code(ladder, "accent or case")))
    if nickname is not None:
        level = level.when(nickname).then(_code(ladder, "nickname"))
    level = level.when(osa <= 1).then(_code(ladder, "one keystroke"))
    if part is not None:
        level = level.when(part).then(_code(ladder, "part of a double surname" if ladder is LAST_LEVELS
                                            else "part of a double name"))
    return (level
            .when(jw >= 0.92).then(_code(ladder, "similar 0.92"))
            .when(jw >= 0.85).then(_code(ladder, "similar 0.85"))
            .when(jw >= 0.70).then(_code(ladder, "similar 0.70"))
            .otherwise(_code(ladder, "different")))


def level_names(code: pl.Expr, ladder: tuple[str, ...]) -> pl.Expr:
    """A level code (``name_level``, ``dob_levels``) as its name."""
    return code.replace_strict(dict(enumerate((*ladder, MISSING))), return_dtype=pl.String)


def dob_levels(left: pl.Series, right: pl.Series) -> pl.Series:
    """The birth-date ladder of two date columns, on whole arrays (a polars expression of eight
    digit comparisons is hundreds of times slower): exact, day and month swapped, one digit, two
    digits transposed anywhere in YYYYMMDD (across the month/day boundary too: 1933-02-12 typed
    as 1933-01-22), different; missing."""
    return pl.Series(dob_codes(left, right)).replace_strict(
        dict(enumerate((*DOB_LEVELS, MISSING))), return_dtype=pl.String)


def dob_codes(left: pl.Series, right: pl.Series) -> np.ndarray:
    """``dob_levels`` as positions in ``DOB_LEVELS`` (its length for missing)."""
    missing = (left.is_null() | right.is_null()).to_numpy()
    a = _yyyymmdd(left)
    b = _yyyymmdd(right)
    codes = np.where(missing, len(DOB_LEVELS), np.where(a == b, 0, DOB_LEVELS.index("different"))).astype(np.int8)
    # Only the dates that differ need their digits (most candidate pairs share the date), digit by
    # digit on 32-bit numbers (a matrix of every pair's eight digits is twice as slow).
    todo = np.flatnonzero(~missing & (a != b))
    a, b = a[todo].astype(np.int32), b[todo].astype(np.int32)
    digits_off = np.zeros(len(todo), dtype=np.int8)
    rest_a, rest_b = a.copy(), b.copy()
    for _ in range(8):
        digits_off += (rest_a % 10) != (rest_b % 10)
        rest_a //= 10
        rest_b //= 10
    # Two digits swapped anywhere: exactly two differ and the digits are the same ones (how
    # often each digit occurs, four bits per digit, is equal); only pairs two digits apart.
    two = np.flatnonzero(digits_off == 2)
    transposed = np.zeros(len(todo), dtype=bool)
    transposed[two] = _digit_counts(a[two]) == _digit_counts(b[two])
    year_a, month_a, day_a = a // 10000, a // 100 % 100, a % 100
    year_b, month_b, day_b = b // 10000, b // 100 % 100, b % 100
    swapped = (year_a == year_b) & (month_a == day_b) & (day_a == month_b)
    codes[todo] = np.select([swapped, digits_off == 1, transposed], [1, 2, 3], default=4)
    return codes


def _digit_counts(numbers: np.ndarray) -> np.ndarray:
    """How often each digit occurs in each eight-digit number, four bits per digit."""
    counts = np.zeros(len(numbers), dtype=np.int64)
    rest = numbers.astype(np.int64)
    for _ in range(8):
        counts += np.left_shift(np.int64(1), 4 * (rest % 10))
        rest //= 10
    return counts


def _yyyymmdd(dates: pl.Series) -> np.ndarray:
    return (dates.dt.year().cast(pl.Int64) * 10000 + dates.dt.month().cast(pl.Int64) * 100
            + dates.dt.day().cast(pl.Int64)).fill_null(0).to_numpy()


def id_levels(frame: pl.DataFrame, left: str, right: str) -> pl.Series:
    """The identifier ladder of two ID columns: exact, equal but for leading zeros (a spreadsheet
    dropped them), one edit, two edits (insertions, deletions, substitutions, neighbours
    swapped), different; missing. Only IDs that differ are compared further (few pairs)."""
    a, b = pl.col(left), pl.col(right)
    codes = frame.select(pl.when(a.is_null() | b.is_null()).then(pl.lit(5, pl.Int8))
                         .when(a == b).then(pl.lit(0, pl.Int8)).otherwise(pl.lit(4, pl.Int8))).to_series().to_numpy().copy()
    differ = np.flatnonzero(codes == 4)
    if len(differ):
        ids = frame.select(a.str.strip_chars_start("0").alias("a"), b.str.strip_chars_start("0").alias("b"),
                           shortest=pl.min_horizontal(a.str.len_chars(), b.str.len_chars()))[differ]
        # The distance is a column of its own before any branch reads it: inside a when/then
        # branch the plugin may be handed rows the branch masks out.
        ids = ids.with_columns(edits=osa_distance("a", "b"))
        shortest, edits = pl.col("shortest"), pl.col("edits")
        codes[differ] = ids.select(
            pl.when(pl.col("a") == pl.col("b")).then(pl.lit(1, pl.Int8))
            # A slip needs an ID long enough for the rest to say something (A and B are not one
            # edit apart in any useful sense).
            .when((edits <= 1) & (shortest >= 4)).then(pl.lit(2, pl.Int8))
            .when((edits <= 2) & (shortest >= 6)).then(pl.lit(3, pl.Int8))
            .otherwise(pl.lit(4, pl.Int8))).to_series().to_numpy()
    return pl.Series(codes).replace_strict(dict(enumerate((*ID_LEVELS, MISSING))), return_dtype=pl.String)


def with_levels(pairs: pl.DataFrame, swaps: bool = True) -> pl.DataFrame:
    """Add every field's level to joined pairs.

    ``pairs`` has, for each side (suffix ``_in`` and ``_ex``): ``first``/``last`` (folded),
    ``first_raw``/``last_raw`` (as typed, trimmed), ``nick`` (nickname keys), ``dob`` and the ID
    columns. Names are compared straight and swapped; the swapped reading is taken when it is
    clearly the better one (``swapped`` is then true).
    """
    same_names = (pl.col("first_in") == pl.col("first_ex")) & (pl.col("last_in") == pl.col("last_ex"))
    # String distances are the costly part: pairs with both names equal (most of them) skip them.
    differing = _differing_levels(pairs.filter(~same_names), swaps)
    missing_first, missing_last = len(NAME_LEVELS), len(LAST_LEVELS)
    equal = pairs.filter(same_names).with_columns(
        first_name=pl.when(pl.col("first_in") == "").then(pl.lit(missing_first, pl.Int8))
        .when(pl.col("first_raw_in") == pl.col("first_raw_ex")).then(pl.lit(0, pl.Int8)).otherwise(pl.lit(1, pl.Int8)),
        last_name=pl.when(pl.col("last_in") == "").then(pl.lit(missing_last, pl.Int8))
        .when(pl.col("last_raw_in") == pl.col("last_raw_ex")).then(pl.lit(0, pl.Int8)).otherwise(pl.lit(1, pl.Int8)),
        swapped=pl.lit(False))
    joined = pl.concat([equal, differing], how="vertical")
    return joined.with_columns(
        first_name=level_names(pl.col("first_name"), NAME_LEVELS),
        last_name=level_names(pl.col("last_name"), LAST_LEVELS),
        date_of_birth=pl.Series(dob_codes(joined["dob_in"], joined["dob_ex"])).replace_strict(
            dict(enumerate((*DOB_LEVELS, MISSING))), return_dtype=pl.String),
        **{column: id_levels(joined, f"{column}_in", f"{column}_ex") for column in ID_COLUMNS},
    )


def on_some(frame: pl.DataFrame, where: pl.Expr, flag: pl.Expr) -> pl.Series:
    """``flag`` for the pairs ``where`` selects, false elsewhere: what costs a string distance or a
    list intersection is computed only where it can be true."""
    out = np.zeros(frame.height, dtype=bool)
    picked = np.flatnonzero(frame.select(where.fill_null(False)).to_series().to_numpy())
    if len(picked):
        # Only the columns the flag reads are gathered (the frame is wide).
        columns = frame.select(flag.meta.root_names())[picked]
        out[picked] = columns.select(flag.fill_null(False)).to_series().to_numpy()
    return pl.Series(out)


def other_nickname(frame: pl.DataFrame) -> pl.Series:
    """``first_in`` and ``first_ex`` are two different names of one nickname (Bob and Robert,
    from their ``nick_in`` and ``nick_ex`` keys). Two different names share a nickname only if one
    of them has one: only those pairs intersect their keys."""
    nicknamed = ((pl.col("first_in") != pl.col("first_ex"))
                 & ((pl.col("nick_in").list.len() > 1) | (pl.col("nick_ex").list.len() > 1)))
    return on_some(frame, nicknamed, pl.col("nick_in").list.set_intersection(pl.col("nick_ex")).list.len() > 0)


def _one_keystroke(frame: pl.DataFrame, a: str, b: str, jw: str) -> pl.Series:
    """OSA distance at most 1. One keystroke keeps the lengths within one, and keeps Jaro-Winkler
    at 0.55 or more once both names have three letters (the worst case, two neighbours swapped
    at the start of a three-letter name, scores 0.56; four letters or more score 0.8 or more):
    only such pairs are measured."""
    length_a, length_b = pl.col(a).str.len_chars().cast(pl.Int32), pl.col(b).str.len_chars().cast(pl.Int32)
    possible = ((length_a - length_b).abs() <= 1) & ((pl.col(jw) >= 0.55) | (pl.min_horizontal(length_a, length_b) <= 3))
    return on_some(frame, possible, osa_distance(a, b) <= 1)


def shares_word(frame: pl.DataFrame, a: str, b: str) -> pl.Series:
    """The two names share a word (one part of a double name); only names with a space can
    share a word without being equal."""
    spaced = pl.col(a).str.contains(" ", literal=True) | pl.col(b).str.contains(" ", literal=True)
    words = pl.col(a).str.split(" ").list.set_intersection(pl.col(b).str.split(" ")).list.len() > 0
    return on_some(frame, spaced & (pl.col(a) != "") & (pl.col(b) != ""), words)


def _differing_levels(differing: pl.DataFrame, swaps: bool) -> pl.DataFrame:
    """Name levels (codes) of pairs whose names are not both equal, straight and, where it may
    be the better reading, swapped."""
    readings = {"first": ("first_in", "first_ex"), "last": ("last_in", "last_ex")}
    if swaps:
        readings["swap_first"] = ("first_in", "last_ex")
    frame = differing.with_columns([jaro_winkler(a, b).alias(f"{name}_jw") for name, (a, b) in readings.items()])
    frame = frame.with_columns(
        _nickname=other_nickname(frame),
        _first_part=shares_word(frame, "first_in", "first_ex"),
        _last_part=shares_word(frame, "last_in", "last_ex"),
        **{f"_{name}_key": _one_keystroke(frame, a, b, f"{name}_jw") for name, (a, b) in readings.items()},
    )
    one_edit = {name: pl.when(pl.col(f"_{name}_key")).then(0).otherwise(2) for name in readings}
    levelled = frame.with_columns(
        first_name=name_level("first_in", "first_ex", "first_raw_in", "first_raw_ex", pl.col("first_jw"),
                              one_edit["first"], pl.col("_nickname"), pl.col("_first_part")),
        last_name=name_level("last_in", "last_ex", "last_raw_in", "last_raw_ex", pl.col("last_jw"),
                             one_edit["last"], None, pl.col("_last_part"), LAST_LEVELS),
    )
    if not swaps:
        return levelled.with_columns(swapped=pl.lit(False)).drop(
            *[f"{name}_jw" for name in readings], *[f"_{name}_key" for name in readings],
            "_nickname", "_first_part", "_last_part")
    levelled = levelled.with_columns(first_swapped=name_level(
        "first_in", "last_ex", "first_raw_in", "last_raw_ex", pl.col("swap_first_jw"), one_edit["swap_first"], None, None))
    # A swapped reading counts only when both names nearly agree (up to "similar 0.92"): the
    # other swapped name is compared only where the first already does.
    near_first, near_last = NAME_LEVELS.index("similar 0.92"), LAST_LEVELS.index("similar 0.92")
    maybe = (levelled.with_row_index("_pair").filter(pl.col("first_swapped") <= near_first)
             .select("_pair", "last_in", "first_ex", "last_raw_in", "first_raw_ex",
                     _jw=jaro_winkler("last_in", "first_ex"), _osa=osa_distance("last_in", "first_ex")))
    maybe = maybe.select("_pair", last_swapped=name_level(
        "last_in", "first_ex", "last_raw_in", "first_raw_ex", pl.col("_jw"), pl.col("_osa"), None, None, LAST_LEVELS))
    levelled = levelled.with_row_index("_pair").join(maybe, on="_pair", how="left", maintain_order="left")
    # Missing ranks after every level, as the straight reading's missing does.
    swapped = ((pl.col("first_swapped") <= near_first) & (pl.col("last_swapped") <= near_last)
               & (pl.col("first_swapped").cast(pl.Int32) + pl.col("last_swapped")
                  < pl.col("first_name").cast(pl.Int32) + pl.col("last_name"))).fill_null(False)
    return levelled.with_columns(swapped=swapped).with_columns(
        first_name=pl.when(pl.col("swapped")).then(pl.col("first_swapped")).otherwise(pl.col("first_name")),
        last_name=pl.when(pl.col("swapped")).then(pl.col("last_swapped")).otherwise(pl.col("last_name")),
    ).drop("_pair", "first_swapped", "last_swapped", *[f"{name}_jw" for name in readings],
           *[f"_{name}_key" for name in readings], "_nickname", "_first_part", "_last_part")


def side(frame: pl.DataFrame | pl.LazyFrame, key: str, suffix: str, context: bool = False) -> pl.DataFrame | pl.LazyFrame:
    """One side of a pair frame (see ``with_levels``) from a ``matching.prepare``-d frame; with
    ``context``, also its name tokens, school (and twin group, if it has one) for the guards."""
    extra = []
    if context:
        extra = [pl.col("name_tokens").alias(f"tokens{suffix}"), pl.col("school_id").alias(f"school{suffix}"),
                 *(["twin_group"] if "twin_group" in frame.collect_schema().names() else [])]
    return frame.select(
        key, pl.col("first_key").alias(f"first{suffix}"), pl.col("last_key").alias(f"last{suffix}"),
        pl.col("first_name").str.strip_chars().fill_null("").alias(f"first_raw{suffix}"),
        pl.col("last_name").str.strip_chars().fill_null("").alias(f"last_raw{suffix}"),
        pl.col("nick_keys").alias(f"nick{suffix}"), pl.col("date_of_birth").alias(f"dob{suffix}"),
        *[pl.col(c).alias(f"{c}{suffix}") for c in ID_COLUMNS], *extra,
    )


def pair_sides(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame,
               context: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pair sides (see ``side``) of the rows and the students in ``pairs``, and of no others."""
    # Lazily: the semi-joins then copy only the columns a side takes, not the wide frames.
    rows = incoming.lazy().join(pairs.lazy().select("row_no").unique(), on="row_no", how="semi")
    students = existing.lazy().join(pairs.lazy().select("student_key").unique(), on="student_key", how="semi")
    rows, students = pl.collect_all([side(rows, "row_no", "_in", context), side(students, "student_key", "_ex", context)],
                                    engine=QUERY_ENGINE)
    return rows, students


def pair_levels(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame, swaps: bool = True,
                context: bool = False, sides: tuple[pl.DataFrame, pl.DataFrame] | None = None) -> pl.DataFrame:
    """``pairs`` (row_no, student_key) with every field's level (``swaps``: try swapped names), in
    no particular order. ``sides``: ``pair_sides`` of these pairs or more, made once for pairs
    levelled in slices."""
    rows, students = sides if sides is not None else pair_sides(pairs, incoming, existing, context)
    # A lazy join, which polars runs on every core: gathering the sides' text and lists for a
    # million pairs eagerly, in order, takes three times as long. Its result may come in pieces,
    # made one (a copy of a few hundredths of a second) before the many steps below, which take
    # half again as long on pieces.
    joined = (pairs.lazy().select("row_no", "student_key").join(rows.lazy(), on="row_no")
              .join(students.lazy(), on="student_key").collect(engine=QUERY_ENGINE).rechunk())
    return with_levels(joined, swaps)


# -- Weights on pairs ------------------------------------------------------------------------------

def with_weights(levelled: pl.DataFrame, evidence: Evidence) -> pl.DataFrame:
    """Add each field's weight in bits (``<field>_bits``), the total ``match_bits`` including the
    prior, and nothing else. Exact and accent-only names weigh by their own frequency."""
    out = levelled.join(evidence.first_tf, left_on="first_ex", right_on="first_key", how="left").join(
        evidence.last_tf, left_on="last_ex", right_on="last_key", how="left")
    columns = {}
    for field_name in LADDERS:
        mapping = {level: evidence.bits(field_name, level) for level in (*LADDERS[field_name], MISSING)}
        columns[f"{field_name}_bits"] = pl.col(field_name).replace_strict(mapping, return_dtype=pl.Float64)
    out = out.with_columns(**columns)
    for field_name, tf_column in (("first_name", "first_tf"), ("last_name", "last_tf")):
        for level in ("exact", "accent or case"):
            m = evidence.m[field_name][level]
            tf = pl.col(tf_column).fill_null(evidence.u[field_name]["exact"])
            out = out.with_columns(pl.when((pl.col(field_name) == level) & ~pl.col("swapped"))
                                   .then((pl.lit(m) / tf).log(2).clip(-MAX_BITS, MAX_BITS))
                                   .otherwise(pl.col(f"{field_name}_bits")).alias(f"{field_name}_bits"))
    return out.with_columns(
        match_bits=pl.sum_horizontal([pl.col(f"{f}_bits") for f in LADDERS]) + evidence.prior_bits
        + pl.when(pl.col("swapped")).then(SWAPPED_BITS).otherwise(0.0)
    ).drop("first_tf", "last_tf")


def with_row_probability(weighted: pl.DataFrame, evidence: Evidence) -> pl.DataFrame:
    """The probability that the row is each of its candidates, the candidates competing with each
    other and with the row being somebody new (``1 - match_share``)."""
    # One window at a time: a window inside another's expression is evaluated group by group.
    with_top = weighted.with_columns(_top=pl.col("match_bits").max().over("row_no"))
    scaled = with_top.with_columns(_scaled=pl.lit(2.0) ** (pl.col("match_bits") - pl.col("_top")))
    none_scaled = (1.0 - evidence.match_share) * (pl.lit(2.0) ** (-pl.col("_top")))
    # Summed in the order of the students, whatever the pairs' order: a sum of floating-point
    # numbers depends on its order in its last digits, and the same input must give the same
    # probabilities, to the last digit, on every run.
    sums = (scaled.select("row_no", "student_key", "_scaled").sort("row_no", "student_key")
            .group_by("row_no", maintain_order=True).agg(pl.col("_scaled").sum()))
    return scaled.with_columns(
        probability=pl.col("_scaled") / (pl.col("row_no").replace_strict(sums["row_no"], sums["_scaled"])
                                         + none_scaled)).drop("_top", "_scaled")


def explain_expr() -> pl.Expr:
    """Each field's level and weight, in words: "first exact +6.1, last one keystroke +5.3, ..."."""
    parts = []
    labels = {"first_name": "first", "last_name": "last", "date_of_birth": "birth date",
              "student_id": "student ID", "ssid": "SSID", "other_id": "other ID"}
    for field_name, label in labels.items():
        text = pl.format("{} {} {}", pl.lit(label), pl.col(field_name),
                         pl.when(pl.col(f"{field_name}_bits") >= 0)
                         .then(pl.format("+{}", pl.col(f"{field_name}_bits").round(1)))
                         .otherwise(pl.col(f"{field_name}_bits").round(1).cast(pl.String)))
        parts.append(pl.when(pl.col(field_name) != MISSING).then(text))
    names = pl.when(pl.col("swapped")).then(pl.lit("names swapped; ")).otherwise(pl.lit(""))
    return pl.concat_str([names, pl.concat_list(parts).list.drop_nulls().list.join(", ")])


# -- Training --------------------------------------------------------------------------------------

# A name's frequency is its share of the registered students, smoothed toward the prior's average
# as if this many more students had been seen: among 40 students a name seen once is not 1 in 40.
TF_PRIOR_STUDENTS = 1000
# Random pairs are the evidence for u; the prior is worth this many of them (a small district's
# few pairs do not say that a shared birthday is common).
U_PRIOR_PAIRS = 10_000


def _frequencies(existing: pl.DataFrame, column: str, name: str, average: float) -> pl.DataFrame:
    counts = existing.lazy().filter(pl.col(column) != "").group_by(column).agg(pl.len().alias("n")).collect(engine=QUERY_ENGINE)
    total = existing.height + TF_PRIOR_STUDENTS
    return counts.select(column, ((pl.col("n") + TF_PRIOR_STUDENTS * average) / total).alias(name))


def _random_pairs(incoming: pl.DataFrame, existing: pl.DataFrame, count: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = incoming["row_no"].to_numpy()[rng.integers(0, incoming.height, count)]
    students = existing["student_key"].to_numpy()[rng.integers(0, existing.height, count)]
    return pl.DataFrame({"row_no": rows, "student_key": students})


def _level_counts(levelled: pl.DataFrame, field_name: str) -> dict[str, float]:
    counts = levelled.group_by(field_name).agg(pl.len().alias("n"))
    return {level: float(n) for level, n in counts.iter_rows()}


def estimate_u(incoming: pl.DataFrame, existing: pl.DataFrame, pairs: int, prior_pairs: float = U_PRIOR_PAIRS,
               seed: int = 0) -> tuple[dict[str, dict[str, float]], int]:
    """u per field and level from random pairs (nearly all different people), smoothed toward the
    prior (worth ``prior_pairs`` pairs) so a level never seen among strangers stays possible."""
    # Swapped readings are left out: among strangers they are vanishingly rare.
    sample = pair_levels(_random_pairs(incoming, existing, pairs, seed), incoming, existing, swaps=False)
    u = {}
    for field_name, ladder in LADDERS.items():
        counts = _level_counts(sample, field_name)
        seen = sum(counts.get(level, 0.0) for level in ladder)
        u[field_name] = {level: (counts.get(level, 0.0) + prior_pairs * PRIOR_U[field_name][level])
                         / (seen + prior_pairs) for level in ladder}
    return u, sample.height


def _em(patterns: pl.DataFrame, fields: list[str], m: dict, u: dict, iterations: int
        ) -> tuple[dict[str, dict[str, float]], float, float]:
    """EM over distinct comparison patterns with their counts, u fixed: returns the expected count
    of each level among matches, the expected number of matches, and the pairs' match share."""
    counts = patterns["n"].to_numpy().astype(float)
    total = counts.sum()
    share = 0.1
    expected: dict[str, dict[str, float]] = {}
    matches = 0.0
    # Each field's levels as positions in its ladder (its length for missing, which weighs 0).
    codes = {f: patterns[f].replace_strict({lv: i for i, lv in enumerate((*LADDERS[f], MISSING))},
                                           return_dtype=pl.Int64).to_numpy() for f in fields}
    for _ in range(iterations):
        log_m = np.zeros(patterns.height)
        log_u = np.zeros(patterns.height)
        for f in fields:
            log_m += np.log(np.array([m[f][lv] for lv in LADDERS[f]] + [1.0]))[codes[f]]
            log_u += np.log(np.array([u[f][lv] for lv in LADDERS[f]] + [1.0]))[codes[f]]
        a = math.log(share) + log_m
        b = math.log(1 - share) + log_u
        top = np.maximum(a, b)
        posterior = np.exp(a - top) / (np.exp(a - top) + np.exp(b - top))
        weighted = posterior * counts
        matches = float(weighted.sum())
        share = min(max(matches / total, 1e-9), 1 - 1e-9)
        expected = {}
        for f in fields:
            sums = np.bincount(codes[f], weights=weighted, minlength=len(LADDERS[f]) + 1)
            present = np.bincount(codes[f], minlength=len(LADDERS[f]) + 1) > 0
            per_level = {lv: float(sums[i]) for i, lv in enumerate(LADDERS[f]) if present[i]}
            expected[f] = per_level
            seen = sum(per_level.values())
            if seen > 0:
                m[f] = {level: max(per_level.get(level, 0.0) / seen, 1e-6) for level in LADDERS[f]}
    return expected, matches, share


@dataclass
class Session:
    """One EM training session: all pairs sharing ``on`` (from a sample of rows), learning the
    other fields."""

    on: str
    keys: tuple[str, ...]
    learns: tuple[str, ...]


SESSIONS = (
    Session("date_of_birth", ("date_of_birth",), ("first_name", "last_name", *ID_COLUMNS)),
    Session("full name", ("first_key", "last_key"), ("date_of_birth", *ID_COLUMNS)),
)


def train(incoming: pl.DataFrame, existing: pl.DataFrame, *, prior_pairs: float = 200.0,
          u_pairs: int = 20_000, sample_rows: int = 1000, max_session_pairs: int = 50_000,
          iterations: int = 20, learn: bool = True, seed: int = 0) -> Evidence:
    """Estimate the model on a district's data (``prepare``-d frames): u from random pairs, m and
    the match share by EM sessions, the prior weighing ``prior_pairs`` matched pairs."""
    students = existing.height
    first_tf = _frequencies(existing, "first_key", "first_tf", PRIOR_U["first_name"]["exact"])
    last_tf = _frequencies(existing, "last_key", "last_tf", PRIOR_U["last_name"]["exact"])
    m = {f: dict(levels) for f, levels in PRIOR_M.items()}
    training: dict = {"sessions": []}
    if not learn or incoming.height == 0 or students == 0:
        u = {f: dict(levels) for f, levels in PRIOR_U.items()}
        return Evidence(m, u, 0.9, students, first_tf, last_tf, {"learned": False})
    u, sampled = estimate_u(incoming, existing, min(u_pairs, incoming.height * students), seed=seed)
    training["u_pairs"] = sampled
    sample = incoming if incoming.height <= sample_rows else incoming.sample(sample_rows, seed=seed)
    learned: dict[str, list[tuple[dict[str, float], float]]] = {}
    shares = []
    for session in SESSIONS:
        left = sample.filter(pl.all_horizontal([pl.col(k).is_not_null() for k in session.keys]))
        right = existing.select("student_key", *session.keys).filter(
            pl.all_horizontal([pl.col(k).is_not_null() for k in session.keys]))
        for k in session.keys:
            if left.schema[k] == pl.String:
                left, right = left.filter(pl.col(k) != ""), right.filter(pl.col(k) != "")
        pairs = left.select("row_no", *session.keys).join(right.select("student_key", *session.keys),
                                                          on=list(session.keys))
        if pairs.height == 0:
            continue
        if pairs.height > max_session_pairs:
            pairs = pairs.sample(max_session_pairs, seed=seed)
        levelled = pair_levels(pairs, incoming, existing, swaps=False)
        patterns = levelled.group_by(list(session.learns)).agg(pl.len().alias("n"))
        session_m = {f: dict(m[f]) for f in session.learns}
        expected, matches, share = _em(patterns, list(session.learns), session_m, u, iterations)
        for f in session.learns:
            learned.setdefault(f, []).append((expected.get(f, {}), matches))
        training["sessions"].append({"on": session.on, "pairs": pairs.height, "expected_matches": round(matches, 1)})
        if session.on == "date_of_birth":
            # Matches found among same-birthday pairs are the sample's matches that kept their date.
            rows_with_date = max(left.height, 1)
            shares.append(matches / rows_with_date / m["date_of_birth"]["exact"])
    for f, results in learned.items():
        pooled = {level: sum(e.get(level, 0.0) for e, _ in results) / len(results) for level in LADDERS[f]}
        seen = sum(pooled.values())
        m[f] = {level: (pooled[level] + prior_pairs * PRIOR_M[f][level]) / (seen + prior_pairs)
                for level in LADDERS[f]}
    share = float(np.clip(np.mean(shares), 0.05, 0.995)) if shares else 0.9
    training["learned"] = True
    return Evidence(m, u, share, students, first_tf, last_tf, training)
