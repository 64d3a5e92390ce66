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
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


@contextlib.contextmanager
def batch_lock(warehouse_path: str | Path, batch_id: int, who: str) -> Iterator[None]:
    """Hold the batch's lock while the block works on it; raise ``BatchBusy`` at once if a live
    process holds it. The file is left in place (removing it would let two processes lock two
    different files of the same name)."""
    path = lock_path(warehouse_path, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchBusy(describe_holder(batch_id, _read_holder(path)) + ": wait for it to finish.") from None
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
