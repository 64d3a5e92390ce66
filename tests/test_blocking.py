"""Blocking covers what scoring accepts: any pair the evidence would show a reviewer (or link)
must meet in some blocking pass, or the matcher never sees it and the child is taken as new.

Hypothesis draws a registered student and a sheet row made from it by one or two of the errors
sheets carry (every typo pattern, swapped names with a typo, a missing name or birth date, a
replaced first name, digits swapped in the birth date), scores the pair as the matcher does, and,
when the score reaches the review threshold, checks that the default blocking passes bring them
together. A failing draw is shrunk to the smallest such pair.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.evidence import train, with_row_probability, with_weights, pair_levels
from tasks.matching import MatchConfig, candidate_pairs, prepare

FIRST = ["Olivia", "Liam", "Emma", "Noah", "Sofía", "José", "Katherine", "Robert", "Mia", "Aiden", "Zoë",
         "Mary Ann", "Jean-Luc", "Nguyen", "Chidi", "Anh", "Isabella", "William", "Li"]
LAST = ["Smith", "Garcia-Lopez", "Nguyễn", "O'Brien", "Okonkwo-Hale", "Peña", "Johnson", "Kim", "Van der Berg",
        "Rodriguez", "Lee", "Müller", "Abernathy", "Wu"]
SCHEMA = {"first_name": pl.String, "last_name": pl.String, "date_of_birth": pl.Date,
          "student_id": pl.String, "ssid": pl.String, "other_id": pl.String, "school_id": pl.Int64}
# The districts the pair is scored in: their size sets the prior odds of any one pair, and a
# small district gets the passes on one name alone (MatchConfig.small_district).
DISTRICTS = (2_000, 200_000)


def typo(draw, text: str) -> str:
    """One keystroke: a letter replaced, dropped, doubled, or two neighbours swapped."""
    if len(text) < 2:
        return text + "a"
    i = draw(st.integers(0, len(text) - 2))
    kind = draw(st.sampled_from(["replace", "drop", "double", "swap"]))
    if kind == "replace":
        return text[:i] + draw(st.sampled_from("aeiourstnlmk")) + text[i + 1:]
    if kind == "drop":
        return text[:i] + text[i + 1:]
    if kind == "double":
        return text[:i] + text[i] + text[i:]
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def swap_digits(day: dt.date, i: int, j: int) -> dt.date | None:
    digits = list(f"{day.year:04d}{day.month:02d}{day.day:02d}")
    digits[i], digits[j] = digits[j], digits[i]
    try:
        return dt.date(int("".join(digits[:4])), int("".join(digits[4:6])), int("".join(digits[6:])))
    except ValueError:
        return None


def one_digit(day: dt.date, position: int, digit: int) -> dt.date | None:
    digits = list(f"{day.year:04d}{day.month:02d}{day.day:02d}")
    digits[position] = str(digit)
    try:
        return dt.date(int("".join(digits[:4])), int("".join(digits[4:6])), int("".join(digits[6:])))
    except ValueError:
        return None


ERRORS = ["first_typo", "last_typo", "swap", "swap_typo", "first_missing", "last_missing", "dob_missing",
          "day_month", "dob_digit", "dob_digits_swapped", "first_replaced", "accents"]


@st.composite
def sheet_row_of(draw) -> tuple[dict, dict, list[str]]:
    """A registered student and the row a sheet has for them, with the errors applied."""
    student = {"first_name": draw(st.sampled_from(FIRST)), "last_name": draw(st.sampled_from(LAST)),
               "date_of_birth": draw(st.dates(dt.date(2005, 1, 1), dt.date(2020, 12, 31))),
               "student_id": None, "ssid": None, "other_id": None, "school_id": 1}
    row = dict(student)
    errors = draw(st.lists(st.sampled_from(ERRORS), min_size=1, max_size=2, unique=True))
    for error in errors:
        if error == "first_typo" and row["first_name"]:
            row["first_name"] = typo(draw, row["first_name"])
        elif error == "last_typo" and row["last_name"]:
            row["last_name"] = typo(draw, row["last_name"])
        elif error in ("swap", "swap_typo"):
            row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
            if error == "swap_typo" and row["first_name"]:
                row["first_name"] = typo(draw, row["first_name"])
        elif error == "first_missing":
            row["first_name"] = None
        elif error == "last_missing":
            row["last_name"] = None
        elif error == "dob_missing":
            row["date_of_birth"] = None
        elif error == "day_month" and row["date_of_birth"] and row["date_of_birth"].day <= 12:
            d = row["date_of_birth"]
            row["date_of_birth"] = dt.date(d.year, d.day, d.month)
        elif error == "dob_digit" and row["date_of_birth"]:
            row["date_of_birth"] = one_digit(row["date_of_birth"], draw(st.integers(0, 7)),
                                             draw(st.integers(0, 9))) or row["date_of_birth"]
        elif error == "dob_digits_swapped" and row["date_of_birth"]:
            i, j = draw(st.sampled_from([(i, j) for i in range(8) for j in range(i + 1, 8)]))
            row["date_of_birth"] = swap_digits(row["date_of_birth"], i, j) or row["date_of_birth"]
        elif error == "first_replaced":
            row["first_name"] = draw(st.sampled_from([f for f in FIRST if f != student["first_name"]]))
        elif error == "accents":
            row = {**row, "first_name": (row["first_name"] or "").replace("í", "i").replace("é", "e") or None,
                   "last_name": (row["last_name"] or "").replace("ñ", "n").replace("ễ", "e") or None}
    return student, row, errors


def frames(cases: list[tuple[dict, dict, list[str]]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Registered students and sheet rows, case ``i`` as student ``i`` and row ``i``."""
    existing = pl.DataFrame([{"student_key": i, **student} for i, (student, _, _) in enumerate(cases)],
                            schema={"student_key": pl.Int64, **SCHEMA})
    incoming = pl.DataFrame([{"row_no": i, **row} for i, (_, row, _) in enumerate(cases)],
                            schema={"row_no": pl.Int64, **SCHEMA})
    return prepare(incoming), prepare(existing).with_columns(twin_group=pl.lit(None, dtype=pl.UInt32))


