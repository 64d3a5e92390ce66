"""Registered approvers: who approves, rejects or restores is proven by a secret, not typed.

An approver is added once and is given a secret, shown once; the warehouse keeps only its salted
scrypt hash. The first approver may be added by anyone (there is nobody yet to vouch for them);
after that, adding or removing an approver needs an existing approver's name and secret, so nobody
can add themselves. A removed approver keeps its row, marked removed, for the audit.
Every refused attempt is audited (name, action, reason; never the secret).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import duckdb
import polars as pl

from warehouse import batches
from warehouse.connection import first_row, transaction

# The secret is held by a person and checked once per approval, so it gets a dear hash (the OWASP
# parameters for scrypt, about a second here): a stolen warehouse does not give the secrets away.
APPROVER_SCRYPT_N, APPROVER_SCRYPT_R, APPROVER_SCRYPT_P = 2**17, 8, 1
# About 128 bits.
SECRET_BYTES = 16
ADD_COMMAND = "rosterflow approver add NAME"


class ApproverError(ValueError):
    """An approver could not be verified, added or removed; the message says why and what to do.
    ``reason``: the refusal in a few words, as audited (e.g. 'no secret given', 'wrong secret')."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def hash_secret(secret: str, n: int = APPROVER_SCRYPT_N) -> str:
    """A salted scrypt hash of ``secret``, recording its parameters (``scrypt$N$r$p$salt$digest``)."""
    salt = secrets.token_bytes(16)
    r, p = APPROVER_SCRYPT_R, APPROVER_SCRYPT_P
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_memory(n, r, p), dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def secret_matches(secret: str, stored: str) -> bool:
    """True when ``secret`` is the one ``stored`` (made by ``hash_secret``) was made from."""
    _, n, r, p, salt, digest = stored.split("$")
    n, r, p = int(n), int(r), int(p)
    computed = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=n, r=r, p=p, maxmem=_memory(n, r, p),
                              dklen=32)
    return secrets.compare_digest(computed, base64.b64decode(digest))


def _memory(n: int, r: int, p: int) -> int:
    # scrypt needs 128 * N * r bytes (plus a little per lane); hashlib refuses above 32 MiB unless told.
    return 128 * n * r * (p + 1) + 2**20


def active_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The names of the approvers not removed, in order."""
    return [r[0] for r in con.execute("SELECT name FROM approvers WHERE removed_at IS NULL ORDER BY name").fetchall()]


def list_approvers(con: duckdb.DuckDBPyConnection, include_removed: bool = False) -> pl.DataFrame:
    """The approvers (name, since, added by; removed ones with when and by whom): never a secret."""
    listed = con.sql(
        "SELECT name, created_at AS since, created_by AS added_by, removed_at, removed_by FROM approvers"
        " WHERE $all OR removed_at IS NULL ORDER BY removed_at NULLS FIRST, name",
        params={"all": include_removed},
    ).pl()
    return listed if include_removed else listed.drop("removed_at", "removed_by")


def _refuse(con: duckdb.DuckDBPyConnection, name: str, action: str, batch_id: int | None, reason: str,
            message: str) -> ApproverError:
    """Audit a refused attempt (no secret in it) and return the error to raise."""
    with transaction(con):
        batches.audit(con, name or "(no name)", "approver.refused", "approver", name or None, batch_id,
                      {"attempted": action, "reason": reason})
    return ApproverError(message, reason)


def verify_approver(con: duckdb.DuckDBPyConnection, name: str | None, secret: str | None, action: str,
                    batch_id: int | None = None) -> str:
    """The registered name of the approver ``name`` when ``secret`` is theirs; otherwise raise
    ``ApproverError`` (and audit the refused attempt). ``action`` names what was attempted."""
    name = (name or "").strip()
    registered = active_names(con)
    if not registered:
        raise _refuse(con, name, action, batch_id, "no approver registered",
                      f"No approver is registered, so nobody can {_verb(action)}: add one with `{ADD_COMMAND}` "
                      "(it prints the approver's secret once).")
    if not name:
        raise _refuse(con, name, action, batch_id, "no name", "Name the approver (approvers: "
                      f"{', '.join(registered)}).")
    row = first_row(con.execute("SELECT secret_hash FROM approvers WHERE name = ? AND removed_at IS NULL", [name]))
    if row is None:
        raise _refuse(con, name, action, batch_id, "not a registered approver",
                      f"{name!r} is not a registered approver (approvers: {', '.join(registered)}); nothing was done.")
    if not secret:
        raise _refuse(con, name, action, batch_id, "no secret given",
                      f"No approver secret was given for {name}; nothing was done.")
    if not secret_matches(secret, row[0]):
        raise _refuse(con, name, action, batch_id, "wrong secret",
                      f"The approver secret given for {name} is not theirs; nothing was done.")
    return name


def _verb(action: str) -> str:
    return {"batch.approve": "approve", "batch.reject": "reject", "student.restore": "restore students"}.get(
        action, "do this")


def add_approver(con: duckdb.DuckDBPyConnection, name: str, by: str | None = None, by_secret: str | None = None,
                 cost: int = APPROVER_SCRYPT_N) -> dict[str, Any]:
    """Register ``name`` as an approver and return ``{"name", "secret", "first", "added_by"}``: the secret
    is shown this once and only its hash is kept. The first approver needs nobody's word; every other
    needs an existing approver's (``by`` and ``by_secret``). ``cost``: scrypt's N (tests use less)."""
    name = (name or "").strip()
    if not name:
        raise ApproverError("Give the new approver's name.")
    registered = active_names(con)
    first = not registered
    if not first and not (by or "").strip():
        raise _refuse(con, "", "approver.add", None, "no vouching approver",
                      f"{len(registered)} approver(s) exist, so adding another needs an existing approver's name and "
                      "secret (`--by NAME` on the command line); nobody can add themselves.")
    added_by = name if first else verify_approver(con, by, by_secret, "approver.add")
    if name in active_names(con):
        raise ApproverError(f"{name!r} is already an approver; to give them a new secret, remove them and add them "
                            "again.")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    secret_hash = hash_secret(secret, cost)
    with transaction(con):
        # A removed approver added again gets a new secret and a new start; the audit log keeps the history.
        con.execute("DELETE FROM approvers WHERE name = ? AND removed_at IS NOT NULL", [name])
        con.execute("INSERT INTO approvers (name, secret_hash, created_by) VALUES (?, ?, ?)",
                    [name, secret_hash, added_by])
        batches.audit(con, added_by, "approver.add", "approver", name, None, {"first": first})
    return {"name": name, "secret": secret, "first": first, "added_by": added_by}


def remove_approver(con: duckdb.DuckDBPyConnection, name: str, by: str | None, by_secret: str | None) -> dict[str, Any]:
    """Mark ``name`` removed (kept for the audit), on an existing approver's word. The last approver
    cannot be removed: with none left, anybody could add themselves."""
    name = (name or "").strip()
    removed_by = verify_approver(con, by, by_secret, "approver.remove")
    registered = active_names(con)
    if name not in registered:
        raise ApproverError(f"{name!r} is not a registered approver (approvers: {', '.join(registered)}).")
    if registered == [name]:
        raise ApproverError(f"{name} is the last approver: add another first (with nobody left, anybody could add "
                            "themselves).")
    with transaction(con):
        con.execute("UPDATE approvers SET removed_at = current_timestamp, removed_by = ? WHERE name = ?",
                    [removed_by, name])
        batches.audit(con, removed_by, "approver.remove", "approver", name, None, {})
    return {"name": name, "removed_by": removed_by}
