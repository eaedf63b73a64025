"""Fixtures of the FHIR tests: the medication tests' fixed clock and ward (every role signed
in, two nurses, a medically managed unit)."""
from __future__ import annotations

from tests.medication.conftest import clock, make_ward, ward  # noqa: F401 (fixtures)
