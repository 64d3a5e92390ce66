"""The DuckDB warehouse: schema migrations, connections, transactions and the batch state machine."""

from warehouse.connection import connect, transaction

__all__ = ["connect", "transaction"]
