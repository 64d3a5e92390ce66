-- Decisions people submit (review decisions, approvals) are applied exactly once: each carries a
-- request id (a Prefect run-input key, or an id the command line made or was given), and applying
-- it records the id here in the same transaction. The same request again finds its outcome.
CREATE TABLE applied_requests (
    request_id    VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL,
    batch_id      BIGINT,
    submitted_by  VARCHAR NOT NULL,
    submitted_at  TIMESTAMP NOT NULL,
    applied_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    outcome       JSON NOT NULL
);
