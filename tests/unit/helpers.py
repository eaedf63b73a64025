"""Helpers for the unit package's tests: row counts, problem bodies, CSRF tokens."""
from __future__ import annotations

import re

import sqlalchemy as sa

from config.extensions import db

ROLES = ("nurse", "doctor", "gp", "manager", "inspector", "clinical_lead")


def row_counts(app) -> dict[str, int]:
    """The number of rows in every table of the metadata."""
    with app.app_context():
        return {table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
                for table in db.metadata.sorted_tables}


def writes_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Tables whose row count changed, with the change."""
    return {name: after[name] - before[name] for name in after if after[name] != before.get(name)}


def assert_problem(response, status: int, type_suffix: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status (and type); returns the body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json()
    assert {"type", "title", "status"} <= set(body), body
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    if type_suffix is not None:
        assert body["type"].endswith(type_suffix), body["type"]
    return body


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client) -> str:
    """The CSRF token of this client's session (read from the sign-in form)."""
    page = client.get("/login").get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, "no csrf_token in the sign-in form"
    return match.group(1)


def unit_id_of(app, code: str) -> int:
    from unit.models import Unit

    with app.app_context():
        return db.session.scalar(sa.select(Unit.id).where(Unit.code == code))
