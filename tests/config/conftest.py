"""Fixtures of config's tests. The infrastructure is exercised through the packages' routes, so
these tests borrow the packages' own fixtures (a team of every role, a monitored ward)."""
from __future__ import annotations

from tests.monitoring.conftest import ward  # noqa: F401
from tests.unit.conftest import team  # noqa: F401
