-- Sheets that name a school rosterflow does not know record a request for the school account,
-- so an administrator can add it (or correct the sheet) without hunting through reports.
CREATE TABLE school_requests (
    name          VARCHAR NOT NULL,
    first_batch   BIGINT NOT NULL,
    rows_waiting  INTEGER NOT NULL,
    requested_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    status        VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'added', 'dismissed')),
    UNIQUE (name)
);
