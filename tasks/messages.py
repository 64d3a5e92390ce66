"""Messages after a commit: each teacher's roster, a copy of each to the administrator, and the
administrator's confirmation; kept in the warehouse (the message center), written to the outbox,
and sent by SMTP when a server is configured.

Building writes every message, then reads the written messages back: only when every credential
the batch issued is found again in the attachments are the batch's plain passwords purged from the
warehouse (from then on they exist only in the messages, which the teachers hand to students).
A build that fails, by an error or by the read-back, is recorded in ``message_builds``, keeps the
passwords, holds the batch's messages unsent, and is finished by building again
(``rosterflow messages build N``). Sending records each message's outcome; a failed message stays
in the message center and is sent again by the next ``send_messages`` (``rosterflow messages send``),
never twice once sent. Outbox files hold passwords: they are written 0600 in 0700 folders.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import duckdb
import fastexcel
import polars as pl

from tasks.commit import committed_summary
from tasks.exports import private_dir, write_private_bytes, write_xlsx
from tasks.mail import MailSettings
from tasks.progress import Progress, Ticker
from warehouse import batches
from warehouse.connection import ArrowStream, transaction
from warehouse.handle import Warehouse

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
ROSTER_COLUMNS = ["Class Code", "Term", "Class Period", "Student First Name", "Student Last Name", "Student ID",
                  "Login Name", "Student Password"]
LOGIN_HEADER, PASSWORD_HEADER = "Login Name", "Student Password"
MESSAGE_SCHEMA = {"kind": pl.String, "recipient": pl.String, "about": pl.String, "subject": pl.String,
                  "body": pl.String, "attachment": pl.String, "eml_path": pl.String, "error": pl.String}


class MessageError(RuntimeError):
    """Messages cannot be built for this batch; the message says why."""


class MessageBuildFailed(MessageError):
    """The batch is committed but its messages could not be written or did not read back whole.
    The failure is recorded (``message_builds``), the plain passwords are kept, and building again
    finishes the job once the cause is fixed."""

    def __init__(self, batch_id: int, reason: str) -> None:
        super().__init__(reason)
        self.batch_id, self.reason = batch_id, reason

    @property
    def advice(self) -> str:
        """What to tell the person who committed the batch."""
        return (f"Batch {self.batch_id} committed; messages could not be written: {self.reason}. "
                f"Fix it and run `rosterflow messages build {self.batch_id}`")


def roster_rows(con: duckdb.DuckDBPyConnection, batch_id: int) -> pl.DataFrame:
    """Every enrollment the batch created, with its teacher, class and the student's login; the
    password for students the batch created (existing students keep theirs)."""
    return con.sql(
        "SELECT t.first_name || ' ' || t.last_name AS teacher, t.email, sc.name AS school,"
        " c.class_name, c.class_code AS \"Class Code\", c.term AS \"Term\", c.period AS \"Class Period\","
        " s.first_name AS \"Student First Name\", s.last_name AS \"Student Last Name\", s.student_id AS \"Student ID\","
        " s.login_name AS \"Login Name\","
        " coalesce(ic.password, '(existing account: password unchanged)') AS \"Student Password\""
        " FROM enrollments e JOIN classes c USING (class_id) JOIN teachers t USING (teacher_id)"
        " JOIN schools sc ON sc.school_id = c.school_id JOIN students s ON s.student_key = e.student_key"
        " LEFT JOIN issued_credentials ic ON ic.batch_id = e.created_batch AND ic.student_key = e.student_key"
        " WHERE e.created_batch = $b ORDER BY t.email, sc.name, c.class_code, s.last_name, s.first_name",
        params={"b": batch_id},
    ).pl()


def roster_sheets(teacher_rows: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    """One teacher's roster workbook: a sheet per school (keyed by the school's full name, which
    ``write_xlsx`` turns into a legal, distinct sheet name) and, above each table, the full school
    name, since a sheet name may have to be shortened."""
    sheets = {f"Student List {school}": frame.select(ROSTER_COLUMNS)
              for (school,), frame in teacher_rows.group_by("school", maintain_order=True)}
    titles = {key: f"School: {key.removeprefix('Student List ')}" for key in sheets}
    return sheets, titles


def write_eml(path: Path, sender: str, recipient: str, subject: str, body: str, attachment: Path | None) -> Path:
    """The whole message as an .eml file only its owner can read (it embeds the passwords)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment.read_bytes(), maintype=XLSX[0], subtype=XLSX[1], filename=attachment.name)
    private_dir(path.parent)
    return write_private_bytes(path, message.as_bytes(policy=email.policy.SMTP))


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in text)


