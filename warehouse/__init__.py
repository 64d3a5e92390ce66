"""The DuckDB warehouse: schema migrations, the handle that opens it (waiting its turn), transactions
and the batch state machine."""

from warehouse.connection import transaction
from warehouse.handle import Warehouse, WarehouseBusy, opened

__all__ = ["Warehouse", "WarehouseBusy", "opened", "transaction"]
