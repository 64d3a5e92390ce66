"""Driving a batch through the plain stage functions, as the command line does."""

from __future__ import annotations

import uuid
from pathlib import Path

from tasks.approve import decide_batch
from tasks.commit import commit_batch
from tasks.pipeline import advance_batch, open_batch
from tasks.review import decide_review, review_items
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


def approve_and_commit(warehouse: Path, batch_id: int, removals: int | None = None, override: bool = False) -> dict:
    """Approve with the plan's removal count (unless given) and commit."""
    wh = Warehouse(warehouse, who="test")
    progress = advance_batch(wh, batch_id)
    with wh.write() as con:
        count = progress["plan"]["removals"] if removals is None else removals
        decide_batch(con, batch_id, "Pat Admin", True, count, override)
        return commit_batch(con, batch_id, "Pat Admin")


def add_district_catalog(warehouse: Path, district) -> Path:
    """Give the warehouse the sample district's schools, courses and subscriptions."""
    from warehouse import catalog

    with opened(warehouse) as con:
        catalog.add_schools(con, list(district.schools), "test")
        catalog.add_courses(con, district.courses, "test")
        catalog.set_subscriptions(con, district.subscription_type, district.subscriptions_available, "test")
    return warehouse