def read_back_credentials(workbook: bytes) -> set[tuple[str, str]]:
    """Every (login name, password) pair in a roster workbook: every sheet is read without assuming
    where the table starts (a title row stands above it), from its "Login Name" and "Student
    Password" header cells down."""
    reader = fastexcel.read_excel(workbook)
    pairs: set[tuple[str, str]] = set()
    for name in reader.sheet_names:
        rows = reader.load_sheet(name, header_row=None, dtypes="string").to_polars().rows()
        header = next((i for i, row in enumerate(rows) if LOGIN_HEADER in row and PASSWORD_HEADER in row), None)
        if header is None:
            continue
        login, password = rows[header].index(LOGIN_HEADER), rows[header].index(PASSWORD_HEADER)
        pairs |= {(row[login], row[password]) for row in rows[header + 1:] if row[login] and row[password]}
    return pairs


def eml_credentials(eml_path: str | Path) -> set[tuple[str, str]]:
    """The (login, password) pairs in the attachments of a written message; empty when the file is
    gone or unreadable (then nothing it should hold counts as found)."""
    try:
        with Path(eml_path).open("rb") as stored:
            message = BytesParser(policy=email.policy.default).parse(stored)
        pairs: set[tuple[str, str]] = set()
        for part in message.iter_attachments():
            pairs |= read_back_credentials(part.get_content())
        return pairs
    except Exception:  # noqa: BLE001 (a file that cannot be read back holds nothing we can count on)
        return set()


def verify_messages(con: duckdb.DuckDBPyConnection, batch_id: int, messages: pl.DataFrame) -> dict[str, Any]:
    """Read the written messages back and look for every credential the batch issued (see
    ``check_messages``)."""
    return check_messages(*issued_credentials(con, batch_id), messages)


def issued_credentials(con: duckdb.DuckDBPyConnection,
                       batch_id: int) -> tuple[set[tuple[str, str]], dict[str, set[tuple[str, str]]]]:
    """The (login, password) pairs the batch issued, and those each teacher's roster must hold."""
    issued = {(login, password) for login, password in con.execute(
        "SELECT login_name, password FROM issued_credentials WHERE batch_id = ?", [batch_id]).fetchall()}
    expected: dict[str, set[tuple[str, str]]] = {}
    for teacher_email, login, password in con.execute(
        "SELECT DISTINCT t.email, ic.login_name, ic.password FROM issued_credentials ic"
        " JOIN enrollments e ON e.created_batch = ic.batch_id AND e.student_key = ic.student_key"
        " JOIN classes c USING (class_id) JOIN teachers t USING (teacher_id) WHERE ic.batch_id = ?", [batch_id],
    ).fetchall():
        expected.setdefault(teacher_email, set()).add((login, password))
    return issued, expected


def check_messages(issued: set[tuple[str, str]], expected: dict[str, set[tuple[str, str]]],
                   messages: pl.DataFrame) -> dict[str, Any]:
    """Read the written messages back and look for every issued credential (no warehouse needed).

    ``messages`` has ``kind``, ``about`` and ``eml_path``. Each teacher's roster (and its copy)
    must hold every new student of that teacher's classes, and every issued credential must be in
    some teacher's roster. Returns ``issued``, ``found``, ``missing`` (logins in no message), and
    ``message_errors`` (eml path -> why).
    """
    in_rosters: set[tuple[str, str]] = set()
    message_errors: dict[str, str] = {}
    for message in messages.filter(pl.col("kind").is_in(["teacher_roster", "admin_copy"])).to_dicts():
        found = eml_credentials(message["eml_path"])
        if message["kind"] == "teacher_roster":
            in_rosters |= found
        lacking = expected.get(message["about"], set()) - found
        if lacking:
            message_errors[message["eml_path"]] = (
                f"read back, its roster lacks {len(lacking)} of its new students' logins and passwords "
                f"({', '.join(sorted(login for login, _ in lacking)[:10])})")
    missing = sorted(login for login, _ in issued - in_rosters)
    return {"issued": len(issued), "found": len(issued & in_rosters), "missing": missing,
            "message_errors": message_errors}


