-- Partial uploads: a migration collects sheets from several teachers over days. Each upload is
-- kept (a copy of the file, by its sha256); a corrected sheet from the same teacher replaces the
-- earlier one; nothing is read into the batch until an administrator confirms all are uploaded.
CREATE SEQUENCE IF NOT EXISTS upload_seq START 1;

CREATE TABLE batch_uploads (
    upload_id     BIGINT PRIMARY KEY DEFAULT nextval('upload_seq'),
    batch_id      BIGINT NOT NULL,
    file_name     VARCHAR NOT NULL,
    sha256        VARCHAR NOT NULL,
    stored_path   VARCHAR NOT NULL,
    teachers      VARCHAR[] NOT NULL,
    rows_read     INTEGER NOT NULL,
    problem       VARCHAR,
    uploaded_by   VARCHAR NOT NULL,
    uploaded_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    replaced_by   BIGINT,
    UNIQUE (batch_id, sha256)
);
