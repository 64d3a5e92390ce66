-- Temporary students: created by hand (first and last name at least) so learning can start before
-- the SIS has the student. A temporary record ends in one of two ways, both kept for history:
--   * a sheet row with its SSID or other ID (or, in a migration, any row linked to it) makes it
--     permanent: status 'active', same student_key, enrollments and login; linked_to = itself;
--   * an administrator links it by hand to an existing permanent student: its enrollments move to
--     that student and the record stays as status 'linked' with linked_to = the permanent student.
-- 'deleted' is never used for either: it means "removed by a migration" and is restorable.
-- A CHECK constraint cannot be changed in place, so the table is rebuilt with the same columns,
-- keys and rules, plus the link columns at the end.
CREATE TABLE students_v5 (
    student_key    BIGINT PRIMARY KEY,
    first_name     VARCHAR NOT NULL,
    last_name      VARCHAR NOT NULL,
    student_id     VARCHAR,
    ssid           VARCHAR,
    other_id       VARCHAR,
    date_of_birth  DATE,
    grade          VARCHAR,
    school_id      BIGINT,
    login_name     VARCHAR UNIQUE,
    password_hash  VARCHAR,
    status         VARCHAR NOT NULL CHECK (status IN ('active', 'deleted', 'temporary', 'linked')),
    created_batch  BIGINT,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    deleted_at     TIMESTAMP,
    deleted_batch  BIGINT,
    linked_to      BIGINT,
    linked_at      TIMESTAMP,
    linked_by      VARCHAR,
    linked_batch   BIGINT,
    -- A record linked by hand always names the permanent student it was linked to.
    CHECK (status <> 'linked' OR (linked_to IS NOT NULL AND linked_to <> student_key))
);
INSERT INTO students_v5 (student_key, first_name, last_name, student_id, ssid, other_id, date_of_birth, grade,
    school_id, login_name, password_hash, status, created_batch, created_at, deleted_at, deleted_batch)
    SELECT student_key, first_name, last_name, student_id, ssid, other_id, date_of_birth, grade, school_id,
    login_name, password_hash, status, created_batch, created_at, deleted_at, deleted_batch FROM students;
DROP TABLE students;
ALTER TABLE students_v5 RENAME TO students;

-- What a batch's plan does with temporary students: 'link' (a row of the batch makes it permanent)
-- or 'keep' (a migration leaves an unlinked temporary student as it is; it is never removed).
CREATE TABLE plan_temporaries (
    batch_id    BIGINT NOT NULL,
    student_key BIGINT NOT NULL,
    school_id   BIGINT,
    action      VARCHAR NOT NULL CHECK (action IN ('link', 'keep')),
    reason      VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, student_key)
);
