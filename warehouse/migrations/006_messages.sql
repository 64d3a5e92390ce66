-- The message center: every message a commit produces (a roster to each teacher, a copy of each to
-- the administrator, the administrator's confirmation), where its file lies in the outbox, and
-- whether it was sent. One row per batch, kind, recipient and subject teacher, so building the
-- messages twice never doubles them.
CREATE SEQUENCE IF NOT EXISTS message_seq START 1;

CREATE TABLE messages (
    message_id  BIGINT PRIMARY KEY DEFAULT nextval('message_seq'),
    batch_id    BIGINT NOT NULL,
    kind        VARCHAR NOT NULL CHECK (kind IN ('teacher_roster', 'admin_copy', 'admin_confirmation')),
    recipient   VARCHAR NOT NULL,
    about       VARCHAR NOT NULL,   -- the teacher a roster or copy is about; '' for the confirmation
    subject     VARCHAR NOT NULL,
    body        VARCHAR NOT NULL,
    attachment  VARCHAR,            -- the .xlsx in the outbox
    eml_path    VARCHAR NOT NULL,   -- the whole message, as written to the outbox
    status      VARCHAR NOT NULL CHECK (status IN ('written', 'sent', 'failed')),
    error       VARCHAR,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    sent_at     TIMESTAMP,
    UNIQUE (batch_id, kind, recipient, about)
);
