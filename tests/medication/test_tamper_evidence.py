"""Tampering with the clinical record behind the application's back is found by
`flask audit verify`: a clinical row edited in place or written without its audit event (each
event carries the hash of the row it records), the tail of a chain cut or a whole chain wiped
(the chain's head is anchored outside the database, signed).

The rows are changed with SQL as someone with write access to the database would; on
PostgreSQL the append-only trigger is switched off for that one transaction
(``session_replication_role = replica``: the test role is a superuser; the app's own role may
not do this, see tests/unit/test_privileges.py).
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.medication.helpers import cows, give, observe, order, post
from tests.medication.test_register import METHADONE, receive
from unit.audit import GENESIS_HASH
from unit.models import AuditChainHead, AuditEvent, Unit


def tamper(app, statement, **params) -> int:
    """Run one statement behind the application's back; the rows it changed."""
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            return conn.execute(statement, params).rowcount


def verify(app, *args: str):
    result = app.test_cli_runner().invoke(args=["audit", "verify", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, result.output


def anchor(app, path) -> dict:
    result = app.test_cli_runner().invoke(args=["audit", "anchor", "--out", str(path)])
    assert result.exit_code == 0, result.output
    from unit.anchor import read_anchor

    return read_anchor(path.read_text())


@pytest.fixture
def history(ward, clock):
    """A register receipt, an admission, an order, an observation, a witnessed dose (an eMAR
    entry and a register entry), an escalation acknowledged; then two rota shifts (events
    that record no clinical row) at the end of the chain."""
    receipt = receive(ward, "methadone", 500, reference="Invoice 4471")
    admission = ward.admit(substances=("opioids",))
    methadone = order(ward.doctor, admission["id"], METHADONE)
    observation = observe(ward.nurse, admission["id"], "cows", cows(12))
    dose = give(ward.nurse, methadone["id"], 20, witness=ward.witness())
    assert dose.status_code == 201, dose.get_json()
    sign = post(ward.nurse, f"/api/v1/admissions/{admission['id']}/escalations", {"sign": "seizure"})
    assert sign.status_code == 201, sign.get_json()
    escalation = sign.get_json()
    acknowledged = ward.doctor.post(f"/api/v1/escalations/{escalation['id']}/acknowledge", json={})
    assert acknowledged.status_code == 200, acknowledged.get_json()
    clock.advance(minutes=5)
    for day in (1, 2):
        starts = clock() + timedelta(days=day)
        response = ward.manager.post("/api/v1/rota", json={
            "duty": "visiting_gp", "contact": "Out-of-hours GP service",
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=12)).isoformat()})
        assert response.status_code == 201, response.get_json()
    return {"ward": ward, "receipt": receipt, "admission": admission, "order": methadone,
            "observation": observation, "administration": dose.get_json(), "escalation": escalation}


def unit_id(app, code: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Unit.id).where(Unit.code == code))


def test_an_untouched_record_verifies(app, history):
    code, output = verify(app)
    assert code == 0, output
    # The receipt, order, observation, eMAR entry, its register entry and the escalation.
    assert f"{history['ward'].code}: 6 clinical records match their audit events." in output


def test_an_edited_observation_total_is_found(app, history):
    """HAZ-050, HAZ-003: an observation's total edited in place is reported by audit verify."""
    observation = history["observation"]
    assert tamper(app, sa.text("UPDATE observations SET total = 3 WHERE id = :id"), id=observation["id"]) == 1
    code, output = verify(app)
    assert code == 1
    assert f"RECORD observation {observation['id']} differs from its audit event" in output
    assert f"{history['ward'].code}: OK," in output  # the chain itself is intact: only the row


def test_an_edited_register_receipt_amount_is_found(app, history):
    """HAZ-050: a controlled-drug register receipt's amount edited in place is reported."""
    receipt = history["receipt"]
    assert tamper(app, sa.text("UPDATE cd_register_entries SET amount_mg = 400, balance_mg = 400 "
                               "WHERE id = :id"), id=receipt["id"]) == 1
    code, output = verify(app)
    assert code == 1
    assert f"RECORD cd_register_entry {receipt['id']} differs from its audit event" in output