def build_record(con: duckdb.DuckDBPyConnection, batch_id: int) -> dict[str, Any] | None:
    """The batch's message build (status, error, attempts), or None if never recorded."""
    rows = con.sql("SELECT * FROM message_builds WHERE batch_id = $b", params={"b": batch_id}).pl()
    return rows.to_dicts()[0] if rows.height else None


def _record_build(con: duckdb.DuckDBPyConnection, batch_id: int, status: str, error: str | None,
                  issued: int | None = None, found: int | None = None) -> None:
    """Upsert the batch's build record; call inside a transaction."""
    con.execute(
        "INSERT INTO message_builds (batch_id, status, error, attempts, credentials_issued, credentials_found)"
        " VALUES ($b, $status, $error, 1, $issued, $found) ON CONFLICT (batch_id) DO UPDATE SET"
        " status = excluded.status, error = excluded.error, attempts = message_builds.attempts + 1,"
        " credentials_issued = excluded.credentials_issued, credentials_found = excluded.credentials_found,"
        " updated_at = now()::TIMESTAMP",
        {"b": batch_id, "status": status, "error": error, "issued": issued, "found": found},
    )


def plain_password_count(con: duckdb.DuckDBPyConnection, batch_id: int) -> int:
    """How many plain passwords the batch still holds in the warehouse."""
    return con.execute("SELECT count(*) FROM issued_credentials WHERE batch_id = ?", [batch_id]).fetchall()[0][0]


@dataclass(frozen=True)
class MessageInputs:
    """What building a batch's messages reads from the warehouse, read in one short hold."""

    summary: dict[str, Any]
    batch: dict[str, Any]
    rows: pl.DataFrame
    sent: pl.DataFrame
    files: list[str]
    remaining: pl.DataFrame
    issued: set[tuple[str, str]]
    expected: dict[str, set[tuple[str, str]]]


def read_message_inputs(con: duckdb.DuckDBPyConnection, batch_id: int, existing: pl.DataFrame) -> MessageInputs:
    """Everything the batch's messages say, and the credentials they must carry."""
    batch = batches.get_batch(con, batch_id)
    files = [r[0] for r in con.execute(
        "SELECT DISTINCT file_name FROM batch_files WHERE batch_id = ? ORDER BY file_name", [batch_id]).fetchall()]
    remaining = con.sql(
        "SELECT coalesce(sc.name, 'district pool') AS pool, s.available FROM subscriptions s"
        " LEFT JOIN schools sc USING (school_id) WHERE s.subscription_type = $t ORDER BY s.school_id NULLS FIRST",
        params={"t": batch["subscription_type"]},
    ).pl()
    return MessageInputs(committed_summary(con, batch_id), batch, roster_rows(con, batch_id),
                         existing.filter(pl.col("status") == "sent"), files, remaining,
                         *issued_credentials(con, batch_id))


def build_messages(wh: Warehouse, batch_id: int, outbox_dir: Path, mail: MailSettings,
                   progress: Progress | None = None) -> pl.DataFrame:
    """Write the batch's messages to ``outbox_dir/batch-N/messages``, read them back, record them
    in the message center and, once every issued credential is found in them, purge the batch's
    plain passwords; return the batch's messages.

    The warehouse is held only to read what the messages say and to record them: the workbooks and
    messages are written and read back with it closed. Idempotent: a batch whose build is verified
    returns its messages as they are. A batch whose build failed is built again: its unsent messages
    are replaced, sent ones are kept and never written again. Any failure is recorded and raised as
    ``MessageBuildFailed``, with the commit and the plain passwords left as they are.
    ``progress(written, total)`` is told as the teachers' messages are written.
    """
    with wh.read(batch=batch_id, stage="messages") as con:
        if committed_summary(con, batch_id) is None:
            raise MessageError(f"Batch {batch_id} is not committed: there is nothing to announce.")
        existing = message_center(con, batch_id)
        build = build_record(con, batch_id)
        if build is not None and build["status"] == "verified":
            return existing
        if build is None and existing.height and plain_password_count(con, batch_id) == 0:
            return existing   # built before builds were recorded; its passwords are gone already
    try:
        return _write_and_verify_messages(wh, batch_id, Path(outbox_dir), mail, existing, progress)
    except MessageBuildFailed:
        raise
    except Exception as error:   # noqa: BLE001 (whatever broke, the commit stands: record it, say it)
        reason = f"{type(error).__name__}: {error}"
        with wh.write(batch=batch_id, stage="messages") as con, transaction(con):
            _record_build(con, batch_id, "failed", reason)
            batches.audit(con, "rosterflow", "messages.build_failed", "batch", batch_id, batch_id, {"error": reason})
        raise MessageBuildFailed(batch_id, reason) from error


