"""The matcher on small frames: each hard case decides as a careful person would."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tasks.names import fold_name, fold_name_expr
from tasks.matching import (
    MatchConfig,
    dob_agreements,
    dob_agreement,
    match_rows,
    nickname_equivalent,
)

D = dt.date(2012, 5, 4)
PERSON_SCHEMA = {"first_name": pl.String, "last_name": pl.String, "date_of_birth": pl.Date, "school_id": pl.Int64,
                 "student_id": pl.String, "ssid": pl.String, "other_id": pl.String}


def people(key: str, rows: list[dict]) -> pl.DataFrame:
    full = [{"student_id": None, "ssid": None, "other_id": None, "date_of_birth": D, "school_id": None, **row}
            for row in rows]
    return pl.DataFrame(full, schema={key: pl.Int64, **PERSON_SCHEMA})


EXISTING = people("student_key", [
    {"student_key": 1, "first_name": "Robert", "last_name": "Nguyen", "student_id": "A1"},
    {"student_key": 2, "first_name": "Ana", "last_name": "Silva", "date_of_birth": dt.date(2013, 1, 2)},
    {"student_key": 3, "first_name": "Ava", "last_name": "Silva", "date_of_birth": dt.date(2013, 1, 2)},
    {"student_key": 4, "first_name": "José", "last_name": "Peña", "date_of_birth": dt.date(2011, 7, 8)},
    {"student_key": 5, "first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2014, 3, 9), "ssid": "S9"},
])


def decide(rows: list[dict], existing: pl.DataFrame = EXISTING, config: MatchConfig | None = None) -> dict:
    incoming = people("row_no", [{"row_no": i + 1, **row} for i, row in enumerate(rows)])
    result = match_rows(incoming, existing, config)
    assert result.height == len(rows)  # one decision per row, always
    return {r["row_no"]: r for r in result.to_dicts()}


def test_exact_id_links_even_with_a_nickname():
    got = decide([{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"}])[1]
    assert (got["decision"], got["student_key"], got["rule"]) == ("matched", 1, "student_id")


def test_an_id_on_someone_else_goes_to_review():
    got = decide([{"first_name": "Zed", "last_name": "Quill", "student_id": "A1",
                   "date_of_birth": dt.date(2001, 12, 30)}])[1]
    assert got["decision"] == "review" and "do not confirm it" in got["explanation"]


def test_an_id_with_a_different_name_and_no_birth_date_goes_to_review():
    got = decide([{"first_name": "Maria", "last_name": "Lopez", "student_id": "A1", "date_of_birth": None}])[1]
    assert got["decision"] == "review"


def test_an_id_that_disagrees_blocks_an_automatic_fuzzy_link():
    existing = people("student_key", [{"student_key": 7, "first_name": "Emma", "last_name": "Garcia", "student_id": "5555"}])
    got = decide([{"first_name": "Emma", "last_name": "Garcia", "student_id": "9999"}], existing)[1]
    assert got["decision"] == "review" and "student_id differs" in got["explanation"]


def test_opposite_sex_twins_one_letter_apart_are_never_linked():
    existing = people("student_key", [{"student_key": 8, "first_name": "Daniel", "last_name": "Lee"},
                                      {"student_key": 9, "first_name": "Mario", "last_name": "Rossi"}])
    got = decide([{"first_name": "Danielle", "last_name": "Lee"}, {"first_name": "Maria", "last_name": "Rossi"}],
                  existing)
    assert got[1]["decision"] != "matched" and got[2]["decision"] != "matched"


def test_nickname_without_id_links_on_name_and_birth_date():
    got = decide([{"first_name": "Bob", "last_name": "Nguyen"}])[1]
    assert (got["decision"], got["student_key"]) == ("matched", 1)


def test_swapped_names_and_accents_link():
    got = decide([{"first_name": "Silva", "last_name": "Ana", "date_of_birth": dt.date(2013, 1, 2)},
                   {"first_name": "Jose", "last_name": "Pena", "date_of_birth": dt.date(2011, 7, 8)},
                   {"first_name": "Jose\u0301", "last_name": "Pen\u0303a", "date_of_birth": dt.date(2011, 7, 8)}])
    assert got[1]["student_key"] == 2 and got[1]["decision"] == "matched"
    assert got[2]["student_key"] == 4 and got[3]["student_key"] == 4


def test_a_twin_is_never_linked_on_a_near_first_name():
    got = decide([{"first_name": "Aya", "last_name": "Silva", "date_of_birth": dt.date(2013, 1, 2)}])[1]
    assert got["decision"] == "review"
    assert {c["student_key"] for c in got["candidates"]} == {2, 3}


def test_a_birth_date_far_off_is_a_new_student_not_a_link():
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2009, 11, 20)}])[1]
    assert got["decision"] == "new"


def test_a_typo_birth_date_is_weighed_as_a_typo():
    # Day and month swapped is a typing pattern, not another child: with the whole name equal it
    # links, and the explanation names the pattern; far from any pattern it is a definite no.
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2014, 9, 3)}])[1]
    assert (got["decision"], got["student_key"]) == ("matched", 5)
    assert "birth date day and month swapped" in got["explanation"]
    strict = MatchConfig(auto_link_probability=1.0)
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2014, 9, 3)}], config=strict)[1]
    assert got["decision"] == "review" and got["candidates"][0]["student_key"] == 5


def test_one_student_claimed_by_two_people_sends_both_to_review():
    got = decide([{"first_name": "Mia", "last_name": "Clark", "ssid": "S9"},
                   {"first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2014, 3, 9)}])
    assert got[1]["decision"] == got[2]["decision"] == "review"


def test_one_person_in_two_classes_links_both_rows():
    got = decide([{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"}])
    assert got[1]["student_key"] == got[2]["student_key"] == 1


def test_thresholds_are_configuration():
    strict = MatchConfig(auto_link_probability=1.0)
    got = decide([{"first_name": "Robert", "last_name": "Nguyne"}], config=strict)[1]
    assert got["decision"] == "review"
    assert decide([{"first_name": "Robert", "last_name": "Nguyne"}])[1]["decision"] == "matched"


def test_helpers():
    assert nickname_equivalent("bob", "robert") and nickname_equivalent("bobby", "rob")
    assert not nickname_equivalent("ana", "ava")
    assert dob_agreement(dt.date(2012, 5, 4), dt.date(2012, 4, 5)) == "typo"
    assert dob_agreement(dt.date(2012, 5, 4), dt.date(2012, 5, 14)) == "typo"
    assert dob_agreement(dt.date(2012, 7, 21), dt.date(2012, 7, 12)) == "typo"
    assert dob_agreement(dt.date(2012, 7, 21), dt.date(2012, 7, 13)) == "different"
    assert dob_agreement(dt.date(2012, 5, 4), dt.date(2010, 1, 1)) == "different"
    assert dob_agreement(None, dt.date(2010, 1, 1)) == "missing"
    # Two digits swapped across the month and the day (02-12 typed as 01-22) is a typo too.
    assert dob_agreement(dt.date(1933, 2, 12), dt.date(1933, 1, 22)) == "typo"


def test_a_mistyped_id_that_hits_another_child_offers_both_to_the_reviewer():
    existing = people("student_key", [
        {"student_key": 11, "first_name": "Lily", "last_name": "Hernandez", "student_id": "0100100"},
        {"student_key": 12, "first_name": "Omar", "last_name": "Quinn", "student_id": "0101000",
         "date_of_birth": dt.date(2010, 2, 3)},
    ])
    got = decide([{"first_name": "Lily", "last_name": "Hernandez", "student_id": "0101000"}], existing)[1]
    # Name and birth date agree with Lily, whose ID is one transposition away: the evidence
    # outweighs the exact hit on Omar.
    assert (got["decision"], got["student_key"]) == ("matched", 11)
    assert "student ID one edit" in got["explanation"]
    # Without the birth date, and Lily's ID further off, it is a question with both children.
    existing = existing.with_columns(student_id=pl.Series(["0777700", "0101000"]))
    got = decide([{"first_name": "Lily", "last_name": "Hernandez", "student_id": "0101000",
                   "date_of_birth": None}], existing)[1]
    assert got["decision"] == "review"
    assert {c["student_key"] for c in got["candidates"]} == {11, 12}


def test_swapped_names_with_a_typo_birth_date_still_meet_their_student():
    existing = people("student_key", [{"student_key": 13, "first_name": "Asher", "last_name": "Hall",
                                       "date_of_birth": dt.date(2013, 3, 22)}])
    got = decide([{"first_name": "Hall", "last_name": "Asher", "date_of_birth": dt.date(2013, 3, 23)}], existing)[1]
    assert got["student_key"] == 13 or got["candidates"][0]["student_key"] == 13
    assert "names swapped" in got["explanation"] and "birth date one digit" in got["explanation"]


def test_an_ssid_with_name_and_birth_date_outweighs_a_mistyped_student_id():
    existing = people("student_key", [{"student_key": 20, "first_name": "Ivy", "last_name": "Park",
                                       "student_id": "0123456", "ssid": "S1"}])
    got = decide([{"first_name": "Ivy", "last_name": "Park", "student_id": "0123465", "ssid": "S1"}], existing)[1]
    assert (got["decision"], got["student_key"], got["rule"]) == ("matched", 20, "ssid")
    assert "mistyped" in got["explanation"]
    # Without the birth date, the SSID and names still outweigh a student ID one slip away...
    got = decide([{"first_name": "Ivy", "last_name": "Park", "student_id": "0123465", "ssid": "S1",
                   "date_of_birth": None}], existing)[1]
    assert (got["decision"], got["student_key"], got["rule"]) == ("matched", 20, "ssid")
    assert "student ID one edit" in got["explanation"]
    # ...and the SSID with the whole name outweighs a student ID of another shape altogether;
    # with another first name the differing student ID leaves it a question.
    got = decide([{"first_name": "Ivy", "last_name": "Park", "student_id": "9988776", "ssid": "S1",
                   "date_of_birth": None}], existing)[1]
    assert (got["decision"], got["student_key"]) == ("matched", 20) and "student ID different" in got["explanation"]
    got = decide([{"first_name": "Ada", "last_name": "Park", "student_id": "9988776", "ssid": "S1",
                   "date_of_birth": None}], existing)[1]
    assert got["decision"] == "review" and "student_id differs" in got["explanation"]


def test_two_ids_pointing_to_two_children_link_only_where_name_and_birth_date_agree():
    existing = people("student_key", [
        {"student_key": 21, "first_name": "Ivy", "last_name": "Park", "student_id": "A", "ssid": "S1"},
        {"student_key": 22, "first_name": "Omar", "last_name": "Quinn", "student_id": "B", "ssid": "S2",
         "date_of_birth": dt.date(2010, 2, 3)},
    ])
    got = decide([{"first_name": "Ivy", "last_name": "Park", "student_id": "B", "ssid": "S1"},
                  {"first_name": "Zed", "last_name": "Park", "student_id": "B", "ssid": "S1"}], existing)
    assert (got[1]["decision"], got[1]["student_key"]) == ("matched", 21)
    # Row 1 is Ivy by her SSID, name and birth date, and keeps it; row 2 carries her SSID too.
    assert got[2]["decision"] == "review"
    assert got[2]["explanation"].startswith("ID probably mistyped: ssid 'S1' belongs to Ivy Park (student 21), "
                                            "who is on row 1 of this batch")
    assert {c["student_key"] for c in got[2]["candidates"]} == {21, 22}


def test_an_id_value_held_by_two_students_goes_to_review():
    existing = people("student_key", [
        {"student_key": 23, "first_name": "Ivy", "last_name": "Park", "ssid": "S5"},
        {"student_key": 24, "first_name": "Ivy", "last_name": "Parks", "ssid": "S5"},
    ])
    got = decide([{"first_name": "Ivy", "last_name": "Park", "ssid": "S5"}], existing)[1]
    assert got["decision"] == "review" and "more than one existing student" in got["explanation"]


def test_a_candidate_linked_to_another_persons_row_is_not_offered():
    existing = people("student_key", [{"student_key": 30, "first_name": "Marla", "last_name": "Stone",
                                       "student_id": "E1"}])
    alone = decide([{"first_name": "Marta", "last_name": "Stone", "student_id": "E2"}], existing)[1]
    assert alone["decision"] == "review" and alone["candidates"][0]["student_key"] == 30
    got = decide([{"first_name": "Marla", "last_name": "Stone", "student_id": "E1"},
                  {"first_name": "Marta", "last_name": "Stone", "student_id": "E2"}], existing)
    assert (got[1]["decision"], got[1]["student_key"]) == ("matched", 30)
    assert got[2]["decision"] == "new" and "linked to another person's row" in got[2]["explanation"]


def test_a_second_row_of_the_same_child_keeps_its_candidate():
    # Without an identifier of its own nothing says the Marta row is someone else: it may be Marla
    # typed by another teacher, so it stays a question instead of becoming a duplicate account.
    existing = people("student_key", [{"student_key": 31, "first_name": "Marla", "last_name": "Stone",
                                       "student_id": "E1"}])
    got = decide([{"first_name": "Marla", "last_name": "Stone", "student_id": "E1"},
                  {"first_name": "Marta", "last_name": "Stone"},
                  {"first_name": "Marla", "last_name": "Stone"}], existing)
    assert got[2]["decision"] == "review" and got[2]["candidates"][0]["student_key"] == 31
    # The same name and birth date without the ID is the same child: both rows link, no question.
    assert (got[1]["student_key"], got[3]["decision"], got[3]["student_key"]) == (31, "matched", 31)


def test_a_close_second_already_linked_elsewhere_no_longer_blocks_the_link():
    existing = people("student_key", [
        {"student_key": 40, "first_name": "Kristen", "last_name": "Lee"},
        {"student_key": 41, "first_name": "Kirsten", "last_name": "Lee", "student_id": "K41"},
    ])
    # Alone, the row carries one twin's very name: the other twin's name one keystroke away is no
    # evidence (the typo would have had to land on the sibling's name).
    alone = decide([{"first_name": "Kristen", "last_name": "Lee"}], existing)[1]
    assert (alone["decision"], alone["student_key"]) == ("matched", 40)
    unsure = decide([{"first_name": "Kristin", "last_name": "Lee"}], existing)[1]
    assert unsure["decision"] == "review" and {c["student_key"] for c in unsure["candidates"]} == {40, 41}
    got = decide([{"first_name": "Kirsten", "last_name": "Lee", "student_id": "K41"},
                  {"first_name": "Kristen", "last_name": "Lee", "student_id": "K40"}], existing)
    assert (got[1]["student_key"], got[2]["decision"], got[2]["student_key"]) == (41, "matched", 40)


def test_the_rows_own_school_ranks_first_among_equal_candidates():
    existing = people("student_key", [
        {"student_key": 50, "first_name": "Mary", "last_name": "Jones", "school_id": 1},
        {"student_key": 51, "first_name": "Mary", "last_name": "Jones", "school_id": 2,
         "date_of_birth": dt.date(2011, 1, 1)},
    ]).with_columns(pl.Series("school_id", [1, 2], dtype=pl.Int64))
    incoming = people("row_no", [{"row_no": 1, "first_name": "Mary", "last_name": "Jones", "date_of_birth": None}])
    for school, first in ((2, 51), (1, 50)):
        got = match_rows(incoming.with_columns(school_id=pl.lit(school, dtype=pl.Int64)), existing).to_dicts()[0]
        assert got["decision"] == "review" and got["candidates"][0]["student_key"] == first


def test_a_typo_in_the_name_and_a_missing_birth_date_still_meet_their_student():
    existing = people("student_key", [{"student_key": 60, "first_name": "Wyatt", "last_name": "Wofford"},
                                      {"student_key": 61, "first_name": "Emma", "last_name": "Baker"}])
    got = decide([{"first_name": "Wyatt", "last_name": "Woffodr", "date_of_birth": None},
                  {"first_name": "Emme", "last_name": "Baker", "date_of_birth": dt.date(2012, 4, 5)}], existing)
    assert [got[n]["student_key"] or got[n]["candidates"][0]["student_key"] for n in (1, 2)] == [60, 61]


def test_column_folding_agrees_with_fold_name():
    names = ["José", "Jose\u0301", "Peña-Núñez", "O'Brien", "  Mary  Ann ", "Nguyễn", "Søren", "", None, "ÆSIR"]
    folded = pl.DataFrame({"name": names}, schema={"name": pl.String}).select(fold_name_expr("name"))["name"]
    assert folded.to_list() == [fold_name(n) for n in names]


def test_a_namesake_one_birth_date_typo_away_makes_the_row_a_question():
    # Two Victoria Floreses born a day apart: the row's date is exactly one of them, but it may be
    # the other's date mistyped; linking on that would merge two children.
    existing = people("student_key", [
        {"student_key": 70, "first_name": "Victoria", "last_name": "Flores", "date_of_birth": dt.date(2012, 9, 18)},
        {"student_key": 71, "first_name": "Victoria", "last_name": "Flores", "date_of_birth": dt.date(2012, 9, 19)},
    ])
    got = decide([{"first_name": "Victoria", "last_name": "Flores", "date_of_birth": dt.date(2012, 9, 18)}], existing)[1]
    assert got["decision"] == "review" and "close" in got["explanation"]
    assert [c["student_key"] for c in got["candidates"]] == [70, 71]


def test_birth_date_levels_on_columns_agree_with_dob_agreement():
    import random

    rng = random.Random(5)
    days = [dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(3000)) for _ in range(400)]
    pairs = [(a, rng.choice([a, a.replace(day=min(28, a.day + 1)), dt.date(a.year, a.day, a.month) if a.day <= 12 else a,
                            a + dt.timedelta(days=rng.randrange(-40, 40)), None])) for a in days]
    frame = pl.DataFrame(pairs, schema={"a": pl.Date, "b": pl.Date}, orient="row")
    assert dob_agreements(frame["a"], frame["b"]).to_list() == [dob_agreement(a, b) for a, b in pairs]


AMY_AND_OLIVIA = people("student_key", [
    {"student_key": 31, "first_name": "Amy", "last_name": "Jackson", "student_id": "0005463"},
    {"student_key": 32, "first_name": "Olivia", "last_name": "Schneider", "student_id": "0005999",
     "date_of_birth": dt.date(2011, 9, 17)},
])


def test_a_mistyped_id_landing_on_another_child_in_the_batch_links_its_owner_and_reviews_the_other():
    got = decide([{"first_name": "Amy", "last_name": "Jackson", "student_id": "0005463"},
                  {"first_name": "Olivia", "last_name": "Schneider", "student_id": "0005463",
                   "date_of_birth": dt.date(2011, 9, 17)}], AMY_AND_OLIVIA)
    assert (got[1]["decision"], got[1]["student_key"]) == ("matched", 31)
    assert got[2]["decision"] == "review" and got[2]["student_key"] is None
    assert got[2]["explanation"].startswith(
        "ID probably mistyped: student_id '0005463' belongs to Amy Jackson (student 31), who is on row 1 of this batch")
    assert got[2]["candidates"][0]["student_key"] == 32  # her own name-and-date student, first


def test_a_mistyped_id_is_not_linked_to_its_owner_when_only_the_birth_date_agrees():
    # Olivia shares Amy's birth date: the ID level alone would link her row to Amy too.
    got = decide([{"first_name": "Olivia", "last_name": "Schneider", "student_id": "0005463"},
                  {"first_name": "Amy", "last_name": "Jackson", "student_id": "0005463"}], AMY_AND_OLIVIA)
    assert (got[2]["decision"], got[2]["student_key"]) == ("matched", 31)
    assert got[1]["decision"] == "review" and got[1]["explanation"].startswith("ID probably mistyped")
    assert "who is on row 2 of this batch" in got[1]["explanation"]


def test_two_children_with_one_new_id_both_go_to_review_and_neither_is_new():
    got = decide([{"first_name": "Noah", "last_name": "Berg", "student_id": "N-77"},
                  {"first_name": "Liam", "last_name": "Cole", "student_id": "N-77", "date_of_birth": dt.date(2013, 2, 2)},
                  {"first_name": "Liam", "last_name": "Cole", "student_id": "N-77", "date_of_birth": dt.date(2013, 2, 2)}],
                 AMY_AND_OLIVIA)
    assert [got[i]["decision"] for i in (1, 2, 3)] == ["review"] * 3
    assert got[1]["explanation"] == (
        "ID probably mistyped: two different children carry the same new student_id 'N-77' in this batch (this row "
        "and Liam Cole (row 2)); nobody is created with it until one row is corrected or excluded")
    assert "this row and Noah Berg (row 1)" in got[3]["explanation"]


def test_one_child_on_several_rows_with_one_id_is_not_a_conflict():
    got = decide([{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "Robert", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "Robert", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "Noah", "last_name": "Berg", "student_id": "N-1"},
                  {"first_name": "Noah", "last_name": "Berg", "student_id": "N-1"}])
    assert [(got[i]["decision"], got[i]["student_key"]) for i in (1, 2, 3)] == [("matched", 1)] * 3
    assert got[4]["decision"] == got[5]["decision"] == "new"


def test_string_distances_are_rapidfuzz_s():
    """The matcher's Jaro-Winkler and OSA (polars-ds, on whole columns) give rapidfuzz's values on
    names of every kind: accents folded or not, double names, empty, one letter, swaps."""
    from rapidfuzz.distance import OSA, JaroWinkler

    from tasks.evidence import jaro_winkler, osa_distance

    names = ["olivia", "olivai", "oliva", "liam", "lima", "", "a", "ab", "ba", "abc", "acb", "mary ann", "maryann",
             "nguyễn", "nguyen", "o brien", "obrien", "jean luc", "zoë", "zoe", "katherine", "catherine",
             "van der berg", "vanderberg", "li", "lee", "smith", "smyth", "hernandez", "hrnandez", "0101000", "0100100"]
    pairs = pl.DataFrame([(a, b) for a in names for b in names], schema={"a": pl.String, "b": pl.String}, orient="row")
    got = pairs.select(jw=jaro_winkler("a", "b"), osa=osa_distance("a", "b"))
    for (a, b), jw, osa in zip(pairs.iter_rows(), got["jw"], got["osa"]):
        assert jw == pytest.approx(JaroWinkler.normalized_similarity(a, b), abs=1e-9), (a, b)
        assert osa == OSA.distance(a, b), (a, b)


# A small district with schools, for the guards that the batch itself can lift: Jacob has no twin,
# Mario neither, Mia and Owen are the only ones with their names.
ALONE = people("student_key", [
    {"student_key": 20, "first_name": "Jacob", "last_name": "Cervantez", "school_id": 1, "student_id": "J20"},
    {"student_key": 21, "first_name": "Mario", "last_name": "Rossi", "school_id": 1, "student_id": "M21"},
    {"student_key": 22, "first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2014, 3, 9),
     "school_id": 1, "student_id": "C22"},
    {"student_key": 23, "first_name": "Owen", "last_name": "Price", "date_of_birth": dt.date(2012, 7, 21),
     "school_id": 2, "student_id": "P23"},
])


def test_a_first_name_typo_links_when_no_twin_is_registered_or_in_the_batch():
    got = decide([{"first_name": "Jacbo", "last_name": "Cervantez", "school_id": 1},
                  {"first_name": "Owen", "last_name": "Price", "date_of_birth": dt.date(2012, 7, 21), "school_id": 2}],
                 ALONE)[1]
    assert (got["decision"], got["student_key"]) == ("matched", 20)
    assert "taken as a typo" in got["explanation"]


def test_a_first_name_typo_stays_a_question_when_a_twin_may_be_behind_it():
    # The registered child is in the sheet too: the row a letter off may be a twin arriving.
    got = decide([{"first_name": "Jacob", "last_name": "Cervantez", "school_id": 1},
                  {"first_name": "Jacbo", "last_name": "Cervantez", "school_id": 1}], ALONE)
    assert got[1]["decision"] == "matched" and got[2]["decision"] == "review"
    # A letter off that is a name (the nickname table knows Maria): an opposite-sex twin's, maybe.
    got = decide([{"first_name": "Maria", "last_name": "Rossi", "school_id": 1}], ALONE)[1]
    assert got["decision"] == "review"
    # A partial upload: the sheet covers school 2 only, so Jacob (school 1) being absent from it
    # says nothing, and a twin of his arriving at school 2 would look just so.
    got = decide([{"first_name": "Jacbo", "last_name": "Cervantez", "school_id": 2}], ALONE)[1]
    assert got["decision"] == "review"
    # Without schools nothing says which children the sheet covers.
    got = decide([{"first_name": "Jacbo", "last_name": "Cervantez"}],
                 ALONE.with_columns(school_id=pl.lit(None, pl.Int64)))[1]
    assert got["decision"] == "review"


def test_another_first_name_with_an_equal_id_links_when_no_twin_can_be_behind_it():
    got = decide([{"first_name": "Luke", "last_name": "Cervantez", "student_id": "J20", "school_id": 1}], ALONE)[1]
    assert (got["decision"], got["student_key"]) == ("matched", 20)
    # Another row with Jacob's last name and birth date: the ID may be copied onto his twin's row.
    got = decide([{"first_name": "Luke", "last_name": "Cervantez", "student_id": "J20", "school_id": 1},
                  {"first_name": "Jacob", "last_name": "Cervantez", "school_id": 1}], ALONE)
    assert got[1]["decision"] == "review"


def test_names_alone_link_when_nobody_else_has_them_at_the_students_school():
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": None, "school_id": 1}], ALONE)[1]
    assert (got["decision"], got["student_key"]) == ("matched", 22)
    assert "names alone" in got["explanation"]


def test_names_alone_stay_a_question_when_a_namesake_may_be_behind_them():
    # At another school than the student's.
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": None, "school_id": 2}], ALONE)[1]
    assert got["decision"] == "review"
    # Another row of the batch with the same name (another child, or the same one twice).
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": None, "school_id": 1},
                  {"first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2015, 6, 1), "school_id": 1}],
                 ALONE)[1]
    assert got["decision"] == "review"
    # A second registered student with that name.
    namesakes = pl.concat([ALONE, people("student_key", [
        {"student_key": 24, "first_name": "Mia", "last_name": "Clark", "date_of_birth": dt.date(2010, 1, 1),
         "school_id": 1}])])
    got = decide([{"first_name": "Mia", "last_name": "Clark", "date_of_birth": None, "school_id": 1}], namesakes)[1]
    assert got["decision"] == "review"


# Twins: Jeremy and Aria Moore, born the same day at school 1, each with IDs; Ross Hall has no twin.
TWINS = people("student_key", [
    {"student_key": 30, "first_name": "Jeremy", "last_name": "Moore", "date_of_birth": dt.date(2015, 10, 25),
     "school_id": 1, "student_id": "0755", "ssid": "S755"},
    {"student_key": 31, "first_name": "Aria", "last_name": "Moore", "date_of_birth": dt.date(2015, 10, 25),
     "school_id": 1, "student_id": "0756", "ssid": "S756"},
    {"student_key": 32, "first_name": "Ross", "last_name": "Hall", "date_of_birth": dt.date(2014, 1, 9),
     "school_id": 1, "student_id": "0801", "ssid": "S801"},
])
ARIA = {"first_name": "Aria", "last_name": "Moore", "date_of_birth": dt.date(2015, 10, 25), "school_id": 1}
JEREMY_TYPO = {"first_name": "Jereiy", "last_name": "Moore", "date_of_birth": dt.date(2015, 10, 25), "school_id": 1}


def test_a_first_name_typo_links_when_the_registered_twin_is_plainly_on_another_row():
    # Aria is on her own row, by her ID or by her exact name and birth date: the row a keystroke
    # from Jeremy, with a name nobody has, is Jeremy's.
    for aria in ({**ARIA, "student_id": "0756"}, ARIA):
        got = decide([aria, JEREMY_TYPO], TWINS)
        assert (got[1]["decision"], got[1]["student_key"]) == ("matched", 31)
        assert (got[2]["decision"], got[2]["student_key"]) == ("matched", 30), got[2]["explanation"]
        assert "the registered twin is plainly on another row of this batch" in got[2]["explanation"]


def test_a_first_name_typo_stays_a_question_while_a_twin_may_be_behind_it():
    # Aria absent from a sheet that covers her school: the row may be her, mistyped.
    assert decide([JEREMY_TYPO], TWINS)[1]["decision"] == "review"
    # Aria's row carries another child's ID: it is not plainly hers.
    got = decide([{**ARIA, "student_id": "0801"}, JEREMY_TYPO], TWINS)
    assert got[2]["decision"] == "review"
    # A third child with the twins' last name and birth date in the batch (a triplet arriving).
    got = decide([ARIA, {**ARIA, "first_name": "Jenna"}, JEREMY_TYPO], TWINS)
    assert got[3]["decision"] == "review"
    # Jeremy himself is on another row: the row a keystroke off may be a triplet arriving.
    got = decide([ARIA, {**JEREMY_TYPO, "first_name": "Jeremy"}, JEREMY_TYPO], TWINS)
    assert got[3]["decision"] == "review"


def test_an_equal_state_id_with_a_mistyped_student_id_links_when_the_twin_is_on_another_row():
    # The SSID is Jeremy's, the student ID a slip away from nobody's, the last name mistyped.
    row = {"first_name": "Jeremy", "last_name": "Mooer", "date_of_birth": dt.date(2015, 10, 25), "school_id": 1,
           "student_id": "9755", "ssid": "S755"}
    got = decide([{**ARIA, "student_id": "0756"}, row], TWINS)
    assert (got[2]["decision"], got[2]["student_key"], got[2]["rule"]) == ("matched", 30, "ssid")
    # Without Aria in the sheet, the name that is not exactly Jeremy's may be hers: a question.
    assert decide([row], TWINS)[1]["decision"] == "review"


def test_a_batch_every_row_of_which_its_ids_link_trains_no_evidence(monkeypatch):
    import tasks.matching

    trained_on = []
    real_train = tasks.matching.train

    def recording_train(incoming, existing, **options):
        trained_on.append((incoming.height, existing.height))
        return real_train(incoming, existing, **options)

    monkeypatch.setattr(tasks.matching, "train", recording_train)
    got = decide([{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "Mia", "last_name": "Clark", "ssid": "S9", "date_of_birth": dt.date(2014, 3, 9)}])
    assert [(r["decision"], r["student_key"], r["rule"]) for r in got.values()] == [
        ("matched", 1, "student_id"), ("matched", 5, "ssid")]
    # Only the prior evidence, on no student: the district's students were neither blocked nor weighed.
    assert all(students == 0 for _, students in trained_on)
    # A row its IDs leave to the evidence: the district's evidence is trained, and the row is weighed.
    trained_on.clear()
    got = decide([{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
                  {"first_name": "José", "last_name": "Peña", "date_of_birth": dt.date(2011, 7, 8)}])
    assert [(r["decision"], r["student_key"], r["rule"]) for r in got.values()] == [
        ("matched", 1, "student_id"), ("matched", 4, "fuzzy")]
    assert (2, EXISTING.height) in trained_on


PADDED_IDS = people("student_key", [
    {"student_key": 41, "first_name": "Paul", "last_name": "McElhaney", "date_of_birth": dt.date(2016, 2, 15),
     "student_id": "00530078"},
    {"student_key": 42, "first_name": "Nicole", "last_name": "Desilets", "date_of_birth": dt.date(2018, 4, 30),
     "student_id": "04057513"},
])


def test_ids_that_lost_their_leading_zeros_in_the_whole_sheet_decide_as_the_ids_written_in_full():
    # Excel made numbers of the whole column: no cell shows the district pads its IDs. The row
    # whose birth date is mistyped beyond a typo pattern was taken as new (its student ruled out).
    rows = [{"first_name": "Paul", "last_name": "McElhaney", "date_of_birth": dt.date(2016, 2, 1),
             "student_id": "00530078"},
            {"first_name": "Nicole", "last_name": "Desilets", "date_of_birth": dt.date(2018, 4, 30),
             "student_id": "04057513"}]
    in_full = decide(rows, PADDED_IDS)
    got = decide([{**row, "student_id": row["student_id"].lstrip("0")} for row in rows], PADDED_IDS)
    assert [(got[i]["decision"], got[i]["student_key"], got[i]["rule"]) for i in (1, 2)] == [
        (in_full[i]["decision"], in_full[i]["student_key"], in_full[i]["rule"]) for i in (1, 2)]
    assert [(got[i]["decision"], got[i]["student_key"]) for i in (1, 2)] == [("matched", 41), ("matched", 42)]


def test_keys_too_large_to_pack_into_one_integer_decide_as_small_ones():
    # Pairs are grouped and made distinct on one packed integer when both keys fit in 31 bits;
    # larger keys (or negative ones) take the slower way, which must decide the same.
    rows = [{"first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
            {"first_name": "Ana", "last_name": "Silva", "date_of_birth": dt.date(2013, 1, 2)},
            {"first_name": "Jsoe", "last_name": "Peña", "date_of_birth": dt.date(2011, 7, 8)},
            {"first_name": "Mia", "last_name": "Clarke", "date_of_birth": dt.date(2014, 3, 9), "ssid": "S9"},
            {"first_name": "Zed", "last_name": "Quill", "student_id": "A1", "date_of_birth": dt.date(2001, 12, 30)}]
    incoming = people("row_no", [{"row_no": i + 1, **row} for i, row in enumerate(rows)])
    shift = 2**40
    small = match_rows(incoming, EXISTING)
    large = match_rows(incoming.with_columns(pl.col("row_no") + shift),
                       EXISTING.with_columns(pl.col("student_key") + shift))
    back = large.with_columns(
        pl.col("row_no") - shift, pl.col("student_key") - shift,
        pl.col("candidates").list.eval(pl.struct(pl.element().struct.field("student_key") - shift,
                                                 pl.element().struct.field("score"),
                                                 pl.element().struct.field("agreement"))))
    # (explanations name the keys)
    assert back.drop("explanation").equals(small.drop("explanation"))
    assert {"matched", "review"} <= set(small["decision"])


def test_identifiers_pointing_to_two_students_are_named_in_the_question():
    got = decide([{"first_name": "Zed", "last_name": "Quill", "student_id": "A1", "ssid": "S9",
                   "date_of_birth": dt.date(2001, 12, 30)}])[1]
    assert got["decision"] == "review"
    assert got["explanation"] == "ssid and student_id point to 2 different existing students"


def test_every_row_has_a_registered_id_only_when_each_row_carries_one():
    from tasks.matching import every_row_has_a_registered_id

    config = MatchConfig()
    identified = people("row_no", [{"row_no": 1, "first_name": "Bob", "last_name": "Nguyen", "student_id": "A1"},
                                   {"row_no": 2, "first_name": "Mia", "last_name": "Clark", "student_id": "Z9",
                                    "ssid": "S9"}])
    assert every_row_has_a_registered_id(identified, EXISTING, config)
    stranger = people("row_no", [{"row_no": 3, "first_name": "Zed", "last_name": "Quill", "student_id": "A2"}])
    assert not every_row_has_a_registered_id(pl.concat([identified, stranger]), EXISTING, config)
    nameless = people("row_no", [{"row_no": 4, "first_name": "Ann", "last_name": "Lee"}])
    assert not every_row_has_a_registered_id(pl.concat([identified, nameless]), EXISTING, config)
