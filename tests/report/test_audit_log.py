"""The audit log search (API and page) by resident, user, action prefix and period returns exactly
the matching events; expected sets are filtered here in Python from every stored event."""
from __future__ import annotations

import json
import re
from datetime import timezone
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.report.conftest import at, problem
from unit.models import AuditEvent, Resident, Staff


@pytest.fixture
def events(history, ward) -> list[dict]:
    """Every event of the unit, newest first, as plain values."""
    with ward.app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.seq, AuditEvent.at, AuditEvent.action, AuditEvent.resident_id, Staff.username)
            .outerjoin(Staff, Staff.id == AuditEvent.actor_id)
            .where(AuditEvent.unit_id == ward.unit_id()).order_by(AuditEvent.seq.desc())).all()
    return [{"seq": s, "at": a if a.tzinfo else a.replace(tzinfo=timezone.utc), "action": act,
             "resident_id": r, "user": u} for s, a, act, r, u in rows]


def resident_id(ward, name: str) -> int:
    with ward.app.app_context():
        return db.session.scalar(sa.select(Resident.id).where(Resident.name == name))


def search_api(ward, **query) -> tuple[list[int], int]:
    response = ward.manager.get(f"/api/v1/audit/events?{urlencode({**query, 'page_size': 100})}")
    assert response.status_code == 200, response.get_json()
    total = json.loads(response.headers["X-Pagination"])["total"]
    return [e["seq"] for e in response.get_json()], total


def search_page(ward, **query) -> tuple[list[int], int]:
    response = ward.manager.get(f"/audit/log?{urlencode(query)}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    total = int(re.search(r'<span class="muted">(\d+) events</span>', html).group(1))
    return [int(seq) for seq in re.findall(r"<tr><td>(\d+)</td>", html)], total


def in_days(first: int, last: int):
    start, end = at(first, 0), at(last + 1, 0)   # London is on GMT in March
    return lambda e: start <= e["at"] < end


def cases(ward):
    ann = resident_id(ward, "Ann Abbott")
    nurse, doctor = ward.usernames["nurse"], ward.usernames["doctor"]
    return [
        ({"resident": str(ann)}, lambda e: e["resident_id"] == ann),
        ({"resident": "abbott"}, lambda e: e["resident_id"] == ann),          # part of the name, any case
        ({"user": doctor}, lambda e: e["user"] == doctor),
        ({"action": "dose."}, lambda e: e["action"].startswith("dose.")),
        ({"action": "escalation.ack"}, lambda e: e["action"].startswith("escalation.ack")),
        ({"from": "2025-03-04", "to": "2025-03-04"}, in_days(4, 4)),
        ({"user": nurse, "action": "observation.", "from": "2025-03-03", "to": "2025-03-03"},
         lambda e: e["user"] == nurse and e["action"].startswith("observation.") and in_days(3, 3)(e)),
        ({"resident": str(ann), "action": "order."}, lambda e: e["resident_id"] == ann and e["action"].startswith("order.")),
        ({"user": "nobody-at-all"}, lambda e: False),
    ]


def test_search_returns_exactly_the_matching_events(ward, events):
    for query, matches in cases(ward):
        expected = [e["seq"] for e in events if matches(e)]
        assert len(expected) <= 50, query      # one page of the HTML log
        assert search_api(ward, **query) == (expected, len(expected)), query


def test_the_searches_are_not_trivial(ward, events):
    sizes = {str(q): len([e for e in events if m(e)]) for q, m in cases(ward)}
    assert all(0 < n < len(events) for q, n in sizes.items() if "nobody" not in q), sizes


def test_the_log_page_shows_the_same_events(ward, events):
    for query, matches in cases(ward):
        expected = [e["seq"] for e in events if matches(e)]
        assert search_page(ward, **query) == (expected, len(expected)), query


def test_the_log_page_pages_by_fifty(ward, events):
    first, total = search_page(ward)
    assert total == len(events) > 50
    assert first == [e["seq"] for e in events[:50]]
    second, _ = search_page(ward, page=2)
    assert second == [e["seq"] for e in events[50:100]]


def test_a_page_past_the_end_and_an_id_too_large_find_nothing(ward, events):
    # Found by the schemathesis fuzz test: numbers too large for the database's integers were
    # a 500 (SQLite: "Python int too large to convert to SQLite INTEGER").
    huge = str(10**21)
    response = ward.manager.get(f"/api/v1/audit/events?page={huge}")
    assert response.status_code == 200 and response.get_json() == []
    assert json.loads(response.headers["X-Pagination"])["total"] == len(events)
    assert search_api(ward, page=len(events) // 100 + 2) == ([], len(events))
    assert search_api(ward, resident=huge) == ([], 0)
    assert search_api(ward, resident=str(2**31)) == ([], 0)
    rows, total = search_page(ward, page=huge)
    assert (rows, total) == ([], len(events))
    # "²".isdigit() is true but int("²") fails: a digit of another script is text, not a number.
    assert search_api(ward, resident="²") == ([], 0)
    assert search_page(ward, page="²") == search_page(ward)


def test_a_bad_period_in_the_search_is_a_422_problem(ward):
    body = problem(ward.manager.get("/api/v1/audit/events?from=03/03/2025"), 422)
    assert "from" in body["errors"]