@pytest.mark.parametrize("table, entity, column, value", [
    ("medication_orders", "order", "dose_mg", 40),
    ("administrations", "administration", "dose_mg", 5),
    ("escalations", "escalation", "severity", "soon"),
])
def test_every_audited_kind_of_row_edited_in_place_is_found(app, history, table, entity, column, value):
    """HAZ-050: orders, eMAR entries and escalations are checked against their events too."""
    row_id = history[entity]["id"]
    assert tamper(app, sa.text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),
                  value=value, id=row_id) == 1
    code, output = verify(app)
    assert code == 1
    assert f" {row_id} differs from its audit event" in output


def test_a_row_written_without_its_event_and_a_deleted_row_are_found(app, history):
    """HAZ-050: an observation inserted behind the application's back has no event; a
    register entry deleted leaves its event naming a row that is gone."""
    observation = history["observation"]
    with app.app_context():
        copied = db.session.execute(sa.text("SELECT * FROM observations WHERE id = :id"),
                                    {"id": observation["id"]}).mappings().one()
    values = {key: value for key, value in copied.items() if key != "id"}
    values["items"] = json.dumps(values["items"]) if isinstance(values["items"], dict) else values["items"]
    values["item_scores"] = (json.dumps(values["item_scores"]) if isinstance(values["item_scores"], dict)
                             else values["item_scores"])
    columns = ", ".join(values)
    tamper(app, sa.text(f"INSERT INTO observations ({columns}) VALUES "
                        f"({', '.join(':' + key for key in values)})"), **values)
    with app.app_context():
        forged = db.session.scalar(sa.text("SELECT max(id) FROM observations"))
    receipt = history["receipt"]
    assert tamper(app, sa.text("DELETE FROM cd_register_entries WHERE id = :id"), id=receipt["id"]) == 1
    code, output = verify(app)
    assert code == 1
    assert f"RECORD observation {forged} has no audit event" in output
    assert f"RECORD cd_register_entry {receipt['id']} recorded by audit event" in output
    assert "no longer exists (deleted)" in output


def cut_tail(app, code: str, events: int) -> None:
    """Delete the last ``events`` events of the unit's chain and set its head back to match:
    the chain is consistent again, and only an anchor kept elsewhere can tell."""
    unit = unit_id(app, code)
    with app.app_context():
        last = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq)).where(AuditEvent.unit_id == unit))
        keep = last - events
        new_head = db.session.scalar(sa.select(AuditEvent.hash).where(AuditEvent.unit_id == unit,
                                                                       AuditEvent.seq == keep))
    assert tamper(app, sa.delete(AuditEvent).where(AuditEvent.unit_id == unit, AuditEvent.seq > keep)) == events
    tamper(app, sa.update(AuditChainHead).where(AuditChainHead.unit_id == unit).values(seq=keep, hash=new_head))


def test_a_cut_tail_is_found_by_the_anchor(app, history, tmp_path):
    """HAZ-051, HAZ-003: the last events of a chain deleted and its head set back (a consistent but
    shorter chain) are found by audit verify --anchor: the anchored head is gone."""
    ward = history["ward"]
    anchored = anchor(app, tmp_path / "anchor.txt")
    head = next(head for head in anchored["heads"] if head["unit"] == ward.code)
    assert verify(app, "--anchor", str(tmp_path / "anchor.txt"))[0] == 0
    cut_tail(app, ward.code, 2)  # the two rota shifts: they record no clinical row
    code, output = verify(app)
    assert code == 0, output  # without the anchor, nothing shows
    code, output = verify(app, "--anchor", str(tmp_path / "anchor.txt"))
    assert code == 1
    assert (f"{ward.code}: ANCHOR NOT REACHED: the anchored event {head['seq']} of "
            f"{anchored['anchored_at']} is gone: the chain now ends at {head['seq'] - 2}") in output


