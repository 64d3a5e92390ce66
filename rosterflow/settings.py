"""The one place rosterflow reads environment variables."""

from __future__ import annotations

import os
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from tasks.mail import MailSettings
from warehouse.locks import DEFAULT_BUSY_TIMEOUT


class SettingsError(ValueError):
    """An environment variable holds a value rosterflow cannot use; the message names it."""


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a number of seconds; set it to e.g. 600, or unset it.") from None
    if not 0 <= value <= 7 * 24 * 3600:
        raise SettingsError(f"{name}={text!r} is out of range; give 0 to 604800 seconds (a week).")
    return value


@dataclass(frozen=True)
class Settings:
    """Where rosterflow keeps its state on this machine."""

    warehouse_path: Path
    outbox_dir: Path
    uploads_dir: Path
    # Where a data team puts roster files for a run started from the Prefect UI; the run form's
    # relative paths are read from here, and the yearly migration reads its `migration` folder.
    inbox_dir: Path = Path("var/inbox")
    # The district's time zone: the yearly schedule runs at 06:00 there.
    timezone: str = "UTC"
    # Where `make serve` serves the Prefect UI and API.
    host: str = "127.0.0.1"
    port: int = 4200
    mail: MailSettings = MailSettings()
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    concurrent_runs: int = 4
    # Never shown (not in the repr): the approver's secret for approve, reject and restore.
    approver_secret: str | None = field(default=None, repr=False)


def _count(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise SettingsError(f"{name}={text!r} must be a whole number from {low} to {high}; unset it for {default}.")
    return int(text)


def _timezone(name: str, fallback: str, default: str) -> str:
    text = (os.environ.get(name) or os.environ.get(fallback) or "").strip().lstrip(":")
    if not text:
        return default
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={text!r} is not a time zone; give the district's IANA time zone, e.g. "
                            f"America/Chicago, or unset it for {default}.") from None
    return text


def _host(name: str, default: str) -> str:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if any(ch.isspace() or ch in "/:@" for ch in text):
        raise SettingsError(f"{name}={text!r} is not a host name or address; give e.g. 127.0.0.1 or 0.0.0.0.")
    return text


def load_settings() -> Settings:
    """Read the settings from the environment, with defaults relative to the working directory.

    - ``ROSTERFLOW_WAREHOUSE``: the DuckDB file (default ``var/warehouse.duckdb``).
    - ``ROSTERFLOW_OUTBOX``: where teacher and administrator messages are written (``var/outbox``).
    - ``ROSTERFLOW_UPLOADS``: where uploaded sheets of a collecting migration are kept (``var/uploads``).
    - ``ROSTERFLOW_INBOX``: the folder on the machine running the flows where roster files are put for
      a run started from the Prefect UI (``var/inbox``); the run form's relative paths are read from
      it, and the yearly migration reads its ``migration`` folder.
    - ``ROSTERFLOW_TIMEZONE``: the district's IANA time zone, e.g. ``America/Chicago``; the yearly
      schedule runs at 06:00 there (default ``TZ``, else UTC).
    - ``ROSTERFLOW_HOST``, ``ROSTERFLOW_PORT``: where `make serve` serves the Prefect UI and API
      (127.0.0.1 and 4200).
    - ``ROSTERFLOW_BUSY_TIMEOUT``: how many seconds a command or task waits for the warehouse while
      another holds it (default 600, ten minutes).
    - ``ROSTERFLOW_CONCURRENT_RUNS``: how many flow runs `make serve` runs at the same time (default 4;
      each waits its turn for the warehouse).
    - ``ROSTERFLOW_APPROVER_SECRET``: the secret of the approver named by ``--approver`` (approve,
      reject) or ``--by`` (restore); unset, the command asks for it when run in a terminal.
    - ``ROSTERFLOW_ADMIN_EMAIL``: the administrator who gets a copy of every message and the
      confirmation (``administrator@localhost``); ``ROSTERFLOW_MAIL_FROM``: the sender.
    - ``ROSTERFLOW_SMTP_HOST`` (unset: messages are only written to the outbox), ``ROSTERFLOW_SMTP_PORT``
      (25), ``ROSTERFLOW_SMTP_USER``, ``ROSTERFLOW_SMTP_PASSWORD``, ``ROSTERFLOW_SMTP_STARTTLS`` (1 to upgrade).
    """
    return Settings(
        warehouse_path=Path(os.environ.get("ROSTERFLOW_WAREHOUSE", "var/warehouse.duckdb")),
        outbox_dir=Path(os.environ.get("ROSTERFLOW_OUTBOX", "var/outbox")),
        uploads_dir=Path(os.environ.get("ROSTERFLOW_UPLOADS", "var/uploads")),
        inbox_dir=Path(os.environ.get("ROSTERFLOW_INBOX", "").strip() or "var/inbox"),
        timezone=_timezone("ROSTERFLOW_TIMEZONE", "TZ", "UTC"),
        host=_host("ROSTERFLOW_HOST", "127.0.0.1"),
        port=_count("ROSTERFLOW_PORT", 4200, 1, 65535),
        approver_secret=os.environ.get("ROSTERFLOW_APPROVER_SECRET") or None,
        busy_timeout=_seconds("ROSTERFLOW_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT),
        concurrent_runs=_count("ROSTERFLOW_CONCURRENT_RUNS", 4, 1, 64),
        mail=MailSettings(
            smtp_host=os.environ.get("ROSTERFLOW_SMTP_HOST") or None,
            smtp_port=int(os.environ.get("ROSTERFLOW_SMTP_PORT", "25")),
            smtp_user=os.environ.get("ROSTERFLOW_SMTP_USER") or None,
            smtp_password=os.environ.get("ROSTERFLOW_SMTP_PASSWORD") or None,
            starttls=os.environ.get("ROSTERFLOW_SMTP_STARTTLS", "") in ("1", "true", "yes"),
            sender=os.environ.get("ROSTERFLOW_MAIL_FROM", "rosterflow@localhost"),
            admin_email=os.environ.get("ROSTERFLOW_ADMIN_EMAIL", "administrator@localhost"),
        ),
    )
