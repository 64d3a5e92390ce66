-- match_results and plan_enrollments receive a row per valid row of a batch, up to a million: their
-- primary-key index cost most of each bulk insert (a 1M-row plan: about a second of the plan's write
-- hold, the same in the match's). Their (batch_id, row_no) uniqueness is guaranteed where they are
-- made, as for staged_rows and valid_rows (004): the matcher decides each valid row once, the plan
-- has one row per valid row, and both delete the batch's rows before inserting them again. The
-- tables are rebuilt with the same columns, checks and NOT NULL rules, without the index.
CREATE TABLE match_results_v13 (
    batch_id    BIGINT NOT NULL,
    row_no      BIGINT NOT NULL,
    decision    VARCHAR NOT NULL CHECK (decision IN ('matched', 'review', 'new')),
    student_key BIGINT,
    rule        VARCHAR NOT NULL,
    score       DOUBLE,
    explanation VARCHAR NOT NULL
);
INSERT INTO match_results_v13 SELECT batch_id, row_no, decision, student_key, rule, score, explanation
    FROM match_results;
DROP TABLE match_results;
ALTER TABLE match_results_v13 RENAME TO match_results;

CREATE TABLE plan_enrollments_v13 (
    batch_id          BIGINT NOT NULL,
    row_no            BIGINT NOT NULL,
    school_id         BIGINT NOT NULL,
    teacher_email     VARCHAR NOT NULL,
    teacher_first     VARCHAR NOT NULL,
    teacher_last      VARCHAR NOT NULL,
    teacher_is_new    BOOLEAN NOT NULL,
    term              VARCHAR NOT NULL,
    class_period      VARCHAR,
    course_code       VARCHAR NOT NULL,
    class_id          BIGINT,
    student_key       BIGINT,
    student_action    VARCHAR NOT NULL CHECK (student_action IN ('new', 'existing', 'restore')),
    -- Rows of one new person (one per class) share this key and become one student.
    new_person_key    VARCHAR,
    student_id        VARCHAR,
    ssid              VARCHAR,
    other_id          VARCHAR,
    date_of_birth     DATE,
    grade             VARCHAR,
    first_name        VARCHAR NOT NULL,
    last_name         VARCHAR NOT NULL,
    already_enrolled  BOOLEAN NOT NULL
);
INSERT INTO plan_enrollments_v13 SELECT batch_id, row_no, school_id, teacher_email, teacher_first, teacher_last,
    teacher_is_new, term, class_period, course_code, class_id, student_key, student_action, new_person_key,
    student_id, ssid, other_id, date_of_birth, grade, first_name, last_name, already_enrolled
    FROM plan_enrollments;
DROP TABLE plan_enrollments;
ALTER TABLE plan_enrollments_v13 RENAME TO plan_enrollments;
