"""Messages after a commit, sent to a real SMTP server the test starts on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import os
import shutil
import socket
import stat
from pathlib import Path

import fastexcel
import polars as pl
import pytest
from aiosmtpd.controller import Controller

from tasks.credentials import verify_password
from tasks import messages as messages_module
from tasks.messages import (ROSTER_COLUMNS, MailSettings, MessageBuildFailed, build_messages, deliver, message_center,
                            purge_sent_files, read_back_credentials, send_messages)
from tests.batch_helpers import add_catalog, approve_and_commit, approve_args, start
from tests.sheets import roster_row, write_roster
from warehouse.handle import Warehouse, opened

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


@pytest.fixture(scope="module")
def committed_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A registration committed (its messages not yet built), made once for the module."""
    folder = tmp_path_factory.mktemp("committed")
    warehouse = folder / "warehouse.duckdb"
    add_catalog(warehouse, [SCHOOL], {"ALGE1": "Algebra 1", "LV3": "Level 3"}, SUB, 50)
    rows = [roster_row(first=f, last="Dias", student_id=str(i), school=SCHOOL, **MORGAN)
            for i, f in enumerate(["Jose", "Ana", "=1+1"], start=1)]
    rows += [roster_row(first="Sheila", last="Thompson", student_id="9", school=SCHOOL, course="LV3",
                        period="Period 2", **COOPER)]
    return warehouse, register(warehouse, folder, "Batch Fall 2012.xlsx", rows)


