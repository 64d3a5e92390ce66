"""The DuckDB warehouse: schema migrations, the handle that opens it (waiting its turn), transactions
and the batch state machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warehouse.connection import transaction
    from warehouse.handle import Warehouse, WarehouseBusy, opened

__all__ = ["Warehouse", "WarehouseBusy", "opened", "transaction"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: its light modules (the batch locks, the inbox of
    # requests) serve `rosterflow --help`, which must not wait for DuckDB.
    if name == "transaction":
        from warehouse.connection import transaction

        return transaction
    if name in ("Warehouse", "WarehouseBusy", "opened"):
        from warehouse import handle

        return getattr(handle, name)
    raise AttributeError(f"module 'warehouse' has no attribute {name!r}")
