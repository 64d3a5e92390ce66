"""Submitted decisions are recorded before they are applied, and applied exactly once.

A person's decision (a review decision, an approval) must never be lost because the warehouse was
busy, the command was interrupted, or the same form came back after a restart. So:

- the command line first writes the request into the inbox beside the warehouse
  (``<warehouse>.inbox/<request id>.json``, written whole or not at all) and only then waits for
  the warehouse; a Prefect form's input is already kept by Prefect under its run-input key;
- applying a request records its id in ``applied_requests`` in the same transaction as its
  effect, so applying it again (a retry, a re-run, a second submission) returns the first outcome;
- a request left in the inbox (the wait timed out, the process was stopped) is applied by
  ``rosterflow inbox apply``, and listed by ``rosterflow inbox``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Request:
    """A decision someone submitted: what (``kind`` and ``payload``), on which batch, by whom, when."""

    request_id: str
    kind: str
    batch_id: int | None
    payload: dict[str, Any]
    submitted_by: str
    submitted_at: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))


def new_request_id() -> str:
    return uuid.uuid4().hex


def inbox_dir(warehouse_path: str | Path) -> Path:
    """The folder of requests not yet applied: ``<warehouse>.inbox``."""
    path = Path(warehouse_path)
    return path.with_name(path.name + ".inbox")


def _file(warehouse_path: str | Path, request_id: str) -> Path:
    if not request_id or any(ch in request_id for ch in "/\\\0") or request_id.startswith("."):
        raise ValueError(f"{request_id!r} cannot be a request id: use letters, digits, '-', '_' or ':'.")
    return inbox_dir(warehouse_path) / f"{request_id}.json"


def record(warehouse_path: str | Path, request: Request) -> Path:
    """Write the request into the inbox, durably and whole (a temporary file renamed into place),
    readable by its owner only. Recording the same request id again keeps the first."""
    target = _file(warehouse_path, request.request_id)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if target.exists():
        return target
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(asdict(request)).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    return target


def pending(warehouse_path: str | Path, batch_id: int | None = None) -> list[Request]:
    """Requests in the inbox (oldest first), of one batch or all."""
    folder = inbox_dir(warehouse_path)
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            request = Request(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # removed meanwhile, or not a request
        if batch_id is None or request.batch_id == batch_id:
            found.append(request)
    return sorted(found, key=lambda r: (r.submitted_at, r.request_id))


def forget(warehouse_path: str | Path, request_id: str) -> None:
    """Take an applied request out of the inbox."""
    try:
        _file(warehouse_path, request_id).unlink()
    except FileNotFoundError:
        pass


def applied_outcome(con: duckdb.DuckDBPyConnection, request_id: str) -> dict[str, Any] | None:
    """The outcome recorded when the request was applied, or None if it never was."""
    from warehouse.connection import first_row

    row = first_row(con.execute("SELECT outcome FROM applied_requests WHERE request_id = ?", [request_id]))
    return json.loads(row[0]) if row else None


def mark_applied(con: duckdb.DuckDBPyConnection, request: Request, outcome: dict[str, Any]) -> None:
    """Record that the request was applied, with its outcome (inside the caller's transaction)."""
    con.execute(
        "INSERT INTO applied_requests (request_id, kind, batch_id, submitted_by, submitted_at, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [request.request_id, request.kind, request.batch_id, request.submitted_by,
         dt.datetime.fromisoformat(request.submitted_at).astimezone(dt.timezone.utc).replace(tzinfo=None),
         json.dumps(outcome, default=str)],
    )
