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
