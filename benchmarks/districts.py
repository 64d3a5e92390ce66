"""Generated districts with ground truth, for the matching benchmarks.

Names are drawn from the US Census name-frequency tables (the `names` package), so common names
collide as often as in a real district (about one student in a hundred is a Smith), mixed with
modern, accented and double-barrelled names. Existing students include twins and siblings sharing
a last name and date of birth, and students removed last year. The migration keeps most of them
with the noise real sheets carry: missing and mistyped IDs, nicknames, typos, swapped names,
stripped accents, typo-like or missing birth dates, a changed school; leavers drop out, newcomers
arrive (some with the name of an existing student), removed students return.
"""

from __future__ import annotations

import datetime as dt
import random
from functools import lru_cache
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


def generate(size: int, seed: int, names: str = "census") -> tuple[pl.DataFrame, pl.DataFrame, dict[int, int | None]]:
    """Existing students (``size`` of them), incoming migration rows, and the truth
    (row_no -> the student_key the row is, or None for a newcomer). ``names``: the NameDrawer pool."""
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
    rows, truth = [], {}
    for person in existing:
        if person["status"] == "active" and rng.random() < 0.05:
            continue  # a leaver
        if person["status"] == "deleted" and rng.random() < 0.5:
            continue  # removed last year and still gone
        row = {k: person[k] for k in PERSON_SCHEMA}
        r = rng.random()
        if r < 0.10:
            row["student_id"] = row["ssid"] = None
        elif r < 0.12:
            row["student_id"] = _typo(rng, row["student_id"]) if rng.random() < 0.5 else row["student_id"][::-1]
        r = rng.random()
        if r < 0.05 and row["first_name"] in NICK:
            row["first_name"] = NICK[row["first_name"]]
        elif r < 0.10:
            row["last_name"] = _typo(rng, row["last_name"])
        elif r < 0.12:
            row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
        elif r < 0.16:
            row["first_name"], row["last_name"] = row["first_name"].translate(STRIP), row["last_name"].translate(STRIP)
        elif r < 0.18:
            row["first_name"] = _typo(rng, row["first_name"])
        r = rng.random()
        if r < 0.03:
            row["date_of_birth"] = _dob_typo(rng, row["date_of_birth"])
        elif r < 0.05:
            row["date_of_birth"] = None
        if rng.random() < 0.1:
            row["school_id"] = rng.randrange(schools)
        truth[len(rows) + 1] = person["student_key"]
        rows.append(row)
    for _ in range(int(size * 0.05)):  # newcomers, some with a name an existing student has
        named = rng.choice(existing) if rng.random() < 0.3 else None
        truth[len(rows) + 1] = None
        rows.append({"first_name": named["first_name"] if named else draw.first(),
                     "last_name": named["last_name"] if named else draw.last(),
                     "date_of_birth": _birth_date(rng), "student_id": f"{90_000_000 + len(rows):08d}",
                     "ssid": None, "other_id": None, "school_id": rng.randrange(schools)})
    incoming = pl.DataFrame([{"row_no": i + 1, **r} for i, r in enumerate(rows)],
                            schema={"row_no": pl.Int64, **PERSON_SCHEMA})
    students = pl.DataFrame(existing, schema={"student_key": pl.Int64, **PERSON_SCHEMA, "status": pl.String})
    return incoming, students.drop("status"), truth
