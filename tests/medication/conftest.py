"""Fixtures of the medication tests: a fixed clock, a unit with signed-in staff of every role
(two nurses, so that one can witness the other), and residents to admit."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import PASSWORD, FakeClock

# Monday 3 March 2025, 07:30 UTC (07:30 in London: GMT). Fixed, so that regimen times,
# day boundaries and 24-hour windows are the same on every run.
START = datetime(2025, 3, 3, 7, 30, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@dataclass
class Ward:
    """One unit: signed-in clients and usernames per role, and ``admit(**referral)``."""

    code: str
    model: str
    clients: dict
    usernames: dict
    app: object
    _admit: object
    admitted: list = field(default_factory=list)

    def __getattr__(self, role: str):
        clients = self.__dict__.get("clients", {})
        if role in clients:
            return clients[role]
        raise AttributeError(role)

    def admit(self, **kw) -> dict:
        kw.setdefault("name", f"Resident {len(self.admitted) + 1}")
        admission = self._admit(self.clients["nurse"], **kw)
        self.admitted.append(admission)
        return admission

    def witness(self, role: str = "nurse2", password: str = PASSWORD) -> dict:
        """A witness body: the username of ``role`` and a password."""
        return {"username": self.usernames[role], "password": password}


ROLES = ("nurse", "nurse2", "doctor", "gp", "manager", "inspector")


@pytest.fixture
def make_ward(app, make_unit, make_staff, login, admit):
    """make_ward(model="medically_managed") -> a Ward with every role signed in.

    The tests move the fake clock by hours and days; sign-in sessions outlast that here
    (their timeouts are the unit package's concern and tested there).
    """
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=60),
                      SESSION_ABSOLUTE_TIMEOUT=timedelta(days=90))

    def make(model: str = "medically_managed") -> Ward:
        code = make_unit(model=model)
        usernames = {role: make_staff(code, role.rstrip("2"), email=f"{role}.{code}@unit.test".lower())
                     for role in ROLES}
        clients = {role: login(name) for role, name in usernames.items()}
        return Ward(code, model, clients, usernames, app, admit)

    return make


@pytest.fixture
def ward(make_ward) -> Ward:
    """A medically managed unit (PRN benzodiazepines allowed by default)."""
    return make_ward("medically_managed")
