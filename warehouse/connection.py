"""Opening the warehouse file and writing to it safely.

A connection is opened by the caller for one unit of work and closed before any pause: DuckDB lets
one process hold a file read-write and locks every other process out while it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import duckdb

MIGRATIONS_PACKAGE = "warehouse.migrations"


def _migration_scripts() -> list[tuple[int, str, str]]:
    scripts = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            scripts.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(scripts)


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration newer than the file's schema version; return the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    done = []
    for version, name, sql in _migration_scripts():
        if version in applied:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        done.append(name)
    return done


def connect(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse at ``path``, creating it and applying migrations when writable."""
    path = Path(path)
    if read_only:
        if not path.exists():
            raise FileNotFoundError(f"No warehouse at {path}: create it with `rosterflow init`.")
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        apply_migrations(con)
    except Exception:
        con.close()
        raise
    return con


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block in one explicit transaction: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextlib.contextmanager
def opened(path: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for one unit of work and always close it."""
    con = connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def first_row(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a query result, reading it to the end.

    DuckDB 2 keeps a half-read result open and refuses other work on the connection until it is
    finished, so ``fetchone()`` is not used.
    """
    rows = result.fetchall()
    return rows[0] if rows else None
