"""Shared by the tests of the rest of the stay (beds, incidents, screens, leave, handover,
discharge): a unit with one signed-in member of staff per role, and small helpers.

Import the fixture into a test module (``from tests.stay_helpers import crew  # noqa: F401``).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.unit.helpers import csrf_token

ZONE = ZoneInfo("Europe/London")
ROLES = ("nurse", "doctor", "gp", "manager", "inspector")
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass
class Crew:
    """One unit: ``clients[role]`` signed in, ``usernames[role]``, and ``admit(**referral)``."""

    code: str
    model: str
    clients: dict
    usernames: dict
    _admit: object
    _login: object
    _make_staff: object
    admitted: list = field(default_factory=list)

    def __getattr__(self, role: str):
        if role in ROLES:
            return self.clients[role]
        raise AttributeError(role)

    def admit(self, **kw) -> dict:
        kw.setdefault("name", f"Resident {len(self.admitted) + 1}")
        admission = self._admit(self.clients["nurse"], **kw)
        self.admitted.append(admission)
        return admission

    def another(self, role: str, username: str | None = None):
        """Another member of staff of this unit, signed in: (username, client)."""
        name = self._make_staff(self.code, role, username=username)
        return name, self._login(name)


@pytest.fixture
def crew(app, make_unit, make_staff, login, admit):
    """crew(model="medically_monitored") -> a Crew. Sessions outlast the hours the tests move
    the fake clock (their timeouts are tested in tests/unit/test_auth.py)."""
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=60),
                      SESSION_ABSOLUTE_TIMEOUT=timedelta(days=90))

    def make(model: str = "medically_monitored") -> Crew:
        code = make_unit(model=model)
        usernames = {role: make_staff(code, role) for role in ROLES}
        clients = {role: login(name) for role, name in usernames.items()}
        return Crew(code, model, clients, usernames, admit, login, make_staff)

    return make


def key() -> str:
    return str(uuid.uuid4())


def today(clock) -> date:
    """The unit's local date at the fake clock's time."""
    return clock().astimezone(ZONE).date()


def iso(at: datetime) -> str:
    return at.isoformat()


def page_form(client, path: str, **fields) -> dict:
    """A page form's fields: its CSRF token, a fresh idempotency key and ``fields``."""
    return {"csrf_token": csrf_token(client), "idempotency_key": key(), **fields}


def form_key(html: str) -> str:
    """The first idempotency key a page's forms carry."""
    match = _KEY.search(html)
    assert match, "no idempotency_key in the page"
    return match.group(1)


def flashes(client) -> list[str]:
    """The flashed messages waiting in this client's session."""
    with client.session_transaction() as session:
        return [message for _, message in session.get("_flashes", [])]
