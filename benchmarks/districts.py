"""Generated districts with ground truth, for the matching benchmarks.

Names are drawn from the US Census name-frequency tables (the `names` package), so common names
collide as often as in a real district (about one student in a hundred is a Smith), mixed with
modern, accented and double-barrelled names. Existing students include twins and siblings sharing
a last name and date of birth, and students removed last year. The migration keeps most of them
with the noise real sheets carry: missing and mistyped IDs, nicknames, typos, swapped names,
stripped accents, typo-like or missing birth dates, a changed school; leavers drop out, newcomers
arrive (some with the name of an existing student), removed students return.

``noise="noisy"`` adds, on top of that (same rows, same draws first), the harder errors a
record-linkage benchmark carries: missing first or last names and more missing birth dates, IDs one or
two keystrokes off (a digit substituted, two neighbours transposed, a digit dropped or added), a
different first name (a middle or preferred name), swapped names with a typo, birth dates with digits
swapped across the month/day boundary or between fields (1933-02-12 typed 1933-01-22), and a few rows
with two of these at once. ``generate_district`` also says which noise each row got.
"""

from __future__ import annotations

import datetime as dt
import random
from functools import lru_cache
from typing import NamedTuple
from importlib import resources

import polars as pl

MODERN_FIRST = (
    "Olivia Emma Ava Sophia Isabella Mia Amelia Harper Evelyn Abigail Liam Noah Oliver Elijah James William "
    "Benjamin Lucas Henry Alexander Mason Michael Ethan Daniel Jacob Logan Jackson Levi Sebastian Mateo Jack "
    "Owen Theodore Aiden Samuel Joseph John David Wyatt Matthew Luke Asher Carter Julian Grayson Leo Jayden "
    "Gabriel Isaac Lincoln Anthony Emily Elizabeth Sofia Avery Ella Scarlett Grace Chloe Victoria Riley Aria "
    "Lily Aubrey Zoey Penelope Lillian Addison Layla Natalie Camila Hannah Brooklyn Zoe Nora Leah Savannah "
    "José Zoë Renée Chloé Raphaël Inés Noé Maëlle Andrés Sofía Robert Katherine Margaret").split()
SPECIAL_LAST = "Peña Muñoz Núñez García-López Okonkwo-Hale O'Brien Nguyễn Søren Dvořák".split()
NICK = {"Robert": "Bob", "William": "Bill", "Katherine": "Kate", "Margaret": "Maggie", "Elizabeth": "Liz",
        "Alexander": "Alex", "Michael": "Mike", "Daniel": "Dan", "Samuel": "Sam", "Benjamin": "Ben",
        "Matthew": "Matt", "Joseph": "Joe", "Anthony": "Tony", "Jacob": "Jake", "Abigail": "Abby",
        "James": "Jim", "Richard": "Rick", "Thomas": "Tom", "Christopher": "Chris", "Jennifer": "Jen"}
STRIP = str.maketrans("éëèíóñúÉễøř", "eeeionuEeor")
ID_COLUMNS = ("student_id", "ssid", "other_id")
NOISE_LEVELS = ("default", "noisy")
PERSON_SCHEMA = {"first_name": pl.String, "last_name": pl.String, "date_of_birth": pl.Date, "student_id": pl.String,
                 "ssid": pl.String, "other_id": pl.String, "school_id": pl.Int64}


@lru_cache(maxsize=None)
def census(kind: str) -> tuple[list[str], list[float]]:
    """Names and frequencies of one Census table: 'all.last', 'female.first' or 'male.first'."""
    names, weights = [], []
    text = resources.files("names").joinpath(f"dist.{kind}").read_text()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and float(parts[1]) > 0:
            names.append(parts[0].title())
            weights.append(float(parts[1]))
    return names, weights


SMALL_LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
              "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
              "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
              "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts").split() + SPECIAL_LAST


