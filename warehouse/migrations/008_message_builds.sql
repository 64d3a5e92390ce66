-- Whether a committed batch's messages were built and every issued credential was found again by
-- reading the written messages back. Plain passwords are purged only for a 'verified' build; a
-- 'failed' one keeps them and holds the batch's messages unsent, with the reason, until
-- `rosterflow messages build N` succeeds. Batches committed before this table existed have no row.
CREATE TABLE message_builds (
    batch_id            BIGINT PRIMARY KEY,
    status              VARCHAR NOT NULL CHECK (status IN ('verified', 'failed')),
    error               VARCHAR,
    attempts            INTEGER NOT NULL DEFAULT 0,
    credentials_issued  INTEGER,
    credentials_found   INTEGER,
    updated_at          TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- When a sent message's files (the .eml and its attachment, both holding passwords) were deleted
-- from the outbox by `rosterflow messages purge`.
ALTER TABLE messages ADD COLUMN files_purged_at TIMESTAMP;
