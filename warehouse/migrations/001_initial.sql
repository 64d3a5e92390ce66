-- rosterflow warehouse, version 1.
-- Every stage of a batch writes its output and its marker in batch_stages in one transaction,
-- so a re-run resumes after the last finished stage.

CREATE SEQUENCE IF NOT EXISTS batch_seq START 1;
CREATE SEQUENCE IF NOT EXISTS school_seq START 1;
CREATE SEQUENCE IF NOT EXISTS teacher_seq START 1;
CREATE SEQUENCE IF NOT EXISTS class_seq START 1;
CREATE SEQUENCE IF NOT EXISTS student_seq START 1;
CREATE SEQUENCE IF NOT EXISTS review_seq START 1;
CREATE SEQUENCE IF NOT EXISTS audit_seq START 1;

CREATE TABLE schools (
    school_id   BIGINT PRIMARY KEY DEFAULT nextval('school_seq'),
    name        VARCHAR NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Subscriptions available to register students, per type, at district level (school_id NULL)
-- or per school.
CREATE TABLE subscriptions (
    subscription_type VARCHAR NOT NULL,
    school_id         BIGINT,
    available         INTEGER NOT NULL CHECK (available >= 0),
    UNIQUE (subscription_type, school_id)
);

CREATE TABLE courses (
    course_code VARCHAR PRIMARY KEY,
    name        VARCHAR
);

CREATE TABLE teachers (
    teacher_id    BIGINT PRIMARY KEY,
    email         VARCHAR NOT NULL UNIQUE,
    first_name    VARCHAR NOT NULL,
    last_name     VARCHAR NOT NULL,
    created_batch BIGINT,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE classes (
    class_id      BIGINT PRIMARY KEY,
    school_id     BIGINT NOT NULL,
    teacher_id    BIGINT NOT NULL,
    term          VARCHAR NOT NULL,
    period        VARCHAR,
    course_code   VARCHAR NOT NULL,
    class_name    VARCHAR NOT NULL,
    class_code    VARCHAR NOT NULL UNIQUE,
    created_batch BIGINT,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Names are kept exactly as first entered: a sheet never renames an existing student.
CREATE TABLE students (
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
    status         VARCHAR NOT NULL CHECK (status IN ('active', 'deleted', 'temporary')),
    created_batch  BIGINT,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    deleted_at     TIMESTAMP,
    deleted_batch  BIGINT
);

CREATE TABLE enrollments (
    class_id      BIGINT NOT NULL,
    student_key   BIGINT NOT NULL,
    created_batch BIGINT,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (class_id, student_key)
);

CREATE TABLE subscription_usage (
    batch_id          BIGINT NOT NULL,
    subscription_type VARCHAR NOT NULL,
    school_id         BIGINT,
    student_key       BIGINT NOT NULL,
    class_id          BIGINT NOT NULL,
    used_at           TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE batches (
    batch_id          BIGINT PRIMARY KEY DEFAULT nextval('batch_seq'),
    run_key           VARCHAR NOT NULL UNIQUE,
    mode              VARCHAR NOT NULL CHECK (mode IN ('registration', 'migration')),
    term              VARCHAR NOT NULL,
    subscription_type VARCHAR NOT NULL,
    config            JSON NOT NULL,
    status            VARCHAR NOT NULL,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp,
    decided_by        VARCHAR,
    decided_at        TIMESTAMP,
    decision_comment  VARCHAR
);

-- The state machine: one row per finished stage of a batch, with what it found.
CREATE TABLE batch_stages (
    batch_id    BIGINT NOT NULL,
    stage       VARCHAR NOT NULL,
    result      JSON NOT NULL,
    finished_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (batch_id, stage)
);

CREATE TABLE batch_files (
    batch_id   BIGINT NOT NULL,
    file_name  VARCHAR NOT NULL,
    file_path  VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    sheet      VARCHAR NOT NULL,
    rows_read  INTEGER NOT NULL
);

-- Every spreadsheet row as read (text), with its provenance. row_no is unique within a batch.
CREATE TABLE staged_rows (
    batch_id          BIGINT NOT NULL,
    row_no            BIGINT NOT NULL,
    file_name         VARCHAR NOT NULL,
    sha256            VARCHAR NOT NULL,
    sheet             VARCHAR NOT NULL,
    excel_row         INTEGER NOT NULL,
    school            VARCHAR,
    teacher_first     VARCHAR,
    teacher_last      VARCHAR,
    teacher_email     VARCHAR,
    class_period      VARCHAR,
    course_code       VARCHAR,
    student_first     VARCHAR,
    student_last      VARCHAR,
    student_id        VARCHAR,
    ssid              VARCHAR,
    other_id          VARCHAR,
    date_of_birth     VARCHAR,
    grade             VARCHAR,
    PRIMARY KEY (batch_id, row_no)
);

-- Rows that passed validation, typed.
CREATE TABLE valid_rows (
    batch_id       BIGINT NOT NULL,
    row_no         BIGINT NOT NULL,
    school_id      BIGINT NOT NULL,
    teacher_first  VARCHAR NOT NULL,
    teacher_last   VARCHAR NOT NULL,
    teacher_email  VARCHAR NOT NULL,
    class_period   VARCHAR,
    course_code    VARCHAR NOT NULL,
    first_name     VARCHAR NOT NULL,
    last_name      VARCHAR NOT NULL,
    student_id     VARCHAR,
    ssid           VARCHAR,
    other_id       VARCHAR,
    date_of_birth  DATE,
    grade          VARCHAR,
    PRIMARY KEY (batch_id, row_no)
);

CREATE TABLE validation_issues (
    batch_id   BIGINT NOT NULL,
    row_no     BIGINT,
    file_name  VARCHAR NOT NULL,
    sheet      VARCHAR,
    excel_row  INTEGER,
    column_name VARCHAR,
    value      VARCHAR,
    severity   VARCHAR NOT NULL CHECK (severity IN ('error', 'warning')),
    problem    VARCHAR NOT NULL,
    fix        VARCHAR NOT NULL
);

-- One decision per valid row.
CREATE TABLE match_results (
    batch_id    BIGINT NOT NULL,
    row_no      BIGINT NOT NULL,
    decision    VARCHAR NOT NULL CHECK (decision IN ('matched', 'review', 'new')),
    student_key BIGINT,
    rule        VARCHAR NOT NULL,
    score       DOUBLE,
    explanation VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, row_no)
);

CREATE TABLE review_items (
    review_id   BIGINT PRIMARY KEY DEFAULT nextval('review_seq'),
    batch_id    BIGINT NOT NULL,
    row_no      BIGINT NOT NULL,
    reason      VARCHAR NOT NULL,
    status      VARCHAR NOT NULL CHECK (status IN ('pending', 'decided')),
    action      VARCHAR CHECK (action IN ('link', 'new', 'exclude')),
    student_key BIGINT,
    reviewer    VARCHAR,
    decided_at  TIMESTAMP,
    UNIQUE (batch_id, row_no)
);

CREATE TABLE review_candidates (
    review_id   BIGINT NOT NULL,
    rank        INTEGER NOT NULL,
    student_key BIGINT NOT NULL,
    score       DOUBLE NOT NULL,
    agreement   VARCHAR NOT NULL,
    PRIMARY KEY (review_id, rank)
);

-- The plan: what the commit will do, row by row, computed before approval.
CREATE TABLE plan_enrollments (
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
    already_enrolled  BOOLEAN NOT NULL,
    PRIMARY KEY (batch_id, row_no)
);

CREATE TABLE plan_removals (
    batch_id    BIGINT NOT NULL,
    student_key BIGINT NOT NULL,
    school_id   BIGINT NOT NULL,
    PRIMARY KEY (batch_id, student_key)
);

-- Written inside the commit transaction; its presence is the proof the commit happened.
CREATE TABLE commit_markers (
    batch_id     BIGINT PRIMARY KEY,
    committed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    summary      JSON NOT NULL
);

-- Credentials generated at commit, kept only until delivered to teachers (plain passwords
-- are never stored on the student row).
CREATE TABLE issued_credentials (
    batch_id    BIGINT NOT NULL,
    student_key BIGINT NOT NULL,
    login_name  VARCHAR NOT NULL,
    password    VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, student_key)
);

CREATE TABLE audit_log (
    audit_id  BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    logged_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    actor     VARCHAR NOT NULL,
    batch_id  BIGINT,
    action    VARCHAR NOT NULL,
    entity    VARCHAR NOT NULL,
    entity_key VARCHAR,
    detail    JSON
);