@pytest.fixture
def committed(committed_template: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    """The committed registration's warehouse, copied for one test (each builds and sends its own way)."""
    template, batch_id = committed_template
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(template, warehouse)
    return warehouse, batch_id


def attachment_frame(message) -> pl.DataFrame:
    """The first sheet's table; its first row holds the school's full name, the header is below."""
    part = next(p for p in message.iter_attachments())
    return pl.read_excel(io.BytesIO(part.get_content()), infer_schema_length=0, read_options={"header_row": 1})


def test_teachers_get_their_rosters_and_the_administrator_copies_and_a_confirmation(committed, smtp, tmp_path):
    warehouse, batch_id = committed
    inbox, mail, _ = smtp
    with (wh := Warehouse(warehouse)).write() as con:
        outcome = deliver(wh, batch_id, tmp_path / "outbox", mail)
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
    with (wh := Warehouse(warehouse)).write() as con:
        outcome = deliver(wh, batch_id, tmp_path / "outbox", mail)
        assert outcome["sent"] == 0 and outcome["failed"] == 5
        center = message_center(con, batch_id)
    assert set(center["status"]) == {"failed"} and center["error"].str.contains("cannot reach").all()
    server.start()
    with (wh := Warehouse(warehouse)).write() as con:
        assert send_messages(wh, mail, batch_id) == {"sent": 5, "failed": 0}
        assert send_messages(wh, mail, batch_id) == {"sent": 0, "failed": 0}
        # Building again (a re-run of the flow) neither doubles nor re-sends anything.
        assert build_messages(wh, batch_id, tmp_path / "outbox", mail).height == 5
        assert deliver(wh, batch_id, tmp_path / "outbox", mail)["sent"] == 0
        attempts = message_center(con, batch_id)["attempts"].to_list()
    assert len(inbox.messages) == 5 and attempts == [2] * 5


def test_without_an_smtp_server_messages_are_written_to_the_outbox_only(committed, tmp_path):
    warehouse, batch_id = committed
    with (wh := Warehouse(warehouse)).write() as con:
        outcome = deliver(wh, batch_id, tmp_path / "outbox", MailSettings())
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
    with (wh := Warehouse(warehouse)).write() as con:
        outcome = deliver(wh, batch_id, tmp_path / "outbox", with_login)
        center = message_center(con, batch_id)
        committed_rows = con.execute("SELECT count(*) FROM commit_markers").fetchall()
    assert outcome["failed"] == 5 and inbox.messages == [] and committed_rows == [(1,)]
    assert set(center["status"]) == {"failed"} and center["error"].str.contains("SMTP").all()


# Schools whose names share their first 18 characters, or hold characters Excel refuses in a sheet
# name: one teacher teaching in all of them must find every student in the roster.
HARD_SCHOOLS = ["Washington Elementary North", "Washington Elementary South", "Lincoln K-8/Middle School",
                "St. Mary's [Annex]: Upper"]
EVERYWHERE = {"teacher": ("Rosa", "Parks"), "email": "rparks@example.org"}


def hard_district(run, tmp_path: Path) -> int:
    """A registration of three students in each hard-named school, one teacher for all; its batch id."""
    run("init")
    run("school", "add", *HARD_SCHOOLS)
    run("course", "add", "ALGE1=Algebra 1")
    run("subscription", "set", SUB, "100")
    rows = [roster_row(first=first, last=f"Lee{s}", student_id=f"{s}{i}", school=school, **EVERYWHERE)
            for s, school in enumerate(HARD_SCHOOLS) for i, first in enumerate(["Ana", "Ben", "Cy"])]
    code, out, err = run("register", str(write_roster(tmp_path / "hard.xlsx", rows)), "--term", "Fall 2012",
                         "--subscription", SUB, "--json")
    assert code == 0, err
    return json.loads(out)["batch_id"]


def roster_workbooks(eml_path: str) -> list[bytes]:
    with open(eml_path, "rb") as stored:
        message = email.message_from_binary_file(stored, policy=email.policy.default)
    return [part.get_content() for part in message.iter_attachments()]


def test_a_teacher_in_schools_with_long_shared_names_and_forbidden_characters_gets_every_student(
        run, tmp_path, smtp, monkeypatch):
    inbox, mail, _ = smtp
    batch_id = hard_district(run, tmp_path)
    previous = os.umask(0)   # outbox modes must not depend on the umask
    try:
        code, out, err = run(*approve_args(tmp_path / "w.duckdb", batch_id, monkeypatch), "--json")
    finally:
        os.umask(previous)
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["students_created"] == 12
    with opened(tmp_path / "w.duckdb") as con:
        hashes = dict(con.execute("SELECT login_name, password_hash FROM students").fetchall())
        leftover = con.execute("SELECT count(*) FROM issued_credentials").fetchall()
        roster = message_center(con, batch_id).filter(pl.col("kind") == "teacher_roster").to_dicts()
    assert len(roster) == 1 and leftover == [(0,)]

    # One sheet per school, each with a legal, distinct name and the full school name above its table.
    (workbook,) = roster_workbooks(roster[0]["eml_path"])
    reader = fastexcel.read_excel(workbook)
    assert len(reader.sheet_names) == 4 and len({n.casefold() for n in reader.sheet_names}) == 4
    assert all(len(n) <= 31 and not set(n) & set("/:?[]*\\") for n in reader.sheet_names)
    sheets = [reader.load_sheet(n, header_row=None, dtypes="string").to_polars().rows() for n in reader.sheet_names]
    assert sorted(rows[0][0] for rows in sheets) == sorted(f"School: {s}" for s in HARD_SCHOOLS)
    # Every student's login and password is in it, and each is the student's (the stored scrypt hash).
    found = read_back_credentials(workbook)
    assert len(found) == 12 and {login for login, _ in found} == set(hashes)
    assert all(verify_password(password, hashes[login]) for login, password in found)

    # Outbox files hold passwords: owner only, whatever the umask was.
    folder = Path(roster[0]["eml_path"]).parent
    assert {stat.S_IMODE(p.stat().st_mode) for p in (folder, folder.parent)} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}

    # Building again is a no-op.
    before = json.loads(run("messages", "list", "--json")[1])
    code, out, _ = run("messages", "build", str(batch_id))
    assert code == 0 and json.loads(run("messages", "list", "--json")[1]) == before

    # Sent, then the outbox files are purged; a date before the sending keeps them.
    for name, value in (("HOST", "127.0.0.1"), ("PORT", str(mail.smtp_port))):
        monkeypatch.setenv(f"ROSTERFLOW_SMTP_{name}", value)
    assert run("messages", "send")[0] == 0 and len(inbox.messages) == 3
    code, out, _ = run("messages", "purge", "--sent-before", "2000-01-01")
    assert code == 0 and "0 file(s)" in out and len(list(folder.iterdir())) == 4   # 3 .eml, 1 roster
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    code, out, _ = run("messages", "purge", "--sent-before", tomorrow)
    assert code == 0 and "4 file(s) of 3 message(s)" in out and list(folder.iterdir()) == []
    assert all(m["files_purged_at"] for m in json.loads(run("messages", "list", "--json")[1]))


def test_approve_says_when_messages_fail_after_the_commit_and_messages_build_finishes_it(run, tmp_path, monkeypatch):
    batch_id = hard_district(run, tmp_path)
    (tmp_path / "outbox").write_text("a file where the outbox folder should be")
    code, out, err = run(*approve_args(tmp_path / "w.duckdb", batch_id, monkeypatch))
    assert code == 1 and "Traceback" not in err
    assert f"Batch {batch_id} committed; messages could not be written: " in err
    assert f"Fix it and run `rosterflow messages build {batch_id}`" in err
    code, out, _ = run("messages", "list")
    assert f"batch {batch_id}  BUILD FAILED" in out and "12 plain password(s) kept" in out
    assert json.loads(run("batch", "show", str(batch_id), "--json")[1])["status"] == "committed"
    code, _, err = run("messages", "build", str(batch_id))
    assert code == 1 and "messages could not be written" in err

    (tmp_path / "outbox").unlink()
    code, out, err = run("messages", "build", str(batch_id))
    assert code == 0 and "every issued password read back" in out, err
    messages = json.loads(run("messages", "list", "--json")[1])
    assert [m["status"] for m in messages] == ["written"] * 3
    with opened(tmp_path / "w.duckdb") as con:
        assert con.execute("SELECT count(*) FROM issued_credentials").fetchall() == [(0,)]
    assert run("messages", "build", str(batch_id))[0] == 0
    assert json.loads(run("messages", "list", "--json")[1]) == messages


