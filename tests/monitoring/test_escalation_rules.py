"""Escalation rules (docs/clinical-rules.md s3): which observation raises what, how fast it
must be acknowledged, one live escalation per cause, missed observations, re-escalation on a
fake clock.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from config.extensions import db
from tests.conftest import adopt_protocol
from tests.monitoring.escalation_support import (
    NEWS2_HIGH_7,
    NEWS2_HIGH_14,
    NEWS2_LOW_4,
    NEWS2_MEDIUM_5,
    NEWS2_MEDIUM_6,
    NEWS2_SINGLE_3,
    NEWS2_ZERO,
    ciwa,
    cows,
    escalation_rows,
    gmaws,
    iso,
    observe,
    outbox_rows,
    parse,
    steps_of,
)

# docs/clinical-rules.md s3: acknowledgement targets in minutes.
TARGET = {"emergency": 5, "urgent": 30, "soon": 120}


# --- 1. each trigger ------------------------------------------------------------------------

# (scale, items, substances, band expected of the items, severity expected or None, reason start)
TRIGGERS = [
    ("news2", NEWS2_ZERO, ("alcohol",), "low", None, None),
    ("news2", NEWS2_LOW_4, ("alcohol",), "low", None, None),
    ("news2", NEWS2_SINGLE_3, ("alcohol",), "low-medium", "urgent", "NEWS2 3"),
    ("news2", NEWS2_MEDIUM_5, ("alcohol",), "medium", "urgent", "NEWS2 5"),
    ("news2", NEWS2_MEDIUM_6, ("alcohol",), "medium", "urgent", "NEWS2 6"),
    ("news2", NEWS2_HIGH_7, ("alcohol",), "high", "emergency", "NEWS2 7"),
    ("news2", NEWS2_HIGH_14, ("alcohol",), "high", "emergency", "NEWS2 14"),
    ("ciwa-ar", ciwa(0), ("alcohol",), "minimal", None, None),
    ("ciwa-ar", ciwa(7), ("alcohol",), "minimal", None, None),
    ("ciwa-ar", ciwa(15), ("alcohol",), "moderate", None, None),
    ("ciwa-ar", ciwa(16), ("alcohol",), "severe", "urgent", "CIWA-Ar 16"),
    ("ciwa-ar", ciwa(19), ("alcohol",), "severe", "urgent", "CIWA-Ar 19"),
    ("ciwa-ar", ciwa(20), ("alcohol",), "severe", "emergency", "CIWA-Ar 20"),
    ("ciwa-ar", ciwa(67), ("alcohol",), "severe", "emergency", "CIWA-Ar 67"),
    ("cows", cows(4), ("opioids",), "none", None, None),
    ("cows", cows(12), ("opioids",), "mild", None, None),
    ("cows", cows(24), ("opioids",), "moderate", None, None),
    ("cows", cows(25), ("opioids",), "moderately_severe", "urgent", "COWS 25"),
    ("cows", cows(36), ("opioids",), "moderately_severe", "urgent", "COWS 36"),
    ("cows", cows(37), ("opioids",), "severe", "emergency", "COWS 37"),
    ("cows", cows(48), ("opioids",), "severe", "emergency", "COWS 48"),
    ("gmaws", gmaws(3), ("alcohol",), "mild", None, None),
    ("gmaws", gmaws(7), ("alcohol",), "moderate", None, None),
    ("gmaws", gmaws(8), ("alcohol",), "severe", "urgent", "GMAWS 8"),
    ("gmaws", gmaws(10), ("alcohol",), "severe", "urgent", "GMAWS 10"),
]


@pytest.mark.parametrize("scale, items, substances, band, severity, reason", TRIGGERS,
                         ids=[f"{t[0]}-{t[3]}-{t[4] or 'none'}" for t in TRIGGERS])
def test_observation_raises_what_the_protocol_says(make_ward, app, clock, scale, items, substances, band,
                                                   severity, reason):
    ward = make_ward("medically_monitored")
    admission = ward.admit(substances=substances)
    reply = observe(ward.nurse, admission["id"], scale, items)
    assert reply["band"] == band  # the item set lands in the band the case is about

    escalation = reply["escalation"]
    if severity is None:
        assert escalation is None
        assert escalation_rows(app, admission["id"]) == []
        return
    assert escalation["severity"] == severity
    assert escalation["reason"].startswith(reason), escalation["reason"]
    assert escalation["target_minutes"] == TARGET[severity]
    assert escalation["status"] == "open"
    assert escalation["level"] == 1
    assert escalation["admission_id"] == admission["id"]
    assert parse(escalation["raised_at"]) == clock.now
    assert escalation["acknowledged_at"] is None
    assert parse(escalation["escalate_at"]) == clock.now + timedelta(minutes=TARGET[severity])
    (row,) = escalation_rows(app, admission["id"])
    assert row.id == escalation["id"] and row.severity == severity


def test_single_parameter_3_names_the_parameter(make_ward):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", NEWS2_SINGLE_3)["escalation"]
    assert "single parameter" in escalation["reason"]
    assert "respiration rate" in escalation["reason"]


# --- 5. deduplication -----------------------------------------------------------------------

def test_two_severe_ciwa_in_a_row_update_one_escalation(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    first = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    clock.advance(minutes=10)
    second = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(18))["escalation"]

    assert second["id"] == first["id"]
    assert second["severity"] == "urgent"
    assert second["reason"].startswith("CIWA-Ar 18")   # the latest score
    assert parse(second["raised_at"]) == parse(first["raised_at"])
    # Not worse: the acknowledgement clock keeps running from the first alert.
    assert second["escalate_at"] == first["escalate_at"]
    (row,) = escalation_rows(app, admission["id"])
    assert row.reason.startswith("CIWA-Ar 18")
    kinds = [s.kind for s in steps_of(app, row.id)]
    assert kinds.count("raised") == 1 and "updated" in kinds
    listed = ward.doctor.get("/api/v1/escalations").get_json()
    assert [e["id"] for e in listed] == [first["id"]]


def test_worsening_to_emergency_updates_severity_and_target(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    urgent = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]
    clock.advance(minutes=12)
    worse = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(24))["escalation"]

    assert worse["id"] == urgent["id"]
    assert (worse["severity"], worse["target_minutes"]) == ("emergency", 5)
    assert worse["call_999"] is True and worse["advice"]
    assert parse(worse["escalate_at"]) == clock.now + timedelta(minutes=5)
    assert len(escalation_rows(app, admission["id"])) == 1
    assert "worsened" in [s.kind for s in steps_of(app, worse["id"])]
    # The doctor is told again that it is worse (a second message, not the first one again).
    subjects = [m.subject for m in outbox_rows(app, worse["id"])]
    assert len(subjects) == 2 and subjects[1].startswith("[EMERGENCY]")


def test_worsening_reopens_an_acknowledged_escalation(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    urgent = observe(ward.nurse, admission["id"], "news2", NEWS2_MEDIUM_6)["escalation"]
    clock.advance(minutes=3)
    acknowledged = ward.gp.post(f"/api/v1/escalations/{urgent['id']}/acknowledge").get_json()
    assert acknowledged["status"] == "acknowledged"
    clock.advance(minutes=20)
    worse = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]

    assert worse["id"] == urgent["id"]
    assert worse["status"] == "open"
    assert (worse["severity"], worse["target_minutes"]) == ("emergency", 5)
    # Open again: it is not acknowledged (any more) and re-escalates if nobody answers.
    assert worse["acknowledged_at"] is None
    assert parse(worse["escalate_at"]) == clock.now + timedelta(minutes=5)
    assert len(escalation_rows(app, admission["id"])) == 1
    # ... and the GP can acknowledge it again.
    again = ward.gp.post(f"/api/v1/escalations/{urgent['id']}/acknowledge").get_json()
    assert again["status"] == "acknowledged" and parse(again["acknowledged_at"]) == clock.now


def test_an_improving_score_does_not_lower_an_open_escalation(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    emergency = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(22))["escalation"]
    clock.advance(minutes=2)
    later = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert later["id"] == emergency["id"]
    assert (later["severity"], later["target_minutes"]) == ("emergency", 5)


def test_different_causes_are_different_escalations(make_ward, app):
    ward = make_ward()
    admission = ward.admit()
    a = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    b = observe(ward.nurse, admission["id"], "news2", NEWS2_MEDIUM_5)["escalation"]
    assert a["id"] != b["id"]
    assert len(escalation_rows(app, admission["id"])) == 2


def test_after_resolving_the_same_cause_raises_a_new_escalation(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    first = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    response = ward.gp.post(f"/api/v1/escalations/{first['id']}/resolve",
                            json={"outcome": "Reviewed: continue plan", "note": None})
    assert response.status_code == 200, response.get_json()
    clock.advance(minutes=30)
    second = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]
    assert second["id"] != first["id"] and second["status"] == "open"
    assert [r.status for r in escalation_rows(app, admission["id"])] == ["resolved", "open"]


def test_database_allows_one_live_escalation_per_admission_and_cause(make_ward, app, clock):
    from monitoring.models import Escalation

    ward = make_ward()
    admission = ward.admit()
    live = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    with app.app_context():
        original = db.session.get(Escalation, live["id"])
        copy = {c.key: getattr(original, c.key) for c in sa.inspect(Escalation).column_attrs
                if c.key != "id"}
        db.session.add(Escalation(**copy))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        # A resolved escalation for the same cause may sit beside a live one.
        db.session.add(Escalation(**{**copy, "status": "resolved", "resolved_at": clock.now}))
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Escalation)) == 2


# --- 6. missed observations -----------------------------------------------------------------

def test_missed_observation_goes_soon_to_the_nurse_in_charge(make_ward, app, clock):
    from monitoring.services import flag_missed_observations

    ward = make_ward("medically_managed")
    admission = ward.admit(substances=("alcohol",))   # CIWA-Ar and NEWS2 due now, hourly at first
    start = clock.now
    with app.app_context():
        assert flag_missed_observations(start + timedelta(minutes=15)) == []  # still in grace
    assert escalation_rows(app, admission["id"]) == []

    clock.advance(minutes=16)
    with app.app_context():
        assert len(flag_missed_observations(clock.now)) == 2
    rows = escalation_rows(app, admission["id"])
    assert sorted(r.dedup_key for r in rows) == ["missed:ciwa-ar", "missed:news2"]
    for row in rows:
        assert (row.severity, row.target_minutes, row.route) == ("soon", 120, "nurse_in_charge")
        assert row.status == "open" and row.trigger == "missed_observation"
        assert row.escalate_at == clock.now + timedelta(minutes=120)
        assert "missed" in row.reason
    # The nurse on duty is paged (no rota: every nurse), not the doctor.
    (message,) = outbox_rows(app, rows[0].id)
    assert message.recipient_address == ward.email("nurse")

    listed = ward.nurse.get("/api/v1/escalations?status=open").get_json()
    assert {e["route"] for e in listed} == {"nurse_in_charge"}
    assert {e["severity"] for e in listed} == {"soon"}
    assert {e["source_type"] for e in listed} == {"missed_observation"}
    assert all(isinstance(e["source_id"], int) for e in listed)


def test_an_outage_sweep_opens_one_escalation_per_cause_and_updates_it_for_later_slots(
        make_ward, app, clock):
    # After 3 hours without a sweep, one sweep flags 3 hourly slots of each scale, in bulk:
    # each cause opens one escalation (paged once), and its later slots are steps on it.
    from monitoring.services import flag_missed_observations

    ward = make_ward("medically_managed")
    admission = ward.admit(substances=("alcohol",))   # CIWA-Ar and NEWS2 due now, hourly
    clock.advance(hours=3)
    with app.app_context():
        missed = flag_missed_observations(clock.now)
        flagged = sorted((row.scale, row.due_at) for row in missed)
        assert all(row.id is not None for row in missed)
    start = clock.now - timedelta(hours=3)
    assert flagged == sorted((scale, start + timedelta(hours=h))
                             for scale in ("ciwa-ar", "news2") for h in range(3))
    rows = escalation_rows(app, admission["id"])
    assert sorted(row.dedup_key for row in rows) == ["missed:ciwa-ar", "missed:news2"]
    for row in rows:
        assert row.status == "open" and row.source_type == "missed_observation"
        kinds = [step.kind for step in steps_of(app, row.id)]
        assert kinds == ["raised", "notified", "updated", "updated"]
        assert len(outbox_rows(app, row.id)) == 1  # paged once, not once a slot
    with app.app_context():  # the next sweep finds nothing new
        assert flag_missed_observations(clock.now) == []
    assert len(escalation_rows(app, admission["id"])) == 2


def test_a_missed_observation_names_its_due_time_in_uk_local_time(make_ward, app, clock):
    from monitoring.services import flag_missed_observations

    clock.now = datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)   # British Summer Time: 13:00
    ward = make_ward("medically_managed")
    ward.admit(substances=("alcohol",))
    clock.advance(minutes=16)
    with app.app_context():
        assert len(flag_missed_observations(clock.now)) == 2
    reasons = {e["reason"] for e in ward.nurse.get("/api/v1/escalations?status=open").get_json()}
    assert all("due at 13:00 was missed" in reason for reason in reasons), reasons


def test_repeated_misses_do_not_duplicate(make_ward, app, clock):
    from monitoring.models import MissedObservation
    from monitoring.services import flag_missed_observations

    ward = make_ward()
    admission = ward.admit(substances=("alcohol",))
    clock.advance(minutes=20)
    with app.app_context():
        flag_missed_observations(clock.now)
    first = {r.dedup_key: r.id for r in escalation_rows(app, admission["id"])}
    for _ in range(3):   # three more hours with nothing recorded, swept every hour
        clock.advance(hours=1)
        with app.app_context():
            assert flag_missed_observations(clock.now)  # new slots missed each time
        with app.app_context():   # the same sweep run twice finds nothing new
            assert flag_missed_observations(clock.now) == []
    rows = escalation_rows(app, admission["id"])
    assert {r.dedup_key: r.id for r in rows} == first
    assert all(r.severity == "soon" and r.status == "open" for r in rows)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MissedObservation)) == 8


def sweep_writes(app, unit_code: str, detected_at: datetime) -> dict:
    """What one sweep wrote on a unit: its missed rows (flagging order), and the unit's audit
    events, escalations (with their steps) and outbox messages from that moment, in order."""
    from monitoring.outbox import OutboxMessage
    from monitoring.models import Escalation, EscalationStep, MissedObservation
    from unit.models import AuditEvent, Unit

    with app.app_context():
        unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == unit_code))
        missed = db.session.execute(
            sa.select(MissedObservation.id, MissedObservation.admission_id, MissedObservation.scale,
                      MissedObservation.due_at)
            .where(MissedObservation.unit_id == unit_id, MissedObservation.detected_at == detected_at)
            .order_by(MissedObservation.id)).all()
        events = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.entity_id, AuditEvent.after)
            .where(AuditEvent.unit_id == unit_id, AuditEvent.at == detected_at)
            .order_by(AuditEvent.seq)).all()
        escalations = {row.id: row for row in db.session.execute(
            sa.select(Escalation.id, Escalation.admission_id, Escalation.dedup_key, Escalation.status,
                      Escalation.reason, Escalation.source_id, Escalation.target_minutes,
                      Escalation.unit_model)
            .where(Escalation.unit_id == unit_id))}
        steps = {}
        for escalation_id, kind in db.session.execute(
                sa.select(EscalationStep.escalation_id, EscalationStep.kind)
                .where(EscalationStep.escalation_id.in_(list(escalations)), EscalationStep.at == detected_at)
                .order_by(EscalationStep.id)):
            steps.setdefault(escalation_id, []).append(kind)
        messages = db.session.execute(
            sa.select(OutboxMessage.ref_id, OutboxMessage.dedup_key, OutboxMessage.recipient_address)
            .where(OutboxMessage.unit_id == unit_id, OutboxMessage.created_at == detected_at)
            .order_by(OutboxMessage.id)).all()
    return {"missed": missed, "events": events, "escalations": escalations, "steps": steps,
            "messages": messages}


def test_one_sweep_escalates_many_slots_on_several_units_slot_by_slot(make_ward, app, clock, make_staff,
                                                                      login):
    """After downtime one sweep flags many slots on several units at once: each slot is
    escalated as if alone, in flagging order (a cause's first slot opens its escalation, the
    next ones update it), with each unit's own protocol and paging, and every chain verifies."""
    from config.clock import local
    from monitoring.services import flag_missed_observations

    start = clock.now
    managed = make_ward("medically_managed")       # a nurse in charge on the rota
    monitored = make_ward("medically_monitored")   # no rota: every nurse is paged
    for ward in (managed, monitored):
        make_staff(ward.code, "nurse", username=f"{ward.code.lower()}-nurse2",
                   email=f"{ward.code.lower()}-nurse2@example.org")
    adopt_protocol(monitored.manager, login(make_staff(monitored.code, "clinical_lead")),
                   "escalation", {"targets": {"soon": 90}}, "Local policy")
    assert managed.manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "staff_id": managed.staff_id("nurse"),
        "starts_at": iso(start - timedelta(hours=1)),
        "ends_at": iso(start + timedelta(hours=12))}).status_code == 201
    for ward in (managed, monitored):
        for _ in range(3):
            ward.admit(substances=("alcohol",))   # CIWA-Ar and NEWS2 due now, hourly at first
            clock.advance(minutes=1)
    paged = {managed.code: [managed.email("nurse")],
             monitored.code: [monitored.email("nurse"), f"{monitored.code.lower()}-nurse2@example.org"]}
    target = {managed.code: 120, monitored.code: 90}

    first_sweep = clock.set(start + timedelta(minutes=25)) or clock.now
    with app.app_context():
        assert len(flag_missed_observations(first_sweep)) == 12
    for ward in (managed, monitored):
        wrote = sweep_writes(app, ward.code, first_sweep)
        assert len(wrote["missed"]) == 6
        by_source = {e.source_id: e for e in wrote["escalations"].values()}
        opened = [by_source[row.id] for row in wrote["missed"]]   # one per slot, in slot order
        assert [e.id for e in opened] == sorted(e.id for e in opened)
        assert [(e.action, e.entity_id) for e in wrote["events"]] == (
            [("observation.missed", str(row.id)) for row in wrote["missed"]]
            + [("escalation.raise", str(e.id)) for e in opened])
        assert {e.target_minutes for e in opened} == {target[ward.code]}
        assert all(wrote["steps"][e.id] == ["raised", "notified"] for e in opened)
        assert [(m.ref_id, m.recipient_address) for m in wrote["messages"]] == [
            (e.id, address) for e in opened for address in paged[ward.code]]

    # The managed unit's first resident is seen; the scheduler is then down for 3 hours, so
    # two more hourly slots of every schedule are past grace.
    clock.advance(minutes=5)
    resolved = set()
    for escalation in escalation_rows(app, managed.admitted[0]["id"]):
        assert managed.manager.post(f"/api/v1/escalations/{escalation.id}/resolve",
                                    json={"outcome": "Seen"}).status_code == 200
        resolved.add((escalation.admission_id, escalation.dedup_key))
    second_sweep = clock.set(start + timedelta(hours=3, minutes=4)) or clock.now
    with app.app_context():
        assert len(flag_missed_observations(second_sweep)) == 24
    for ward in (managed, monitored):
        wrote = sweep_writes(app, ward.code, second_sweep)
        missed = wrote["missed"]
        assert len(missed) == 12
        live = {(e.admission_id, e.dedup_key): e for e in wrote["escalations"].values() if e.status == "open"}
        expected, raised = [("observation.missed", str(row.id)) for row in missed], []
        for row in missed:
            cause = (row.admission_id, f"missed:{row.scale}")
            if cause in resolved and live[cause].id not in raised:
                raised.append(live[cause].id)
                expected.append(("escalation.raise", str(live[cause].id)))
            else:
                expected.append(("escalation.update", str(live[cause].id)))
        assert [(e.action, e.entity_id) for e in wrote["events"]] == expected
        for cause, escalation in live.items():
            latest = [row for row in missed if (row.admission_id, f"missed:{row.scale}") == cause][-1]
            assert escalation.source_id == latest.id
            with app.app_context():
                assert f"due at {local(latest.due_at):%H:%M} was missed" in escalation.reason
            assert wrote["steps"][escalation.id] == (
                ["raised", "notified", "updated"] if escalation.id in raised else ["updated", "updated"])
        assert len(raised) == (2 if ward is managed else 0)
        assert [(m.ref_id, m.dedup_key, m.recipient_address) for m in wrote["messages"]] == [
            (escalation_id, f"esc:{escalation_id}:1:{managed.staff_id('nurse')}", address)
            for escalation_id in raised for address in paged[ward.code]]

    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