def test_a_wiped_chain_is_found(app, history, tmp_path):
    """HAZ-051: every event of a unit deleted and its head reset to the start: a unit with
    admissions and no events is a finding, and the anchored head is gone."""
    ward = history["ward"]
    anchor(app, tmp_path / "anchor.txt")
    unit = unit_id(app, ward.code)
    tamper(app, sa.delete(AuditEvent).where(AuditEvent.unit_id == unit))
    tamper(app, sa.update(AuditChainHead).where(AuditChainHead.unit_id == unit).values(seq=0, hash=GENESIS_HASH))
    code, output = verify(app)
    assert code == 1
    assert f"{ward.code}: BROKEN at event 1: the unit has 1 admissions but no audit events (the chain was wiped)" in output
    assert "RECORD observation" in output and "has no audit event" in output
    code, output = verify(app, "--anchor", str(tmp_path / "anchor.txt"))
    assert code == 1
    assert "the chain now ends at 0 (events cut from its end, or the chain wiped)" in output


def test_an_anchor_rewritten_to_match_a_cut_chain_is_refused(app, history, tmp_path):
    """HAZ-051: the anchor is signed: one edited to name the shorter chain's head fails."""
    ward = history["ward"]
    path = tmp_path / "anchor.txt"
    document = anchor(app, path)
    cut_tail(app, ward.code, 2)
    unit = unit_id(app, ward.code)
    with app.app_context():
        head = db.session.get(AuditChainHead, unit)
        for anchored in document["heads"]:
            if anchored["unit"] == ward.code:
                anchored["seq"], anchored["hash"] = head.seq, head.hash
    path.write_text(json.dumps(document))
    code, output = verify(app, "--anchor", str(path))
    assert code == 1
    assert "the anchor's signature does not match AUDIT_ANCHOR_KEY" in output


def test_the_anchor_holds_every_units_head_signed(app, history, make_unit, tmp_path):
    empty = make_unit()
    document = anchor(app, tmp_path / "anchor.txt")
    units = {head["unit"]: head for head in document["heads"]}
    assert set(units) == {history["ward"].code, empty}
    with app.app_context():
        for head in units.values():
            event = db.session.scalars(sa.select(AuditEvent).where(
                AuditEvent.unit_id == head["unit_id"], AuditEvent.seq == head["seq"])).one()
            assert (head["hash"], head["event_id"]) == (event.hash, event.id)
            assert head["at"] == event.at.isoformat()
    assert len(document["signature"]) == 64
    # Without a key, nothing is signed or checked.
    app.config["AUDIT_ANCHOR_KEY"] = ""
    result = app.test_cli_runner().invoke(args=["audit", "anchor", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "AUDIT_ANCHOR_KEY is not set" in result.output


def test_the_managers_are_emailed_the_anchor_nightly_once_a_day(app, history, clock, tmp_path):
    """The scheduler's job queues each unit's signed anchor to its managers (once per day,
    however often it runs); the e-mail's text is itself an anchor audit verify accepts."""
    from monitoring.outbox import OutboxMessage
    from monitoring.audit_anchor import mail_audit_anchors

    ward = history["ward"]
    with app.app_context():
        assert mail_audit_anchors(clock()) == 1  # the unit's one manager with an address
        assert mail_audit_anchors(clock() + timedelta(hours=2)) == 0
        messages = db.session.scalars(sa.select(OutboxMessage).where(
            OutboxMessage.ref_type == "audit_anchor")).all()
        assert [m.recipient_address for m in messages] == [f"manager.{ward.code}@unit.test".lower()]
        assert "\n" not in messages[0].subject and ward.code in messages[0].subject
        body = messages[0].body
    (tmp_path / "mail.txt").write_text(body)
    code, output = verify(app, "--anchor", str(tmp_path / "mail.txt"))
    assert code == 0, output
    assert f"{ward.code}: anchor OK: reaches the anchored event" in output
    with app.app_context():
        assert mail_audit_anchors(clock() + timedelta(days=1)) == 1
