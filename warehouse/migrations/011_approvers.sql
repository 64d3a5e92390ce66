-- Registered approvers: an approval, a rejection or a restore is made by a person who proves who they
-- are with the secret they were given once. Only a salted scrypt hash of the secret is stored; a
-- removed approver keeps its row (removed_at) for the audit.
CREATE TABLE approvers (
    name        VARCHAR PRIMARY KEY,
    secret_hash VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    created_by  VARCHAR NOT NULL,
    removed_at  TIMESTAMP,
    removed_by  VARCHAR
);