# --- 4. re-escalation on a fake clock -------------------------------------------------------

@pytest.mark.parametrize("model, items, severity, target", [
    ("medically_monitored", NEWS2_MEDIUM_6, "urgent", 30),
    ("medically_managed", NEWS2_HIGH_14, "emergency", 5),
])
def test_unacknowledged_escalation_climbs_the_levels(make_ward, app, clock, model, items, severity, target):
    from monitoring.escalations import re_escalate_due

    ward = make_ward(model)
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", items)["escalation"]
    assert escalation["severity"] == severity
    raised = clock.now

    def due(at):
        with app.app_context():
            return [e.id for e in re_escalate_due(at)]

    def detail():
        return ward.doctor.get(f"/api/v1/escalations/{escalation['id']}").get_json()

    assert due(raised + timedelta(minutes=target - 1)) == []
    assert detail()["level"] == 1

    level2_at = raised + timedelta(minutes=target + 1)
    assert due(level2_at) == [escalation["id"]]
    body = detail()
    assert body["level"] == 2 and body["status"] == "open"
    step = [s for s in body["steps"] if s["kind"] == "re_escalated"][-1]
    assert (step["level"], parse(step["at"])) == (2, level2_at)
    assert "second on call" in step["detail"]
    assert due(level2_at) == []   # the same run again moves nothing

    # The next level comes one target later: nothing a minute before, level 3 a minute after.
    assert due(level2_at + timedelta(minutes=target - 1)) == []
    level3_at = level2_at + timedelta(minutes=target + 1)
    assert due(level3_at) == [escalation["id"]]
    body = detail()
    assert body["level"] == 3
    step = [s for s in body["steps"] if s["kind"] == "re_escalated"][-1]
    assert (step["level"], parse(step["at"])) == (3, level3_at)
    assert "clinical lead" in step["detail"]

    # The top of the policy: it stays at level 3 and pages the clinical lead again each target.
    repeat_at = level3_at + timedelta(minutes=target)
    assert due(repeat_at) == [escalation["id"]]
    body = detail()
    assert body["level"] == 3
    repeats = [s for s in body["steps"] if s["kind"] == "re_escalated"]
    assert [(s["level"], parse(s["at"])) for s in repeats] == [(2, level2_at), (3, level3_at), (3, repeat_at)]
    # Each level pages someone new: level 2 second on call (doctor/GP), level 3 the manager.
    recipients = [m.recipient_address for m in outbox_rows(app, escalation["id"])]
    assert ward.email("manager") in recipients
    assert recipients.count(ward.email("manager")) == 2   # level 3 and its repeat