def _write_and_verify_messages(wh: Warehouse, batch_id: int, outbox_dir: Path, mail: MailSettings,
                               existing: pl.DataFrame, progress: Progress | None = None) -> pl.DataFrame:
    """Write the batch's messages not sent yet, read them back, and record them (purging the plain
    passwords when the read-back finds every credential); raise ``MessageBuildFailed`` when it does not."""
    with wh.read(batch=batch_id, stage="messages") as con:
        inputs = read_message_inputs(con, batch_id, existing)
    frame, check, failure = write_messages(inputs, batch_id, outbox_dir, mail, progress)
    with wh.write(batch=batch_id, stage="messages") as con:
        build = build_record(con, batch_id)
        if build is not None and build["status"] == "verified":
            return message_center(con, batch_id)   # another process finished the build meanwhile
        _record_written_messages(con, batch_id, frame, inputs.sent.height, check, failure)
        messages = message_center(con, batch_id)
    if failure:
        raise MessageBuildFailed(batch_id, failure)
    return messages


def write_messages(inputs: MessageInputs, batch_id: int, outbox_dir: Path, mail: MailSettings,
                   progress: Progress | None = None) -> tuple[pl.DataFrame, dict[str, Any], str | None]:
    """Write the batch's messages (all but those already sent) and read them back, without the
    warehouse: the written messages, the read-back check, and why it failed (None when it passed)."""
    private_dir(outbox_dir / f"batch-{batch_id}")
    writer = _MessageWriter(private_dir(outbox_dir / f"batch-{batch_id}" / "messages"), mail.sender,
                            {(r["kind"], r["recipient"], r["about"]) for r in inputs.sent.to_dicts()})
    _write_teacher_rosters(writer, inputs.rows, inputs.batch, batch_id, mail.admin_email, progress)
    _write_admin_confirmation(writer, inputs, batch_id, mail.admin_email)
    return _read_back(inputs, writer.frame())


class _MessageWriter:
    """Writes a batch's messages as .eml files in one folder, each under its own file name, and
    keeps a record of each; a message already sent is never written again."""

    def __init__(self, folder: Path, sender: str, sent_keys: set[tuple[str, str, str]]) -> None:
        self.folder, self.sender, self.sent_keys = folder, sender, sent_keys
        self.records: list[dict[str, Any]] = []
        self._stems: set[str] = set()

    def unique_stem(self, stem: str) -> str:
        """``stem``, numbered when a file of the folder already took it."""
        # Two addresses can make the same file name once unsafe characters are replaced.
        candidate, number = stem, 1
        while candidate.lower() in self._stems:
            number += 1
            candidate = f"{stem}-{number}"
        self._stems.add(candidate.lower())
        return candidate

    def write(self, kind: str, recipient: str, about: str, subject: str, body: str, attachment: Path | None) -> None:
        if (kind, recipient, about) in self.sent_keys:
            return   # already delivered: never written or sent again
        eml = write_eml(self.folder / f"{self.unique_stem(f'{kind}-{_safe(about or recipient)}')}.eml", self.sender,
                        recipient, subject, body, attachment)
        self.records.append({"kind": kind, "recipient": recipient, "about": about, "subject": subject, "body": body,
                             "attachment": str(attachment) if attachment else None, "eml_path": str(eml),
                             "error": None})

    def frame(self) -> pl.DataFrame:
        """The messages written, in the message center's columns."""
        return pl.DataFrame(self.records, schema=MESSAGE_SCHEMA)


