"""Parsing workbooks in a child process with memory and time limits.

A hostile or broken workbook can make the spreadsheet parser allocate hundreds of GiB and abort
the whole process, which no exception handler can catch. Each batch's files are parsed by a child
process under ``RLIMIT_AS`` and a deadline; if the child dies on a file, that file is reported and
a fresh child carries on with the files after it. The child can be started ahead of its files
(``start_reader``), so that starting Python and importing the parser overlap the caller's own work.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.read_limits import ReadLimits

if TYPE_CHECKING:
    from tasks.spreadsheets import SheetRead, SpreadsheetError

# Importing this module is light (no polars, no parser): a command starts the reader first, and its
# child starts Python and imports the parser while the command does its own imports. The parsing
# side is imported where it is used.

# What the child says on its standard output once a file's result is complete (followed by the
# file's index): the parent goes on then, without waiting for the child to end. Ending takes the
# child a noticeable while after a large read (it gives back the parser's memory: 0.2 s at 100k
# rows, 0.4 s at a million), which the parent spends validating instead.
DONE = "rosterflow-read-done"


def _limit_memory(memory_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


class Reader:
    """A reader child process started ahead of its files, under the same limits.

    Starting Python and importing the parser costs about half a second of CPU; started at once
    (``start_reader``), the child pays it while the parent does its own work (opening the
    warehouse, reading the catalog) and then waits on its stdin for the files to read. The memory
    limit (``RLIMIT_AS``) is set before it runs any code, so its protection is the one a child
    started for the files gets; its deadline counts from when it is given the files. A reader
    reads one list of files; ``close`` ends it if it was never used."""

    def __init__(self, limits: ReadLimits = ReadLimits()):
        self.limits = limits
        self.process: subprocess.Popen | None = _start_child(limits)

    def take(self, limits: ReadLimits) -> subprocess.Popen | None:
        """The started child, if it was started with these limits and not taken yet."""
        process, self.process = self.process, None
        if process is not None and limits != self.limits:
            _end(process)
            return None
        return process

    def close(self) -> None:
        if self.process is not None:
            _end(self.process)
            self.process = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_reader(limits: ReadLimits = ReadLimits()) -> Reader:
    """Start a reader child now, for files named later (``read_roster_files(..., reader=)``).
    Use it as a context manager, so it ends if the files are never read."""
    return Reader(limits)


def _start_child(limits: ReadLimits) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.isolated_read"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_limit_memory(limits.memory_bytes),
    )


def _end(process: subprocess.Popen) -> None:
    """End a child now: one never given files (closing its stdin would also end it, after its
    imports), or one that took too long or whose parent was interrupted."""
    process.kill()
    if process.stdin is not None and not process.stdin.closed:
        process.communicate()
    else:  # given its files: threads of ``_await_results`` read its pipes
        process.wait()


def read_roster_files(paths: list[str], sheet: str | None = None, limits: ReadLimits = ReadLimits(),
                      reader: Reader | None = None) -> list[SheetRead | SpreadsheetError]:
    """Read every file in a limited child process; one result (rows or the error) per path, in order.

    ``reader``, when given, is a child started ahead (``start_reader``) that reads the first files."""
    from tasks.spreadsheets import SpreadsheetError

    results: list[SheetRead | SpreadsheetError] = []
    remaining = list(paths)
    started = reader.take(limits) if reader is not None else None
    if started is not None and started.poll() is not None:
        # It ended before it was given any file (killed from outside): no file is to blame.
        _end(started)
        started = None
    while remaining:
        with tempfile.TemporaryDirectory(prefix="rosterflow-read-") as out_dir:
            request = {"files": remaining, "sheet": sheet, "out_dir": out_dir, "limits": asdict(limits)}
            child = started or _start_child(limits)
            started = None
            try:
                died, reason = _await_results(child, request, len(remaining),
                                              limits.seconds * max(1, len(remaining)))
            except subprocess.TimeoutExpired:
                _end(child)
                died, reason = True, f"parsing took longer than {limits.seconds:.0f} s"
            except BaseException:  # interrupted: the child does not outlive the read
                _end(child)
                raise
            done = _collect(Path(out_dir), remaining)
        results.extend(done)
        remaining = remaining[len(done):]
        if remaining and died:
            results.append(SpreadsheetError(
                Path(remaining[0]).name, None,
                f"the workbook could not be parsed within {limits.memory_bytes >> 30} GiB of memory and "
                f"{limits.seconds:.0f} s ({reason}); it is damaged or asks for far more than a roster needs.",
                "Copy the roster rows into a new workbook (or the rosterflow template) and upload that.",
            ))
            remaining = remaining[1:]
        elif remaining:
            raise RuntimeError(f"the reader stopped without reading {remaining[0]}: {reason}")
    if started is not None:  # no files: the started child is not needed
        _end(started)
    return results


def _await_results(child: subprocess.Popen, request: dict, files: int, seconds: float) -> tuple[bool, str]:
    """Give the child its files and wait until it says every result is complete, or ends first.
    Returns (whether it died before finishing, why). Raises ``subprocess.TimeoutExpired`` after
    ``seconds``.

    Its standard output and error are read by threads of their own, so that neither pipe fills
    up and the deadline holds. When every result is in, the child is left to end by itself: a
    thread reaps it."""
    said: queue.Queue[str | None] = queue.Queue()
    last_words: list[str] = []
    deadline = time.monotonic() + seconds

    def give() -> None:
        # Written by a thread too: a long list of files fills the pipe until the child reads it.
        try:
            child.stdin.write(json.dumps(request))
        except (BrokenPipeError, ValueError):  # it ended already: what it left is read below
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                child.stdin.close()

    def listen() -> None:
        try:
            for line in child.stdout:
                said.put(line)
        finally:  # whatever ends the reading, the wait below learns it at once
            said.put(None)

    def drain_and_reap() -> None:
        try:
            last_words.append(child.stderr.read())
        finally:
            child.wait()

    reaper = threading.Thread(target=drain_and_reap, name="reader-reaper", daemon=True)
    for thread in (threading.Thread(target=give, name="reader-stdin", daemon=True),
                   threading.Thread(target=listen, name="reader-stdout", daemon=True), reaper):
        thread.start()
    finished = 0
    while finished < files:
        try:
            line = said.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            raise subprocess.TimeoutExpired(child.args, seconds) from None
        if line is None:  # its output ended before every result was in: it died
            break
        finished += line.startswith(DONE)
    else:
        return False, ""
    reaper.join(timeout=max(deadline - time.monotonic(), 0))
    if reaper.is_alive():
        raise subprocess.TimeoutExpired(child.args, seconds)
    return child.returncode != 0 or finished < files, _death_reason("".join(last_words), child.returncode)


def _death_reason(stderr: str, returncode: int) -> str:
    """The line of the child's last words that says what killed it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "memory allocation" in line or "MemoryError" in line or "panicked" in line:
            return line
    return lines[-1] if lines else f"exit status {returncode}"


