"""The warehouse file: migrations applied once, transactions all or nothing, batches found again."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse import batches
from warehouse.connection import apply_migrations, transaction
from warehouse.handle import opened


def test_migrations_are_applied_once_and_recorded(warehouse_path: Path):
    with opened(warehouse_path) as con:
        assert apply_migrations(con) == []
        assert con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall() == [(v,) for v in range(1, 14)]


def test_a_failed_transaction_leaves_nothing(warehouse_path: Path):
    with opened(warehouse_path) as con:
        with pytest.raises(duckdb.ConstraintException):
            with transaction(con):
                con.execute("INSERT INTO schools (name) VALUES ('A')")
                con.execute("INSERT INTO schools (name) VALUES ('A')")
        assert con.execute("SELECT count(*) FROM schools").fetchall() == [(0,)]


def test_a_rerun_finds_its_batch_and_its_finished_stages(warehouse_path: Path):
    with opened(warehouse_path) as con:
        first = batches.create_or_get_batch(con, "run-1", "migration", "Fall", "K12", {"a": 1}, "t")
        again = batches.create_or_get_batch(con, "run-1", "migration", "Fall", "K12", {"a": 1}, "t")
        with transaction(con):
            batches.record_stage(con, first, "ingest", {"rows": 3})
        assert again == first and batches.stage_result(con, first, "ingest") == {"rows": 3}
        assert batches.get_batch(con, first)["stages"] == ["ingest"]


def test_the_warehouse_can_be_read_while_no_task_holds_it(warehouse_path: Path):
    with opened(warehouse_path):
        pass
    with opened(warehouse_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchall() == [(0,)]


def test_frames_reach_duckdb_whole_through_the_arrow_stream():
    # Every scan of a registered frame is a fresh stream (a self-join reads it twice), and each
    # column arrives with its type and its NULLs, a column of polars' Null type (all None, built
    # without a schema) included.
    import datetime as dt

    import polars as pl

    from warehouse.connection import ArrowStream, insert_frame

    frame = pl.DataFrame({"key": [1, 2, 3], "name": ["Ana", None, "José"],
                          "born": [dt.date(2014, 3, 9), None, dt.date(2012, 7, 21)], "nothing": [None, None, None]})
    con = duckdb.connect()
    con.register("frame", ArrowStream(frame))
    assert con.execute("SELECT count(*) FROM frame a JOIN frame b USING (key)").fetchall() == [(3,)]
    assert con.execute("SELECT count(*) FROM frame").fetchall() == [(3,)]
    con.execute("CREATE TABLE t (key BIGINT, name VARCHAR, born DATE, nothing VARCHAR)")
    insert_frame(con, "t", frame)
    assert con.execute("SELECT * FROM t ORDER BY key").fetchall() == [
        (1, "Ana", dt.date(2014, 3, 9), None), (2, None, None, None), (3, "José", dt.date(2012, 7, 21), None)]
