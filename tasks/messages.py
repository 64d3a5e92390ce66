"""Messages after a commit: each teacher's roster, a copy of each to the administrator, and the
administrator's confirmation; kept in the warehouse (the message center), written to the outbox,
and sent by SMTP when a server is configured.

Building is idempotent per batch and ends by purging the batch's plain passwords from the
warehouse: from then on they exist only in the messages (the teachers hand them to students).
Sending records each message's outcome; a failed message stays in the message center and is sent
again by the next ``send_messages`` (``rosterflow messages send``), never twice once sent.
"""

from __future__ import annotations

import email.policy
import smtplib
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from prefect import task

from rosterflow.settings import MailSettings, load_settings
from tasks.commit import committed_summary
from tasks.exports import write_xlsx
from warehouse import batches
from warehouse.connection import opened, transaction

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
ROSTER_COLUMNS = ["Class Code", "Term", "Class Period", "Student First Name", "Student Last Name", "Student ID",
                  "Login Name", "Student Password"]


class MessageError(RuntimeError):
    """Messages cannot be built for this batch; the message says why."""


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


def _eml(path: Path, sender: str, recipient: str, subject: str, body: str, attachment: Path | None) -> Path:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment.read_bytes(), maintype=XLSX[0], subtype=XLSX[1], filename=attachment.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(message.as_bytes(policy=email.policy.SMTP))
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in text)


def build_messages(con: duckdb.DuckDBPyConnection, batch_id: int, outbox_dir: Path,
                   mail: MailSettings | None = None) -> pl.DataFrame:
    """Write the batch's messages to ``outbox_dir/batch-N/messages`` and record them in the message
    center, then purge the batch's plain passwords; return the batch's messages.

    Idempotent: a batch whose messages exist returns them as they are. A crash before the record
    leaves the passwords in place, so building again writes the same messages.
    """
    mail = mail or load_settings().mail
    existing = message_center(con, batch_id)
    if existing.height:
        return existing
    summary = committed_summary(con, batch_id)
    if summary is None:
        raise MessageError(f"Batch {batch_id} is not committed: there is nothing to announce.")
    batch = batches.get_batch(con, batch_id)
    rows = roster_rows(con, batch_id)
    files = [r[0] for r in con.execute(
        "SELECT DISTINCT file_name FROM batch_files WHERE batch_id = ? ORDER BY file_name", [batch_id]).fetchall()]
    folder = outbox_dir / f"batch-{batch_id}" / "messages"
    records: list[dict[str, Any]] = []

    def record(kind: str, recipient: str, about: str, subject: str, body: str, attachment: Path | None) -> None:
        eml = _eml(folder / f"{kind}-{_safe(about or recipient)}.eml", mail.sender, recipient, subject, body, attachment)
        records.append({"kind": kind, "recipient": recipient, "about": about, "subject": subject, "body": body,
                        "attachment": str(attachment) if attachment else None, "eml_path": str(eml)})

    for (teacher_email,), group in rows.group_by("email", maintain_order=True):
        teacher = group["teacher"][0]
        workbook = write_xlsx(folder / f"roster-{_safe(teacher_email)}.xlsx", {
            f"Student List {school}"[:31]: frame.select(ROSTER_COLUMNS)
            for (school,), frame in group.group_by("school", maintain_order=True)
        })
        classes = group.group_by("school", "class_name", "Class Code", maintain_order=True).agg(pl.len().alias("n"))
        lines = [f"- {c['school']}, {c['class_name']} (class code {c['Class Code']}): {c['n']} student(s) registered"
                 for c in classes.to_dicts()]
        subject = f"Your {batch['term']} classes and student logins"
        body = (f"Dear {teacher},\n\nThese classes were registered for you in batch {batch_id}:\n\n" + "\n".join(lines)
                + "\n\nThe attached workbook lists each student's login name and, for new students, the password. "
                "Please hand each student their own login; existing students keep their password.\n")
        record("teacher_roster", teacher_email, teacher_email, subject, body, workbook)
        record("admin_copy", mail.admin_email, teacher_email, f"Copy: {subject} ({teacher}, {teacher_email})",
               f"A copy of the message sent to {teacher} <{teacher_email}>.\n\n{body}", workbook)

    remaining = con.sql(
        "SELECT coalesce(sc.name, 'district pool') AS pool, s.available FROM subscriptions s"
        " LEFT JOIN schools sc USING (school_id) WHERE s.subscription_type = $t ORDER BY s.school_id NULLS FIRST",
        params={"t": batch["subscription_type"]},
    ).pl()
    body = (
        f"Batch {batch_id} ({batch['mode']}, {batch['term']}) is complete.\n\n"
        f"Students registered: {summary['enrollments_created']} enrollment(s); {summary['students_created']} new "
        f"student account(s); {summary['students_removed']} student(s) removed (restorable).\n"
        f"Subscriptions used: {summary['subscriptions_used']} '{batch['subscription_type']}'.\n"
        f"Subscriptions remaining:\n" + "\n".join(f"- {r['pool']}: {r['available']}" for r in remaining.to_dicts())
        + f"\n\nEach teacher was sent their roster; you have a copy of each ({rows['email'].n_unique()}).\n"
    )
    record("admin_confirmation", mail.admin_email, "", f"Batch {batch['mode'].title()} completed: {', '.join(files)}",
           body, None)

    frame = pl.DataFrame(records, schema={"kind": pl.String, "recipient": pl.String, "about": pl.String,
                                          "subject": pl.String, "body": pl.String, "attachment": pl.String,
                                          "eml_path": pl.String})
    with transaction(con):
        con.register("message_frame", frame.to_arrow())
        con.execute(
            "INSERT INTO messages (batch_id, kind, recipient, about, subject, body, attachment, eml_path, status)"
            " SELECT ?, kind, recipient, about, subject, body, attachment, eml_path, 'written' FROM message_frame",
            [batch_id],
        )
        con.unregister("message_frame")
        purged = con.execute("DELETE FROM issued_credentials WHERE batch_id = ? RETURNING student_key",
                             [batch_id]).fetchall()
        batches.audit(con, "rosterflow", "messages.build", "batch", batch_id, batch_id,
                      {"messages": frame.height, "plain_passwords_purged": len(purged)})
    return message_center(con, batch_id)