def _write_teacher_rosters(writer: _MessageWriter, rows: pl.DataFrame, batch: dict[str, Any], batch_id: int,
                           admin_email: str, progress: Progress | None = None) -> None:
    """Each teacher's roster workbook with its message, and the administrator's copy of it;
    ``progress(teachers done, teachers)`` is told as they are written."""
    ticker = Ticker(progress, rows["email"].n_unique())
    for done, ((teacher_email,), group) in enumerate(rows.group_by("email", maintain_order=True)):
        ticker.tell(done)
        teacher = group["teacher"][0]
        if {("teacher_roster", teacher_email, teacher_email),
                ("admin_copy", admin_email, teacher_email)} <= writer.sent_keys:
            continue
        sheets, titles = roster_sheets(group)
        workbook = write_xlsx(writer.folder / f"{writer.unique_stem(f'roster-{_safe(teacher_email)}')}.xlsx", sheets,
                              titles, private=True)
        subject = f"Your {batch['term']} classes and student logins"
        body = _teacher_message_body(teacher, group, batch_id)
        writer.write("teacher_roster", teacher_email, teacher_email, subject, body, workbook)
        writer.write("admin_copy", admin_email, teacher_email, f"Copy: {subject} ({teacher}, {teacher_email})",
                     f"A copy of the message sent to {teacher} <{teacher_email}>.\n\n{body}", workbook)
    ticker.tell(ticker.total)


def _teacher_message_body(teacher: str, teacher_rows: pl.DataFrame, batch_id: int) -> str:
    """The message to a teacher: the classes registered for them, and what the workbook holds."""
    classes = teacher_rows.group_by("school", "class_name", "Class Code", maintain_order=True).agg(pl.len().alias("n"))
    lines = [f"- {c['school']}, {c['class_name']} (class code {c['Class Code']}): {c['n']} student(s) registered"
             for c in classes.to_dicts()]
    return (f"Dear {teacher},\n\nThese classes were registered for you in batch {batch_id}:\n\n" + "\n".join(lines)
            + "\n\nThe attached workbook lists each student's login name and, for new students, the password "
            "(one sheet per school). Please hand each student their own login; existing students keep their "
            "password.\n")


def _write_admin_confirmation(writer: _MessageWriter, inputs: MessageInputs, batch_id: int, admin_email: str) -> None:
    """The administrator's confirmation: what the batch registered and the subscriptions left."""
    batch, summary = inputs.batch, inputs.summary
    body = (
        f"Batch {batch_id} ({batch['mode']}, {batch['term']}) is complete.\n\n"
        f"Students registered: {summary['enrollments_created']} enrollment(s); {summary['students_created']} new "
        f"student account(s); {summary['students_removed']} student(s) removed (restorable).\n"
        f"Subscriptions used: {summary['subscriptions_used']} '{batch['subscription_type']}'.\n"
        f"Subscriptions remaining:\n" + "\n".join(f"- {r['pool']}: {r['available']}" for r in inputs.remaining.to_dicts())
        + f"\n\nEach teacher was sent their roster; you have a copy of each ({inputs.rows['email'].n_unique()}).\n"
    )
    writer.write("admin_confirmation", admin_email, "", f"Batch {batch['mode'].title()} completed: {', '.join(inputs.files)}",
                 body, None)


def _read_back(inputs: MessageInputs, written: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any], str | None]:
    """Read the written and the sent messages back: the written messages (each marked with its
    error when a credential is missing), the check, and why the build failed (None when it passed)."""
    check = check_messages(inputs.issued, inputs.expected, pl.concat([written.select("kind", "about", "eml_path"),
                                                                      inputs.sent.select("kind", "about", "eml_path")]))
    if not (check["missing"] or check["message_errors"]):
        return written, check, None
    failure = (f"read back, {len(check['missing'])} of the {check['issued']} credential(s) the batch issued are "
               f"in no teacher's roster" + (f" ({', '.join(check['missing'][:10])})" if check["missing"] else "")
               + f" and {len(check['message_errors'])} roster(s) lack some; the plain passwords are kept")
    held = f"held: the batch's messages failed the read-back check ({failure})"
    written = written.with_columns(error=pl.col("eml_path").replace_strict(
        check["message_errors"], default=pl.lit(held), return_dtype=pl.String))
    return written, check, failure


def _record_written_messages(con: duckdb.DuckDBPyConnection, batch_id: int, frame: pl.DataFrame, kept_sent: int,
                             check: dict[str, Any], failure: str | None) -> None:
    """In one transaction: the written messages replace the batch's unsent ones, the plain
    passwords are purged when the read-back passed, and the build is recorded and audited."""
    with transaction(con):
        con.execute("DELETE FROM messages WHERE batch_id = ? AND status <> 'sent'", [batch_id])
        con.register("message_frame", ArrowStream(frame))
        con.execute(
            "INSERT INTO messages (batch_id, kind, recipient, about, subject, body, attachment, eml_path, status, error)"
            " SELECT ?, kind, recipient, about, subject, body, attachment, eml_path,"
            " CASE WHEN error IS NULL THEN 'written' ELSE 'failed' END, error FROM message_frame",
            [batch_id],
        )
        con.unregister("message_frame")
        purged = 0
        if failure is None:
            purged = len(con.execute("DELETE FROM issued_credentials WHERE batch_id = ? RETURNING student_key",
                                     [batch_id]).fetchall())
        _record_build(con, batch_id, "failed" if failure else "verified", failure, check["issued"], check["found"])
        batches.audit(con, "rosterflow", "messages.build", "batch", batch_id, batch_id,
                      {"messages": frame.height, "kept_sent": kept_sent, "credentials_issued": check["issued"],
                       "credentials_found": check["found"], "plain_passwords_purged": purged, "error": failure})


