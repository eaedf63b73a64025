"""Fixtures of the monitoring tests: a unit with signed-in staff and residents to admit."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest


@dataclass
class Ward:
    """One unit: signed-in clients per role and ``admit(**referral)`` -> admission JSON."""

    code: str
    clients: dict
    usernames: dict
    _admit: object
    admitted: list = field(default_factory=list)

    @property
    def nurse(self):
        return self.clients["nurse"]

    @property
    def doctor(self):
        return self.clients["doctor"]

    def admit(self, **kw) -> dict:
        kw.setdefault("name", f"Resident {len(self.admitted) + 1}")
        admission = self._admit(self.nurse, **kw)
        self.admitted.append(admission)
        return admission


@pytest.fixture
def ward(app, make_unit, make_staff, login, admit):
    """A medically monitored unit with a nurse, a doctor and an inspector signed in.

    The tests move the fake clock by hours; sign-in sessions outlast that here (their
    timeouts are the unit package's concern and tested there).
    """
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30),
                      SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))
    code = make_unit(model="medically_monitored")
    usernames = {role: make_staff(code, role) for role in ("nurse", "doctor", "inspector")}
    clients = {role: login(name) for role, name in usernames.items()}
    return Ward(code, clients, usernames, admit)
