"""What a workbook may ask for before it is parsed: a module of its own, light to import, so that a
command can start the reader's child process (``tasks.isolated_read``) before its own imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    """What a workbook may ask for before rosterflow refuses to parse it."""

    max_file_bytes: int = 256 << 20
    max_uncompressed_bytes: int = 2 << 30
    max_compression_ratio: float = 250.0
    max_columns: int = 200
    max_rows: int = 1_048_575  # student rows below the header (a sheet reaching Excel's last row is refused)
    memory_bytes: int = 6 << 30
    seconds: float = 900.0
