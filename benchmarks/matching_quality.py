"""Matching quality on generated districts with ground truth.

    python -m benchmarks.matching_quality [--sizes 5000 50000] [--seeds 1 2 3]

Each district has existing students (with twins, siblings and very common names) and a migration
that keeps most of them with the noise real sheets carry: missing and mistyped IDs, nicknames,
typos, swapped names, stripped accents, typo-like birth dates; leavers drop out, newcomers arrive
(some sharing a name with an existing student), removed students return. Reports, per size and
seed: precision of automatic links, recall (true matches linked automatically or in review with
the right candidate), review rate, blocking recall, students that would be wrongly removed, and
the matching time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time

import polars as pl

from tasks.matching import MatchConfig, _prepare, candidate_pairs, match_rows

FIRST = ("Olivia Emma Ava Sophia Isabella Mia Amelia Harper Evelyn Abigail Liam Noah Oliver Elijah James William "
         "Benjamin Lucas Henry Alexander Mason Michael Ethan Daniel Jacob Logan Jackson Levi Sebastian Mateo Jack "
         "Owen Theodore Aiden Samuel Joseph John David Wyatt Matthew Luke Asher Carter Julian Grayson Leo Jayden "
         "Gabriel Isaac Lincoln Anthony Emily Elizabeth Sofia Avery Ella Scarlett Grace Chloe Victoria Riley Aria "
         "Lily Aubrey Zoey Penelope Lillian Addison Layla Natalie Camila Hannah Brooklyn Zoe Nora Leah Savannah "
         "Audrey Claire Eleanor Skylar Ellie Samantha Stella Paisley Violet Mila Allison Alexa Anna Hazel Aaliyah "
         "José Zoë Renée Chloé Raphaël Inés Noé Maëlle Andrés Sofía Robert William Katherine Margaret").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
        "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
        "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
        "Rivera Campbell Mitchell Carter Roberts Peña Muñoz Núñez García-López Okonkwo-Hale O'Brien").split()
NICK = {"Robert": "Bob", "William": "Bill", "Katherine": "Kate", "Margaret": "Maggie", "Elizabeth": "Liz",
        "Alexander": "Alex", "Michael": "Mike", "Daniel": "Dan", "Samuel": "Sam", "Benjamin": "Ben",
        "Matthew": "Matt", "Joseph": "Joe", "Anthony": "Tony", "Jacob": "Jake", "Abigail": "Abby"}
STRIP = str.maketrans("éëèíóñúÉ", "eeeionuE")


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


def generate(size: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Existing students, incoming rows and the truth (row_no -> student_key or None)."""
    rng = random.Random(seed)
    existing = []
    key = 0
    while len(existing) < size:
        key += 1
        person = {"student_key": key, "first_name": rng.choice(FIRST), "last_name": rng.choice(LAST),
                  "date_of_birth": dt.date(2008 + rng.randrange(10), rng.randint(1, 12), rng.randint(1, 28)),
                  "student_id": f"{100000 + key:07d}", "ssid": f"S{rng.randrange(10**9):09d}", "other_id": None,
                  "status": "deleted" if rng.random() < 0.02 else "active"}
        existing.append(person)
        if rng.random() < 0.02:  # a twin or sibling: same last name and birth date, another first name
            key += 1
            existing.append({**person, "student_key": key, "first_name": rng.choice([f for f in FIRST if f != person["first_name"]]),
                             "student_id": f"{100000 + key:07d}", "ssid": f"S{rng.randrange(10**9):09d}"})
    rows, truth = [], {}
    for person in existing:
        if person["status"] == "active" and rng.random() < 0.05:
            continue  # a leaver
        if person["status"] == "deleted" and rng.random() < 0.5:
            continue  # removed last year and still gone
        row = {k: person[k] for k in ("first_name", "last_name", "date_of_birth", "student_id", "ssid", "other_id")}
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
        r = rng.random()
        if r < 0.03:
            row["date_of_birth"] = _dob_typo(rng, row["date_of_birth"])
        elif r < 0.05:
            row["date_of_birth"] = None
        truth[len(rows) + 1] = person["student_key"]
        rows.append(row)
    for _ in range(int(size * 0.05)):  # newcomers, some with a name an existing student has
        named = rng.choice(existing) if rng.random() < 0.3 else None
        truth[len(rows) + 1] = None
        rows.append({"first_name": named["first_name"] if named else rng.choice(FIRST),
                     "last_name": named["last_name"] if named else rng.choice(LAST),
                     "date_of_birth": dt.date(2008 + rng.randrange(10), rng.randint(1, 12), rng.randint(1, 28)),
                     "student_id": f"{900000 + len(rows):07d}", "ssid": None, "other_id": None})
    incoming = pl.DataFrame([{"row_no": i + 1, **r} for i, r in enumerate(rows)],
                            schema={"row_no": pl.Int64, "first_name": pl.String, "last_name": pl.String,
                                    "date_of_birth": pl.Date, "student_id": pl.String, "ssid": pl.String,
                                    "other_id": pl.String})
    students = pl.DataFrame(existing, schema={"student_key": pl.Int64, "first_name": pl.String, "last_name": pl.String,
                                              "date_of_birth": pl.Date, "student_id": pl.String, "ssid": pl.String,
                                              "other_id": pl.String, "status": pl.String}).drop("status")
    return incoming, students, truth


def evaluate(size: int, seed: int, config: MatchConfig) -> dict:
    """Match one generated district and score the decisions against the truth."""
    incoming, existing, truth = generate(size, seed)
    start = time.perf_counter()
    decisions = match_rows(incoming, existing, config)
    seconds = time.perf_counter() - start
    rows = decisions.to_dicts()
    auto = [r for r in rows if r["decision"] == "matched"]
    correct_auto = sum(1 for r in auto if truth[r["row_no"]] == r["student_key"])
    true_rows = [r for r in rows if truth[r["row_no"]] is not None]
    found = sum(1 for r in true_rows if (r["decision"] == "matched" and r["student_key"] == truth[r["row_no"]])
                or (r["decision"] == "review" and truth[r["row_no"]] in {c["student_key"] for c in r["candidates"]}))
    # A present student is wrongly removed when neither an automatic link nor a review candidate
    # leads back to them (a reviewer cannot pick who is not offered).
    kept = {r["student_key"] for r in auto} | {c["student_key"] for r in rows if r["decision"] == "review"
                                               for c in r["candidates"]}
    present = {k for k in truth.values() if k is not None}
    pairs = candidate_pairs(_prepare(incoming), _prepare(existing), config.blocking_passes)
    true_pairs = {(r, k) for r, k in truth.items() if k is not None}
    blocked = {(r, k) for r, k in pairs.iter_rows()} & true_pairs
    return {
        "size": size, "seed": seed, "rows": len(rows), "seconds": round(seconds, 2),
        "auto_precision": round(correct_auto / len(auto), 5) if auto else None,
        "wrong_auto_links": len(auto) - correct_auto,
        "recall": round(found / len(true_rows), 5),
        "review_rate": round(sum(r["decision"] == "review" for r in rows) / len(rows), 4),
        "blocking_recall": round(len(blocked) / len(true_pairs), 4),
        "wrongly_removed": len(present - kept),
    }


def main() -> None:
    """Run the quality benchmark and print one JSON line per size and seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    for size in args.sizes:
        for seed in args.seeds:
            print(json.dumps(evaluate(size, seed, MatchConfig())), flush=True)


if __name__ == "__main__":
    main()
