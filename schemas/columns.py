"""The columns of a roster sheet. Kept apart from the pandera models so the spreadsheet reader's
child process starts without importing pandera."""

# The columns of a roster sheet, in template order, with what a reader needs to know.
CANONICAL_COLUMNS: dict[str, str] = {
    "school": "School name exactly as registered in rosterflow",
    "teacher_first": "Teacher first name",
    "teacher_last": "Teacher last name",
    "teacher_email": "Teacher email; one email is one teacher",
    "class_period": "Class period (optional), e.g. Period 1",
    "course_code": "Course code from the course catalog, e.g. ALGE1",
    "student_first": "Student first name",
    "student_last": "Student last name",
    "student_id": "District student ID (optional but strongly recommended); enter as text",
    "ssid": "State student ID (optional); enter as text",
    "other_id": "Other ID (optional); enter as text",
    "date_of_birth": "Date of birth as YYYY-MM-DD or an Excel date cell",
    "grade": "Grade: K or 1-12 (optional)",
}
REQUIRED_COLUMNS = (
    "school",
    "teacher_first",
    "teacher_last",
    "teacher_email",
    "course_code",
    "student_first",
    "student_last",
)
