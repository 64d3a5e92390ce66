-- Counts an administrator sets are 64-bit: a pool of 2,147,483,648 subscriptions no longer
-- overflows a 32-bit column. DuckDB cannot change the type of a column with a CHECK in place, so
-- the table is rebuilt with the same columns, keys and rules.
CREATE TABLE subscriptions_v9 (
    subscription_type VARCHAR NOT NULL,
    school_id         BIGINT,
    available         BIGINT NOT NULL CHECK (available >= 0),
    UNIQUE (subscription_type, school_id)
);
INSERT INTO subscriptions_v9 SELECT subscription_type, school_id, available FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_v9 RENAME TO subscriptions;
