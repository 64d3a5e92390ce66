"""The warehouse file's schema (migrations), its transactions, and one sentence for each way opening
or writing it can fail. Connections are opened only through ``warehouse.handle.Warehouse``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import polars as pl

MIGRATIONS_PACKAGE = "warehouse.migrations"


@functools.cache
def migration_scripts() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every schema migration, in order."""
    scripts = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            scripts.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(scripts)


def pending_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The migrations this program has that the file has not had yet (read-only safe)."""
    known = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    applied = ({row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
               if "schema_migrations" in known else set())
    return [name for version, name, _ in migration_scripts() if version not in applied]


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration newer than the file's schema version; return the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    done = []
    for version, name, sql in migration_scripts():
        if version in applied:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        done.append(name)
    return done


# A DuckDB database file starts with an 8-byte checksum and then these bytes.
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8

# What DuckDB or the OS raise when the warehouse file cannot be opened or written.
# (A commit whose log file cannot be written is a TransactionException.)
WAREHOUSE_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.SerializationException,
                    duckdb.InternalException, duckdb.FatalException, duckdb.TransactionException, OSError)


class WarehouseError(Exception):
    """The warehouse file cannot be used; the message says which file and what to do."""


def _kind_of_file(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "it is a zip file, perhaps a spreadsheet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "it is an old Office file, perhaps a spreadsheet"
    try:
        head.decode("utf-8")
        return "it holds text"
    except UnicodeDecodeError:
        return "its bytes are not a DuckDB database"


def check_warehouse_file(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB opens it, so nothing ever writes
    into it. An empty file is refused too: it is a failed copy or a mistake far more often than a
    wish for a new warehouse, and treating it as one would hide that every batch is gone."""
    if not path.exists():
        return
    if path.is_dir():
        raise WarehouseError(f"The warehouse {path} is a folder, not a file: point --warehouse (or "
                             "ROSTERFLOW_WAREHOUSE) at the .duckdb file.")
    with path.open("rb") as file:
        head = file.read(64)
    if not head:
        raise WarehouseError(
            f"The warehouse {path} is empty (0 bytes), so it holds no data; nothing was changed. "
            "If it should hold your batches, restore it from a backup; to start a new warehouse, delete it "
            "and run `rosterflow init`.")
    if head[DUCKDB_MAGIC_OFFSET:DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC)] != DUCKDB_MAGIC:
        raise WarehouseError(
            f"The warehouse {path} is not a DuckDB database ({_kind_of_file(head)}); nothing was changed. "
            "Point --warehouse (or ROSTERFLOW_WAREHOUSE) at the warehouse file, or restore it from a backup.")


def warehouse_problem(path: str | Path, error: BaseException) -> str:
    """One sentence for a failure to open or write the warehouse: which file, and what to do."""
    text = str(error)
    lock = re.search(r"Conflicting lock is held in (.*?)(?: \(PID (\d+)\))?(?:\.|$)", text)
    code = error.errno if isinstance(error, OSError) else None
    if lock or "Could not set lock" in text:
        holder = f" (process {lock.group(2)})" if lock and lock.group(2) else ""
        return (f"The warehouse {path} is in use by another program{holder}; wait for it to finish "
                "(a running command or flow task) and try again.")
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or re.search(
            r"No space left|File too large|Disk quota|disk.*full", text, re.IGNORECASE):
        return (f"There is no room to write the warehouse {path} (disk full or file size limit); "
                "the change was not saved. Free some space and run the command again.")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or re.search(
            r"Permission denied|Read-only file system|Operation not permitted", text, re.IGNORECASE):
        return (f"The warehouse {path} or its folder cannot be written (permission denied or read-only); "
                "nothing was changed. Make them writable, or use --warehouse with a writable path.")
    if "not a valid DuckDB database" in text:
        return (f"The warehouse {path} is not a DuckDB database; nothing was changed. Point --warehouse "
                "at the warehouse file, or restore it from a backup.")
    if re.search(r"Could not read enough bytes|Corrupt|checksum|Serialization|truncated", text, re.IGNORECASE):
        return (f"The warehouse {path} is damaged (cut short or corrupt) and cannot be read; nothing was "
                "changed. Restore it from a backup.")
    return f"The warehouse {path} could not be used: {text.splitlines()[0] if text else type(error).__name__}."


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


class ArrowStream:
    """A polars frame as DuckDB scans it (``con.register(name, ArrowStream(frame))``): through the
    Arrow C stream interface, each scan a fresh stream over polars' own buffers, string views
    included, with nothing copied. Registering the frame itself, or ``frame.to_arrow()``, goes
    through pyarrow, which costs about 45 MB and its import in every command that writes rows."""

    __slots__ = ("frame",)

    def __init__(self, frame: pl.DataFrame):
        import polars as pl

        # A column of polars' Null type (all None, built without a schema) crosses the C stream
        # without a validity bitmap, which DuckDB refuses; as text it is a column of NULLs.
        untyped = [name for name, dtype in frame.schema.items() if dtype == pl.Null]
        self.frame = frame.with_columns(pl.col(untyped).cast(pl.String)) if untyped else frame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.frame.__arrow_c_stream__(requested_schema)


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Insert every row of ``frame`` into ``table`` in one statement, by column name. ``table`` is a
    fixed identifier from the calling module, never user input."""
    if frame.is_empty():
        return
    con.register("insert_frame", ArrowStream(frame))
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(frame.columns)}) SELECT * FROM insert_frame")
    finally:
        con.unregister("insert_frame")


def first_row(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a query result, reading it to the end.

    DuckDB 2 keeps a half-read result open and refuses other work on the connection until it is
    finished, so ``fetchone()`` is not used.
    """
    rows = result.fetchall()
    return rows[0] if rows else None