def review_probabilities(incoming: pl.DataFrame, existing: pl.DataFrame, students: int) -> dict[int, float]:
    """Each case's probability as the matcher weighs it (the row with its own student alone), in a
    district of ``students`` with the prior weights; 0 for a definite no (never a candidate)."""
    evidence = train(incoming, existing, learn=False)
    evidence.students = students
    pairs = incoming.select("row_no", student_key="row_no")
    weighed = with_row_probability(with_weights(pair_levels(pairs, incoming, existing), evidence), evidence)
    return {row_no: 0.0 if level == "different" else probability
            for row_no, level, probability in weighed.select("row_no", "date_of_birth", "probability").iter_rows()}


# Each example is a batch of drawn cases blocked at once, as the matcher blocks a sheet.
@pytest.mark.slow
# As many examples as the profile asks (tests/conftest.py: 25 in `make test`, more to explore).
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sheet_row_of(), min_size=1, max_size=40), st.sampled_from(DISTRICTS))
def test_every_pair_the_evidence_would_show_meets_in_a_blocking_pass(cases, students):
    incoming, existing = frames(cases)
    config = MatchConfig()
    shown = {i for i, p in review_probabilities(incoming, existing, students).items() if p >= config.review_probability}
    met = candidate_pairs(incoming, existing, config.passes_for(students), drop_definite_no=True)
    met = {row for row, key in met.iter_rows() if row == key}
    missed = sorted(shown - met)
    assert not missed, "\n".join(
        f"{cases[i][2]}: in a district of {students}, the row {cases[i][1]} and the student {cases[i][0]} "
        "would be shown to a reviewer but meet in no blocking pass" for i in missed)


def test_a_replaced_first_name_and_a_swapped_birth_date_meet_in_a_large_district():
    # Found by the property above: Sofía for Olivia, and the day and month swapped, weigh enough to
    # ask about even among 200,000 students, and met in no pass before the last name with the birth
    # date read day for month was a pass of its own.
    blank = dict.fromkeys(SCHEMA)
    student = {**blank, "first_name": "Olivia", "last_name": "Smith", "date_of_birth": dt.date(2018, 8, 7)}
    row = {**blank, "first_name": "Sofía", "last_name": "Smith", "date_of_birth": dt.date(2018, 7, 8)}
    incoming, existing = frames([(student, row, ["first_replaced", "dob_digits_swapped"])])
    config = MatchConfig()
    assert review_probabilities(incoming, existing, 200_000)[0] >= config.review_probability
    met = candidate_pairs(incoming, existing, config.passes_for(200_000), drop_definite_no=True)
    assert met.rows() == [(0, 0)]


@pytest.mark.parametrize("key_offset", [0, 2**40], ids=["packed keys", "keys too large to pack"])
def test_the_blocking_gives_the_same_pairs_in_the_same_order_on_either_engine(monkeypatch, key_offset):
    # Large batches make their pairs distinct on polars' streaming engine, small ones on the
    # in-memory engine (``STREAMED_BLOCKING_ROWS``): whichever runs, the same pairs, in one order,
    # whether the pair's two keys are packed into one integer or not.
    import tasks.matching as matching
    from benchmarks.districts import generate

    incoming, existing, _ = generate(2_000, seed=5, noise="noisy")
    incoming = prepare(incoming.with_columns(pl.col("row_no") + key_offset))
    existing = prepare(existing.with_columns(pl.col("student_key") + key_offset))
    passes = MatchConfig().passes_for(existing.height)
    in_memory = candidate_pairs(incoming, existing, passes, drop_definite_no=True)
    monkeypatch.setattr(matching, "STREAMED_BLOCKING_ROWS", 0)
    streamed = candidate_pairs(incoming, existing, passes, drop_definite_no=True)
    assert in_memory.height > incoming.height
    assert streamed.equals(in_memory)