class NameDrawer:
    """Draws first and last names: with Census frequencies ('census'), or uniformly from about a
    hundred first and sixty last names ('small': a stress test where every name is shared by many)."""

    def __init__(self, rng: random.Random, pool: str = "census") -> None:
        if pool not in ("census", "small"):
            raise ValueError(f"unknown name pool {pool!r}: use 'census' or 'small'")
        self.rng = rng
        self.pool = pool
        self.firsts: list[str] = []
        self.lasts: list[str] = []

    def first(self) -> str:
        if self.pool == "small":
            return self.rng.choice(MODERN_FIRST)
        if not self.firsts:
            female, female_w = census("female.first")
            male, male_w = census("male.first")
            drawn = self.rng.choices(female + male, weights=female_w + male_w, k=4096)
            for i in range(len(drawn)):
                if self.rng.random() < 0.3:
                    drawn[i] = self.rng.choice(MODERN_FIRST)
            self.firsts = drawn
        return self.firsts.pop()

    def last(self) -> str:
        if self.pool == "small":
            return self.rng.choice(SMALL_LAST)
        if not self.lasts:
            last, weights = census("all.last")
            drawn = self.rng.choices(last, weights=weights, k=4096)
            for i in range(len(drawn)):
                if self.rng.random() < 0.03:
                    drawn[i] = self.rng.choice(SPECIAL_LAST)
            self.lasts = drawn
        return self.lasts.pop()


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]   # transposition
    if kind < 0.7:
        return word[:i] + word[i + 1:]                           # dropped letter
    return word[:i] + rng.choice("aeiourstn") + word[i + 1:]     # substitution


def _dob_typo(rng: random.Random, day: dt.date) -> dt.date:
    if day.day <= 12 and day.day != day.month and rng.random() < 0.5:
        return dt.date(day.year, day.day, day.month)
    return day.replace(day=day.day + 1 if day.day % 10 != 9 and day.day < 28 else day.day - 1)


def _birth_date(rng: random.Random) -> dt.date:
    return dt.date(2008 + rng.randrange(12), rng.randint(1, 12), rng.randint(1, 28))


def _edit_id(rng: random.Random, value: str) -> str:
    """One keystroke on an ID's digits: a digit substituted, two neighbours transposed, one dropped or added."""
    prefix = value[:len(value) - len(value.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))]
    digits = list(value[len(prefix):])
    i = rng.randrange(len(digits))
    kind = rng.random()
    if kind < 0.35:
        digits[i] = rng.choice([d for d in "0123456789" if d != digits[i]])
    elif kind < 0.65 and len(digits) > 1:
        i = min(i, len(digits) - 2)
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    elif kind < 0.85 and len(digits) > 1:
        del digits[i]
    else:
        digits.insert(i, rng.choice("0123456789"))
    return prefix + "".join(digits)


# Positions in YYYYMMDD: two digits next to each other across a field boundary (year|month, month|day),
# and two digits of different fields that are not neighbours.
BOUNDARY_SWAPS = ((5, 6), (3, 4))
ACROSS_FIELD_SWAPS = ((4, 6), (4, 7), (5, 7), (3, 5), (3, 6), (3, 7))


def _swap_dob_digits(rng: random.Random, day: dt.date, positions: tuple[tuple[int, int], ...]) -> dt.date | None:
    """The date with two of its digits swapped (one of ``positions``), or None when no swap gives
    another valid date."""
    text = day.strftime("%Y%m%d")
    options = []
    for i, j in positions:
        chars = list(text)
        chars[i], chars[j] = chars[j], chars[i]
        try:
            swapped = dt.date(int("".join(chars[:4])), int("".join(chars[4:6])), int("".join(chars[6:])))
        except ValueError:
            continue
        if swapped != day:
            options.append(swapped)
    return rng.choice(options) if options else None


