"""How messages leave: the mail settings, apart from the messages themselves so that reading the
settings (every command does) does not import what building messages needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MailSettings:
    """How messages leave: always written to the outbox; sent by SMTP when ``smtp_host`` is set."""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    starttls: bool = False
    sender: str = "rosterflow@localhost"
    admin_email: str = "administrator@localhost"
