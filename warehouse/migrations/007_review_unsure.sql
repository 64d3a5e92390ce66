-- A reviewer may be unsure and escalate an item: it keeps who said so and when, and it still
-- blocks the batch until someone decides. DuckDB cannot change a CHECK in place, so the table is
-- rebuilt with the same columns, keys and rules, and the two new values.
CREATE TABLE review_items_v7 (
    review_id   BIGINT PRIMARY KEY DEFAULT nextval('review_seq'),
    batch_id    BIGINT NOT NULL,
    row_no      BIGINT NOT NULL,
    reason      VARCHAR NOT NULL,
    status      VARCHAR NOT NULL CHECK (status IN ('pending', 'decided', 'escalated')),
    action      VARCHAR CHECK (action IN ('link', 'new', 'exclude', 'unsure')),
    student_key BIGINT,
    reviewer    VARCHAR,
    decided_at  TIMESTAMP,
    UNIQUE (batch_id, row_no)
);
INSERT INTO review_items_v7 SELECT review_id, batch_id, row_no, reason, status, action, student_key, reviewer,
    decided_at FROM review_items;
DROP TABLE review_items;
ALTER TABLE review_items_v7 RENAME TO review_items;