def message_center(con: duckdb.DuckDBPyConnection, batch_id: int | None = None) -> pl.DataFrame:
    """The messages of one batch (or all), oldest first."""
    return con.sql(
        "SELECT message_id, batch_id, kind, recipient, about, subject, status, attempts, error, attachment, eml_path,"
        " created_at, sent_at FROM messages WHERE $b IS NULL OR batch_id = $b ORDER BY message_id",
        params={"b": batch_id},
    ).pl()


def send_messages(con: duckdb.DuckDBPyConnection, mail: MailSettings, batch_id: int | None = None) -> dict[str, int]:
    """Send every message not sent yet (written, or failed before) of one batch or all, over one
    SMTP connection; record each outcome. Without an SMTP host, nothing is sent (the outbox holds
    them). Returns counts of sent and failed."""
    waiting = con.sql(
        "SELECT message_id, eml_path FROM messages WHERE status IN ('written', 'failed')"
        " AND ($b IS NULL OR batch_id = $b) ORDER BY message_id", params={"b": batch_id},
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
        _record_outcome(con, waiting["message_id"].to_list(),
                        f"cannot reach {mail.smtp_host}:{mail.smtp_port}: {type(error).__name__}: {error}")
        return {"sent": 0, "failed": waiting.height}
    with smtp:
        for message_id, eml_path in waiting.iter_rows():
            try:
                with Path(eml_path).open("rb") as stored:
                    message = BytesParser(policy=email.policy.SMTP).parse(stored)
                smtp.send_message(message)
            except (OSError, smtplib.SMTPException) as error:
                _record_outcome(con, [message_id], f"{type(error).__name__}: {error}")
                failed += 1
                continue
            # One status write per message, right after it left: a crash in the middle of a batch
            # must not send the messages already delivered a second time.
            _record_outcome(con, [message_id], None)
            sent += 1
    return {"sent": sent, "failed": failed}


def _record_outcome(con: duckdb.DuckDBPyConnection, message_ids: list[int], error: str | None) -> None:
    with transaction(con):
        con.execute(
            "UPDATE messages SET status = CASE WHEN $error IS NULL THEN 'sent' ELSE 'failed' END, error = $error,"
            " attempts = attempts + 1, sent_at = CASE WHEN $error IS NULL THEN current_timestamp END"
            " WHERE list_contains($ids, message_id)",
            {"error": error, "ids": message_ids},
        )


def deliver(con: duckdb.DuckDBPyConnection, batch_id: int, outbox_dir: Path, mail: MailSettings | None = None) -> dict:
    """Build the batch's messages (once) and send those not sent yet; return what happened."""
    mail = mail or load_settings().mail
    messages = build_messages(con, batch_id, outbox_dir, mail)
    outcome = send_messages(con, mail, batch_id)
    return {"messages": messages.height, **outcome,
            "outbox": sorted({p for p in messages["attachment"].drop_nulls().to_list()} | set(messages["eml_path"]))}


@task(name="messages", retries=2, retry_delay_seconds=30)
def messages_task(warehouse_path: str, batch_id: int, outbox_dir: str) -> dict:
    """Prefect task: write, record and send the batch's messages."""
    with opened(warehouse_path) as con:
        return deliver(con, batch_id, Path(outbox_dir))
