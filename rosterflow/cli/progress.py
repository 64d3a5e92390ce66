"""Progress bars for the long stages of a command (rows read, rows matched, passwords hashed,
messages written), drawn on stderr, only for a person at a terminal: never with ``--json`` and
never when stdout or stderr goes to a file or a pipe (scripts and logs get the result alone).

``rich`` is imported only when a bar is first drawn, so a command that draws none (or runs
without a terminal) does not pay for it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Iterator

from tasks.progress import Progress


def wants_bars(args: argparse.Namespace) -> bool:
    """Whether this command's output goes to a person at a terminal."""
    return not getattr(args, "json", False) and sys.stdout.isatty() and sys.stderr.isatty()


class Bars:
    """``bars("rows read")`` is a ``progress(done, total)`` callback drawing one bar, or None when
    no bars are wanted."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._display: Any = None
        self._bars: dict[str, Any] = {}

    def __call__(self, what: str) -> Progress | None:
        if not self.enabled:
            return None

        def tell(done: int, total: int) -> None:
            display = self._start()
            if what not in self._bars:
                self._bars[what] = display.add_task(what, total=total)
            display.update(self._bars[what], completed=done, total=total)

        return tell

    def _start(self) -> Any:
        if self._display is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn

            self._display = RichProgress(TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=Console(stderr=True))
            self._display.start()
        return self._display

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None


@contextlib.contextmanager
def progress_bars(args: argparse.Namespace) -> Iterator[Bars]:
    """The command's bars, stopped (and the cursor given back) however the command ends."""
    bars = Bars(wants_bars(args))
    try:
        yield bars
    finally:
        bars.close()
