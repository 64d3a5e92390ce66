"""The hold-out district generator keeps its contract with the quality benchmark."""

from __future__ import annotations

import polars as pl

from benchmarks.holdout import generate_holdout

PERSON = {"first_name": pl.String, "last_name": pl.String, "date_of_birth": pl.Date,
          "student_id": pl.String, "ssid": pl.String, "other_id": pl.String, "school_id": pl.Int64}


def test_same_seed_same_district_and_another_seed_another():
    first = generate_holdout(300, seed=7)
    again = generate_holdout(300, seed=7)
    other = generate_holdout(300, seed=8)
    assert first[0].equals(again[0]) and first[1].equals(again[1]) and first[2] == again[2]
    assert not first[0].equals(other[0])


def test_columns_dtypes_and_truth():
    incoming, existing, truth = generate_holdout(500, seed=3)
    assert dict(incoming.schema) == {"row_no": pl.Int64, **PERSON}
    assert dict(existing.schema) == {"student_key": pl.Int64, **PERSON}
    assert incoming["row_no"].is_unique().all() and existing["student_key"].is_unique().all()
    assert existing.height >= 500
    assert existing.select(pl.col("first_name", "last_name", "date_of_birth").null_count()).row(0) == (0, 0, 0)
    assert set(truth) == set(incoming["row_no"])
    keys = set(existing["student_key"])
    matched = [key for key in truth.values() if key is not None]
    assert set(matched) <= keys
    # newcomers and leavers both exist
    assert len(matched) < len(truth) and len(set(matched)) < len(keys)


def test_without_ids_every_id_is_blank():
    incoming, existing, _ = generate_holdout(200, seed=2, with_ids=False)
    for frame in (incoming, existing):
        assert frame.select(pl.col("student_id", "ssid", "other_id").null_count()).row(0) == (frame.height,) * 3
