"""The inspector: read-only (every write refused with 403, nothing written), and every page or
record an inspector looks at is itself an audit event naming the path; a nurse's looks are not."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.unit.helpers import csrf_token, row_counts
from unit.models import AuditEvent, Staff

# Not writes: signing in and out, and the scoring calculator (it saves nothing).
NOT_WRITES = {"/api/v1/auth/login", "/api/v1/auth/logout", "/login", "/logout", "/api/v1/scales/<code>/score"}


def events_after(app, unit_id: int, seq: int) -> list[tuple]:
    with app.app_context():
        return list(db.session.execute(
            sa.select(AuditEvent.action, Staff.username, AuditEvent.actor_role, AuditEvent.after)
            .outerjoin(Staff, Staff.id == AuditEvent.actor_id)
            .where(AuditEvent.unit_id == unit_id, AuditEvent.seq > seq).order_by(AuditEvent.seq)).all())


def last_seq(app, unit_id: int) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0))
                                 .where(AuditEvent.unit_id == unit_id))


def test_every_write_is_refused_to_the_inspector(app, ward):
    admission = ward.admit("Ann Abbott")
    inspector = ward.inspector
    token = csrf_token(inspector)
    values = {"admission_id": admission["id"], "code": "ciwa-ar", "scale": "ciwa-ar", "drug": "chlordiazepoxide"}
    writes = sorted({(method, rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
                     for method in rule.methods - {"GET", "HEAD", "OPTIONS"} if rule.rule not in NOT_WRITES})
    assert len(writes) > 30
    before = row_counts(app)
    wrong = []
    for method, rule in writes:
        path = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: str(values.get(m.group(2), 1)), rule)
        if rule.startswith("/api/"):
            response = inspector.open(path, method=method, json={}, headers={"Idempotency-Key": f"i-{path}"})
        else:
            response = inspector.open(path, method=method, data={"csrf_token": token})
        if response.status_code != 403:
            wrong.append((method, rule, response.status_code))
        elif rule.startswith("/api/") and response.mimetype != "application/problem+json":
            wrong.append((method, rule, "not a problem body"))
    assert wrong == []
    assert row_counts(app) == before        # nothing written, not even an audit event


@pytest.fixture
def scene(ward):
    ann = ward.admit("Ann Abbott")
    return ward, ann


def test_every_look_an_inspector_takes_is_audited_with_its_path(app, scene):
    ward, ann = scene
    unit_id = ward.unit_id()
    inspector = ward.usernames["inspector"]
    paths = ["/api/v1/audit/report?from=2025-03-02&to=2025-03-02",
             "/api/v1/audit/report?from=2025-03-02&to=2025-03-02&format=pdf",
             "/api/v1/audit/report?format=csv&table=doses",
             "/api/v1/audit/events?action=admission.",
             "/audit/report?from=2025-03-02&to=2025-03-02",
             "/audit/log?user=nurse-u1&action=admission",
             "/",                                                   # the board
             f"/admissions/{ann['id']}",                            # a resident's record
             f"/api/v1/admissions/{ann['id']}",
             f"/api/v1/admissions/{ann['id']}/observations",
             "/api/v1/escalations"]
    for path in paths:
        seq = last_seq(app, unit_id)
        response = ward.inspector.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert events_after(app, unit_id, seq) == [("inspector.view", inspector, "inspector", {"path": path})], path


def test_a_refused_or_missing_look_writes_nothing(app, scene):
    ward, _ = scene
    unit_id = ward.unit_id()
    seq = last_seq(app, unit_id)
    assert ward.inspector.get("/api/v1/admissions/999999").status_code == 404
    assert ward.inspector.get("/api/v1/audit/report?from=nonsense").status_code == 422
    assert events_after(app, unit_id, seq) == []


def test_a_nurses_and_a_managers_looks_are_not_audited(app, scene):
    ward, ann = scene
    unit_id = ward.unit_id()
    seq = last_seq(app, unit_id)
    for path in ("/", f"/admissions/{ann['id']}", f"/api/v1/admissions/{ann['id']}", "/api/v1/escalations"):
        assert ward.nurse.get(path).status_code == 200, path
    assert ward.nurse.get("/api/v1/audit/report").status_code == 403      # not for nurses at all
    assert ward.nurse.get("/audit/log").status_code == 403
    assert ward.manager.get("/api/v1/audit/report").status_code == 200
    assert ward.manager.get("/audit/log").status_code == 200
    assert events_after(app, unit_id, seq) == []


def test_the_inspectors_looks_show_in_the_audit_log(app, scene):
    ward, _ = scene
    ward.inspector.get("/audit/report")
    found = ward.manager.get("/api/v1/audit/events?action=inspector.view&page_size=100").get_json()
    assert [(e["user"], e["role"], e["after"]) for e in found] == [
        (ward.usernames["inspector"], "inspector", {"path": "/audit/report"})]
