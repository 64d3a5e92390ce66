-- staged_rows and valid_rows receive up to a million rows per batch; a primary-key index on them
-- costs about a third of each bulk insert. Their (batch_id, row_no) uniqueness is guaranteed where
-- they are made (row numbers come from one range per batch; validation asserts that every valid
-- row is a staged row, once), so the tables are rebuilt with the same columns and NOT NULL rules
-- but without the index.
CREATE TABLE staged_rows_v4 (
    batch_id BIGINT NOT NULL, row_no BIGINT NOT NULL, file_name VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
    sheet VARCHAR NOT NULL, excel_row INTEGER NOT NULL, school VARCHAR, teacher_first VARCHAR,
    teacher_last VARCHAR, teacher_email VARCHAR, class_period VARCHAR, course_code VARCHAR,
    student_first VARCHAR, student_last VARCHAR, student_id VARCHAR, ssid VARCHAR, other_id VARCHAR,
    date_of_birth VARCHAR, grade VARCHAR
);
INSERT INTO staged_rows_v4 SELECT batch_id, row_no, file_name, sha256, sheet, excel_row, school, teacher_first,
    teacher_last, teacher_email, class_period, course_code, student_first, student_last, student_id, ssid,
    other_id, date_of_birth, grade FROM staged_rows;
DROP TABLE staged_rows;
ALTER TABLE staged_rows_v4 RENAME TO staged_rows;

CREATE TABLE valid_rows_v4 (
    batch_id BIGINT NOT NULL, row_no BIGINT NOT NULL, school_id BIGINT NOT NULL, teacher_first VARCHAR NOT NULL,
    teacher_last VARCHAR NOT NULL, teacher_email VARCHAR NOT NULL, class_period VARCHAR,
    course_code VARCHAR NOT NULL, first_name VARCHAR NOT NULL, last_name VARCHAR NOT NULL, student_id VARCHAR,
    ssid VARCHAR, other_id VARCHAR, date_of_birth DATE, grade VARCHAR
);
INSERT INTO valid_rows_v4 SELECT batch_id, row_no, school_id, teacher_first, teacher_last, teacher_email,
    class_period, course_code, first_name, last_name, student_id, ssid, other_id, date_of_birth, grade
    FROM valid_rows;
DROP TABLE valid_rows;
ALTER TABLE valid_rows_v4 RENAME TO valid_rows;