def test_acknowledged_escalation_stops_re_escalating(make_ward, app, clock):
    from monitoring.escalations import re_escalate_due

    ward = make_ward("medically_monitored")
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]
    raised = clock.now
    with app.app_context():
        assert [e.id for e in re_escalate_due(raised + timedelta(minutes=31))] == [escalation["id"]]
    clock.set(raised + timedelta(minutes=35))
    assert ward.gp.post(f"/api/v1/escalations/{escalation['id']}/acknowledge").status_code == 200
    messages = len(outbox_rows(app))
    for minutes in (40, 70, 200, 1000):
        with app.app_context():
            assert re_escalate_due(raised + timedelta(minutes=minutes)) == []
    body = ward.gp.get(f"/api/v1/escalations/{escalation['id']}").get_json()
    assert (body["status"], body["level"], body["escalate_at"]) == ("acknowledged", 2, None)
    assert len(outbox_rows(app)) == messages


def test_resolved_and_overridden_escalations_do_not_re_escalate(make_ward, app, clock):
    from monitoring.escalations import re_escalate_due

    ward = make_ward()
    admission = ward.admit(substances=("alcohol",))
    a = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]
    b = observe(ward.nurse, admission["id"], "news2", NEWS2_MEDIUM_5)["escalation"]
    assert ward.gp.post(f"/api/v1/escalations/{a['id']}/resolve",
                        json={"outcome": "Seen in person"}).status_code == 200
    assert ward.nurse.post(f"/api/v1/escalations/{b['id']}/override",
                           json={"reason": "Known fever, already on paracetamol"}).status_code == 200
    with app.app_context():
        assert re_escalate_due(clock.now + timedelta(hours=5)) == []


