"""Who is working on a batch right now: an OS advisory lock per batch, beside the warehouse.

A process that advances a batch (a command, a flow run) holds ``<warehouse>.locks/batch-N.lock``
with ``flock`` and writes who it is into the file. The operating system releases the lock when
the process ends, however it ends (even ``kill -9``), so an open batch whose lock is free is one
whose process died: it is interrupted, and ``rosterflow batch resume N`` finishes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# How long a command or flow waits for the warehouse (or a batch) another holds, unless configured.
DEFAULT_BUSY_TIMEOUT = 600.0


class BatchBusy(RuntimeError):
    """Another live process is working on the batch."""


def lock_path(warehouse_path: str | Path, batch_id: int) -> Path:
    """The lock file of one batch: ``<warehouse>.locks/batch-N.lock``."""
    warehouse_path = Path(warehouse_path)
    return warehouse_path.with_name(warehouse_path.name + ".locks") / f"batch-{batch_id}.lock"


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(batch_id: int, holder: dict[str, Any]) -> str:
    """'Batch N is being worked on by <who> (process P, since T)' in words."""
    who = holder.get("who") or "another process"
    details = ", ".join(part for part in (f"process {holder['pid']}" if holder.get("pid") else "",
                                          f"since {holder['since']}" if holder.get("since") else "") if part)
    return f"Batch {batch_id} is being worked on by {who}" + (f" ({details})" if details else "")


def _wait_for_lock(fd: int, path: Path, batch_id: int, wait: float,
                   on_wait: Callable[[str], None] | None) -> None:
    """Take the lock, waiting up to ``wait`` seconds for its holder; ``BatchBusy`` after that."""
    deadline, pause, told = time.monotonic() + wait, 0.01, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= deadline:
            raise BatchBusy(describe_holder(batch_id, _read_holder(path)) + (
                f"; it was still busy after {wait:.0f} s, so nothing was done. Try again when it has finished."
                if wait else ": wait for it to finish."))
        if on_wait is not None and not told:
            on_wait(describe_holder(batch_id, _read_holder(path)) + f"; waiting for it (up to {wait:.0f} s).")
            told = True
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, 0.2)


@contextlib.contextmanager
def batch_lock(warehouse_path: str | Path, batch_id: int, who: str, wait: float = 0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the batch's lock while the block works on it. If a live process holds it, wait up to
    ``wait`` seconds (saying so through ``on_wait``), then raise ``BatchBusy``. Take it before the
    warehouse, never while holding the warehouse (a holder of the batch may be waiting for the
    warehouse). The file is left in place (removing it would let two processes lock two
    different files of the same name)."""
    path = lock_path(warehouse_path, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _wait_for_lock(fd, path, batch_id, wait, on_wait)
        holder = {"who": who, "pid": os.getpid(),
                  "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(warehouse_path: str | Path, batch_id: int) -> dict[str, Any] | None:
    """Who holds the batch's lock now (``who``, ``pid``, ``since``), or None when no live process does."""
    path = lock_path(warehouse_path, batch_id)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class HeldLock:
    """A batch lock a long-running owner (a flow run) lets go while it waits for people and takes
    back after: a waiting batch is at a gate, and the command line may work on it meanwhile."""

    def __init__(self, warehouse_path: str | Path, batch_id: int, who: str) -> None:
        self._args = (warehouse_path, batch_id, who)
        self._held: contextlib.AbstractContextManager | None = None

    def acquire(self) -> None:
        if self._held is None:
            held = batch_lock(*self._args)
            held.__enter__()
            self._held = held

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(None, None, None)
