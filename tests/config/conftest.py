"""Fixtures of config's tests. The infrastructure is exercised through the packages' routes, so
these tests borrow the unit package's team of every role (the ward is in tests/conftest.py)."""
from __future__ import annotations

from tests.unit.conftest import team  # noqa: F401