def truncated_sheet_names(group: pl.DataFrame):
    """The sheet naming this module once had: cut to 31 characters, so two schools sharing their
    first 18 characters land on one sheet and the students of one of them are in no message."""
    return ({f"Student List {school}"[:31]: frame.select(ROSTER_COLUMNS)
             for (school,), frame in group.group_by("school", maintain_order=True)}, {})


def test_a_failed_read_back_keeps_the_passwords_and_marks_the_message_failed(run, tmp_path, smtp, monkeypatch):
    inbox, mail, _ = smtp
    warehouse = tmp_path / "w.duckdb"
    batch_id = hard_district(run, tmp_path)
    approve_and_commit(warehouse, batch_id)
    monkeypatch.setattr(messages_module, "roster_sheets", truncated_sheet_names)
    with (wh := Warehouse(warehouse)).write() as con:
        with pytest.raises(MessageBuildFailed, match="3 of the 12 credential"):
            deliver(wh, batch_id, tmp_path / "outbox", mail)
        center = message_center(con, batch_id)
        kept = con.execute("SELECT count(*) FROM issued_credentials").fetchall()
        assert send_messages(wh, mail, batch_id) == {"sent": 0, "failed": 0}   # held, not sent
    assert kept == [(12,)] and inbox.messages == []
    roster = center.filter(pl.col("kind") == "teacher_roster").to_dicts()[0]
    assert roster["status"] == "failed" and "lacks 3" in roster["error"]
    assert set(center["status"]) == {"failed"}
    assert f"batch {batch_id}  BUILD FAILED" in run("messages", "list")[1]

    monkeypatch.undo()
    with (wh := Warehouse(warehouse)).write() as con:
        outcome = deliver(wh, batch_id, tmp_path / "outbox", mail)
        assert con.execute("SELECT count(*) FROM issued_credentials").fetchall() == [(0,)]
        assert deliver(wh, batch_id, tmp_path / "outbox", mail)["sent"] == 0
        rebuilt = message_center(con, batch_id)
    assert outcome["messages"] == 3 and outcome["sent"] == 3 and len(inbox.messages) == 3
    (workbook,) = roster_workbooks(rebuilt.filter(pl.col("kind") == "teacher_roster")["eml_path"][0])
    assert len(read_back_credentials(workbook)) == 12


def test_purge_deletes_the_files_of_sent_messages_only(committed, smtp, tmp_path):
    warehouse, first = committed
    _, mail, _ = smtp
    second = register(warehouse, tmp_path, "later.xlsx", [roster_row(
        first="Lia", last="Moss", student_id="77", school=SCHOOL, teacher=("Kim", "Ode"), email="kode@example.org")])
    with (wh := Warehouse(warehouse)).write() as con:
        sent = deliver(wh, first, tmp_path / "outbox", mail)
        unsent = deliver(wh, second, tmp_path / "outbox", MailSettings())
        result = purge_sent_files(con, dt.datetime.now() + dt.timedelta(days=1), "Pat Admin")
        audited = con.execute("SELECT actor FROM audit_log WHERE action = 'messages.purge_files'").fetchall()
    assert sent["sent"] == 5 and result["messages"] == 5 and result["kept_unsent"] == 3
    assert sorted(result["deleted"]) == sent["outbox"] and not any(Path(p).exists() for p in sent["outbox"])
    assert all(Path(p).exists() for p in unsent["outbox"]) and audited == [("Pat Admin",)]


def test_init_after_an_upgrade_purges_verified_passwords_and_lists_the_others(run, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    batch_id = hard_district(run, tmp_path)
    approve_and_commit(warehouse, batch_id)   # committed; its messages never written (as before the upgrade)
    code, out, _ = run("init")
    assert code == 0 and (f"Batch {batch_id} still holds 12 plain password(s): no message was ever written for it. "
                          f"Run `rosterflow messages build {batch_id}`") in out
    with opened(warehouse) as con:
        issued = con.sql("SELECT * FROM issued_credentials").pl()
    assert run("messages", "build", str(batch_id))[0] == 0
    # Messages written and read back whole, yet the passwords still there (a build before the
    # read-back existed): init finds every one in the messages and purges them.
    with opened(warehouse) as con:
        con.register("issued", issued.to_arrow())
        con.execute("INSERT INTO issued_credentials SELECT * FROM issued; DELETE FROM message_builds")
    code, out, _ = run("init")
    assert code == 0 and f"Batch {batch_id}: 12 plain password(s) purged" in out
    with opened(warehouse) as con:
        assert con.execute("SELECT count(*) FROM issued_credentials").fetchall() == [(0,)]
    assert "plain password" not in run("init")[1]
