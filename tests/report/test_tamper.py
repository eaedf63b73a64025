"""A tampered audit log makes the report's audit_chain say not verified (JSON, page and PDF).

The rows are changed with SQL behind the application's back; on PostgreSQL the append-only
trigger is switched off for that one transaction (``session_replication_role = replica``, as
tests/conftest.py does; the test role is a superuser)."""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.report.conftest import NEWS2_ZERO, post
from unit.models import AuditEvent


def tamper(app, statement, **params) -> None:
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            result = conn.execute(statement, params)
            assert result.rowcount == 1


@pytest.fixture
def small_history(ward):
    """A few events: admissions and observations."""
    for name in ("Ann Abbott", "Bob Brown"):
        admission = ward.admit(name)
        post(ward.nurse, f"/api/v1/admissions/{admission['id']}/observations", {"scale": "news2", "items": NEWS2_ZERO})
    return ward


def seq_of(app, unit_id: int, action: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.min(AuditEvent.seq)).where(
            AuditEvent.unit_id == unit_id, AuditEvent.action == action))


def chain(ward) -> dict:
    response = ward.manager.get("/api/v1/audit/report?from=2025-03-02&to=2025-03-02")
    assert response.status_code == 200
    return response.get_json()["audit_chain"]


def test_untampered_chain_is_verified(small_history):
    assert chain(small_history)["verified"] is True


def test_an_altered_event_breaks_the_chain(app, small_history):
    """HAZ-003: an edited audit event is found."""
    ward = small_history
    unit_id = ward.unit_id()
    target = seq_of(app, unit_id, "observation.record")
    tamper(app, sa.update(AuditEvent).where(AuditEvent.unit_id == unit_id, AuditEvent.seq == target)
           .values(action="observation.strike"))
    result = chain(ward)
    assert result["verified"] is False
    assert result["broken_at_seq"] == target
    assert "altered" in result["problem"]
    # The page and the PDF say so too.
    page = ward.manager.get("/audit/report?from=2025-03-02&to=2025-03-02").get_data(as_text=True)
    assert f"BROKEN at {target}" in page
    from pypdf import PdfReader

    pdf = ward.manager.get("/api/v1/audit/report?from=2025-03-02&to=2025-03-02&format=pdf").data
    first = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert f"Audit chain: NOT VERIFIED - broken at event {target}" in first
    assert "VERIFIED (" not in first


def test_an_altered_timestamp_breaks_the_chain(app, small_history):
    ward = small_history
    unit_id = ward.unit_id()
    target = seq_of(app, unit_id, "admission.create")
    assert target is not None
    with app.app_context():
        when = db.session.scalar(sa.select(AuditEvent.at).where(AuditEvent.unit_id == unit_id, AuditEvent.seq == target))
    tamper(app, sa.update(AuditEvent).where(AuditEvent.unit_id == unit_id, AuditEvent.seq == target)
           .values(at=when.replace(minute=(when.minute + 1) % 60)))
    result = chain(ward)
    assert (result["verified"], result["broken_at_seq"]) == (False, target)


def test_a_deleted_last_event_breaks_the_chain(app, small_history):
    """HAZ-003: a deleted last audit event is found."""
    ward = small_history
    unit_id = ward.unit_id()
    with app.app_context():
        last = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq)).where(AuditEvent.unit_id == unit_id))
    tamper(app, sa.delete(AuditEvent).where(AuditEvent.unit_id == unit_id, AuditEvent.seq == last))
    result = chain(ward)
    assert result["verified"] is False
    assert "removed" in result["problem"]


def test_an_altered_checkpoint_event_breaks_the_chain(app, small_history, clock):
    from unit.audit import verify_all_chains

    ward = small_history
    unit_id = ward.unit_id()
    with app.app_context():
        verify_all_chains(clock())
        last = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq)).where(AuditEvent.unit_id == unit_id))
    assert chain(ward)["verified"] is True
    tamper(app, sa.update(AuditEvent).where(AuditEvent.unit_id == unit_id, AuditEvent.seq == last)
           .values(action="tampered"))
    result = chain(ward)
    assert (result["verified"], result["broken_at_seq"]) == (False, last)
