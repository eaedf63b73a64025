"""Fixtures of the unit package's tests: a team of every role on a new unit."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.helpers import ROLES


class _Usernames(dict):
    """role -> username; a member of staff is created the first time a role is asked for."""

    def __init__(self, create: Callable[[str], str]) -> None:
        super().__init__()
        self._create = create

    def __missing__(self, role: str) -> str:
        self[role] = username = self._create(role)
        return username


class Team:
    """A unit with one member of staff per role (made when first needed).

    ``client(role)`` signs that member in afresh (a new session each call).
    """

    def __init__(self, code: str, make_staff, login) -> None:
        self.code = code
        self.usernames = _Usernames(lambda role: make_staff(code, role))
        self._login = login

    def client(self, role: str):
        return self._login(self.usernames[role])

    def clients(self) -> dict:
        return {role: self.client(role) for role in ROLES}


@pytest.fixture
def team(make_unit, make_staff, login):
    """team(model) -> a Team on a new unit (password of everyone: PASSWORD)."""

    def make(model: str = "medically_monitored") -> Team:
        return Team(make_unit(model=model), make_staff, login)

    return make
