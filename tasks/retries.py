"""Retrying a Prefect task that found the warehouse busy.

Every task that opens the warehouse waits its turn inside the handle (``ROSTERFLOW_BUSY_TIMEOUT``).
If the warehouse stays busy even longer (a very large migration committing), the task is retried
later instead of failing the run: a form someone submitted is still there on the retry, since the
flow passes it again. Any other failure is final at once.
"""

from __future__ import annotations

from typing import Any

from warehouse.handle import WarehouseBusy

# Seconds between attempts after the handle's own wait has run out.
BUSY_RETRY_DELAYS = [30, 120, 600]


def warehouse_was_busy(task: Any, task_run: Any, state: Any) -> bool:
    """A ``retry_condition_fn``: retry only when the task failed because the warehouse stayed busy."""
    try:
        state.result()
    except WarehouseBusy:
        return True
    except Exception:
        return False
    return False


# Options for ``@task(...)`` on every task that touches the warehouse.
WAREHOUSE_TASK: dict[str, Any] = {"retries": len(BUSY_RETRY_DELAYS), "retry_delay_seconds": BUSY_RETRY_DELAYS,
                                  "retry_condition_fn": warehouse_was_busy}
