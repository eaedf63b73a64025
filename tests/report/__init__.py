"""Tests of the unit-model report for inspectors and the audit log."""
