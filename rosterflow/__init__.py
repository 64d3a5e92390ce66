"""rosterflow: school roster registration and yearly migration from spreadsheets."""
