"""The matcher: one decision per incoming row against existing students.

Rules run as ordered levels, like a record-linkage comparison ladder:
1. exact identifiers (student ID, SSID, other ID) decide, unless the name and date of birth
   clearly belong to someone else;
2. definite-no: a date of birth that disagrees beyond a typo pattern rules a candidate out;
3. fuzzy scoring of names and date of birth, only inside blocks, over several blocking passes so
   that one typo does not hide a match.
Automatic links are refused when two candidates are close, when a twin or sibling shares the
last name and date of birth, or when one student is claimed by two rows: those rows go to review.

Everything runs on whole columns: identifier levels and blocking passes are polars joins, and
the string distances of all candidate pairs are polars expressions (polars-ds, on the Arrow
columns), so a million rows against a million students is a matter of seconds.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
from nicknames import NickNamer
from pydantic import BaseModel, Field

from tasks.names import folded_names
from tasks.progress import Progress
from tasks.evidence import (
    DOB_LEVELS,
    ID_COLUMNS,
    QUERY_ENGINE,
    Evidence,
    dob_codes,
    explain_expr,
    jaro_winkler,
    osa_distance,
    other_nickname,
    pair_levels,
    pair_sides,
    shares_word,
    train,
    with_row_probability,
    with_weights,
)


class MatchConfig(BaseModel):
    """Thresholds and rules of the matcher; every number here is a setting, not a constant."""

    id_levels: list[str] = Field(
        default=["student_id", "ssid", "other_id"],
        description="Identifier columns, in order of trust; the first that finds a student names the rule.",
    )
    id_name_floor: float = Field(
        default=60, ge=0, le=100,
        description="An ID match whose name scores below this and whose date of birth disagrees goes to review.",
    )
    auto_link_probability: float = Field(
        default=0.999, ge=0.5, le=1,
        description="Probability (Fellegi-Sunter, the row's candidates competing) needed to link a row automatically.",
    )
    review_probability: float = Field(
        default=0.02, ge=0, le=0.5,
        description="Candidates at least this probable are shown to a reviewer; a row without one is a new student.",
    )
    learn_weights: bool = Field(
        default=True, description="Estimate the field weights from the district's own data (EM); else use the prior.")
    prior_pairs: float = Field(
        default=200, ge=0, le=1_000_000,
        description="How many matched pairs the prior weights are worth against the district's own data.",
    )
    max_candidates: int = Field(default=5, ge=1, le=10, description="Candidates kept for a reviewer.")
    blocking_passes: list[str] = Field(
        default=["name_tokens", "nickname_last", "birth_date_first_deletes",
                 "birth_date_last_deletes", "last_first_initial", "last_first_deletes", "first_last_ends",
                 "first_last_prefix", "first_last_deletes", "swapped_last_first_deletes",
                 "swapped_first_last_deletes", "swapped_first_last_initial", "swapped_last_first_initial",
                 "swapped_birth_date_first_deletes", "swapped_birth_date_last_deletes", "last_birth_date_swapped",
                 "missing_first_last",
                 "missing_last_first", "missing_first_birth_date", "missing_last_birth_date"],
        description="Blocking rules, each a way two records may meet for fuzzy scoring (see BLOCKING_RULES).",
    )
    small_district: int = Field(
        default=20_000, ge=0,
        description="Up to this many registered students, rows also meet every student sharing one of their names "
        "(see small_district_passes): in a small district such a pair can be probable enough to ask about, and "
        "the passes cost little; in a large one it cannot.",
    )
    small_district_passes: list[str] = Field(default=["last_name", "first_name", "birth_date"])

    def passes_for(self, students: int) -> list[str]:
        """The blocking passes for a district of ``students`` registered students."""
        extra = self.small_district_passes if students <= self.small_district else []
        return [*self.blocking_passes, *[p for p in extra if p not in self.blocking_passes]]


_NICKNAMES = NickNamer()


@functools.lru_cache(maxsize=65536)
def nickname_keys(first: str) -> tuple[str, ...]:
    """The name itself and its canonical forms: two first names are one person's name when these meet."""
    if not first:
        return ()
    return tuple(sorted({first} | set(_NICKNAMES.canonicals_of(first))))


def nickname_equivalent(first_a: str, first_b: str) -> bool:
    """True when two folded first names are the same person's name by a nickname table."""
    if not first_a or not first_b:
        return False
    return bool(set(nickname_keys(first_a)) & set(nickname_keys(first_b)))


def dob_agreement(incoming: dt.date | None, existing: dt.date | None) -> str:
    """'exact', 'typo' (day and month swapped, one digit off, or two digits swapped), 'missing' or
    'different': the birth-date ladder (``evidence.DOB_LEVELS``) in three words."""
    series = [pl.Series([value], dtype=pl.Date) for value in (incoming, existing)]
    return dob_agreements(*series)[0]


def dob_agreements(left: pl.Series, right: pl.Series) -> pl.Series:
    """``dob_agreement`` on two date columns (whole arrays, see ``evidence.dob_codes``)."""
    words = {0: "exact", 1: "typo", 2: "typo", 3: "typo", 4: "different", 5: "missing"}
    return pl.Series(dob_codes(left, right)).replace_strict(words, return_dtype=pl.String)


def _folded(frame: pl.DataFrame, column: str, alias: str) -> pl.DataFrame:
    """``frame`` with ``column`` folded (``folded_names``) as ``alias``."""
    return frame.with_columns(folded_names(frame[column]).alias(alias))