def _noise_first_missing(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    row["first_name"] = None
    return True


def _noise_last_missing(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    row["last_name"] = None
    return True


def _noise_dob_missing(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    applied = row["date_of_birth"] is not None
    row["date_of_birth"] = None
    return applied


def _noise_id_edit(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    present = [c for c in ("student_id", "ssid") if row[c]]
    if not present:
        return False
    column = "student_id" if "student_id" in present and (len(present) == 1 or rng.random() < 0.7) else present[-1]
    before = row[column]
    for _ in range(1 if rng.random() < 0.7 else 2):
        row[column] = _edit_id(rng, row[column])
    return row[column] != before


def _noise_first_replaced(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    first = draw.first()
    while first == row["first_name"]:
        first = draw.first()
    row["first_name"] = first
    return True


def _noise_swap_typo(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    if not row["first_name"] or not row["last_name"]:
        return False
    row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
    column = rng.choice(["first_name", "last_name"])
    if len(row[column]) < 4:
        column = "last_name" if column == "first_name" else "first_name"
    row[column] = _typo(rng, row[column])
    return True


def _dob_digit_swap(positions: tuple[tuple[int, int], ...]):
    """A noise that swaps two of the birth date's digits at one of ``positions``."""

    def apply(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
        swapped = _swap_dob_digits(rng, row["date_of_birth"], positions) if row["date_of_birth"] else None
        if swapped is None:
            return False
        row["date_of_birth"] = swapped
        return True

    return apply


_noise_dob_boundary_digits = _dob_digit_swap(BOUNDARY_SWAPS)
_noise_dob_across_fields = _dob_digit_swap(ACROSS_FIELD_SWAPS)


def _noise_last_typo(rng: random.Random, row: dict, draw: NameDrawer) -> bool:
    if not row["last_name"]:
        return False
    before = row["last_name"]
    row["last_name"] = _typo(rng, before)
    return row["last_name"] != before


# The noisy generator's extra errors and how often each is tried on a returning student's row
# (a kind that cannot apply, such as a digit swap giving no valid date, leaves the row as it is).
EXTRA_NOISE = {
    "first_missing": (0.015, _noise_first_missing),
    "last_missing": (0.01, _noise_last_missing),
    "dob_missing": (0.015, _noise_dob_missing),
    "id_edit": (0.04, _noise_id_edit),
    "first_replaced": (0.02, _noise_first_replaced),
    "swap_typo": (0.015, _noise_swap_typo),
    "dob_boundary_digits": (0.03, _noise_dob_boundary_digits),
    "dob_across_fields": (0.015, _noise_dob_across_fields),
}
# Rows that get two errors at once, drawn from these.
COMBINED_NOISE_RATE = 0.02
COMBINABLE = {**{k: f for k, (_, f) in EXTRA_NOISE.items()}, "last_typo": _noise_last_typo}


def _add_noise(rng: random.Random, row: dict, draw: NameDrawer, applied: list[str]) -> None:
    """The noisy generator's errors on one row, each applied kind appended to ``applied``."""
    for kind, (rate, apply) in EXTRA_NOISE.items():
        if rng.random() < rate and apply(rng, row, draw):
            applied.append(kind)
    if rng.random() < COMBINED_NOISE_RATE:
        for kind in rng.sample(sorted(COMBINABLE), 2):
            if COMBINABLE[kind](rng, row, draw):
                applied.append(kind)


class District(NamedTuple):
    """A generated district: incoming rows, existing students, the truth (row_no -> student_key or
    None for a newcomer) and the noise each incoming row got (row_no -> kinds, empty when clean)."""

    incoming: pl.DataFrame
    existing: pl.DataFrame
    truth: dict[int, int | None]
    noise: dict[int, list[str]]


def without_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with every ID column emptied: a district whose sheets carry no ID at all (the
    matcher takes the columns all null; a peer is given none)."""
    return frame.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in ID_COLUMNS if c in frame.columns])


def generate(size: int, seed: int, names: str = "census",
             noise: str = "default") -> tuple[pl.DataFrame, pl.DataFrame, dict[int, int | None]]:
    """Existing students (``size`` of them), incoming migration rows, and the truth
    (row_no -> the student_key the row is, or None for a newcomer). ``names``: the NameDrawer pool;
    ``noise``: 'default', or 'noisy' for the harder errors on top (see the module docstring)."""
    district = generate_district(size, seed, names, noise)
    return district.incoming, district.existing, district.truth


def generate_district(size: int, seed: int, names: str = "census", noise: str = "default") -> District:
    """``generate``, with the noise each incoming row got."""
    if noise not in NOISE_LEVELS:
        raise ValueError(f"unknown noise {noise!r}: use one of {', '.join(NOISE_LEVELS)}")
    rng = random.Random(seed)
    draw = NameDrawer(rng, names)
    schools = max(1, size // 800)
    existing = []
    key = 0
    while len(existing) < size:
        key += 1
        person = {"student_key": key, "first_name": draw.first(), "last_name": draw.last(),
                  "date_of_birth": _birth_date(rng), "student_id": f"{1_000_000 + key:08d}",
                  "ssid": f"S{rng.randrange(10**9):09d}", "other_id": None, "school_id": rng.randrange(schools),
                  "status": "deleted" if rng.random() < 0.02 else "active"}
        existing.append(person)
        if rng.random() < 0.02:  # a twin or sibling: same last name and birth date, another first name
            key += 1
            first = draw.first()
            while first == person["first_name"]:
                first = draw.first()
            existing.append({**person, "student_key": key, "first_name": first,
                             "student_id": f"{1_000_000 + key:08d}", "ssid": f"S{rng.randrange(10**9):09d}"})
    rows, truth, applied_noise = [], {}, {}
    for person in existing:
        if person["status"] == "active" and rng.random() < 0.05:
            continue  # a leaver
        if person["status"] == "deleted" and rng.random() < 0.5:
            continue  # removed last year and still gone
        row = {k: person[k] for k in PERSON_SCHEMA}
        # Which noise the row got is recorded without drawing: the default district stays as it was.
        applied = ["returning"] if person["status"] == "deleted" else []
        r = rng.random()
        if r < 0.10:
            row["student_id"] = row["ssid"] = None
            applied.append("id_missing")
        elif r < 0.12:
            row["student_id"] = _typo(rng, row["student_id"]) if rng.random() < 0.5 else row["student_id"][::-1]
            applied.append("id_typo")
        r = rng.random()
        before = (row["first_name"], row["last_name"])
        if r < 0.05 and row["first_name"] in NICK:
            row["first_name"] = NICK[row["first_name"]]
            kind = "nickname"
        elif r < 0.10:
            row["last_name"] = _typo(rng, row["last_name"])
            kind = "last_typo"
        elif r < 0.12:
            row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
            kind = "swapped"
        elif r < 0.16:
            row["first_name"], row["last_name"] = row["first_name"].translate(STRIP), row["last_name"].translate(STRIP)
            kind = "accents_stripped"
        elif r < 0.18:
            row["first_name"] = _typo(rng, row["first_name"])
            kind = "first_typo"
        if (row["first_name"], row["last_name"]) != before:
            applied.append(kind)
        r = rng.random()
        if r < 0.03:
            row["date_of_birth"] = _dob_typo(rng, row["date_of_birth"])
            applied.append("dob_typo")
        elif r < 0.05:
            row["date_of_birth"] = None
            applied.append("dob_missing")
        if rng.random() < 0.1:
            row["school_id"] = rng.randrange(schools)
        if noise == "noisy":
            _add_noise(rng, row, draw, applied)
        truth[len(rows) + 1] = person["student_key"]
        applied_noise[len(rows) + 1] = applied
        rows.append(row)
    for _ in range(int(size * 0.05)):  # newcomers, some with a name an existing student has
        named = rng.choice(existing) if rng.random() < 0.3 else None
        truth[len(rows) + 1] = None
        applied_noise[len(rows) + 1] = ["newcomer_namesake" if named else "newcomer"]
        rows.append({"first_name": named["first_name"] if named else draw.first(),
                     "last_name": named["last_name"] if named else draw.last(),
                     "date_of_birth": _birth_date(rng), "student_id": f"{90_000_000 + len(rows):08d}",
                     "ssid": None, "other_id": None, "school_id": rng.randrange(schools)})
    incoming = pl.DataFrame([{"row_no": i + 1, **r} for i, r in enumerate(rows)],
                            schema={"row_no": pl.Int64, **PERSON_SCHEMA})
    students = pl.DataFrame(existing, schema={"student_key": pl.Int64, **PERSON_SCHEMA, "status": pl.String})
    return District(incoming, students.drop("status"), truth, applied_noise)
