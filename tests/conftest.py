"""Shared fixtures: a real DuckDB file per test, a generated sample district, a real Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from rosterflow.sample_district import SampleDistrict, generate_district
from tests.batch_helpers import add_district_catalog
from warehouse.handle import opened

# `make test` (and so CI) draws the same Hypothesis examples every run: a suite that passed passes
# again. To search for new counterexamples, run `pytest --hypothesis-profile=explore tests/test_blocking.py`
# (fresh random draws, more of them); a failure it finds belongs in a test of its own.
settings.register_profile("repeatable", derandomize=True, max_examples=25)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("repeatable")


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server and database for the whole session (~5 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    """A fresh warehouse file, schema applied."""
    path = tmp_path / "warehouse.duckdb"
    with opened(path):
        pass
    return path


@pytest.fixture(scope="session")
def district(tmp_path_factory: pytest.TempPathFactory) -> SampleDistrict:
    """The sample district's sheets, generated once with a fixed seed."""
    return generate_district(tmp_path_factory.mktemp("district"), seed=2026)


@pytest.fixture
def district_warehouse(warehouse_path: Path, district: SampleDistrict) -> Path:
    """A warehouse holding the sample district's schools, courses and subscriptions."""
    return add_district_catalog(warehouse_path, district)


@pytest.fixture
def run_cli(capsys):
    """Run one `rosterflow` command in this process; return (exit code, stdout, stderr)."""
    from rosterflow.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


@pytest.fixture
def run(run_cli, tmp_path: Path):
    """Run one `rosterflow` command against a warehouse and an outbox in tmp_path."""

    def invoke(*args: str) -> tuple[int, str, str]:
        return run_cli("--warehouse", str(tmp_path / "w.duckdb"), "--outbox", str(tmp_path / "outbox"), *args)

    return invoke
