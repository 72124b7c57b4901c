"""A generated corpus of hostile inputs (builders only: every file is written in a test's tmp folder)."""