def message_center(con: duckdb.DuckDBPyConnection, batch_id: int | None = None) -> pl.DataFrame:
    """The messages of one batch (or all), oldest first."""
    return con.sql(
        "SELECT message_id, batch_id, kind, recipient, about, subject, status, attempts, error, attachment, eml_path,"
        " created_at, sent_at, files_purged_at FROM messages WHERE $b IS NULL OR batch_id = $b ORDER BY message_id",
        params={"b": batch_id},
    ).pl()


def failed_builds(con: duckdb.DuckDBPyConnection, batch_id: int | None = None) -> pl.DataFrame:
    """Committed batches whose messages could not be built or did not read back whole, with why
    and how many plain passwords they still hold."""
    return con.sql(
        "SELECT b.batch_id, b.status, b.error, b.attempts, b.updated_at,"
        " (SELECT count(*) FROM issued_credentials ic WHERE ic.batch_id = b.batch_id) AS plain_passwords"
        " FROM message_builds b WHERE b.status = 'failed' AND ($b IS NULL OR b.batch_id = $b) ORDER BY b.batch_id",
        params={"b": batch_id},
    ).pl()


def send_messages(wh: Warehouse, mail: MailSettings, batch_id: int | None = None) -> dict[str, int]:
    """Send every message not sent yet (written, or failed before) of one batch or all, over one
    SMTP connection; record each outcome. Without an SMTP host, nothing is sent (the outbox holds
    them). Messages of a batch whose build failed are held until it is built again. Returns counts
    of sent and failed. The warehouse is held only to read what waits and to record each outcome,
    never while a mail server is talked to."""
    with wh.read(batch=batch_id, stage="send messages") as con:
        waiting = con.sql(
            "SELECT message_id, eml_path FROM messages m WHERE status IN ('written', 'failed')"
            " AND ($b IS NULL OR batch_id = $b) AND NOT EXISTS (SELECT 1 FROM message_builds mb"
            " WHERE mb.batch_id = m.batch_id AND mb.status = 'failed') ORDER BY message_id", params={"b": batch_id},
        ).pl()
    if not mail.smtp_host or waiting.is_empty():
        return {"sent": 0, "failed": 0}
    sent = failed = 0
    try:
        smtp = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=30)
        if mail.starttls:
            smtp.starttls()
        if mail.smtp_user:
            smtp.login(mail.smtp_user, mail.smtp_password or "")
    except (OSError, smtplib.SMTPException) as error:
        # The commit is done whatever happens here: the messages wait, marked failed, for the next send.
        _record_outcome(wh, waiting["message_id"].to_list(),
                        f"cannot reach {mail.smtp_host}:{mail.smtp_port}: {type(error).__name__}: {error}")
        return {"sent": 0, "failed": waiting.height}
    with smtp:
        for message_id, eml_path in waiting.iter_rows():
            try:
                with Path(eml_path).open("rb") as stored:
                    message = BytesParser(policy=email.policy.SMTP).parse(stored)
                smtp.send_message(message)
            except (OSError, smtplib.SMTPException) as error:
                _record_outcome(wh, [message_id], f"{type(error).__name__}: {error}")
                failed += 1
                continue
            # One status write per message, right after it left: a crash in the middle of a batch
            # must not send the messages already delivered a second time.
            _record_outcome(wh, [message_id], None)
            sent += 1
    return {"sent": sent, "failed": failed}


def _record_outcome(wh: Warehouse, message_ids: list[int], error: str | None) -> None:
    with wh.write(stage="send messages") as con, transaction(con):
        con.execute(
            "UPDATE messages SET status = CASE WHEN $error IS NULL THEN 'sent' ELSE 'failed' END, error = $error,"
            " attempts = attempts + 1, sent_at = CASE WHEN $error IS NULL THEN current_timestamp END"
            " WHERE list_contains($ids, message_id)",
            {"error": error, "ids": message_ids},
        )


