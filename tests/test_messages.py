"""Messages after a commit, sent to a real SMTP server the test starts on loopback."""

from __future__ import annotations

import email
import email.policy
import io
import socket
from pathlib import Path

import polars as pl
import pytest
from aiosmtpd.controller import Controller

from tasks.credentials import verify_password
from tasks.messages import MailSettings, build_messages, deliver, message_center, send_messages
from tests.batch_helpers import approve_and_commit, start
from tests.sheets import roster_row, write_roster
from warehouse import catalog
from warehouse.connection import opened

SCHOOL, SUB = "ABC High School", "K12 - One Month"
MORGAN = {"teacher": ("Joshua", "Morgan"), "email": "jmorgan@example.org"}
COOPER = {"teacher": ("Amy", "Cooper"), "email": "acooper@example.org"}


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that the test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    """Yields (inbox, mail settings pointing at the server, the server)."""
    server = SmtpServer()
    server.start()
    mail = MailSettings(smtp_host="127.0.0.1", smtp_port=server.port, sender="rosterflow@district.example",
                        admin_email="admin@district.example")
    try:
        yield server.inbox, mail, server
    finally:
        server.stop()


def register(warehouse: Path, tmp_path: Path, name: str, rows: list[list]) -> int:
    progress = start(warehouse, "registration", [write_roster(tmp_path / name, rows)], "Fall 2012", SUB)
    approve_and_commit(warehouse, progress["batch_id"])
    return progress["batch_id"]


@pytest.fixture
def committed(warehouse_path: Path, tmp_path: Path) -> tuple[Path, int]:
    with opened(warehouse_path) as con:
        catalog.add_schools(con, [SCHOOL], "test")
        catalog.add_courses(con, {"ALGE1": "Algebra 1", "LV3": "Level 3"}, "test")
        catalog.set_subscriptions(con, SUB, 50, "test")
    rows = [roster_row(first=f, last="Dias", student_id=str(i), school=SCHOOL, **MORGAN)
            for i, f in enumerate(["Jose", "Ana", "=1+1"], start=1)]
    rows += [roster_row(first="Sheila", last="Thompson", student_id="9", school=SCHOOL, course="LV3",
                        period="Period 2", **COOPER)]
    return warehouse_path, register(warehouse_path, tmp_path, "Batch Fall 2012.xlsx", rows)


def attachment_frame(message) -> pl.DataFrame:
    """The first sheet's table; its first row holds the school's full name, the header is below."""
    part = next(p for p in message.iter_attachments())
    return pl.read_excel(io.BytesIO(part.get_content()), infer_schema_length=0, read_options={"header_row": 1})


def test_teachers_get_their_rosters_and_the_administrator_copies_and_a_confirmation(committed, smtp, tmp_path):
    warehouse, batch_id = committed
    inbox, mail, _ = smtp
    with opened(warehouse) as con:
        outcome = deliver(con, batch_id, tmp_path / "outbox", mail)
        hashes = dict(con.execute("SELECT login_name, password_hash FROM students").fetchall())
        leftover = con.execute("SELECT count(*) FROM issued_credentials").fetchall()
    assert outcome["messages"] == 5 and outcome["sent"] == 5 and outcome["failed"] == 0
    to = {m["X-Envelope-To"]: [] for m in inbox.messages}
    for m in inbox.messages:
        to[m["X-Envelope-To"]].append(m)
    assert sorted(to) == ["acooper@example.org", "admin@district.example", "jmorgan@example.org"]

    morgan = to["jmorgan@example.org"][0]
    roster = attachment_frame(morgan)
    assert roster.columns == ["Class Code", "Term", "Class Period", "Student First Name", "Student Last Name",
                              "Student ID", "Login Name", "Student Password"]
    assert sorted(roster["Student First Name"]) == ["'=1+1", "Ana", "Jose"]   # text, never a formula
    assert set(roster["Term"]) == {"Fall 2012"}
    # The passwords in the roster are the students' (checked against the stored hashes) ...
    assert all(verify_password(p, hashes[login]) for login, p in roster.select("Login Name", "Student Password").rows())
    # ... and no longer in the warehouse in plain text.
    assert leftover == [(0,)]

    admin = to["admin@district.example"]
    copies = [m for m in admin if m["Subject"].startswith("Copy:")]
    assert len(copies) == 2 and {attachment_frame(m).height for m in copies} == {3, 1}
    confirmation = next(m for m in admin if not m["Subject"].startswith("Copy:"))
    assert confirmation["Subject"] == "Batch Registration completed: Batch Fall 2012.xlsx"
    body = confirmation.get_content()
    assert "4 enrollment(s)" in body and "- district pool: 46" in body
    # Everything is in the outbox too, and in the message center.
    assert all(Path(p).exists() for p in outcome["outbox"])
    with opened(warehouse) as con:
        center = message_center(con, batch_id)
    assert center["status"].to_list() == ["sent"] * 5 and center["kind"].value_counts().sort("kind").rows() == [
        ("admin_confirmation", 1), ("admin_copy", 2), ("teacher_roster", 2)]


def test_a_failed_send_is_kept_and_sent_once_later(committed, smtp, tmp_path):
    warehouse, batch_id = committed
    inbox, mail, server = smtp
    server.stop()
    with opened(warehouse) as con:
        outcome = deliver(con, batch_id, tmp_path / "outbox", mail)
        assert outcome["sent"] == 0 and outcome["failed"] == 5
        center = message_center(con, batch_id)
    assert set(center["status"]) == {"failed"} and center["error"].str.contains("cannot reach").all()
    server.start()
    with opened(warehouse) as con:
        assert send_messages(con, mail, batch_id) == {"sent": 5, "failed": 0}
        assert send_messages(con, mail, batch_id) == {"sent": 0, "failed": 0}
        # Building again (a re-run of the flow) neither doubles nor re-sends anything.
        assert build_messages(con, batch_id, tmp_path / "outbox", mail).height == 5
        assert deliver(con, batch_id, tmp_path / "outbox", mail)["sent"] == 0
        attempts = message_center(con, batch_id)["attempts"].to_list()
    assert len(inbox.messages) == 5 and attempts == [2] * 5


def test_without_an_smtp_server_messages_are_written_to_the_outbox_only(committed, tmp_path):
    warehouse, batch_id = committed
    with opened(warehouse) as con:
        outcome = deliver(con, batch_id, tmp_path / "outbox", MailSettings())
        center = message_center(con, batch_id)
    assert outcome["sent"] == 0 and set(center["status"]) == {"written"}
    eml = Path(center.filter(pl.col("kind") == "admin_confirmation")["eml_path"][0])
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "administrator@localhost" and "Batch Fall 2012.xlsx" in parsed["Subject"]


def test_a_refused_login_marks_the_messages_failed_and_the_commit_stands(committed, smtp, tmp_path):
    warehouse, batch_id = committed
    inbox, mail, _ = smtp
    # The test server offers no AUTH: a configured login is refused, as a wrong password would be.
    with_login = MailSettings(**{**mail.__dict__, "smtp_user": "rosterflow", "smtp_password": "wrong"})
    with opened(warehouse) as con:
        outcome = deliver(con, batch_id, tmp_path / "outbox", with_login)
        center = message_center(con, batch_id)
        committed_rows = con.execute("SELECT count(*) FROM commit_markers").fetchall()
    assert outcome["failed"] == 5 and inbox.messages == [] and committed_rows == [(1,)]
    assert set(center["status"]) == {"failed"} and center["error"].str.contains("SMTP").all()
