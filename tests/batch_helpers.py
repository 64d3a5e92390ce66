"""Driving a batch through the plain stage functions, as the command line does."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from tasks.approve import decide_batch
from tasks.approvers import active_names, add_approver
from tasks.commit import commit_batch
from tasks.pipeline import advance_batch, open_batch
from tasks.plan import plan_version
from tasks.review import decide_review, review_items
from warehouse.connection import first_row
from warehouse.handle import Warehouse, opened


def start(warehouse: Path, mode: str, files: list[Path], term: str, subscription: str, **extra) -> dict:
    """Open a batch on ``files`` and advance it to its first gate; return the progress."""
    config = {"files": [str(f) for f in files], "term": term, "subscription_type": subscription, **extra}
    wh = Warehouse(warehouse, who="test")
    with wh.write() as con:
        batch_id = open_batch(con, f"test:{uuid.uuid4()}", mode, config, "test")
    return advance_batch(wh, batch_id)


def link_all_reviews(warehouse: Path, batch_id: int) -> dict:
    """Decide every pending item as 'link to candidate 1' and advance the batch."""
    wh = Warehouse(warehouse, who="test")
    with wh.write() as con:
        for item in review_items(con, batch_id, pending_only=True):
            decide_review(con, batch_id, item["review_id"], "link", "Rita Reviewer", 1)
    return advance_batch(wh, batch_id)


APPROVER = "Pat Admin"
# Tests register approvers with a cheap scrypt cost (each hash records its own): the real cost is
# about a second a hash, and the suite approves many batches.
TEST_SCRYPT_N = 2**10
# Stored hash -> secret: a warehouse copied from another (a module's registered district) still
# finds its approver's secret.
_SECRETS: dict[str, str] = {}


def approver_secret(con: duckdb.DuckDBPyConnection, name: str = APPROVER) -> str:
    """``name``'s approver secret in this warehouse, registering them on first use (the first approver
    freely, any other on Pat Admin's word)."""
    row = first_row(con.execute("SELECT secret_hash FROM approvers WHERE name = ? AND removed_at IS NULL", [name]))
    if row is not None:
        return _SECRETS[row[0]]
    first = not active_names(con)
    added = add_approver(con, name, None if first else APPROVER, None if first else approver_secret(con),
                         cost=TEST_SCRYPT_N)
    stored = first_row(con.execute("SELECT secret_hash FROM approvers WHERE name = ?", [name]))[0]
    _SECRETS[stored] = added["secret"]
    return added["secret"]


def approval(con: duckdb.DuckDBPyConnection, batch_id: int, name: str = APPROVER) -> dict:
    """What an approval of the batch's current plan by ``name`` carries: their secret and the plan version."""
    return {"secret": approver_secret(con, name), "plan_version": plan_version(con, batch_id)}


def approver_env(warehouse: Path, monkeypatch, name: str = APPROVER) -> str:
    """Register ``name`` (if needed) and give the command line their secret, as an approver would."""
    with opened(warehouse) as con:
        secret = approver_secret(con, name)
    monkeypatch.setenv("ROSTERFLOW_APPROVER_SECRET", secret)
    return secret


def approve_args(warehouse: Path, batch_id: int, monkeypatch, name: str = APPROVER) -> list[str]:
    """The `rosterflow approve` command an approver types for the batch's current plan, with their
    secret given in the environment."""
    approver_env(warehouse, monkeypatch, name)
    with opened(warehouse) as con:
        version = plan_version(con, batch_id)
    return ["approve", str(batch_id), "--approver", name, "--plan", str(version)]


def approve_and_commit(warehouse: Path, batch_id: int, removals: int | None = None, override: bool = False) -> dict:
    """Approve the current plan (made now if needed) with its removal count (unless given) and commit."""
    wh = Warehouse(warehouse, who="test")
    progress = advance_batch(wh, batch_id)
    with wh.write() as con:
        count = progress["plan"]["removals"] if removals is None else removals
        decide_batch(con, batch_id, APPROVER, True, count, override, **approval(con, batch_id))
    return commit_batch(wh, batch_id, APPROVER)


def add_district_catalog(warehouse: Path, district) -> Path:
    """Give the warehouse the sample district's schools, courses and subscriptions."""
    from warehouse import catalog

    with opened(warehouse) as con:
        catalog.add_schools(con, list(district.schools), "test")
        catalog.add_courses(con, district.courses, "test")
        catalog.set_subscriptions(con, district.subscription_type, district.subscriptions_available, "test")
    return warehouse


def add_catalog(warehouse: Path, schools: list[str], courses: dict[str, str], subscription: str, seats: int) -> Path:
    """Give a new warehouse its schools, courses and one subscription with ``seats`` seats."""
    from warehouse import catalog

    with opened(warehouse) as con:
        catalog.add_schools(con, schools, "test")
        catalog.add_courses(con, courses, "test")
        catalog.set_subscriptions(con, subscription, seats, "test")
    return warehouse


def warehouse_at_version(path: Path, below: int) -> duckdb.DuckDBPyConnection:
    """A warehouse as an older rosterflow made it: the schema migrations before version ``below``
    applied and recorded, nothing else. The caller fills it and closes the connection."""
    from warehouse.connection import migration_scripts

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    for version, name, sql in migration_scripts():
        if version < below:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
    return con