def deliver(wh: Warehouse, batch_id: int, outbox_dir: Path, mail: MailSettings,
            progress: Progress | None = None) -> dict:
    """Build the batch's messages (once) and send those not sent yet; return what happened.
    Raises ``MessageBuildFailed`` (recorded) when the messages cannot be built whole."""
    messages = build_messages(wh, batch_id, outbox_dir, mail, progress)
    outcome = {"sent": 0, "failed": 0}
    if mail.smtp_host:
        outcome = send_messages(wh, mail, batch_id)
    return {"messages": messages.height, **outcome,
            "outbox": sorted({p for p in messages["attachment"].drop_nulls().to_list()} | set(messages["eml_path"]))}


def purge_sent_files(con: duckdb.DuckDBPyConnection, sent_before: dt.datetime, actor: str) -> dict[str, Any]:
    """Delete from the outbox the .eml files and attachments (they hold passwords) of messages sent
    before ``sent_before``; record it on each message and in the audit log.

    Unsent messages (written, failed, held) are never purged, nor an attachment another message
    still needs (a teacher's roster and its copy share one). Returns what was deleted and kept.
    """
    rows = con.sql("SELECT message_id, batch_id, status, sent_at, attachment, eml_path FROM messages"
                   " WHERE files_purged_at IS NULL ORDER BY message_id").pl()
    due = rows.filter((pl.col("status") == "sent") & (pl.col("sent_at") < sent_before))
    due_ids = set(due["message_id"].to_list())
    still_needed = {r["attachment"] for r in rows.to_dicts() if r["attachment"] and r["message_id"] not in due_ids}
    deleted: list[str] = []
    for path in [*due["eml_path"].to_list(),
                 *sorted(set(due["attachment"].drop_nulls().to_list()) - still_needed)]:
        target = Path(path)
        if target.exists():
            target.unlink()
            deleted.append(path)
    result = {"messages": len(due_ids), "deleted": deleted,
              "kept_unsent": rows.filter(pl.col("status") != "sent").height,
              "kept_sent_since": rows.filter(pl.col("status") == "sent").height - len(due_ids),
              "kept_shared_attachments": sorted(set(due["attachment"].drop_nulls().to_list()) & still_needed)}
    if due_ids:
        with transaction(con):
            con.execute("UPDATE messages SET files_purged_at = current_timestamp WHERE list_contains($ids, message_id)",
                        {"ids": sorted(due_ids)})
            batches.audit(con, actor, "messages.purge_files", "messages", None, None,
                          {"sent_before": sent_before.isoformat(), **result})
    return result


def reconcile_plain_passwords(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """After an upgrade: committed batches that still hold plain passwords. A batch whose written
    messages read back with every issued credential gets its passwords purged (and its build
    recorded as verified); every other one is listed with why, to be finished with
    ``rosterflow messages build N``. A password found in no written message is never purged."""
    purged, waiting = [], []
    for (batch_id,) in con.execute(
        "SELECT DISTINCT ic.batch_id FROM issued_credentials ic JOIN commit_markers cm USING (batch_id) ORDER BY 1"
    ).fetchall():
        count = plain_password_count(con, batch_id)
        messages = message_center(con, batch_id)
        build = build_record(con, batch_id)
        if messages.height and (build is None or build["status"] == "verified"):
            check = verify_messages(con, batch_id, messages)
            if not check["missing"] and not check["message_errors"]:
                with transaction(con):
                    con.execute("DELETE FROM issued_credentials WHERE batch_id = ?", [batch_id])
                    _record_build(con, batch_id, "verified", None, check["issued"], check["found"])
                    batches.audit(con, "rosterflow", "messages.passwords_purged", "batch", batch_id, batch_id,
                                  {"plain_passwords_purged": count, "reason": "every one read back from its messages"})
                purged.append({"batch_id": batch_id, "passwords": count})
                continue
            reason = f"its written messages lack {len(check['missing'])} of {check['issued']} credential(s)"
        elif build is not None:
            reason = build["error"] or "its message build failed"
        else:
            reason = "no message was ever written for it"
        waiting.append({"batch_id": batch_id, "passwords": count, "reason": reason})
    return {"purged": purged, "waiting": waiting}