def prepare(frame: pl.DataFrame) -> pl.DataFrame:
    """Comparison keys of a people frame: folded names, nickname keys, blocking keys."""
    if "school_id" not in frame.columns:
        frame = frame.with_columns(school_id=pl.lit(None, dtype=pl.Int64))
    folded = _folded(_folded(frame, "first_name", "first_key"), "last_name", "last_key")
    # Built flat (one row per name and key) and gathered into lists: a frame of Python lists
    # is slow to build.
    keyed = [(first, key) for first in folded["first_key"].unique().to_list() for key in nickname_keys(first)]
    nick = (pl.DataFrame({"first_key": [f for f, _ in keyed], "nick_keys": [k for _, k in keyed]},
                         schema={"first_key": pl.String, "nick_keys": pl.String})
            .group_by("first_key").agg(pl.col("nick_keys").sort()))
    folded = folded.join(nick, on="first_key", how="left", maintain_order="left").with_columns(
        nick_keys=pl.col("nick_keys").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    first, last = pl.col("first_key"), pl.col("last_key")
    # The name's words in order, so swapped first and last names meet in one block: two single
    # words are ordered directly, only double names (few) need their words sorted.
    folded = folded.with_columns(name_tokens=pl.concat_str([pl.min_horizontal(first, last),
                                                            pl.max_horizontal(first, last)], separator=" "))
    spaced = np.flatnonzero(folded.select(first.str.contains(" ", literal=True)
                                          | last.str.contains(" ", literal=True)).to_series().to_numpy())
    if len(spaced):
        words = folded.select("first_key", "last_key")[spaced].select(
            pl.concat_str([first, last], separator=" ").str.split(" ").list.sort().list.join(" ")).to_series()
        folded = folded.with_columns(folded["name_tokens"].scatter(spaced, words))
    return folded


# Blocking keys made from the names and the birth date when a pass needs them (see
# ``_blocking_side``), rather than kept for every record of a large district.
DERIVED_KEYS: dict[str, pl.Expr] = {
    "initials": pl.concat_str([pl.col("first_key").str.slice(0, 1), pl.col("last_key").str.slice(0, 1)]),
    # A typed word's first and last letters survive most slips inside it.
    "first_ends": pl.concat_str([pl.col("first_key").str.slice(0, 1), pl.col("first_key").str.slice(-1, 1)]),
    "last_ends": pl.concat_str([pl.col("last_key").str.slice(0, 1), pl.col("last_key").str.slice(-1, 1)]),
    "first_initial": pl.col("first_key").str.slice(0, 1),
    "last_initial": pl.col("last_key").str.slice(0, 1),
    "first_prefix": pl.col("first_key").str.slice(0, 3),
    "last_prefix": pl.col("last_key").str.slice(0, 3),
    "birth_year": pl.col("date_of_birth").dt.year(),
    "last_if_no_first": pl.when(pl.col("first_key") == "").then(pl.col("last_key")),
    "first_if_no_last": pl.when(pl.col("last_key") == "").then(pl.col("first_key")),
    "dob_if_no_first": pl.when(pl.col("first_key") == "").then(pl.col("date_of_birth")),
    "dob_if_no_last": pl.when(pl.col("last_key") == "").then(pl.col("date_of_birth")),
    # The birth date with its day and month swapped, where the day could be a month.
    "dob_day_month_swapped": pl.when((pl.col("date_of_birth").dt.day() <= 12)
                                     & (pl.col("date_of_birth").dt.day() != pl.col("date_of_birth").dt.month()))
    .then(pl.date(pl.col("date_of_birth").dt.year(), pl.col("date_of_birth").dt.day(),
                  pl.col("date_of_birth").dt.month())),
}


def deletion_forms(names: pl.Series) -> pl.DataFrame:
    """``name, form``: each distinct non-empty name with itself and every form with one letter
    dropped (its symmetric deletion neighbourhood). Two names one keystroke apart (a letter
    replaced, added or dropped, or two neighbours swapped) share a form: a replaced or swapped
    letter dropped from both, an added one from the longer. Made once per distinct name, which
    repeat far more than they vary."""
    distinct = pl.DataFrame({"name": names.drop_nulls().unique()}, schema={"name": pl.String}).filter(
        pl.col("name") != "")
    # One row per letter of each name, that letter dropped.
    dropped = (distinct.with_columns(at=pl.int_ranges(0, pl.col("name").str.len_chars())).explode("at")
               .select("name", form=pl.col("name").str.slice(0, pl.col("at")) + pl.col("name").str.slice(pl.col("at") + 1)))
    return pl.concat([distinct.with_columns(form=pl.col("name")), dropped]).filter(pl.col("form") != "").unique()


def with_person_key(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (from ``prepare``) with ``person_key``: who a row is within one batch, its first
    identifier, else folded name and date of birth."""
    frame = frame.with_columns(person_key=pl.coalesce(
        pl.concat_str(pl.lit("id:"), pl.col("student_id")),
        pl.concat_str(pl.lit("ssid:"), pl.col("ssid")),
        pl.concat_str(pl.lit("other:"), pl.col("other_id")),
    ))
    # The name and birth date are written out for the rows without any identifier only (few in
    # a district's export; a date written as text for a million rows takes a tenth of a second).
    anonymous = np.flatnonzero(frame["person_key"].is_null().to_numpy())
    if len(anonymous) == 0:
        return frame
    names = frame[anonymous].select(pl.concat_str(
        pl.lit("name:"), pl.col("first_key"), pl.lit("|"), pl.col("last_key"), pl.lit("|"),
        pl.col("date_of_birth").cast(pl.String).fill_null(""))).to_series()
    return frame.with_columns(frame["person_key"].scatter(anonymous, names))


# Each rule lists the keys two records must share to be compared, or (incoming keys, registered
# keys) to compare one side's first name with the other's last. Together the default passes bring
# every pair the evidence could show a reviewer (tests/test_blocking.py draws them): with the birth
# date equal, a name one keystroke from either name (``_deletes``: see ``deletion_forms``); with
# one name equal, the other one keystroke away or sharing its initial, ends or prefix (slips of
# more than one keystroke), the birth date a typo away or missing (the passes without the birth
# date join on the typo keys below); nicknames; swapped names, with a typo; a missing name.
BLOCKING_RULES: dict[str, list[str] | tuple[list[str], list[str]]] = {
    "full_name": ["first_key", "last_key"],
    "name_tokens": ["name_tokens"],
    "last_birth_date": ["last_key", "date_of_birth"],
    "first_birth_date": ["first_key", "date_of_birth"],
    "nickname_last": ["nick_key", "last_key"],
    "nickname_birth_date": ["nick_key", "date_of_birth"],
    "initials_birth_date": ["initials", "date_of_birth"],
    "first_last_ends": ["first_key", "last_ends"],
    "last_first_ends": ["last_key", "first_ends"],
    "first_last_initial_year": ["first_key", "last_initial", "birth_year"],
    "last_first_initial_year": ["last_key", "first_initial", "birth_year"],
    "first_last_prefix": ["first_key", "last_prefix"],
    "last_first_prefix": ["last_key", "first_prefix"],
    "last_first_initial": ["last_key", "first_initial"],
    "birth_date": ["date_of_birth"],
    # A replaced first name (a middle name used) or a missing one, and a typo in the last name.
    "birth_date_last_initial": ["date_of_birth", "last_initial"],
    # A missing last name and a typo in the first.
    "birth_date_first_initial": ["date_of_birth", "first_initial"],
    # (incoming columns, existing columns): names swapped, and a typo in one of them.
    "swapped_first_birth_date": (["first_key", "date_of_birth"], ["last_key", "date_of_birth"]),
    "swapped_last_birth_date": (["last_key", "date_of_birth"], ["first_key", "date_of_birth"]),
    "swapped_first_last_initial": (["first_key", "last_initial"], ["last_key", "first_initial"]),
    "swapped_last_first_initial": (["last_key", "first_initial"], ["first_key", "last_initial"]),
    "swapped_birth_date_initial": (["date_of_birth", "first_initial"], ["date_of_birth", "last_initial"]),
    # A row with one name missing meets every student with its other name (within the birth-date
    # typo keys, or all of them when the date is missing too).
    "missing_first_last": (["last_if_no_first"], ["last_key"]),
    "missing_last_first": (["first_if_no_last"], ["first_key"]),
    # One name alone (small districts only, see ``MatchConfig.small_district``).
    "last_name": ["last_key"],
    "first_name": ["first_key"],
    # One name equal, the other one keystroke away, with any birth date a typo away or missing.
    "last_first_deletes": ["last_key", "first_deletes"],
    "first_last_deletes": ["first_key", "last_deletes"],
    # The birth date equal and one name one keystroke away (the other anything: a typo in each
    # name, a replaced or missing one).
    "birth_date_first_deletes": ["date_of_birth", "first_deletes"],
    "birth_date_last_deletes": ["date_of_birth", "last_deletes"],
    # The last name equal and the birth date's day and month swapped, the first name anything: a
    # replaced first name with a swapped date still weighs enough to ask about. The row's date read
    # the other way round meets the students born that day, a few per last name.
    "last_birth_date_swapped": (["last_key", "dob_day_month_swapped"], ["last_key", "date_of_birth"]),
    "swapped_birth_date_first_deletes": (["date_of_birth", "first_deletes"], ["date_of_birth", "last_deletes"]),
    "swapped_birth_date_last_deletes": (["date_of_birth", "last_deletes"], ["date_of_birth", "first_deletes"]),
    "swapped_last_first_deletes": (["last_key", "first_deletes"], ["first_key", "last_deletes"]),
    "swapped_first_last_deletes": (["first_key", "last_deletes"], ["last_key", "first_deletes"]),
    # ...and, with a typo in the name it has, every student born that day (rows missing a name
    # are few, so these passes stay small).
    "missing_first_birth_date": (["dob_if_no_first"], ["date_of_birth"]),
    "missing_last_birth_date": (["dob_if_no_last"], ["date_of_birth"]),
}


# Every typo-like pair of birth dates shares one of these: a digit off in the day or a swap within
# it (year and month), in the month (year and day), in the year (month and day), or day and month
# swapped (the year and the two numbers). Joining on them instead of the year alone makes the
# passes without the birth date about ten times smaller.
TYPO_KEYS = ("year_month", "year_day", "month_day", "year_month_day_set", "digit_counts")


# Passes whose blocks are a name and a form, an initial, the ends or the prefix of the other name,
# or a missing name (a few records each): joined on the block alone, the pairs sharing no typo key
# dropped as they are made (``_typo_like_join``), which is cheaper than a join on each typo key
# (at a million rows against a million students, 5 s instead of 5.6 s for the whole blocking; at
# ten thousand against a hundred thousand, 0.27 s instead of 0.34 s). Passes on one name alone
# (small districts) keep the typo-key joins: their blocks are large.
NARROW_PASSES = frozenset({
    "name_tokens", "nickname_last", "last_first_deletes", "first_last_deletes", "swapped_last_first_deletes",
    "swapped_first_last_deletes", "last_first_initial", "first_last_ends", "first_last_prefix",
    "swapped_first_last_initial", "swapped_last_first_initial", "missing_first_last", "missing_last_first",
    "last_first_ends",
})


def _base_column(column: str) -> str:
    """The name column a derived blocking key stands for: ``first_deletes`` and ``nick_key`` are
    a first name on the registered side (the rows' side is turned into the registered names it
    is close to, see ``_close_names``)."""
    if column == "nick_key":
        return "first_key"
    return column.removesuffix("_deletes") + "_key" if column.endswith("_deletes") else column


def _blocking_side(frame: pl.DataFrame, key: str, columns: list[str], close: dict[str, pl.DataFrame] | None = None,
                   carry: tuple[str, ...] = ()) -> pl.LazyFrame:
    """One side of a blocking pass: the record key, a hash of the blocking keys, the birth date.

    ``close`` (the rows' side only) maps a key column to a table ``name, close`` of the registered
    names that name is close to (one keystroke, a nickname): the row then carries each close
    registered name in that key, and meets the students holding it as they are; the registered
    side is never multiplied by its names' forms."""
    lazy = frame.lazy()
    bases = {c: _base_column(c) for c in columns}
    derived = {b: DERIVED_KEYS[b] for b in bases.values() if b in DERIVED_KEYS and b not in frame.columns}
    if derived:
        lazy = lazy.with_columns(**derived)
    side = lazy.select(key, "date_of_birth", *carry, *{b for b in bases.values() if b != "date_of_birth"})
    for column, base in bases.items():
        if close is not None and column in close:
            side = side.join(close[column].lazy().rename({"name": base, "close": column}), on=base)
        elif column != base:
            side = side.with_columns(pl.col(base).alias(column))
    side = side.drop_nulls(columns)
    text_columns = [c for c in columns if bases[c] not in ("date_of_birth", "birth_year", "dob_if_no_first",
                                                           "dob_if_no_last", "dob_day_month_swapped")]
    if text_columns:
        side = side.filter(pl.all_horizontal([pl.col(c) != "" for c in text_columns]))
    # Joining on one 64-bit hash instead of several strings keeps the pass fast and small; a
    # collision only brings one more pair to be scored, never a link. The keys are hashed by
    # position, so a pass may compare one side's first name with the other's last.
    return side.select(key, "date_of_birth", *carry,
                       block=pl.struct([pl.col(c).alias(f"key{i}") for i, c in enumerate(columns)]).hash())


def _close_forms(mine: pl.DataFrame, theirs: pl.DataFrame) -> pl.DataFrame:
    """``name, close``: the rows' distinct names with the students' distinct names one keystroke
    from them (sharing a deletion form, see ``deletion_forms``)."""
    theirs = theirs.join(mine.select("form").unique(), on="form", how="semi")
    return mine.join(theirs.rename({"name": "close"}), on="form").select("name", "close").unique()


def _close_nicknames(incoming: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """``name, close``: the rows' distinct first names with the students' first names that share a
    nickname key with them (Bob and Robert)."""
    def keys(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(name="first_key", form="nick_keys").unique("name").explode("form").drop_nulls()

    return _close_forms(keys(incoming), keys(existing))


def with_typo_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the birth-date typo keys (``TYPO_KEYS``), made once for every pass."""
    dob = frame["date_of_birth"]
    year, month, day = (part.cast(pl.Int64).fill_null(0).to_numpy()
                        for part in (dob.dt.year(), dob.dt.month(), dob.dt.day()))
    number = year * 10000 + month * 100 + day
    # How often each digit occurs in YYYYMMDD (four bits per digit): two digits swapped anywhere,
    # across the month/day boundary too, keep it.
    digit_counts = np.zeros(len(number), dtype=np.int64)
    for i in range(8):
        digit_counts += np.left_shift(np.int64(1), 4 * ((number // 10**i) % 10))
    dated = pl.lit(dob.is_not_null())
    keys = pl.DataFrame({"year": year, "month": month, "day": day, "digit_counts": digit_counts}).select(
        [pl.when(dated).then(expr).alias(name) for name, expr in {
            "year_month": pl.col("year") * 100 + pl.col("month"),
            "year_day": pl.col("year") * 100 + pl.col("day"),
            "month_day": pl.col("month") * 100 + pl.col("day"),
            "year_month_day_set": pl.col("year") * 10000 + pl.min_horizontal("month", "day") * 100
            + pl.max_horizontal("month", "day"),
            "digit_counts": pl.col("digit_counts")}.items()])
    return frame.with_columns(keys)


# From how many rows to block the blocking passes' pairs are made distinct on the streaming engine.
STREAMED_BLOCKING_ROWS = 50_000


def candidate_pairs(incoming: pl.DataFrame, existing: pl.DataFrame, passes: list[str],
                    drop_definite_no: bool = False) -> pl.DataFrame:
    """Distinct (row_no, student_key) pairs that meet in at least one blocking pass.

    Both frames come from ``prepare``. With ``drop_definite_no``, pairs whose dates of birth differ
    beyond a typo are left out as they are found (they could never be a candidate): a pass
    without the date of birth then runs as narrower joins whose union holds every pair with a
    typo-like date (see ``TYPO_KEYS``) or a missing one.
    """
    pairs = []
    close_tables: dict[tuple[str, str, bool], pl.DataFrame] = {}
    forms: dict[tuple[str, str], pl.DataFrame] = {}
    dated_keys = ("date_of_birth", "birth_year", "dob_if_no_first", "dob_if_no_last", "dob_day_month_swapped")

    def by_typo_keys(name: str) -> bool:
        """The pass compares birth dates by the typo keys (a pass of its own without the date)."""
        keys = BLOCKING_RULES[name]
        keys = keys[0] if isinstance(keys, tuple) else keys
        return drop_definite_no and not any(k in keys for k in dated_keys)

    if any(by_typo_keys(name) for name in passes):
        incoming, existing = with_typo_keys(incoming), with_typo_keys(existing)

    def forms_of(side: str, column: str) -> pl.DataFrame:
        if (side, column) not in forms:
            forms[side, column] = deletion_forms((incoming if side == "in" else existing)[column])
        return forms[side, column]

    def close(left_column: str, right_column: str) -> pl.DataFrame:
        spec = (_base_column(left_column), _base_column(right_column), left_column == "nick_key")
        if spec not in close_tables:
            close_tables[spec] = (_close_nicknames(incoming, existing) if spec[2] else
                                  _close_forms(forms_of("in", spec[0]), forms_of("ex", spec[1])))
        return close_tables[spec]

    for name in passes:
        rule = BLOCKING_RULES[name]
        left_keys, right_keys = rule if isinstance(rule, tuple) else (rule, rule)
        expand = {lk: close(lk, rk) for lk, rk in zip(left_keys, right_keys) if lk.endswith("_deletes") or lk == "nick_key"}
        carry = TYPO_KEYS if by_typo_keys(name) else ()
        left = (_blocking_side(incoming, "row_no", left_keys, close=expand, carry=carry)
                .rename({"date_of_birth": "dob_in"}))
        # Only existing records sharing a block with some incoming row can pair: a semi-join on the
        # block shrinks them before the joins below. (Cutting them down first to those sharing each
        # key with some row cost more than it saved: at a million students it kept nearly all, and
        # at ten thousand rows against a hundred thousand it saved nothing measurable.)
        right = (_blocking_side(existing, "student_key", right_keys, carry=carry)
                 .rename({"date_of_birth": "dob_ex"})
                 .join(left.select("block").unique(), on="block", how="semi"))
        if not carry:
            pairs.append(_block_join(left, right, ["block"]))
            continue
        if name in NARROW_PASSES:
            pairs.append(_typo_like_join(left, right))
            continue
        dated_in, dated_ex = left.filter(pl.col("dob_in").is_not_null()), right.filter(pl.col("dob_ex").is_not_null())
        for typo_key in TYPO_KEYS:
            pairs.append(_block_join(dated_in, dated_ex, ["block", typo_key]))
        pairs.append(_block_join(left.filter(pl.col("dob_in").is_null()), right, ["block"]))
        pairs.append(_block_join(dated_in, right.filter(pl.col("dob_ex").is_null()), ["block"]))
    if not pairs:
        return pl.DataFrame(schema={"row_no": pl.Int64, "student_key": pl.Int64})
    found = _distinct_found(pairs, incoming, existing)
    if drop_definite_no:
        # Filtered once the joins are done: inside the lazy plan the filter would be pushed into
        # every join, and planning that large expression forty times costs more than the joins.
        found = found.filter(dob_codes(found["dob_in"], found["dob_ex"]) != DOB_LEVELS.index("different"))
    return found.select("row_no", "student_key")


def _distinct_found(pairs: list[pl.LazyFrame], incoming: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """``row_no, student_key, dob_in, dob_ex`` of every pair the passes' joins (``pairs``) found,
    once each, sorted.

    A pair met in several passes is one pair (its dates are the row's and the student's): made
    distinct first, the birth dates of far fewer pairs are compared after. Made distinct inside the
    plan, on the packed pair, the many pairs met twice are never gathered into one frame; then
    sorted, so that the same input always gives the pairs in the same order. Many rows' passes
    yield millions of pairs, most met in several passes: the streaming engine makes them distinct
    as the joins produce them, faster and in less memory than gathering them all first (146k rows
    left to block against a million students: 3.9 s instead of 5 s); for fewer rows its start-up
    costs more than it saves (see ``QUERY_ENGINE``)."""
    engine = "streaming" if incoming.height >= STREAMED_BLOCKING_ROWS else QUERY_ENGINE
    if packable(incoming["row_no"], existing["student_key"]):
        return (pl.concat(pairs).select(code=pair_code(), dob_in="dob_in", dob_ex="dob_ex")
                .unique("code", keep="any").sort("code").collect(engine=engine)
                .select(*pair_of("code"), "dob_in", "dob_ex"))
    return distinct_pairs(pl.concat(pairs).collect(engine=engine)).sort("row_no", "student_key")


# Keys that fit in 31 bits each are packed into one integer (``pair_code``), which polars groups
# and makes distinct several times faster than the two columns.
PAIR_BITS = 31


def packable(rows: pl.Series, students: pl.Series) -> bool:
    """True when every row number of ``rows`` and student key of ``students`` fits in ``PAIR_BITS`` bits."""
    return all(keys.is_empty() or (keys.min() >= 0 and keys.max() < 2**PAIR_BITS) for keys in (rows, students))


def pair_code() -> pl.Expr:
    """One integer for a (row_no, student_key) pair (see ``packable``); ``pair_of`` reads it back."""
    return pl.col("row_no").cast(pl.Int64) * 2**PAIR_BITS + pl.col("student_key").cast(pl.Int64)


def pair_of(code: str) -> list[pl.Expr]:
    """``row_no, student_key`` from a ``pair_code`` column."""
    return [(pl.col(code) // 2**PAIR_BITS).alias("row_no"), (pl.col(code) % 2**PAIR_BITS).alias("student_key")]


def marked_pairs(frame: pl.DataFrame, pairs: pl.DataFrame, name: str) -> pl.DataFrame:
    """``frame`` with ``name``: true for its (row_no, student_key) pairs that are among ``pairs``."""
    if packable(frame["row_no"], frame["student_key"]) and packable(pairs["row_no"], pairs["student_key"]):
        # One packed integer looked up, instead of a join on two columns.
        return frame.with_columns(pair_code().is_in(pairs.select(pair_code()).to_series().implode()).alias(name))
    wanted = pairs.select(pl.struct("row_no", "student_key")).to_series().implode()
    return frame.with_columns(pl.struct("row_no", "student_key").is_in(wanted).alias(name))


def distinct_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` with one row per (row_no, student_key), the first of each."""
    if pairs.height == 0:
        return pairs
    if not packable(pairs["row_no"], pairs["student_key"]):
        return pairs.unique(["row_no", "student_key"], keep="first", maintain_order=True)
    return pairs.filter(pair_code().is_first_distinct())


def _typo_like_join(left: pl.LazyFrame, right: pl.LazyFrame) -> pl.LazyFrame:
    """The pairs of a narrow pass (joined on the block alone) whose birth dates share a typo key
    or are missing: every typo-like pair does (see ``TYPO_KEYS``), and most pairs met on a name
    alone, namesakes born years apart, are left out where they are made instead of being gathered
    and compared digit by digit."""
    joined = left.select("row_no", "dob_in", "block", *TYPO_KEYS).join(
        right.select("student_key", "dob_ex", "block", *[pl.col(k).alias(f"{k}_ex") for k in TYPO_KEYS]), on="block")
    return joined.filter(pl.col("dob_in").is_null() | pl.col("dob_ex").is_null()
                         | pl.any_horizontal([pl.col(k) == pl.col(f"{k}_ex") for k in TYPO_KEYS])).select(
        "row_no", "student_key", "dob_in", "dob_ex")


def _block_join(left: pl.LazyFrame, right: pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
    return left.select("row_no", "dob_in", *on).join(right.select("student_key", "dob_ex", *on), on=on).select(
        "row_no", "student_key", "dob_in", "dob_ex")


def compare_pairs(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig,
                  drop_definite_no: bool = False) -> pl.DataFrame:
    """Field-by-field comparison of candidate pairs: levels per field, a score and whether an
    automatic link is possible at all.

    ``names_agree``: first names equal or nicknames, and last names equal, one typing slip apart
    or sharing a part of a double surname; or the same names swapped. ``id_conflict``: an
    identifier both records carry, with different values. With ``drop_definite_no``, pairs whose
    dates of birth differ beyond a typo (a definite no) are dropped before any name is compared.
    The identifier level decides on these; fuzzy candidates are weighed by ``score_pairs``.
    """
    inc = incoming.lazy().select(
        "row_no", pl.col("date_of_birth").alias("dob_in"), pl.col("first_key").alias("first_in"),
        pl.col("last_key").alias("last_in"), pl.col("name_tokens").alias("tokens_in"),
        pl.col("school_id").alias("school_in"), *[pl.col(c).alias(f"{c}_in") for c in ID_COLUMNS],
        nick_in="nick_keys",
    )
    ex = existing.lazy().select(
        "student_key", pl.col("date_of_birth").alias("dob_ex"), pl.col("first_key").alias("first_ex"),
        pl.col("last_key").alias("last_ex"), pl.col("name_tokens").alias("tokens_ex"),
        pl.col("school_id").alias("school_ex"), pl.col("twin_group"), *[pl.col(c).alias(f"{c}_ex") for c in ID_COLUMNS],
        nick_ex="nick_keys",
    )
    # One lazy join, which polars runs on every core (see ``pair_levels``); the pairs come in no
    # particular order.
    joined = (pairs.lazy().select("row_no", "student_key").join(inc, on="row_no").join(ex, on="student_key")
              .collect(engine=QUERY_ENGINE).rechunk())
    joined = joined.with_columns(dob=dob_agreements(joined["dob_in"], joined["dob_ex"]))
    if drop_definite_no:
        joined = joined.filter(pl.col("dob") != "different")
    same = (pl.col("first_in") == pl.col("first_ex")) & (pl.col("last_in") == pl.col("last_ex"))
    # Most pairs (every identifier hit, nearly) carry the very same name: only the others need
    # string distances and nickname keys, which are the costly part.
    differing = joined.filter(~same)
    compared = pl.concat([
        _identical_names(joined.filter(same).drop("nick_in", "nick_ex")),
        _differing_names(differing),
    ], how="diagonal")
    compared = compared.with_columns(
        exact_name=(pl.col("tokens_in") == pl.col("tokens_ex")) & (pl.col("tokens_in") != ""),
        same_school=(pl.col("school_in") == pl.col("school_ex")).fill_null(False),
        id_conflict=pl.coalesce([
            pl.when(pl.col(f"{c}_in").is_not_null() & pl.col(f"{c}_ex").is_not_null()
                    & (pl.col(f"{c}_in") != pl.col(f"{c}_ex"))).then(pl.lit(c))
            for c in ID_COLUMNS
        ]),
    ).with_columns(
        names_agree=pl.col("exact_name") | (
            pl.col("first_level").is_in(["equal", "nickname"]) & pl.col("last_level").is_in(["equal", "part", "slip"])),
    )
    return compared


def _identical_names(joined: pl.DataFrame) -> pl.DataFrame:
    missing_first = pl.col("first_in") == ""
    missing_last = pl.col("last_in") == ""
    return joined.with_columns(
        first_jw=pl.when(missing_first).then(0.0).otherwise(100.0),
        last_jw=pl.when(missing_last).then(0.0).otherwise(100.0),
        first_level=pl.when(missing_first).then(pl.lit("missing")).otherwise(pl.lit("equal")),
        first_part=~missing_first,
        last_level=pl.when(missing_last).then(pl.lit("missing")).otherwise(pl.lit("equal")),
        swapped=pl.lit(False),
    ).with_columns(name_score=(pl.col("first_jw") + pl.col("last_jw")) / 2)


def _differing_names(joined: pl.DataFrame) -> pl.DataFrame:
    # Jaro-Winkler forgives the transpositions and dropped letters typical of typed names.
    joined = joined.with_columns(
        first_jw=jaro_winkler("first_in", "first_ex") * 100,
        last_jw=jaro_winkler("last_in", "last_ex") * 100,
        swap_first_jw=jaro_winkler("first_in", "last_ex") * 100,
        swap_last_jw=jaro_winkler("last_in", "first_ex") * 100,
        last_slips=osa_distance("last_in", "last_ex"),
    )
    # Lists are intersected only for the pairs where that can tell something (see ``on_some``).
    joined = joined.with_columns(first_nick=other_nickname(joined),
                                 first_words=shares_word(joined, "first_in", "first_ex"),
                                 last_words=shares_word(joined, "last_in", "last_ex"))
    first_nick = pl.col("first_nick")
    # One name of a double first name ("Isaac" for "Isaac Bryan": a middle name written or not),
    # or the very name.
    first_part = ((pl.col("first_in") == pl.col("first_ex")) & (pl.col("first_in") != "")) | pl.col("first_words")
    last_part = ((pl.col("last_in") == pl.col("last_ex")) & (pl.col("last_in") != "")) | pl.col("last_words")
    compared = joined.with_columns(
        first_part=first_part,
        first_level=pl.when((pl.col("first_in") == "") | (pl.col("first_ex") == "")).then(pl.lit("missing"))
        .when(pl.col("first_in") == pl.col("first_ex")).then(pl.lit("equal"))
        .when(first_nick).then(pl.lit("nickname"))
        .otherwise(pl.lit("different")),
        last_level=pl.when((pl.col("last_in") == "") | (pl.col("last_ex") == "")).then(pl.lit("missing"))
        .when(pl.col("last_in") == pl.col("last_ex")).then(pl.lit("equal"))
        .when(last_part).then(pl.lit("part"))
        .when(pl.col("last_slips") <= 1).then(pl.lit("slip"))
        .otherwise(pl.lit("different")),
    )
    first_score = pl.when(pl.col("first_level").is_in(["equal", "nickname"])).then(100.0).otherwise(pl.col("first_jw"))
    last_score = pl.when(pl.col("last_level") == "part").then(pl.max_horizontal("last_jw", pl.lit(95.0))).otherwise(pl.col("last_jw"))
    swap_score = (pl.col("swap_first_jw") + pl.col("swap_last_jw")) / 2
    compared = compared.with_columns(straight=(first_score + last_score) / 2, swap_score=swap_score)
    compared = compared.with_columns(
        swapped=(pl.col("swap_score") > pl.col("straight") + 10) & (pl.col("swap_score") >= 95),
    ).with_columns(
        name_score=pl.when(pl.col("swapped")).then(pl.col("swap_score") - 2).otherwise(pl.col("straight")),
    )
    return compared.drop("swap_first_jw", "swap_last_jw", "last_slips", "straight", "swap_score", "first_nick",
                         "first_words", "last_words")


def _agreement_expr(prefix: pl.Expr | None = None) -> pl.Expr:
    """Why a pair scores as it does, in words (computed only for pairs a person will read)."""
    first = (pl.when(pl.col("first_level") == "equal").then(pl.lit("first equal"))
             .when(pl.col("first_level") == "nickname").then(pl.lit("first nickname"))
             .otherwise(pl.format("first {}", pl.col("first_jw").round(0).cast(pl.Int64))))
    last = (pl.when(pl.col("last_level") == "equal").then(pl.lit("last equal"))
            .otherwise(pl.format("last {}", pl.col("last_jw").round(0).cast(pl.Int64))))
    names = pl.when(pl.col("swapped")).then(pl.lit("first and last names swapped")).otherwise(
        pl.concat_str([first, last], separator=", "))
    text = pl.concat_str([names, pl.lit("; date of birth "), pl.col("dob"),
                          pl.when(pl.col("id_conflict").is_not_null())
                          .then(pl.format("; {} differs", pl.col("id_conflict"))).otherwise(pl.lit(""))])
    return text if prefix is None else pl.concat_str([prefix, pl.lit("; "), text])


DECISION_SCHEMA = {"row_no": pl.Int64, "decision": pl.String, "student_key": pl.Int64, "rule": pl.String,
                   "score": pl.Float64, "explanation": pl.String}
CANDIDATE_SCHEMA = {"row_no": pl.Int64, "student_key": pl.Int64, "score": pl.Float64, "agreement": pl.String}


def _id_level(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig,
              twins_on_rows: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Level 1: identifier hits decide a row, unless its name and date of birth say otherwise.

    ``twins_on_rows`` (``twins_on_other_rows``): registered twins plainly on their own rows, who
    cannot be the child of a row whose ID hits their twin. Returns the decisions (matched or
    review) of rows with any hit, the hit candidates, and the rows carrying an identifier value that
    two or more registered students share (``row_no``).
    """
    pairs, shared, id_sets = _id_hit_pairs(incoming, existing, config)
    shared_rows = shared.select("row_no").unique()
    if pairs.height == 0:
        return pl.DataFrame(schema=DECISION_SCHEMA), pl.DataFrame(schema=CANDIDATE_SCHEMA), shared_rows
    # Most rows are hit by one student whose folded names and birth date are the row's own, with
    # no identifier differing: confirmed beyond doubt, they skip the comparison ladder below.
    quick = _plainly_confirmed(pairs, incoming, existing, id_sets)
    pairs = pairs.join(quick, on="row_no", how="anti").join(id_sets.select("hit_set", "levels"), on="hit_set")
    quick_decisions = quick.select(
        "row_no", decision=pl.lit("matched"), student_key="student_key", rule="rule", score=pl.lit(100.0),
        explanation="agreement")
    quick_candidates = quick.select("row_no", "student_key", score=pl.lit(100.0), agreement="agreement")
    if pairs.height == 0:
        return quick_decisions.cast(DECISION_SCHEMA), quick_candidates.cast(CANDIDATE_SCHEMA), shared_rows
    compared = _compared_id_pairs(pairs, incoming, existing, config, twins_on_rows)
    decisions = _id_decisions(compared, shared)
    candidates = compared.sort(["row_no", "strong", "name_score", "student_key"],
                               descending=[False, True, True, False]).select(
        "row_no", "student_key", score=pl.col("name_score"), agreement="agreement")
    return (pl.concat([quick_decisions.cast(DECISION_SCHEMA), decisions.cast(DECISION_SCHEMA)]),
            pl.concat([quick_candidates.cast(CANDIDATE_SCHEMA), candidates.cast(CANDIDATE_SCHEMA)]), shared_rows)


def _id_hit_pairs(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig
                  ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The pairs an identifier hits (``row_no, student_key, hit_set, rule, rank``: the set of
    identifiers that hit it and the most trusted of them), the rows whose identifier value two or
    more registered students share (``row_no, level_rank, level``) and the sets (``_id_sets``)."""
    order = {c: i for i, c in enumerate(config.id_levels)}
    # One lazy plan: each side's IDs are filtered and joined without copying the wide frames.
    hits = [
        incoming.lazy().filter(pl.col(c).is_not_null()).select("row_no", c)
        .join(existing.lazy().filter(pl.col(c).is_not_null()).select("student_key", c), on=c)
        .select("row_no", "student_key", level_rank=pl.lit(order[c], dtype=pl.Int8))
        for c in config.id_levels
    ]
    hits = pl.concat(hits).collect(engine=QUERY_ENGINE)
    names = {i: c for c, i in order.items()}
    # Grouped on integers: the identifiers that hit a pair are summed as one number, a digit per
    # identifier in base ``len + 1`` (so it counts them even in a configuration listing one twice),
    # and the few distinct sets are named once instead of a list made for every pair.
    base = len(config.id_levels) + 1
    weight = pl.col("level_rank").replace_strict({rank: base**rank for rank in names}, return_dtype=pl.Int64)
    # One identifier value held by two existing students is a data problem a person must see:
    # a row hit twice through one identifier.
    if packable(hits["row_no"], hits["student_key"]):
        # Grouped on one packed integer, several times faster than on two columns at a million rows.
        # (Each weight is worked out before grouping: inside the aggregation it is worked out
        # group by group, three times slower.)
        holders = (hits.lazy().select(code=pl.col("row_no") * 256 + pl.col("level_rank")).group_by("code")
                   .agg(pl.len().alias("holders"))
                   .select(row_no=pl.col("code") // 256, level_rank=(pl.col("code") % 256).cast(pl.Int8),
                           holders="holders"))
        per_pair = (hits.lazy().select(code=pair_code(), weight=weight).group_by("code")
                    .agg(hit_set=pl.col("weight").sum()).select(*pair_of("code"), "hit_set"))
    else:
        holders = hits.lazy().group_by("row_no", "level_rank").agg(pl.len().alias("holders"))
        per_pair = (hits.lazy().with_columns(weight=weight).group_by("row_no", "student_key")
                    .agg(hit_set=pl.col("weight").sum()))
    shared, pairs = pl.collect_all([
        holders.filter(pl.col("holders") > 1).select(
            "row_no", "level_rank", level=pl.col("level_rank").replace_strict(names, return_dtype=pl.String)),
        per_pair], engine=QUERY_ENGINE)
    id_sets = _id_sets(pairs["hit_set"].unique().to_list(), base, names)
    pairs = pairs.join(id_sets.select("hit_set", "rule", "rank"), on="hit_set").select(
        "row_no", "student_key", "hit_set", "rule", "rank")
    return pairs, shared, id_sets


def _compared_id_pairs(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig,
                       twins_on_rows: pl.DataFrame | None) -> pl.DataFrame:
    """Identifier hits compared field by field (``compare_pairs``), with ``confirmed`` (the name
    and birth date bear the identifier out), ``strong`` (names agree, birth date exact) and the
    agreement in words."""
    compared = compare_pairs(pairs.select("row_no", "student_key"), incoming, existing, config).join(
        pairs, on=["row_no", "student_key"])
    compared = (with_twins_accounted(compared, twins_on_rows, incoming, existing) if twins_on_rows is not None
                else compared.with_columns(twins_accounted=pl.lit(False)))
    compared = compared.with_columns(
        # An ID is confirmed by names that agree and a birth date that does not rule it out, or by
        # the same birth date and a name close enough, unless the first name is plainly another
        # (the same last name: a brother's or a twin's; a mistyped ID lands on a sibling more often
        # than on anyone else, their IDs being often consecutive), or the student has a twin, the
        # name is not exactly theirs and the twin is not plainly on another row of the batch.
        confirmed=((pl.col("names_agree") & (pl.col("dob") != "different"))
                   | ((pl.col("dob") == "exact") & (pl.col("name_score") >= config.id_name_floor)
                      & ~((pl.col("first_level") == "different") & (pl.col("first_jw") < 80) & ~pl.col("first_part")
                          & pl.col("last_level").is_in(["equal", "part", "slip"])))
                   # A missing name neither confirms nor contradicts: the other must agree.
                   | ((pl.col("dob") == "exact") & (pl.col("first_level") == "missing")
                      & pl.col("last_level").is_in(["equal", "part", "slip"]))
                   | ((pl.col("dob") == "exact") & (pl.col("last_level") == "missing")
                      & pl.col("first_level").is_in(["equal", "nickname"])))
        & (pl.col("twin_group").is_null() | pl.col("exact_name") | pl.col("twins_accounted"))
        | ((pl.col("levels").list.len() >= 2) & (pl.col("dob") != "different")),
        strong=pl.col("names_agree") & (pl.col("dob") == "exact"),
        agreement=_agreement_expr(pl.format("{} equal", pl.col("levels").list.join(", "))),
    )
    return compared


def _id_decisions(compared: pl.DataFrame, shared: pl.DataFrame) -> pl.DataFrame:
    """Each hit row's identifier decision from its compared hits: linked when its one student is
    confirmed (or one of several is strongly), else a question, in words."""
    # Within a row, its students in the order of the identifiers that found them (the most
    # trusted first), so "first" below is the same on every run.
    per_row = compared.sort("row_no", "rank", "student_key").group_by("row_no", maintain_order=True).agg(
        pl.len().alias("students"),
        pl.col("strong").sum().alias("strong_count"),
        pl.col("student_key").filter(pl.col("strong")).first().alias("strong_key"),
        pl.col("student_key").first().alias("only_key"),
        pl.col("rule").first(), pl.col("confirmed").first(), pl.col("strong").first().alias("only_strong"),
        pl.col("id_conflict").first(), pl.col("agreement").first(),
        pl.col("rule").filter(pl.col("strong")).first().alias("strong_rule"),
        pl.col("agreement").filter(pl.col("strong")).first().alias("strong_agreement"),
    ).join(
        # Every identifier that hit a row, for the rows hit by several students only (a few in a
        # thousand: the words name them only there).
        compared.filter(pl.len().over("row_no") > 1).group_by("row_no").agg(
            pl.col("levels").list.explode(keep_nulls=False, empty_as_null=False).unique().sort().alias("all_levels")),
        on="row_no", how="left",
    ).join(shared.group_by("row_no").agg(pl.col("level").sort_by("level_rank").first().alias("shared_level")),
           on="row_no", how="left")
    return per_row.with_columns(
        decision=pl.when(pl.col("shared_level").is_not_null()).then(pl.lit("review"))
        .when((pl.col("students") == 1) & pl.col("confirmed") & (pl.col("id_conflict").is_null() | pl.col("only_strong")))
        .then(pl.lit("matched"))
        .when((pl.col("students") > 1) & (pl.col("strong_count") == 1)).then(pl.lit("matched"))
        .otherwise(pl.lit("review")),
    ).select(
        "row_no", "decision",
        student_key=pl.when(pl.col("decision") == "matched").then(
            pl.when(pl.col("students") == 1).then(pl.col("only_key")).otherwise(pl.col("strong_key"))),
        rule=pl.when((pl.col("students") > 1) & (pl.col("decision") == "matched")).then(pl.col("strong_rule"))
        .otherwise(pl.col("rule")),
        score=pl.when(pl.col("decision") == "matched").then(pl.lit(100.0)),
        explanation=pl.when(pl.col("shared_level").is_not_null())
        .then(pl.format("{} value belongs to more than one existing student", pl.col("shared_level")))
        .when(pl.col("students") > 1).then(
            pl.when(pl.col("decision") == "matched").then(pl.format(
                "{}; another identifier points to another student, but name and date of birth agree here",
                pl.col("strong_agreement")))
            .otherwise(pl.format("{} point to {} different existing students",
                                 pl.col("all_levels").list.join(" and "), pl.col("students"))))
        .when(~pl.col("confirmed")).then(pl.format(
            "ID probably mistyped: {} equal but the name and date of birth do not confirm it ({})", pl.col("rule"),
            pl.col("agreement")))
        .when(pl.col("decision") == "review").then(
            pl.format("{} equal but {} differs ({})", pl.col("rule"), pl.col("id_conflict"), pl.col("agreement")))
        .when(pl.col("id_conflict").is_not_null()).then(
            pl.format("{}; name and date of birth agree, so the differing {} is taken as mistyped",
                      pl.col("agreement"), pl.col("id_conflict")))
        .otherwise(pl.col("agreement")),
    )


def _id_sets(hit_sets: list[int], base: int, names: dict[int, str]) -> pl.DataFrame:
    """``hit_set, levels, rule, rank``: each identifier set (see ``_id_level``) as the identifiers'
    names in order of trust, the first of them and its rank."""
    ranks = [[rank for rank in sorted(names) for _ in range(hit_set // base**rank % base)] for hit_set in hit_sets]
    return pl.DataFrame({"hit_set": hit_sets, "levels": [[names[r] for r in found] for found in ranks],
                         "rule": [names[found[0]] for found in ranks], "rank": [found[0] for found in ranks]},
                        schema={"hit_set": pl.Int64, "levels": pl.List(pl.String), "rule": pl.String,
                                "rank": pl.Int8})


def _plainly_confirmed(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame,
                       id_sets: pl.DataFrame) -> pl.DataFrame:
    """The identifier hits (``row_no, student_key, hit_set, rule``) of rows hit by one student
    only, whose folded first and last names and birth date equal the row's and no identifier both
    carry differs; with the words ``_agreement_expr`` gives such a pair."""
    mine = incoming.lazy().select("row_no", first_in="first_key", last_in="last_key", dob_in="date_of_birth",
                                  **{f"{c}_in": c for c in ID_COLUMNS})
    theirs = existing.lazy().select("student_key", first_ex="first_key", last_ex="last_key", dob_ex="date_of_birth",
                                    **{f"{c}_ex": c for c in ID_COLUMNS})
    same = ((pl.col("first_in") == pl.col("first_ex")) & (pl.col("last_in") == pl.col("last_ex"))
            & (pl.col("first_in") != "") & (pl.col("last_in") != "") & (pl.col("dob_in") == pl.col("dob_ex"))
            & ~pl.any_horizontal([(pl.col(f"{c}_in") != pl.col(f"{c}_ex")).fill_null(False) for c in ID_COLUMNS]))
    # The words depend on the identifiers alone: made once per set of them, not for every pair.
    words = id_sets.lazy().select("hit_set", agreement=pl.format(
        "{} equal; first equal, last equal; date of birth exact", pl.col("levels").list.join(", ")))
    # Lazily, so that only the compared columns are gathered for the pairs.
    return (pairs.lazy().filter(pl.len().over("row_no") == 1).join(mine, on="row_no").join(theirs, on="student_key")
            .filter(same.fill_null(False)).select("row_no", "student_key", "hit_set", "rule")
            .join(words, on="hit_set").collect(engine=QUERY_ENGINE))


PAIRS_PER_SLICE = 500_000


def score_pairs(pairs: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame, evidence: Evidence,
                keep: pl.DataFrame | None = None, shown_from: float | None = None) -> pl.DataFrame:
    """Weigh candidate pairs by Fellegi-Sunter evidence: each field's level and weight, the pair's
    match weight, and the probability that the row is this candidate, its candidates competing.

    Pairs whose birth dates differ beyond a typo are ruled out (a hard guard, whatever the names
    say), except the pairs in ``keep`` (a row's identifier hits, which a reviewer must see).
    With ``shown_from``, only the pairs a person may see are returned: at least that probable, in
    ``keep``, or a namesake's.
    """
    # In slices, so that a large district's pairs never hold every side column at once.
    sides = pair_sides(pairs, incoming, existing, context=True)
    levelled = pl.concat([pair_levels(chunk, incoming, existing, context=True, sides=sides)
                          for chunk in pairs.iter_slices(PAIRS_PER_SLICE)]
                         or [pair_levels(pairs, incoming, existing, context=True, sides=sides)])
    # Which pairs are in ``keep``, marked once (``_hit``) for the two filters below.
    levelled = (marked_pairs(levelled, keep, "_hit") if keep is not None and keep.height
                else levelled.with_columns(_hit=pl.lit(False)))
    levelled = levelled.filter((pl.col("date_of_birth") != "different") | pl.col("_hit"))
    # A row that carries one twin's exact name is not the other twin with a typo: the typo would
    # have had to land on the sibling's very name. Such a sibling's first name counts as different.
    given = given_name(pl.col("first_name"), pl.col("last_name"))
    family = given_name(pl.col("last_name"), pl.col("first_name"))
    exact_given = given.is_in(["exact", "accent or case"])
    same_family = family.is_in(["exact", "accent or case"]) & (pl.col("date_of_birth") == "exact")
    sibling = same_family & ~exact_given & (exact_given & same_family).any().over("row_no")
    levelled = levelled.with_columns(
        first_name=pl.when(sibling & ~pl.col("swapped")).then(pl.lit("different")).otherwise(pl.col("first_name")),
        last_name=pl.when(sibling & pl.col("swapped")).then(pl.lit("different")).otherwise(pl.col("last_name")))
    weighted = with_weights(levelled, evidence)
    exact_name = (pl.col("tokens_in") == pl.col("tokens_ex")) & (pl.col("tokens_in") != "")
    scored = with_row_probability(weighted, evidence).with_columns(
        exact_name=exact_name,
        # Another student with the very same name and a birth date a typo away: the row's date
        # may be the other's mistyped.
        namesake=exact_name.sum().over("row_no") > 1)
    if shown_from is not None:
        # The pairs a person may see: probable enough, an identifier's hit, or a namesake (most
        # pairs are none of these, and the guards below need not be worked out for them).
        scored = scored.filter((pl.col("probability") >= shown_from) | pl.col("_hit")
                               | (pl.col("namesake") & pl.col("exact_name")))
    return scored.drop("_hit").with_columns(
        same_school=(pl.col("school_in") == pl.col("school_ex")).fill_null(False),
        # An identifier both carry that differs beyond two slips, with no other identifier equal:
        # a different child's, or a wrong one, and either way not for a machine to overrule.
        id_conflict=pl.when(~pl.any_horizontal([pl.col(c).is_in(["exact", "leading zeros"]) for c in ID_COLUMNS]))
        .then(pl.coalesce([pl.when(pl.col(c) == "different").then(pl.lit(c)) for c in ID_COLUMNS])),
        # Same family name and birthday but another first name is what a twin or sibling looks
        # like, however rare the name: field weights assume independent fields, which siblings
        # are not, so no weight of evidence overrules this.
        # A missing birth date cannot tell them apart either.
        sibling_like=~given_name(pl.col("first_name"), pl.col("last_name")).is_in(["exact", "accent or case", "nickname"])
        & given_name(pl.col("last_name"), pl.col("first_name")).is_in(["exact", "accent or case"])
        & pl.col("date_of_birth").is_in(["exact", "missing"])
        # Two identifiers that agree (one exactly, one at least to a slip) are no sibling's by a typo.
        & ~(pl.any_horizontal([pl.col(c) == "exact" for c in ID_COLUMNS])
            & (pl.sum_horizontal([pl.col(c).is_in(["exact", "leading zeros", "one edit"]).cast(pl.Int8)
                                  for c in ID_COLUMNS]) >= 2)),
        # Names alone, with no birth date and no identifier to compare, never link: two children
        # with one name are common, and nothing here tells them apart.
        names_only=(pl.col("date_of_birth") == "missing") & ~pl.any_horizontal(
            [pl.col(c).is_in(["exact", "leading zeros", "one edit"]) for c in ID_COLUMNS]),
    )


def given_name(first_level: pl.Expr, last_level: pl.Expr) -> pl.Expr:
    """The given name's level (pass the levels the other way round for the family name's): read
    swapped, the given name is compared in the last-name field."""
    return pl.when(pl.col("swapped")).then(last_level).otherwise(first_level)


def twins_on_other_rows(incoming: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """``twin_group, twin_key, person_key``: registered students with a twin (or a sibling with
    their last name and birth date) whom a row of the batch plainly is: the same folded first and
    last name, the same birth date, and no identifier that differs. Such a child is on its own row,
    so it is not who another row a keystroke away could be (``with_twins_accounted``)."""
    # Lazily: a filter on the wide frame would copy every column of the rows it keeps.
    members = existing.lazy().filter(pl.col("twin_group").is_not_null()).select(
        "twin_group", "first_key", "last_key", "date_of_birth", twin_key="student_key",
        **{f"{c}_ex": c for c in ID_COLUMNS}).collect(engine=QUERY_ENGINE)
    if members.height == 0:
        return pl.DataFrame(schema={"twin_group": pl.UInt32, "twin_key": pl.Int64, "person_key": pl.String})
    rows = incoming.lazy().filter((pl.col("first_key") != "") & (pl.col("last_key") != "")).select(
        "person_key", "first_key", "last_key", "date_of_birth", *ID_COLUMNS)
    differing = pl.any_horizontal([(pl.col(c) != pl.col(f"{c}_ex")).fill_null(False) for c in ID_COLUMNS])
    # One lazy plan: the batch's rows are joined as they are read (a million rows at a migration).
    return (rows.join(members.lazy(), on=["first_key", "last_key", "date_of_birth"]).filter(~differing)
            .select("twin_group", "twin_key", "person_key").unique().collect(engine=QUERY_ENGINE))


def with_twins_accounted(pairs: pl.DataFrame, on_rows: pl.DataFrame, incoming: pl.DataFrame,
                         existing: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` (with ``row_no, student_key, twin_group``) with ``twins_accounted``: every other
    member of the student's twin group is plainly on a row of another person of the batch
    (``twins_on_other_rows``), so no registered twin can be behind this row; and
    ``twin_people``, those persons (they share the student's last name and birth date)."""
    groups = pairs.filter(pl.col("twin_group").is_not_null()).select("row_no", "student_key", "twin_group").unique()
    sizes = existing.lazy().filter(pl.col("twin_group").is_not_null()).group_by("twin_group").agg(
        pl.len().alias("twin_size")).collect(engine=QUERY_ENGINE)
    accounted = (groups.join(incoming.select("row_no", "person_key"), on="row_no")
                 .join(on_rows.rename({"person_key": "twin_person"}), on="twin_group")
                 .filter((pl.col("twin_key") != pl.col("student_key")) & (pl.col("twin_person") != pl.col("person_key")))
                 .group_by("row_no", "student_key", "twin_group").agg(
                     pl.col("twin_key").n_unique().alias("on_rows"), pl.col("twin_person").unique().alias("twin_people"))
                 .join(sizes, on="twin_group")
                 .select("row_no", "student_key", "twin_people",
                         twins_accounted=pl.col("on_rows") == pl.col("twin_size") - 1))
    return pairs.join(accounted, on=["row_no", "student_key"], how="left", maintain_order="left").with_columns(
        pl.col("twins_accounted").fill_null(False),
        pl.col("twin_people").fill_null(pl.lit([], pl.List(pl.String))))


def relax_guards(scored: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame,
                 id_decisions: pl.DataFrame, id_candidates: pl.DataFrame) -> pl.DataFrame:
    """Lift the sibling and names-alone guards of the pairs where the batch itself shows that no
    twin, sibling or namesake can be behind the row; ``relaxed`` says why, in words (null where
    the guards stand).

    Both guards exist because another child may look like the row: a twin or sibling with the
    same last name and birth date, a namesake with the same full name. That child is either
    registered (then it is a candidate, or its twin group is known) or arriving in this very batch
    (then its row is here). A guard is lifted only when neither is so and the student could be
    nobody else in the batch:

    - the student has no registered twin or sibling with its last name and birth date;
    - no other person of the batch has the student's last name and birth date;
    - no other person of the batch has the student among its candidates or identifier hits;
    - the student's school is among the schools the batch covers (a partial upload, say one
      school's sheet, says nothing about the children of the schools it leaves out, among whom the
      registered twin of a newly arriving one may be).

    Then the sibling guard is lifted when the last name and birth date are exact (names not
    swapped) and either an identifier is equal (a copied ID on a new twin would need that twin to
    arrive while the registered one is absent from a sheet covering its school), or the first name
    is one keystroke from the student's and is nobody's name: no registered student and no other
    person of the batch has it, and the nickname table does not know it (a typo makes a string,
    a twin's name is a name: Mario and Maria stay a question). The names-alone guard is lifted
    when the full name is the student's exactly, no other registered student and no other person
    of the batch has that name, the row is at the student's school and the student's record has a
    birth date (a record made from a name alone, a temporary student, is for a person to link). What would have to
    happen for such a link to be wrong: a new twin or namesake arriving, without an ID, the same
    year the registered child is missing from a sheet that covers its school.
    """
    flagged = scored.filter(pl.col("sibling_like") | pl.col("names_only")).select(
        "row_no", "student_key", "twins_accounted", "twin_people")
    if flagged.height == 0:
        return scored.with_columns(relaxed=pl.lit(None, pl.String))
    context = _guard_context(flagged, scored, incoming, existing, id_decisions, id_candidates)
    scored = scored.join(context, on=["row_no", "student_key"], how="left", maintain_order="left").with_columns(
        pl.col("alone", "unique_name", "unknown_first").fill_null(False))
    family_exact = (~pl.col("swapped") & (pl.col("last_name") == "exact") & (pl.col("date_of_birth") == "exact"))
    id_equal = pl.any_horizontal([pl.col(c) == "exact" for c in ID_COLUMNS])
    sibling_typo = (pl.col("sibling_like") & pl.col("alone") & family_exact
                    & (id_equal | ((pl.col("first_name") == "one keystroke") & pl.col("unknown_first"))))
    names_unique = (pl.col("names_only") & pl.col("alone") & pl.col("unique_name") & pl.col("exact_name")
                    & pl.col("same_school"))
    # Who could not be behind the row, in words: no twin at all, or the registered twins on rows of their own.
    no_twin = (pl.when(pl.col("twin_group").is_not_null())
               .then(pl.lit("the registered twin is plainly on another row of this batch and no other is in it"))
               .otherwise(pl.lit("no twin registered or in this batch")))
    relaxed = (pl.when(sibling_typo & id_equal).then(pl.format(
        "another first name but an equal ID: {}, nobody else in it could be this student", no_twin))
        .when(sibling_typo).then(pl.format(
            "a first name one keystroke off, and nobody's name, taken as a typo: {}, nobody else in it could be "
            "this student", no_twin))
        .when(names_unique).then(pl.lit(
            "names alone, but nobody else registered or in this batch has them, the school is the student's and "
            "nobody else in it could be this student")))
    return scored.with_columns(
        relaxed=relaxed,
        sibling_like=pl.col("sibling_like") & ~sibling_typo,
        names_only=pl.col("names_only") & ~names_unique,
    ).drop("alone", "unique_name", "unknown_first")


def _guard_context(flagged: pl.DataFrame, scored: pl.DataFrame, incoming: pl.DataFrame, existing: pl.DataFrame,
                   id_decisions: pl.DataFrame, id_candidates: pl.DataFrame) -> pl.DataFrame:
    """For the guarded pairs ``flagged`` (row_no, student_key), what the batch and the district say
    of who else could be behind them: ``alone`` (no twin registered or in the batch, nobody else
    claims the student, the student's school covered), ``unique_name`` (nobody else registered or
    in the batch has the full name, and the student's record has a birth date) and
    ``unknown_first`` (the row's first name is nobody's). Worked out for the guarded pairs only:
    a few in a thousand."""
    people = incoming.select("row_no", "person_key", "first_key", "last_key", "name_tokens",
                             dob_in="date_of_birth")
    students = existing.lazy().join(flagged.lazy().select("student_key").unique(), on="student_key",
                                    how="semi").select(
        "student_key", "twin_group", last_ex="last_key", dob_ex="date_of_birth", name_ex="name_tokens",
        first_ex="first_key", school="school_id").collect(engine=QUERY_ENGINE)
    flagged_rows = people.join(flagged.select("row_no").unique(), on="row_no", how="semi")
    firsts = flagged_rows.select("first_key").unique().drop_nulls()
    names = students.select(name_tokens="name_ex").unique()
    # Each of these reads the whole batch or district for a few keys: lazily, all at once, polars
    # shares the scans among the cores.
    people_lazy, existing_lazy = people.lazy(), existing.lazy()
    # Who may claim a student: every person whose row has it as a candidate shown, or an ID hit.
    claims = pl.concat([scored.lazy().select("row_no", "student_key"), id_candidates.lazy().select("row_no", "student_key"),
                        id_decisions.lazy().filter(pl.col("decision") == "matched").select("row_no", "student_key")]
                       ).join(students.lazy().select("student_key"), on="student_key", how="semi").unique().join(
        people_lazy.select("row_no", "person_key"), on="row_no")
    claimants = claims.group_by("student_key").agg(pl.col("person_key").unique().alias("claimants"))
    families = (people_lazy.filter(pl.col("dob_in").is_not_null() & (pl.col("last_key") != ""))
                .join(students.lazy().select(last_key="last_ex", dob_in="dob_ex").unique(), on=["last_key", "dob_in"],
                      how="semi")
                .group_by(pl.col("last_key").alias("last_ex"), pl.col("dob_in").alias("dob_ex"))
                .agg(pl.col("person_key").unique().alias("family")))
    batch_names = (people_lazy.filter(pl.col("name_tokens") != "").join(names.lazy(), on="name_tokens", how="semi")
                   .group_by(pl.col("name_tokens").alias("name_ex"))
                   .agg(pl.col("person_key").unique().alias("namesakes")))
    registered_names = (existing_lazy.select("name_tokens").join(names.lazy(), on="name_tokens", how="semi")
                        .group_by(pl.col("name_tokens").alias("name_ex")).agg(pl.len().alias("registered")))
    # Names the district or the nickname table knows (the batch's other people are checked below).
    known = existing_lazy.select("first_key").join(firsts.lazy(), on="first_key", how="semi").unique()
    first_holders = (people_lazy.filter(pl.col("first_key") != "").join(firsts.lazy(), on="first_key", how="semi")
                     .group_by("first_key").agg(pl.col("person_key").n_unique().alias("first_holders")))
    claimants, families, batch_names, registered_names, known, first_holders = pl.collect_all(
        [claimants, families, batch_names, registered_names, known, first_holders], engine=QUERY_ENGINE)
    schools = incoming["school_id"].drop_nulls().unique().implode()
    known = set(known["first_key"].to_list())
    known_firsts = [f for f in firsts["first_key"].to_list() if f in known or len(nickname_keys(f)) > 1]

    context = (flagged.join(people, on="row_no").join(students, on="student_key")
               .join(claimants, on="student_key", how="left").join(families, on=["last_ex", "dob_ex"], how="left")
               .join(batch_names, on="name_ex", how="left").join(registered_names, on="name_ex", how="left")
               .join(first_holders, on="first_key", how="left"))

    def only_me(column: str, besides: pl.Expr | None = None) -> pl.Expr:
        others = pl.col(column).fill_null(pl.lit([], pl.List(pl.String))).list.set_difference(
            pl.concat_list(pl.col("person_key")))
        if besides is not None:
            others = others.list.set_difference(besides)
        return others.list.len() == 0

    return context.select(
        "row_no", "student_key",
        # A registered twin plainly on another row of the batch is accounted for: that row, with
        # the student's last name and birth date, is the twin's, not a stranger's.
        alone=(pl.col("twin_group").is_null() | pl.col("twins_accounted")) & only_me("claimants")
        & only_me("family", besides=pl.col("twin_people"))
        & pl.col("school").is_in(schools).fill_null(False),
        # The student's record has the birth date the row lacks: a record made from a name alone
        # (a temporary student) is for a person to link.
        unique_name=(pl.col("registered").fill_null(0) == 1) & only_me("namesakes") & pl.col("dob_ex").is_not_null(),
        unknown_first=~pl.col("first_key").is_in(pl.Series(known_firsts, dtype=pl.String).implode())
        & (pl.col("first_holders").fill_null(1) <= 1),
    )


def _fuzzy_decisions(ranked: pl.DataFrame, config: MatchConfig, unavailable_twins: pl.DataFrame | None,
                     evidence: Evidence | None = None) -> pl.DataFrame:
    """Decide fuzzy rows from their candidates (best first): linked when the best is probable
    enough and no hard guard objects, else a question. With ``evidence``, the probabilities are
    weighed again among the candidates left (some were withdrawn as another person's student)."""
    if evidence is not None:
        ranked = with_row_probability(ranked, evidence)
    ranked = ranked.sort(["row_no", "probability", "same_school", "student_key"], descending=[False, True, True, False])
    best = ranked.group_by("row_no", maintain_order=True).agg(
        pl.col("student_key").first(), pl.col("probability").first(),
        pl.col("probability").get(1, null_on_oob=True).alias("second"), pl.col("namesake").first(),
        pl.col("id_conflict").first(), pl.col("exact_name").first(), pl.col("sibling_like").first(),
        pl.col("names_only").first(),
        pl.col("twin_group").first(), pl.col("agreement").first(),
        (pl.col("twins_accounted").first() if "twins_accounted" in ranked.columns else pl.lit(False))
        .alias("twins_accounted"),
        (pl.col("relaxed").first() if "relaxed" in ranked.columns else pl.lit(None, pl.String)).alias("relaxed"),
    )
    # A twin plainly on another person's row (``with_twins_accounted``) is not the one this row could be.
    twins = best.with_columns(twin=pl.col("twin_group").is_not_null() & ~pl.col("twins_accounted"))
    if unavailable_twins is not None and twins.height:
        # A twin already linked to another person's row is not the one this row could be.
        others = twins.join(unavailable_twins, on="twin_group", how="left").with_columns(
            twin=pl.col("twin") & (pl.col("twin_size").fill_null(0) - pl.col("taken").fill_null(0) > 1))
        twins = others.drop("twin_size", "taken")
    shown = probability_text(pl.col("probability"))
    reason = (
        pl.when((pl.col("probability") < config.auto_link_probability) & (pl.col("second") >= config.review_probability))
        .then(pl.format("two candidates are close: the best is {} probable, the next {}", shown,
                        probability_text(pl.col("second"))))
        .when(pl.col("namesake")).then(pl.lit(
            "two candidates are close: two students have this very name and birth dates a typo apart, so the "
            "row's date may be the other's mistyped"))
        .when(pl.col("probability") < config.auto_link_probability).then(pl.format(
            "the best candidate is {} probable, below the automatic {}", shown,
            probability_text(pl.lit(config.auto_link_probability))))
        .when(pl.col("id_conflict").is_not_null()).then(pl.format(
            "the names and birth date point here but the {} differs beyond a typing slip", pl.col("id_conflict")))
        .when(pl.col("twin") & ~pl.col("exact_name")).then(pl.lit(
            "a twin or sibling shares the last name and date of birth, and the name is not identical"))
        .when(pl.col("names_only")).then(pl.lit(
            "only the names can be compared (no birth date, no ID): a person decides"))
        .when(pl.col("sibling_like")).then(pl.lit(
            "same last name and birth date (or none to tell) but another first name: this could be a twin or sibling"))
    )
    return twins.with_columns(reason=reason).select(
        "row_no",
        decision=pl.when(pl.col("reason").is_null()).then(pl.lit("matched")).otherwise(pl.lit("review")),
        student_key=pl.when(pl.col("reason").is_null()).then(pl.col("student_key")),
        rule=pl.lit("fuzzy"), score=pl.col("probability") * 100,
        explanation=pl.coalesce(pl.format("{}; {}", pl.col("reason"), pl.col("agreement")),
                                pl.format("{}; {} probable; {}", pl.col("agreement"), shown, pl.col("relaxed")),
                                pl.format("{}; {} probable", pl.col("agreement"), shown)),
    )


def probability_text(probability: pl.Expr) -> pl.Expr:
    """A probability as people read it: 99.95%, 87.3%, 0.41%."""
    percent = probability * 100
    return (pl.when(percent >= 99).then(percent.round(2).cast(pl.String))
            .when(percent >= 1).then(percent.round(1).cast(pl.String))
            .otherwise(percent.round(2).cast(pl.String))) + pl.lit("%")


def match_rows(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig | None = None,
               progress: Progress | None = None) -> pl.DataFrame:
    """Decide, for every incoming row, whether it is an existing student, a new one, or a question.

    ``incoming`` has ``row_no, first_name, last_name, date_of_birth, student_id, ssid, other_id``;
    ``existing`` has ``student_key`` and the same person columns. Any value may be null; an
    optional ``school_id`` on both ranks a candidate of the row's own school first among equals.
    Returns one row per incoming row: ``row_no, decision ('matched' | 'review' | 'new'),
    student_key, rule, score, explanation, candidates`` (a list of ``student_key, score, agreement``).
    ``progress(rows decided, rows)`` is told as the rows are decided: by identifier, then by evidence.
    """
    config = config or MatchConfig()
    if progress is not None:
        progress(0, incoming.height)
    for frame in (incoming, existing):
        for column in ID_COLUMNS:
            if column not in frame.columns:
                raise ValueError(f"the matcher needs a {column!r} column (it may be all null)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        # The two sides are prepared side by side, and the evidence is trained while the
        # identifier level and the blocking run: polars releases the interpreter while it works,
        # and each of these is many small steps that one core alone would run one after another.
        prepared = [pool.submit(_prepared_rows, incoming), pool.submit(_prepared_students, existing)]
        incoming, existing = (future.result() for future in prepared)
        # When every row carries an ID a registered student has, the identifiers will most likely
        # decide every row (a yearly migration of the SIS's own export) and the evidence is trained
        # only if a row is left to weigh; that is found out beside the identifier level (at a
        # million rows it takes most of a second).
        training = pool.submit(_trained_unless_identified, incoming, existing, config)
        # Asked for when a row is left to weigh, before the blocking: then trained beside it if
        # that was not done yet (every row carried a registered ID, and some row is a question
        # after all, say an ID two students share: it took 0.7 s more at a million rows).
        evidence = functools.cache(lambda: pool.submit(lambda: _trained(training.result(), incoming, existing, config)))
        return _match_prepared(incoming, existing, config, evidence, progress)


def _prepared_rows(incoming: pl.DataFrame) -> pl.DataFrame:
    """The batch's rows as the matcher compares them (``prepare``, comparable IDs, ``person_key``);
    the sheet's IDs as written stay beside the compared ones, for the explanations."""
    incoming = incoming.with_columns([pl.col(c).cast(pl.String).alias(f"{c}_as_written") for c in ID_COLUMNS])
    return with_person_key(prepare(incoming.with_columns([comparable_id(c) for c in ID_COLUMNS])))


def _prepared_students(existing: pl.DataFrame) -> pl.DataFrame:
    """The registered students as the matcher compares them (``prepare``, comparable IDs)."""
    return prepare(existing.with_columns([comparable_id(c) for c in ID_COLUMNS]))


def _trained(trained: Evidence | None, incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig) -> Evidence:
    return trained if trained is not None else train(incoming, existing, prior_pairs=config.prior_pairs,
                                                     learn=config.learn_weights)


def _trained_unless_identified(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig) -> Evidence | None:
    """The district's trained evidence, or None when every row has a registered ID (see ``match_rows``)."""
    if every_row_has_a_registered_id(incoming, existing, config):
        return None
    return train(incoming, existing, prior_pairs=config.prior_pairs, learn=config.learn_weights)


def comparable_id(column: str) -> pl.Expr:
    """An identifier column as the matcher compares it: text, an all-digit value without its leading
    zeros. Excel drops them from a number, often from a whole column at once (no cell of the sheet
    then shows the district pads its IDs), and two students whose IDs differ only by leading zeros
    do not exist: an ID joined as written would find nobody, and the row's own student, its birth
    date mistyped, would be ruled out and the row taken as new."""
    value = pl.col(column).cast(pl.String)
    # (Stripping the zeros is three times faster than a regular expression replacing them.)
    stripped = value.str.strip_chars_start("0")
    return (pl.when(value.str.contains(r"^[0-9]+$"))
            .then(pl.when(stripped == "").then(pl.lit("0")).otherwise(stripped)).otherwise(value).alias(column))


def every_row_has_a_registered_id(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig) -> bool:
    """True when each incoming row carries at least one identifier value a registered student has.

    Values are compared by their 64-bit hashes, twice as fast as the text at a million rows: a
    collision could only make this say yes wrongly, and then the evidence is trained when the first
    row is left to weigh (see ``match_rows``), later but the same."""
    unsettled = incoming.select("row_no", *config.id_levels)
    for column in config.id_levels:
        registered = existing.select(pl.col(column).drop_nulls().hash()).to_series().implode()
        unsettled = unsettled.filter(pl.col(column).is_null() | ~pl.col(column).hash().is_in(registered))
        if unsettled.is_empty():
            return True
    return False


def _match_prepared(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig,
                    evidence_of: Callable[[], Future[Evidence]], progress: Progress | None = None) -> pl.DataFrame:
    """``match_rows`` on prepared frames, ``evidence_of()`` giving the district's trained evidence
    (as it is being trained)."""
    existing, twin_groups = with_twin_groups(existing)
    # Registered twins plainly on rows of their own: not who another row could be.
    twins_on_rows = twins_on_other_rows(incoming, existing)

    # Level 1: identifiers.
    ids = _identifier_level(incoming, existing, config, twins_on_rows)
    if progress is not None:
        progress(ids.matched.height, incoming.height)
    # Levels 2-3: the other rows' candidates, weighed by the district's evidence.
    scored, evidence = _weighed_candidates(incoming, existing, config, ids, evidence_of, twins_on_rows)
    fuzzy, fuzzy_ranked, decisions, candidates = _first_decisions(incoming, existing, config, ids, scored)
    decisions, candidates = _without_taken_students(
        incoming, existing, twin_groups, config, evidence, fuzzy, fuzzy_ranked, decisions, candidates)
    result = _decided_rows(incoming, config, decisions, candidates)
    if progress is not None:
        progress(incoming.height, incoming.height)
    return result


def with_twin_groups(existing: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``existing`` with ``twin_group`` (students sharing a last name and a birth date, twins or
    siblings; null for the others), and the groups ``last_key, date_of_birth, twin_group, twin_size``."""
    twin_groups = (existing.lazy().filter(pl.col("date_of_birth").is_not_null() & (pl.col("last_key") != ""))
                   .group_by("last_key", "date_of_birth").agg(pl.len().alias("twin_size"))
                   .filter(pl.col("twin_size") > 1).collect(engine=QUERY_ENGINE).with_row_index("twin_group"))
    # Joined on the two keys alone, the group then set beside the wide frame (not copied by a join).
    group = existing.select("last_key", "date_of_birth").join(
        twin_groups.select("last_key", "date_of_birth", "twin_group"), on=["last_key", "date_of_birth"], how="left",
        maintain_order="left")["twin_group"]
    return existing.with_columns(group), twin_groups


@dataclass
class IdentifierLevel:
    """What the identifiers decided: ``decisions`` (matched or review) of the rows they hit, their
    ``candidates``, the rows carrying an identifier value two registered students share
    (``shared_rows``), the rows that must stay questions because another child of the batch carries
    their ID (``conflict_rows``), the rows ``matched``, the rows sent to ``review`` and those rows'
    ``hits`` (row_no, student_key)."""

    decisions: pl.DataFrame
    candidates: pl.DataFrame
    shared_rows: pl.DataFrame
    conflict_rows: pl.Series
    matched: pl.DataFrame
    review: pl.DataFrame
    hits: pl.DataFrame


def _identifier_level(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig,
                      twins_on_rows: pl.DataFrame) -> IdentifierLevel:
    decisions, candidates, shared_rows = _id_level(incoming, existing, config, twins_on_rows)
    # One ID on two different people of the batch: the registered student's row keeps it.
    decisions, conflict_rows = batch_id_conflicts(incoming, existing, decisions, config)
    review = decisions.filter(pl.col("decision") == "review").select("row_no")
    return IdentifierLevel(decisions, candidates, shared_rows, conflict_rows,
                           matched=decisions.filter(pl.col("decision") == "matched"), review=review,
                           hits=candidates.join(review, on="row_no").select("row_no", "student_key"))


def _weighed_candidates(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig, ids: IdentifierLevel,
                        evidence_of: Callable[[], Future[Evidence]], twins_on_rows: pl.DataFrame
                        ) -> tuple[pl.DataFrame, Evidence]:
    """The candidates of the rows the identifiers did not link, best first, with their evidence in
    words and the guards the batch lifts (``relax_guards``); and the evidence they were weighed by.

    Blocked candidates are weighed with the definite-no rule on date of birth. Rows an ID sent to
    review are weighed too, with the students their IDs hit: a mistyped ID often hits another
    child, and the reviewer needs the student the name and birth date point to beside the one the
    ID points to, each with its probability."""
    remaining = incoming.join(ids.matched.select("row_no"), on="row_no", how="anti")
    if remaining.height:
        # The district's own evidence: u from random pairs, m and the share of known students by
        # EM, trained beside the blocking.
        training = evidence_of()
        pairs = distinct_pairs(pl.concat([
            candidate_pairs(remaining, existing, config.passes_for(existing.height), drop_definite_no=True), ids.hits]))
        evidence = training.result()
    else:
        # Every row is linked by an identifier: no row is left to block or weigh (on a large
        # district, blocking and training took longer than the identifiers), so the steps below
        # run on no pairs, with the prior evidence.
        pairs = ids.hits
        evidence = train(remaining, existing.clear(), prior_pairs=config.prior_pairs, learn=False)
    scored = score_pairs(pairs, remaining, existing, evidence, keep=ids.hits,
                         shown_from=config.review_probability).with_columns(
        # In words, for the candidates a person may read (most pairs were dropped).
        agreement=explain_expr())
    # Ties go to the row's own school, then the lower student key: the same input always offers
    # the same candidates in the same order.
    scored = scored.sort(["row_no", "probability", "same_school", "student_key"],
                         descending=[False, True, True, False]).with_columns(score=pl.col("probability") * 100)
    scored = relax_guards(with_twins_accounted(scored, twins_on_rows, incoming, existing), incoming, existing,
                          ids.decisions, ids.candidates)
    return scored, evidence


def _first_decisions(incoming: pl.DataFrame, existing: pl.DataFrame, config: MatchConfig, ids: IdentifierLevel,
                     scored: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[pl.DataFrame]]:
    """Every row's first decision, the identifiers' and the evidence's together, with one student
    for one person; returns the evidence's decisions, the candidates they were made from, all the
    decisions and every row's candidates in order (in parts, one after the other: the
    identifiers' of the rows they linked, the evidence's)."""
    # Rows whose identifiers disagree with their names or with each other are weighed like the
    # rest (an SSID equal outweighs a student ID mistyped); only an ID value that two registered
    # students share stays a question whatever the evidence.
    # Nor does a row whose ID another child of the batch carries (``batch_id_conflicts``).
    held = pl.concat([ids.shared_rows.join(ids.review, on="row_no"),
                      ids.conflict_rows.to_frame("row_no")]).unique()
    fuzzy_ranked = scored.join(held, on="row_no", how="anti")
    fuzzy = _fuzzy_decisions(fuzzy_ranked, config, None)
    # The evidence links a row its identifiers left in doubt (keeping the identifier's rule);
    # where it does not, the identifier's own question stands, in its words.
    upgraded = fuzzy.join(ids.review, on="row_no").filter(pl.col("decision") == "matched").drop("rule").join(
        ids.decisions.select("row_no", "rule"), on="row_no").select(fuzzy.columns)
    fuzzy = pl.concat([fuzzy.join(ids.review, on="row_no", how="anti"), upgraded])
    id_decisions = ids.decisions.join(upgraded.select("row_no"), on="row_no", how="anti")

    decisions = pl.concat([id_decisions, fuzzy]).with_columns(
        contested=pl.col("row_no").is_in(ids.conflict_rows.implode()))
    # Rows linked by an ID keep its hits as candidates: if another person's row claims the same
    # student, the row goes to review with them. Lazily: only the rows left in review at the end
    # are ever shown theirs (see ``_without_taken_students``).
    candidates = [ids.candidates.filter(pl.col("row_no").is_in(ids.matched["row_no"].implode())),
                  scored.select("row_no", "student_key", "score", "agreement")]

    # One student, one person: a student claimed by rows of two people sends those rows to review.
    # Rows of one person (one row per class) may share a student.
    return fuzzy, fuzzy_ranked, _resolve_claims(decisions, person_frame(incoming)), candidates


def person_frame(incoming: pl.DataFrame) -> pl.DataFrame:
    """Who each row is, for telling people apart: ``row_no, person_key``, the IDs, name and birth date."""
    return incoming.select("row_no", "person_key", *ID_COLUMNS, "name_tokens", "date_of_birth")


def _without_taken_students(incoming: pl.DataFrame, existing: pl.DataFrame, twin_groups: pl.DataFrame,
                            config: MatchConfig, evidence: Evidence, fuzzy: pl.DataFrame, fuzzy_ranked: pl.DataFrame,
                            decisions: pl.DataFrame, candidates: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A candidate already linked to another person's row cannot be this row's student: drop it,
    and decide again the fuzzy rows whose doubt came from such a candidate. Returns the decisions
    and the candidates of the rows left in review, in the order a reviewer sees them.

    "Another person" needs evidence (a differing identifier or birth date): a second row of the
    same child, say without the student ID, keeps its candidate and stays a question rather than a
    duplicate."""
    person_of = person_frame(incoming)
    linked = decisions.filter(pl.col("decision") == "matched").select("row_no", "student_key").join(
        person_of, on="row_no")
    in_review = decisions.filter(pl.col("decision") == "review").select("row_no")
    final = _redecided(existing, twin_groups, config, evidence, fuzzy, fuzzy_ranked, decisions, linked, in_review,
                       person_of)
    # Only the candidates of rows left in review are ever shown (most rows are linked), each row's
    # in the order they were given (``order``).
    review_rows = final.filter(pl.col("decision") == "review")["row_no"].implode()
    shown = (pl.concat([part.filter(pl.col("row_no").is_in(review_rows)) for part in candidates])
             .with_row_index("order").with_columns(pl.col("order").cast(pl.Int64)))
    shown = shown.join(_taken_by_others(shown.join(in_review, on="row_no"), linked, person_of),
                       on=["row_no", "student_key"], how="anti")
    # Without that evidence a student linked elsewhere stays a candidate, after the free ones: a
    # reviewer looking for a namesake sees the likelier students first.
    linked_elsewhere = (shown.join(person_of.select("row_no", "person_key"), on="row_no")
                        .join(linked.select("student_key", pl.col("person_key").alias("taker")), on="student_key")
                        .filter(pl.col("taker") != pl.col("person_key")).select("row_no", "student_key").unique()
                        .with_columns(linked_elsewhere=pl.lit(True)))
    shown = (shown.join(linked_elsewhere, on=["row_no", "student_key"], how="left")
             .with_columns(order=pl.col("order") + pl.col("linked_elsewhere").fill_null(False).cast(pl.Int64)
                           * (shown.height + 1))
             .drop("linked_elsewhere"))
    return final, shown


def _redecided(existing: pl.DataFrame, twin_groups: pl.DataFrame, config: MatchConfig, evidence: Evidence,
               fuzzy: pl.DataFrame, fuzzy_ranked: pl.DataFrame, decisions: pl.DataFrame, linked: pl.DataFrame,
               in_review: pl.DataFrame, person_of: pl.DataFrame) -> pl.DataFrame:
    """The decisions once the fuzzy rows in doubt are decided again without the students linked
    to other people's rows (``linked``), one student for one person."""
    redo_rows = (fuzzy.filter(pl.col("decision") == "review").select("row_no")
                 .join(in_review, on="row_no")
                 .join(_claim_rows(decisions), on="row_no", how="anti"))
    if redo_rows.height == 0:
        return decisions
    redo_ranked = fuzzy_ranked.join(redo_rows, on="row_no")
    redo_ranked = redo_ranked.join(_taken_by_others(redo_ranked, linked, person_of),
                                   on=["row_no", "student_key"], how="anti")
    taken = linked.select("student_key").unique()
    taken_twins = (existing.select("student_key", "twin_group").filter(pl.col("twin_group").is_not_null())
                   .join(taken, on="student_key")
                   .group_by("twin_group").agg(pl.col("student_key").n_unique().alias("taken"))
                   .join(twin_groups.select("twin_group", "twin_size"), on="twin_group"))
    redone = _fuzzy_decisions(redo_ranked, config, taken_twins, evidence)
    emptied = redo_rows.join(redone.select("row_no"), on="row_no", how="anti")
    decisions = pl.concat([
        decisions.join(redo_rows, on="row_no", how="anti"),
        redone.with_columns(contested=pl.lit(False)),
        emptied.with_columns(decision=pl.lit("new"), student_key=pl.lit(None, dtype=pl.Int64),
                             rule=pl.lit("no candidate"), score=pl.lit(None, dtype=pl.Float64),
                             explanation=pl.lit("every candidate is linked to another person's row"),
                             contested=pl.lit(False)),
    ])
    return _resolve_claims(decisions, person_of)


def _decided_rows(incoming: pl.DataFrame, config: MatchConfig, decisions: pl.DataFrame,
                  candidates: pl.DataFrame) -> pl.DataFrame:
    """One decision per incoming row, in its order (``DECISION_SCHEMA`` and the review candidates):
    a review row whose every candidate went to other people is a new student; a row nothing
    decided is new."""
    review_with_candidates = candidates.select("row_no").unique()
    no_candidates = (decisions.filter(pl.col("decision") == "review")
                     .join(review_with_candidates, on="row_no", how="anti")
                     .join(_claim_rows(decisions), on="row_no", how="anti"))
    decisions = decisions.with_columns(
        decision=pl.when(pl.col("row_no").is_in(no_candidates["row_no"].implode())).then(pl.lit("new"))
        .otherwise(pl.col("decision")),
        explanation=pl.when(pl.col("row_no").is_in(no_candidates["row_no"].implode()))
        .then(pl.format("every candidate is linked to another person's row ({})", pl.col("explanation")))
        .otherwise(pl.col("explanation")),
    )

    review_lists = (
        candidates.join(decisions.filter(pl.col("decision") == "review").select("row_no"), on="row_no")
        .sort("row_no", "order").group_by("row_no", maintain_order=True)
        .agg(pl.struct("student_key", "score", "agreement").head(config.max_candidates).alias("candidates"))
    )
    # One decision per row (the later one, should a row have two): counting the rows is far
    # cheaper than making a million of them distinct when, as nearly always, they are.
    if decisions["row_no"].n_unique() < decisions.height:
        decisions = decisions.unique("row_no", keep="last")
    result = (
        incoming.select("row_no")
        .join(decisions, on="row_no", how="left", maintain_order="left")
        .join(review_lists, on="row_no", how="left", maintain_order="left")
        .with_columns(
            decision=pl.col("decision").fill_null("new"),
            rule=pl.col("rule").fill_null("no candidate"),
            explanation=pl.col("explanation").fill_null(
                f"no registered student is {config.review_probability:.0%} probable or more"),
            candidates=pl.col("candidates").fill_null(pl.lit([], dtype=pl.List(
                pl.Struct({"student_key": pl.Int64, "score": pl.Float64, "agreement": pl.String})))),
        )
    )
    return result.select(*DECISION_SCHEMA, "candidates").cast(
        {**DECISION_SCHEMA, "candidates": pl.List(pl.Struct({"student_key": pl.Int64, "score": pl.Float64,
                                                             "agreement": pl.String}))})


def _claim_rows(decisions: pl.DataFrame) -> pl.DataFrame:
    return decisions.filter(pl.col("contested")).select("row_no")


def _resolve_claims(decisions: pl.DataFrame, person_of: pl.DataFrame) -> pl.DataFrame:
    """Send to review every matched row whose student is also matched to another person's row.

    Rows claiming one student are one person when no identifier differs between them and they
    carry one name and one birth date (a row with the student ID and a row without it, say);
    anything else is two people and a question.
    """
    # Only students linked from two rows or more can be claimed twice (few of them).
    matched = (decisions.filter(pl.col("decision") == "matched").filter(pl.col("student_key").is_duplicated())
               .join(person_of, on="row_no"))
    per_student = matched.group_by("student_key").agg(
        pl.len().alias("rows"),
        pl.col("person_key").n_unique().alias("keys"),
        *[pl.col(c).drop_nulls().n_unique().alias(f"{c}_values") for c in ID_COLUMNS],
        pl.col("name_tokens").n_unique().alias("names"),
        pl.col("date_of_birth").n_unique().alias("dates"),
        pl.col("date_of_birth").null_count().alias("undated"),
    )
    one_person = (pl.col("keys") == 1) | (
        pl.all_horizontal([pl.col(f"{c}_values") <= 1 for c in ID_COLUMNS])
        & (pl.col("names") == 1) & (pl.col("dates") == 1) & (pl.col("undated") == 0))
    contested = per_student.filter(~one_person)
    if contested.height == 0:
        return decisions
    rows = matched.join(contested.select("student_key", "rows"), on="student_key").select("row_no", "rows")
    return decisions.join(rows, on="row_no", how="left").with_columns(
        decision=pl.when(pl.col("rows").is_not_null()).then(pl.lit("review")).otherwise(pl.col("decision")),
        explanation=pl.when(pl.col("rows").is_not_null())
        .then(pl.format("student {} is claimed by {} rows", pl.col("student_key"), pl.col("rows")))
        .otherwise(pl.col("explanation")),
        student_key=pl.when(pl.col("rows").is_not_null()).then(pl.lit(None)).otherwise(pl.col("student_key")),
        contested=pl.col("contested") | pl.col("rows").is_not_null(),
    ).drop("rows")


def _taken_by_others(pairs: pl.DataFrame, linked: pl.DataFrame, person_of: pl.DataFrame) -> pl.DataFrame:
    """The (row_no, student_key) pairs whose student is linked to a row of evidently another
    person: an identifier both rows carry differs, or their birth dates differ beyond a typo."""
    takers = linked.select("student_key", *[pl.col(c).alias(f"{c}_taker") for c in ID_COLUMNS],
                           pl.col("date_of_birth").alias("dob_taker"))
    mine = person_of.select("row_no", *ID_COLUMNS, pl.col("date_of_birth").alias("dob_mine"))
    both = pairs.select("row_no", "student_key").join(takers, on="student_key").join(mine, on="row_no")
    other_person = pl.any_horizontal([
        (pl.col(c) != pl.col(f"{c}_taker")).fill_null(False) for c in ID_COLUMNS
    ]) | (dob_agreements(both["dob_mine"], both["dob_taker"]) == "different")
    return both.filter(other_person).select("row_no", "student_key").unique()


def batch_id_conflicts(incoming: pl.DataFrame, existing: pl.DataFrame, id_decisions: pl.DataFrame,
                       config: MatchConfig) -> tuple[pl.DataFrame, pl.Series]:
    """One identifier on two different people of this batch (folded names or date of birth differ),
    usually a typo that landed on another child's ID: decide who keeps it.

    When the ID belongs to one registered student, the rows whose names (equal or a nickname) and
    date of birth agree with that student keep their identifier decision; failing that, the rows
    of the one person the identifier level linked. Every other person's rows go to review, "ID
    probably mistyped", naming the ID, its student and the row that keeps it; the matcher scores
    them on name and birth date like any row an ID sent to review, so their own students are
    offered. When no registered student holds the ID, or no row clearly is its student, all its
    rows go to review: two different children with one new ID would otherwise become one student.

    ``incoming`` and ``existing`` come from ``prepare``; ``incoming`` may carry ``file_name`` and
    ``excel_row`` to name rows as a person sees them. Returns the identifier decisions with these
    rows decided, and the rows that must stay questions (never turned into new students).
    """
    label = (pl.format("{} row {}", pl.col("file_name"), pl.col("excel_row"))
             if {"file_name", "excel_row"} <= set(incoming.columns) else pl.format("row {}", pl.col("row_no")))
    found = []
    for column in config.id_levels:
        shared = _rows_sharing_an_id(incoming, column, label)
        if shared.is_empty():
            continue
        rows = _who_keeps_the_id(shared, _id_owners(existing, column, shared["value"].unique()), id_decisions)
        found.append(_mistyped_id_questions(rows, column))
    if not found:
        return id_decisions, pl.Series("row_no", [], dtype=pl.Int64)
    conflicts = pl.concat(found).unique("row_no", keep="first", maintain_order=True).with_columns(
        decision=pl.lit("review"), student_key=pl.lit(None, pl.Int64), score=pl.lit(None, pl.Float64),
    ).select(*DECISION_SCHEMA)
    decisions = pl.concat([id_decisions.filter(~pl.col("row_no").is_in(conflicts["row_no"].implode())),
                           conflicts.cast(DECISION_SCHEMA)])
    return decisions.select(*DECISION_SCHEMA).cast(DECISION_SCHEMA), conflicts["row_no"]


def _rows_sharing_an_id(incoming: pl.DataFrame, column: str, label: pl.Expr) -> pl.DataFrame:
    """The rows whose ``column`` value is on rows of two people or more (folded names or birth date
    differ): ``row_no, value, written`` (as in the sheet), ``person``, the names and birth date,
    ``where`` (the row as a person sees it) and ``who`` (its name and row)."""
    # Only values on two rows or more can be on two people (few of them).
    as_written = f"{column}_as_written" if f"{column}_as_written" in incoming.columns else column
    # Lazily, so that only the few rows sharing a value are copied, not the wide frame; counted
    # by the value's 64-bit hash, twice as fast as by the text (a collision only brings a row
    # whose value no other row has, which the grouping on the value below drops).
    rows = incoming.lazy().with_columns(_value_hash=pl.col(column).hash()).filter(
        pl.col(column).is_not_null() & (pl.len().over("_value_hash") > 1)).select(
        "row_no", value=pl.col(column), written=pl.col(as_written),
        person=pl.concat_str([pl.col("first_key"), pl.col("last_key"),
                              pl.col("date_of_birth").cast(pl.String).fill_null("")], separator="|")).collect(engine=QUERY_ENGINE)
    shared = rows.join(rows.group_by("value").agg(pl.col("person").n_unique().alias("people"))
                       .filter(pl.col("people") > 1), on="value", how="semi")
    # Only the (few) rows sharing an ID are labelled for the explanations.
    return shared.join(incoming, on="row_no").select(
        "row_no", "value", "written", "person", "first_key", "last_key", "nick_keys", "date_of_birth",
        where=label, who=pl.format("{} {} ({})", pl.col("first_name"), pl.col("last_name"), label))


def _id_owners(existing: pl.DataFrame, column: str, values: pl.Series) -> pl.DataFrame:
    """For each of ``values``, how many registered students hold it in ``column`` (``holders``),
    and the first of them: ``student_key``, names, nickname keys, birth date and ``owner`` in words."""
    return existing.filter(pl.col(column).is_in(values.implode())).group_by(pl.col(column).alias("value")).agg(
        pl.len().alias("holders"), pl.col("student_key").first(), pl.col("first_key").first().alias("owner_first"),
        pl.col("last_key").first().alias("owner_last"), pl.col("nick_keys").first().alias("owner_nicks"),
        pl.col("date_of_birth").first().alias("owner_dob"),
        pl.format("{} {} (student {})", pl.col("first_name"), pl.col("last_name"), pl.col("student_key"))
        .first().alias("owner"))


def _who_keeps_the_id(shared: pl.DataFrame, holders: pl.DataFrame, id_decisions: pl.DataFrame) -> pl.DataFrame:
    """The rows sharing an ID still in question, with ``keeps``: the row is its registered
    student's (see ``batch_id_conflicts``)."""
    # An ID two registered students hold is already a question of its own (see ``_id_level``).
    rows = shared.join(holders, on="value", how="left").filter(pl.col("holders").fill_null(1) == 1).join(
        id_decisions.select("row_no", "decision", matched_key="student_key"), on="row_no", how="left")
    # A row another identifier linked to another student (its name and birth date agreeing) is
    # decided; this ID is a question only among the rest.
    rows = rows.filter(~((pl.col("decision") == "matched") & (pl.col("matched_key") != pl.col("student_key")))
                       .fill_null(False))
    rows = rows.join(rows.group_by("value").agg(pl.col("person").n_unique().alias("people_left"))
                     .filter(pl.col("people_left") > 1), on="value", how="semi")
    rows = rows.with_columns(
        agrees=((pl.col("first_key") == pl.col("owner_first"))
                | (pl.col("nick_keys").list.set_intersection(pl.col("owner_nicks")).list.len() > 0))
        & (pl.col("last_key") == pl.col("owner_last")) & (pl.col("date_of_birth") == pl.col("owner_dob")),
        linked=(pl.col("decision") == "matched") & (pl.col("matched_key") == pl.col("student_key")),
    ).with_columns(pl.col("agrees").fill_null(False), pl.col("linked").fill_null(False))
    per_value = rows.group_by("value").agg(
        pl.col("person").filter("agrees").n_unique().alias("agreeing"),
        pl.col("person").filter("linked").n_unique().alias("linked_people"))
    return rows.join(per_value, on="value").with_columns(
        keeps=pl.col("student_key").is_not_null() & pl.when(pl.col("agreeing") > 0).then(pl.col("agrees"))
        .otherwise(pl.col("linked") & (pl.col("linked_people") == 1)))


def _mistyped_id_questions(rows: pl.DataFrame, column: str) -> pl.DataFrame:
    """``row_no, rule, explanation`` of the rows that do not keep the ID (``_who_keeps_the_id``):
    "ID probably mistyped", naming the ID, its student and the row that keeps it, or another
    child's row carrying it."""
    keepers = rows.filter("keeps").sort("row_no").unique("value", keep="first").select("value", keeper="where")
    firsts = rows.sort("row_no").unique(["value", "person"], keep="first").select(
        "value", other_person="person", other="who")
    others = (rows.filter(~pl.col("keeps")).select("row_no", "value", "person")
              .join(firsts, on="value").filter(pl.col("other_person") != pl.col("person"))
              .sort("row_no", "other").group_by("row_no").agg(pl.col("other").first()))
    quoted = pl.format("{} '{}'", pl.lit(column), pl.col("written"))
    return (rows.filter(~pl.col("keeps")).join(keepers, on="value", how="left").join(others, on="row_no")
            .select("row_no", rule=pl.lit(column), explanation=pl.when(pl.col("keeper").is_not_null()).then(
                pl.format("ID probably mistyped: {} belongs to {}, who is on {} of this batch with the "
                          "same name and date of birth; this row's name and date of birth are another "
                          "child's (see the candidates)", quoted, pl.col("owner"), pl.col("keeper")))
                .when(pl.col("owner").is_not_null()).then(pl.format(
                    "ID probably mistyped: {} belongs to {} and is on different children in this batch "
                    "(this row and {}), none of them clearly that student: decide who each row is",
                    quoted, pl.col("owner"), pl.col("other")))
                .otherwise(pl.format(
                    "ID probably mistyped: two different children carry the same new {} in this batch "
                    "(this row and {}); nobody is created with it until one row is corrected or excluded",
                    quoted, pl.col("other")))))
