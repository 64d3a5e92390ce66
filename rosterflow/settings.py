"""The one place rosterflow reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where rosterflow keeps its state on this machine."""

    warehouse_path: Path
    outbox_dir: Path
    uploads_dir: Path
    approvers: tuple[str, ...]


def load_settings() -> Settings:
    """Read the settings from the environment, with defaults relative to the working directory.

    - ``ROSTERFLOW_WAREHOUSE``: the DuckDB file (default ``var/warehouse.duckdb``).
    - ``ROSTERFLOW_OUTBOX``: where teacher and administrator messages are written (``var/outbox``).
    - ``ROSTERFLOW_UPLOADS``: where uploaded sheets of a collecting migration are kept (``var/uploads``).
    - ``ROSTERFLOW_APPROVERS``: comma-separated names allowed to approve; empty allows anyone.
    """
    approvers = tuple(
        name.strip() for name in os.environ.get("ROSTERFLOW_APPROVERS", "").split(",") if name.strip()
    )
    return Settings(
        warehouse_path=Path(os.environ.get("ROSTERFLOW_WAREHOUSE", "var/warehouse.duckdb")),
        outbox_dir=Path(os.environ.get("ROSTERFLOW_OUTBOX", "var/outbox")),
        uploads_dir=Path(os.environ.get("ROSTERFLOW_UPLOADS", "var/uploads")),
        approvers=approvers,
    )
