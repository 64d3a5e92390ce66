"""Progress of long work (rows read, rows matched, passwords hashed, messages written), told to
whoever runs it: the command line draws a bar, a Prefect task publishes a progress artifact.

A stage takes an optional ``progress(done, total)`` callback; it calls it with counts that never
go down, ending with ``done == total``. Nothing here draws or logs: the caller decides how.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int], None]


class Ticker:
    """Tells ``progress`` about ``done`` of ``total`` at most about ``steps`` times, and always at
    the end: a million rows do not make a million calls."""

    def __init__(self, progress: Progress | None, total: int, steps: int = 100) -> None:
        self.progress, self.total = progress, total
        self.every = max(1, total // steps)
        self.told = -1

    def tell(self, done: int) -> None:
        if self.progress is None or done <= self.told:
            return
        if done >= self.total or done - max(self.told, 0) >= self.every or self.told < 0:
            self.told = done
            self.progress(done, self.total)
