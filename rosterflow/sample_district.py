"""A seeded, realistic sample district: a year of registered students and next year's migration.

The migration sheets carry what real ones do: typos, nicknames, swapped names, accents, missing
IDs, day/month-swapped birth dates, leavers, newcomers and one invalid row. ``truth`` says what
should happen to each person, so tests and the demo can check the outcome.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from tasks.exports import write_xlsx

SCHOOLS = ("ABC High School", "ABC Middle School", "Summerwind High School")
COURSES = {"ALGE1": "Algebra 1", "ALGE2": "Algebra 2", "GEOM": "Geometry", "LV3": "Level 3 Math", "LV4": "Level 4 Math"}
SUBSCRIPTION_TYPE = "K12 - 12 Month"
FIRST_NAMES = (
    "Ana Ava Liam Noah Emma Olivia Mia Lucas Ethan Sofia Isabella Mateo Chloe Grace Henry Jack Leo Lily Nora "
    "Zoe Aria Caleb Elena Felix Hana Ivan Julia Kai Luna Maya Nina Omar Priya Ruby Sam Tara Uma Victor Wen Yara"
).split()
LAST_NAMES = (
    "Silva Garcia Nguyen Smith Johnson Brown Lee Patel Kim Martin Lopez Wilson Clark Lewis Walker Young Allen "
    "King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans Turner"
).split()
# Formal names whose nickname a teacher may type next year.
NICKNAMED = {"Robert": "Bob", "William": "Bill", "Elizabeth": "Liz", "Katherine": "Kate", "Michael": "Mike"}
ACCENTED = {"José": "Jose", "Zoë": "Zoe", "Renée": "Renee"}
TEACHERS = (
    ("Joshua", "Morgan"), ("Allison", "Cooper"), ("Jose", "Melendez"), ("Karen", "Ito"), ("Paul", "Okafor"),
    ("Dana", "Reyes"),
)
HEADER = {
    "school": "School", "teacher_first": "Teacher First Name", "teacher_last": "Teacher Last Name",
    "teacher_email": "Teacher Email", "class_period": "Class Period", "course_code": "Course Code",
    "student_first": "Student First Name", "student_last": "Student Last Name", "student_id": "Student ID",
    "ssid": "SSID", "other_id": "Other ID", "date_of_birth": "Date of Birth", "grade": "Grade",
}


@dataclass
class SampleDistrict:
    """The generated district: what to load first, the files of each year, and the expected outcome."""

    schools: tuple[str, ...]
    courses: dict[str, str]
    subscription_type: str
    subscriptions_available: int
    registration_term: str
    migration_term: str
    registration_files: list[Path]
    migration_files: list[Path]
    # One row per person: person, first/last as registered, student_id, fate ('kept', 'typo', 'nickname',
    # 'swapped', 'accent', 'review', 'leaver', 'newcomer', 'invalid').
    truth: pl.DataFrame = field(repr=False)


def _students(rng: random.Random, school: str, count: int, start_id: int) -> list[dict]:
    people = []
    used = set()
    distinct_names = len(FIRST_NAMES) * len(LAST_NAMES)
    for index in range(count):
        while True:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            # Names repeat once a large school has used every pair, as they do in real districts.
            if (first, last) not in used or len(used) >= distinct_names:
                used.add((first, last))
                break
        grade = rng.randint(6, 11)
        birth_year = 2026 - 6 - grade
        people.append({
            "person": f"{school[:3].upper()}{index:03d}",
            "school": school,
            "student_first": first,
            "student_last": last,
            "student_id": f"{start_id + index:08d}",
            "ssid": f"SS{rng.randint(10**7, 10**8 - 1)}",
            "date_of_birth": dt.date(birth_year, rng.randint(1, 12), rng.randint(1, 28)),
            "grade": str(grade),
        })
    return people


def generate_district(out_dir: Path, seed: int = 2026, students_per_school: int = 36) -> SampleDistrict:
    """Write the registration and migration sheets of a sample district under ``out_dir``."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    teachers_by_school = {school: TEACHERS[2 * i: 2 * i + 2] for i, school in enumerate(SCHOOLS)}
    courses = list(COURSES)
    registration_rows, migration_rows, truth = [], [], []
    for school_index, school in enumerate(SCHOOLS):
        id_base = 10_000_000 * (school_index + 1)
        people = _students(rng, school, students_per_school, id_base)
        # Hard cases placed on purpose: formal names, accents and a pair of twins.
        formal = list(NICKNAMED)[school_index % len(NICKNAMED)]
        people[0]["student_first"] = formal
        accented = list(ACCENTED)[school_index % len(ACCENTED)]
        people[1]["student_first"] = accented
        people[3].update(student_last=people[2]["student_last"], date_of_birth=people[2]["date_of_birth"],
                         student_first="Ava" if people[2]["student_first"] != "Ava" else "Ana")
        teachers = teachers_by_school[school]
        for index, person in enumerate(people):
            teacher = teachers[index % 2]
            period = f"Period {1 + (index % 4)}"
            course = courses[(school_index + index % 2) % len(courses)]
            registration_rows.append({
                "school": school, "teacher_first": teacher[0], "teacher_last": teacher[1],
                "teacher_email": f"{teacher[0][0]}{teacher[1]}@example.org".lower(), "class_period": period,
                "course_code": course, **{k: person[k] for k in ("student_first", "student_last", "student_id", "ssid",
                                                                 "date_of_birth", "grade")}, "other_id": None,
            })
        # Next year: everyone moves up a grade with a new teacher assignment; some change.
        fates = ["kept"] * len(people)
        fates[0] = "nickname"
        fates[1] = "accent"
        fates[4] = "typo"
        fates[5] = "swapped"
        fates[6] = "review"
        fates[7] = fates[8] = "leaver"
        if school_index == 2:
            fates[9] = "invalid"
        for index, (person, fate) in enumerate(zip(people, fates)):
            truth.append({"person": person["person"], "school": school, "first_name": person["student_first"],
                          "last_name": person["student_last"], "student_id": person["student_id"], "fate": fate})
            if fate == "leaver":
                continue
            row = {**person, "grade": str(int(person["grade"]) + 1)}
            if fate == "nickname":
                row.update(student_first=NICKNAMED[person["student_first"]], student_id=None, ssid=None)
            elif fate == "accent":
                row.update(student_first=ACCENTED[person["student_first"]], student_id=None, ssid=None)
            elif fate == "typo":
                last = person["student_last"]
                row.update(student_last=last[:-2] + last[-1] + last[-2], student_id=None, ssid=None)
            elif fate == "swapped":
                row.update(student_first=person["student_last"], student_last=person["student_first"],
                           student_id=None, ssid=None)
            elif fate == "review":
                # Another first name (the next of the list), the same last name and birth date and no ID:
                # a twin or sibling arriving looks just so, as does the student under another name, so a
                # person decides. (A first name one letter off that is nobody's name is taken as a typo
                # when no twin is registered or in the sheet: it would not be a question.)
                first = person["student_first"]
                other = FIRST_NAMES[(FIRST_NAMES.index(first) + 1) % len(FIRST_NAMES)] if first in FIRST_NAMES else "Elena"
                row.update(student_first=other, student_id=None, ssid=None)
            # Migration sheets are typed by teachers: dates arrive as text, one of them ambiguous.
            if fate == "invalid":
                row["date_of_birth"] = person["date_of_birth"].strftime("%m/%d/%Y")
            else:
                row["date_of_birth"] = row["date_of_birth"].isoformat()
            migration_rows.append(row)
        for index in range(3):
            newcomer = _students(rng, school, 1, id_base + 9_000_000 + index)[0]
            newcomer["student_first"], newcomer["student_last"] = (
                ("Renée", "Okonkwo-Hale"), ("Mateo", "García López"), ("Wen", "Zhou"))[index]
            newcomer["person"] = f"{school[:3].upper()}N{index}"
            newcomer["date_of_birth"] = newcomer["date_of_birth"].isoformat()
            truth.append({"person": newcomer["person"], "school": school, "first_name": newcomer["student_first"],
                          "last_name": newcomer["student_last"], "student_id": newcomer["student_id"],
                          "fate": "newcomer"})
            migration_rows.append(newcomer)

    registration_files = []
    registration = pl.DataFrame(registration_rows)
    for school in SCHOOLS:
        path = out_dir / f"registration-{school.lower().replace(' ', '-')}.xlsx"
        frame = registration.filter(pl.col("school") == school).select(list(HEADER)).rename(HEADER)
        registration_files.append(write_xlsx(path, {"Roster": frame}))

    migration_files = []
    migration = pl.DataFrame(migration_rows, infer_schema_length=None)
    for school_index, school in enumerate(SCHOOLS):
        teachers = teachers_by_school[school]
        rows = migration.filter(pl.col("school") == school).with_row_index("i").with_columns(
            teacher_first=pl.col("i").map_elements(lambda i: teachers[i % 2][0], return_dtype=pl.String),
            teacher_last=pl.col("i").map_elements(lambda i: teachers[i % 2][1], return_dtype=pl.String),
            teacher_email=pl.col("i").map_elements(lambda i: f"{teachers[i % 2][0][0]}{teachers[i % 2][1]}@example.org".lower(),
                                                   return_dtype=pl.String),
            class_period=pl.format("Period {}", pl.col("i") % 4 + 1),
            course_code=pl.col("i").map_elements(lambda i: courses[(school_index + 2 + i % 2) % len(courses)],
                                                 return_dtype=pl.String),
            other_id=pl.lit(None, pl.String),
        ).select(list(HEADER)).rename(HEADER)
        path = out_dir / f"migration-{school.lower().replace(' ', '-')}.xlsx"
        migration_files.append(write_xlsx(path, {"Roster": rows}))
    return SampleDistrict(
        schools=SCHOOLS, courses=COURSES, subscription_type=SUBSCRIPTION_TYPE, subscriptions_available=1000,
        registration_term="Fall 2025", migration_term="Fall 2026",
        registration_files=registration_files, migration_files=migration_files, truth=pl.DataFrame(truth),
    )
