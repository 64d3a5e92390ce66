"""The one way into the warehouse: a handle that waits its turn, reads or writes, and says who holds it.

DuckDB lets one process open a file read-write and then refuses every other process, even a
read-only one, at once. A team works on one warehouse at the same time (runs from the Prefect UI
and the terminal, reviewers, an approver, a schedule), so nobody may get that refusal: every
opening goes through a ``Warehouse`` handle, which takes an advisory lock beside the warehouse
first (``<warehouse>.locks/warehouse.lock``):

- ``read()`` takes it shared (many readers at once) and opens DuckDB read-only;
- ``write()`` takes it exclusive and opens DuckDB read-write (applying migrations).

A writer waiting for its turn stops new readers from starting (a turnstile lock), so a steady
stream of readers cannot starve it. Each hold writes a record (who, process, batch, stage, since)
into its own locked file beside the warehouse, so a waiting process can say who it waits for,
and the operating system lets go of every lock when a process ends, however it ends.

Waiting is bounded (``busy_timeout`` seconds, ``ROSTERFLOW_BUSY_TIMEOUT`` in the settings); after
it, ``WarehouseBusy`` says who held the warehouse. Holds are meant to be short: read or compute
with the warehouse closed and write in short bulk transactions. Each hold's length is kept on the
handle (``holds``) so benchmarks can report the longest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from warehouse.connection import (WAREHOUSE_ERRORS, WarehouseError, apply_migrations, check_warehouse_file,
                                  pending_migrations, warehouse_problem)
from warehouse.locks import DEFAULT_BUSY_TIMEOUT

# How often a waiting process says again who it is waiting for.
WAIT_NOTICE_EVERY = 30.0

# Which threads of this process hold which warehouse, through any handle: a thread that opens the
# warehouse again through a second handle would wait for itself, so it is told at once instead.
_HOLDING_THREADS: dict[tuple[str, int], str] = {}


class WarehouseBusy(WarehouseError):
    """The warehouse stayed busy for longer than the handle waits; the message says who held it."""


@dataclass(frozen=True)
class Hold:
    """One time the warehouse was held: for reading or writing, by which stage, for how long."""

    mode: str
    batch: int | None
    stage: str | None
    seconds: float


def locks_dir(warehouse_path: str | Path) -> Path:
    """The folder of lock files beside the warehouse: ``<warehouse>.locks``."""
    path = Path(warehouse_path)
    return path.with_name(path.name + ".locks")


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def current_holders(warehouse_path: str | Path) -> list[dict[str, Any]]:
    """Who holds the warehouse now: one record per live hold (``mode``, ``who``, ``pid``, ``batch``,
    ``stage``, ``since``). A record whose process has died is not listed."""
    holders = []
    for record in sorted(locks_dir(warehouse_path).glob("holder-*.json")):
        try:
            fd = os.open(record, os.O_RDONLY)
        except OSError:
            continue  # released meanwhile
        try:
            if _try_lock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                continue  # nobody holds it: a record left by a process that died
            try:
                holders.append(json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}"))
            except ValueError:
                continue
        finally:
            os.close(fd)
    return holders


def describe_holders(holders: list[dict[str, Any]]) -> str:
    """The holders in words: '`rosterflow approve` (process 12, batch 4, stage commit) writing since 10:02:03'."""
    if not holders:
        return "another process (it has just let go, or is about to take it)"
    parts = []
    for holder in holders:
        details = ", ".join(str(part) for part in (
            f"process {holder['pid']}" if holder.get("pid") else "",
            f"batch {holder['batch']}" if holder.get("batch") is not None else "",
            f"stage {holder['stage']}" if holder.get("stage") else "") if part)
        since = str(holder.get("since", ""))[11:19]
        parts.append(f"{holder.get('who') or 'another process'}" + (f" ({details})" if details else "")
                     + f" {'writing' if holder.get('mode') == 'write' else 'reading'}" + (f" since {since}" if since else ""))
    return "; ".join(parts)


@dataclass
class _Held:
    mode: str
    con: duckdb.DuckDBPyConnection
    depth: int = 1


@dataclass
class Warehouse:
    """A handle on the warehouse file for one process, command or task.

    ``who`` names the holder in the record others see while they wait (a command, a flow run);
    ``on_wait`` receives a sentence when this handle starts waiting and every 30 s after.
    A thread that holds the handle and opens it again gets the same connection (a write hold
    serves reads too); asking to write while holding it only to read is a programming error.
    """

    path: Path
    who: str = "rosterflow"
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    on_wait: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    holds: list[Hold] = field(default_factory=list, repr=False, compare=False)
    _held: dict[int, _Held] = field(default_factory=dict, repr=False, compare=False)
    # Set once a read found the file's schema current (a write applies migrations itself).
    _schema_current: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def __getstate__(self) -> dict[str, Any]:
        # A handle travels (as a Prefect task's parameter) without its open connections.
        state = dict(self.__dict__)
        state["_held"], state["holds"], state["on_wait"], state["_schema_current"] = {}, [], None, False
        return state

    @contextlib.contextmanager
    def read(self, batch: int | None = None, stage: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the warehouse to read it: shared with other readers, never with a writer."""
        with self._hold("read", batch, stage) as con:
            yield con

    @contextlib.contextmanager
    def write(self, batch: int | None = None, stage: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the warehouse alone to write it (creating it and applying migrations when needed).
        Keep the block short: compute before it, write in bulk inside it."""
        with self._hold("write", batch, stage) as con:
            yield con

    def longest_hold(self, mode: str = "write") -> Hold | None:
        """The longest hold of ``mode`` this handle has made, or None."""
        holds = [hold for hold in self.holds if hold.mode == mode]
        return max(holds, key=lambda hold: hold.seconds) if holds else None

    @contextlib.contextmanager
    def _hold(self, mode: str, batch: int | None, stage: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        thread = threading.get_ident()
        held = self._held.get(thread)
        if held is not None:
            if mode == "write" and held.mode == "read":
                raise RuntimeError("The warehouse is held only to read here: take the write hold first.")
            held.depth += 1
            try:
                yield held.con
            finally:
                held.depth -= 1
            return
        holding = (str(self.path.resolve()), thread)
        if holding in _HOLDING_THREADS:
            raise RuntimeError(f"This thread already holds the warehouse {self.path} through another handle "
                               f"({_HOLDING_THREADS[holding]}): pass that handle or its connection down instead.")
        with contextlib.ExitStack() as locked:
            locked.enter_context(self._locked(mode, batch, stage))
            con = self._connect(mode)
            if mode == "read" and not self._schema_current:
                # The schema is checked on the reading connection itself (another connection per
                # read cost as much as the read of a short command), once per handle: a file once
                # current stays current for this program.
                if self._needs_upgrade(con):
                    # A read-only connection cannot apply migrations: let go, upgrade, read again.
                    con.close()
                    locked.close()
                    with self._hold("write", batch, "upgrade"):
                        pass
                    locked.enter_context(self._locked(mode, batch, stage))
                    con = self._connect(mode)
                self._schema_current = True
            _HOLDING_THREADS[holding] = f"{mode} by {self.who}"
            self._held[thread] = _Held(mode, con)
            started = time.monotonic()
            try:
                yield con
            finally:
                del self._held[thread]
                del _HOLDING_THREADS[holding]
                con.close()
                self.holds.append(Hold(mode, batch, stage, time.monotonic() - started))

    @staticmethod
    def _needs_upgrade(con: duckdb.DuckDBPyConnection) -> bool:
        """True when the file's schema is older than this program's."""
        try:
            return bool(pending_migrations(con))
        except BaseException:
            con.close()
            raise

    def _connect(self, mode: str) -> duckdb.DuckDBPyConnection:
        try:
            check_warehouse_file(self.path)
            if mode == "read":
                if not self.path.exists():
                    raise WarehouseError(f"No warehouse at {self.path}: create it with `rosterflow init`, or point "
                                         "--warehouse (or ROSTERFLOW_WAREHOUSE) at the warehouse file.")
                return duckdb.connect(str(self.path), read_only=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path))
        except WAREHOUSE_ERRORS as error:
            raise WarehouseError(warehouse_problem(self.path, error)) from error
        try:
            apply_migrations(con)
        except BaseException as error:
            con.close()
            if isinstance(error, WAREHOUSE_ERRORS):
                raise WarehouseError(warehouse_problem(self.path, error)) from error
            raise
        return con

    @contextlib.contextmanager
    def _locked(self, mode: str, batch: int | None, stage: str | None) -> Iterator[None]:
        """Take the advisory lock (waiting at most ``busy_timeout``) and keep a holder record while held."""
        folder = locks_dir(self.path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            main = os.open(folder / "warehouse.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise WarehouseError(warehouse_problem(self.path, error)) from error
        try:
            self._wait_for_lock(folder, main, mode, batch, stage)
            try:
                if mode == "write":
                    self._remove_dead_records(folder)
                with self._holder_record(folder, mode, batch, stage):
                    yield
            finally:
                fcntl.flock(main, fcntl.LOCK_UN)
        finally:
            os.close(main)

    def _wait_for_lock(self, folder: Path, main: int, mode: str, batch: int | None, stage: str | None) -> None:
        deadline = time.monotonic() + self.busy_timeout
        turnstile = os.open(folder / "turnstile.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A writer holds the turnstile while it waits, so readers arriving after it wait behind it.
            self._poll(turnstile, fcntl.LOCK_EX if mode == "write" else fcntl.LOCK_SH, deadline, mode, batch, stage)
            try:
                self._poll(main, fcntl.LOCK_EX if mode == "write" else fcntl.LOCK_SH, deadline, mode, batch, stage)
            finally:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        finally:
            os.close(turnstile)

    def _poll(self, fd: int, lock: int, deadline: float, mode: str, batch: int | None, stage: str | None) -> None:
        if _try_lock(fd, lock):
            return
        pause, next_notice = 0.005, time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_notice and self.on_wait is not None:
                self.on_wait(f"Waiting for the warehouse {self.path} (up to {_duration(max(deadline - now, 0))}): "
                             f"it is held by {describe_holders(current_holders(self.path))}.")
                next_notice = now + WAIT_NOTICE_EVERY
            if now >= deadline:
                raise WarehouseBusy(
                    f"The warehouse {self.path} was still busy after {_duration(self.busy_timeout)}, held by "
                    f"{describe_holders(current_holders(self.path))}; nothing was done"
                    + (f" for batch {batch}" if batch is not None else "")
                    + ". Try again when it has finished (ROSTERFLOW_BUSY_TIMEOUT sets how long to wait).")
            time.sleep(min(pause, max(deadline - now, 0.001)))
            pause = min(pause * 2, 0.1)
            if _try_lock(fd, lock):
                return

    @staticmethod
    def _remove_dead_records(folder: Path) -> None:
        """Holding the warehouse alone, any record nobody holds was left by a process that died."""
        for record in folder.glob("holder-*.json"):
            with contextlib.suppress(OSError):
                fd = os.open(record, os.O_RDONLY)
                try:
                    if _try_lock(fd, fcntl.LOCK_EX):
                        record.unlink()
                finally:
                    os.close(fd)

    @contextlib.contextmanager
    def _holder_record(self, folder: Path, mode: str, batch: int | None, stage: str | None) -> Iterator[None]:
        record = folder / f"holder-{os.getpid()}-{threading.get_ident()}.json"
        fd = os.open(record, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps({"mode": mode, "who": self.who, "pid": os.getpid(), "batch": batch,
                                     "stage": stage, "since": _now()}).encode("utf-8"))
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    record.unlink()
        finally:
            os.close(fd)


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def opened(path: str | Path, read_only: bool = False, who: str = "rosterflow",
           busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A one-off hold on the warehouse at ``path`` (for scripts and tests): ``Warehouse(...).read()``
    or ``.write()``."""
    handle = Warehouse(Path(path), who=who, busy_timeout=busy_timeout)
    return handle.read() if read_only else handle.write()