# --- clinical signs: an emergency everywhere ------------------------------------------------

@pytest.mark.parametrize("model", ["medically_managed", "medically_monitored"])
def test_seizure_is_an_emergency_everywhere(make_ward, model):
    ward = make_ward(model)
    admission = ward.admit()
    response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/escalations",
                               json={"sign": "seizure", "note": "tonic-clonic, 2 min"},
                               headers={"Idempotency-Key": "sign-1"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["severity"], body["target_minutes"]) == ("emergency", 5)
    assert body["reason"].startswith("Seizure")


def test_a_milder_score_does_not_rewrite_why_it_is_an_emergency(make_ward, app, clock):
    ward = make_ward()
    admission = ward.admit()
    first = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(22))["escalation"]
    assert first["severity"] == "emergency"
    clock.advance(minutes=3)
    second = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert second["id"] == first["id"]
    assert second["severity"] == "emergency"
    assert second["reason"].startswith("CIWA-Ar 22")
    (row,) = escalation_rows(app, admission["id"])
    assert any(s.kind == "updated" and "CIWA-Ar 16" in s.detail for s in steps_of(app, row.id))


def test_discharge_resolves_live_escalations_so_nobody_is_paged_for_someone_gone(make_ward, app, clock):
    from monitoring.escalations import re_escalate_due

    ward = make_ward()
    admission = ward.admit()
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))
    response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                               json={"discharge_type": "self-discharged"})
    assert response.status_code == 200
    (row,) = escalation_rows(app, admission["id"])
    assert row.status == "resolved" and row.outcome == "resident discharged (self-discharged)"
    with app.app_context():
        assert re_escalate_due(clock.now + timedelta(hours=3)) == []
