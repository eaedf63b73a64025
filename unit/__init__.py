"""The unit: its care model, staff, residents, admissions and the audit log."""