def _collect(out_dir: Path, files: list[str]) -> list[SheetRead | SpreadsheetError]:
    """The results the child finished, in order, up to the first file it did not finish."""
    import polars as pl

    from tasks.spreadsheets import SheetRead, SpreadsheetError

    done: list[SheetRead | SpreadsheetError] = []
    for index in range(len(files)):
        meta_path = out_dir / f"{index}.json"
        if not meta_path.exists():
            break
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if "error" in meta:
            done.append(SpreadsheetError(**meta["error"]))
        else:
            done.append(SheetRead(rows=pl.read_ipc(out_dir / f"{index}.arrow"), **meta))
    return done


def _child() -> None:
    # Imported before the request is read: a child started ahead pays for it while it waits.
    from tasks.spreadsheets import SpreadsheetError, read_roster_file

    request = json.loads(sys.stdin.read())
    out_dir = Path(request["out_dir"])
    limits = ReadLimits(**request["limits"])
    for index, path in enumerate(request["files"]):
        try:
            read = read_roster_file(Path(path), request["sheet"], limits)
            read.rows.write_ipc(out_dir / f"{index}.arrow")
            meta = {"file_name": read.file_name, "sha256": read.sha256, "sheet": read.sheet,
                    "non_empty_rows": read.non_empty_rows, "warnings": read.warnings,
                    "hidden_sheets": read.hidden_sheets}
        except SpreadsheetError as error:
            meta = {"error": {"file_name": error.file_name, "sheet": error.sheet, "problem": error.problem,
                              "fix": error.fix}}
        except FileNotFoundError:
            meta = {"error": {"file_name": Path(path).name, "sheet": None,
                              "problem": f"the file {path} does not exist.",
                              "fix": "Check the path and upload the file again."}}
        # Written last and renamed into place: a file's result exists only once it is complete.
        partial = out_dir / f"{index}.json.part"
        partial.write_text(json.dumps(meta), encoding="utf-8")
        partial.rename(out_dir / f"{index}.json")
        print(DONE, index, flush=True)


if __name__ == "__main__":
    _child()
    # Every result is written and said: end now, without the interpreter's clean-up (giving the
    # parser's memory back object by object), which only costs the parent's core time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
