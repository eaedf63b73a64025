"""The due sweep (flag_missed_observations): after any downtime one sweep records every slot
missed meanwhile, once each. Time moves on a fake clock; nothing sleeps."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from monitoring import escalations, services
from monitoring.models import MissedObservation, ObservationSchedule
from tests.monitoring.helpers import NEWS2_ZERO, ciwa, key, parse, post_observation, record
from unit.models import AuditEvent


def grace_for(interval_minutes: int) -> int:
    """docs/clinical-rules.md s2: missed after 15 minutes for intervals of 1 h or less, else 30."""
    return 15 if interval_minutes <= 60 else 30


def expected_slots(first_due: datetime, interval_minutes: int, now: datetime) -> list[datetime]:
    """Every due time from ``first_due`` on whose grace has passed by ``now``."""
    slots, slot = [], first_due
    grace = timedelta(minutes=grace_for(interval_minutes))
    while slot + grace < now:
        slots.append(slot)
        slot += timedelta(minutes=interval_minutes)
    return slots


@pytest.fixture
def missed_hook(monkeypatch):
    """Record what the sweep hands to escalation (instead of escalating)."""
    calls = []
    monkeypatch.setattr(escalations, "escalate_missed",
                        lambda rows, now: calls.extend((row.id, row.due_at, now) for row in rows))
    return calls


def sweep(app, at: datetime) -> list[tuple[int, str, datetime]]:
    with app.app_context():
        return [(row.admission_id, row.scale, row.due_at) for row in services.flag_missed_observations(at)]


def missed_rows(app, admission_id: int | None = None, scale: str | None = None) -> list[tuple]:
    with app.app_context():
        query = sa.select(MissedObservation.admission_id, MissedObservation.scale,
                          MissedObservation.due_at, MissedObservation.grace_minutes)
        if admission_id is not None:
            query = query.where(MissedObservation.admission_id == admission_id)
        if scale is not None:
            query = query.where(MissedObservation.scale == scale)
        return list(db.session.execute(query.order_by(MissedObservation.due_at)).all())


def schedule_row(app, admission_id: int, scale: str) -> ObservationSchedule:
    with app.app_context():
        row = db.session.scalars(sa.select(ObservationSchedule).where(
            ObservationSchedule.admission_id == admission_id, ObservationSchedule.scale == scale)).one()
        db.session.expunge(row)
        return row


def test_a_3_hour_outage_flags_every_missed_hourly_slot_once(app, ward, clock, missed_hook):
    admission = ward.admit()
    clock.advance(minutes=2)
    severe = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(18))       # hourly
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)                # every 12 h
    first_due = parse(severe["next_due_at"])
    assert sweep(app, clock.now) == []
    # The scheduler is down for 3 hours; the first sweep afterwards catches up.
    clock.advance(hours=3)
    expected = expected_slots(first_due, 60, clock.now)
    assert len(expected) == 2  # due +1 h and +2 h are past grace; +3 h is not yet
    flagged = sweep(app, clock.now)
    assert flagged == [(admission["id"], "ciwa-ar", due) for due in expected]
    assert missed_rows(app, admission["id"]) == [(admission["id"], "ciwa-ar", due, 15) for due in expected]
    assert [due for _, due, _ in missed_hook] == expected
    # A second sweep (or a second scheduler) adds nothing.
    assert sweep(app, clock.now) == []
    assert len(missed_rows(app)) == len(expected)
    # Time moves on: only the next slot, once its grace has passed.
    clock.advance(minutes=15)
    assert sweep(app, clock.now) == []  # +3 h slot: exactly at the end of its grace
    clock.advance(seconds=1)
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", first_due + timedelta(hours=2))]
    assert len(missed_rows(app)) == len(expected) + 1
    with app.app_context():
        audits = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.action == "observation.missed"))
    assert audits == len(expected) + 1


def test_a_long_interval_has_30_minutes_grace(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    minimal = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(3))        # every 4 h
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    due = parse(minimal["next_due_at"])
    clock.set(due + timedelta(minutes=30))
    assert sweep(app, clock.now) == []
    clock.advance(seconds=1)
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", due)]
    assert missed_rows(app, admission["id"])[0][3] == 30
    # A 10-hour outage: the slots every 4 h since, each once.
    clock.set(due + timedelta(hours=10))
    flagged = [d for _, scale, d in sweep(app, clock.now) if scale == "ciwa-ar"]
    assert flagged == expected_slots(due, 240, clock.now)[1:]
    assert [d for *_, d, _ in missed_rows(app, admission["id"], "ciwa-ar")] == expected_slots(due, 240, clock.now)


def test_a_recorded_observation_resets_the_missed_slots(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    first = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))          # hourly
    clock.advance(hours=2, minutes=30)
    assert len(sweep(app, clock.now)) == len(expected_slots(parse(first["next_due_at"]), 60, clock.now)) == 2
    late = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))            # 2-hourly now
    assert parse(late["next_due_at"]) == clock.now + timedelta(hours=2)
    schedule = schedule_row(app, admission["id"], "ciwa-ar")
    assert schedule.missed_through is None
    # Nothing more is missed until 2 h + 30 min grace after this one.
    clock.advance(hours=2, minutes=30)
    assert sweep(app, clock.now) == []
    clock.advance(seconds=1)
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", parse(late["next_due_at"]))]
    assert len(missed_rows(app, admission["id"])) == 3


def test_not_done_is_asked_again_in_30_minutes_and_missed_after_that(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))                    # hourly
    clock.advance(minutes=58)
    reply = post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": "asleep"})
    retry_at = clock.now + timedelta(minutes=30)
    assert parse(reply.get_json()["next_due_at"]) == retry_at
    clock.set(retry_at + timedelta(minutes=15))
    assert sweep(app, clock.now) == []   # the retry is not missed while in grace
    clock.advance(seconds=1)
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", retry_at)]


def test_every_unit_and_every_schedule_is_swept(app, ward, clock, make_unit, make_staff, login, admit):
    other_nurse = login(make_staff(make_unit(), "nurse"))
    here = ward.admit(substances=("alcohol", "opioids"))
    there = admit(other_nurse, name="Elsewhere Resident", substances=("opioids",))
    admitted_at = clock.now
    # Nobody records anything: every schedule is due at admission, hourly until a first score.
    clock.advance(hours=1, minutes=16)
    flagged = sweep(app, clock.now)
    expected = expected_slots(admitted_at, 60, clock.now)
    assert len(expected) == 2
    assert sorted(flagged) == sorted(
        [(here["id"], scale, due) for scale in ("ciwa-ar", "cows", "news2") for due in expected]
        + [(there["id"], scale, due) for scale in ("cows", "news2") for due in expected])
    assert sweep(app, clock.now) == []


def test_inactive_schedules_and_discharged_residents_are_not_swept(app, ward, clock):
    admission = ward.admit()
    gone = ward.admit(name="Gone Home")
    ward.nurse.post(f"/api/v1/admissions/{gone['id']}/discharge", json={"discharge_type": "completed"})
    schedule = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/schedules").get_json()[0]
    ward.nurse.post(f"/api/v1/schedules/{schedule['id']}", json={"active": False, "reason": "stopped"},
                    headers={"Idempotency-Key": key()})
    clock.advance(hours=5)
    assert {(a, s) for a, s, _ in sweep(app, clock.now)} == {(admission["id"], "news2")}


def test_a_restarted_schedule_is_not_blamed_for_the_time_it_was_stopped(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))                    # hourly
    clock.advance(hours=2)
    assert len(sweep(app, clock.now)) == 1
    schedule = schedule_row(app, admission["id"], "ciwa-ar")
    url = f"/api/v1/schedules/{schedule.id}"
    ward.nurse.post(url, json={"active": False, "reason": "paused"}, headers={"Idempotency-Key": key()})
    clock.advance(hours=6)
    restarted = ward.nurse.post(url, json={"active": True, "reason": "resumed"},
                                headers={"Idempotency-Key": key()}).get_json()
    assert parse(restarted["next_due_at"]) == clock.now
    clock.advance(minutes=10)
    assert sweep(app, clock.now) == []  # due 10 minutes ago, in grace: nothing missed
    clock.advance(minutes=6)
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", parse(restarted["next_due_at"]))]


def test_a_schedule_re_added_after_stopping_starts_afresh(app, ward, clock):
    admission = ward.admit()
    clock.advance(hours=3)
    # Never scored: due at admission, then hourly (+0, +1 h, +2 h are past their grace).
    assert len([row for row in sweep(app, clock.now) if row[1] == "ciwa-ar"]) == 3
    schedule = schedule_row(app, admission["id"], "ciwa-ar")
    ward.nurse.post(f"/api/v1/schedules/{schedule.id}", json={"active": False, "reason": "paused"},
                    headers={"Idempotency-Key": key()})
    clock.advance(hours=5)
    added = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/schedules",
                            json={"scale": "ciwa-ar", "reason": "withdrawal again"},
                            headers={"Idempotency-Key": key()})
    assert added.status_code == 201, added.get_json()
    clock.advance(minutes=5)
    assert [row for row in sweep(app, clock.now) if row[1] == "ciwa-ar"] == []


def test_a_strike_that_moves_the_due_time_back_does_not_break_the_sweep(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    first = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))            # hourly
    due = parse(first["next_due_at"])
    clock.set(due + timedelta(minutes=16))
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", due)]
    clock.advance(minutes=4)
    wrong = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(9))             # 2-hourly
    # Entered for the wrong resident: struck, so the earlier (missed) due time applies again.
    response = ward.nurse.post(f"/api/v1/observations/{wrong['id']}/strike",
                               json={"reason": "wrong resident"}, headers={"Idempotency-Key": key()})
    assert response.status_code == 200
    clock.advance(minutes=5)
    assert sweep(app, clock.now) == []  # the slot at `due` was flagged already: not twice
    clock.set(due + timedelta(hours=1, minutes=16))
    assert sweep(app, clock.now) == [(admission["id"], "ciwa-ar", due + timedelta(hours=1))]
    assert [d for _, _, d, _ in missed_rows(app, admission["id"], "ciwa-ar")] == [due, due + timedelta(hours=1)]


def test_a_very_long_outage_is_caught_up_in_bounded_sweeps(app, ward, clock, monkeypatch):
    monkeypatch.setattr(services, "MAX_SLOTS_PER_SWEEP", 10)
    admission = ward.admit(substances=("benzodiazepines",))                   # NEWS2 only
    clock.advance(minutes=1)
    high = record(ward.nurse, admission["id"], "news2", {
        "respiration_rate": 8, "spo2": 90, "spo2_scale": 1, "supplemental_oxygen": True,
        "systolic_bp": 98, "pulse": 52, "consciousness": "V", "temperature": 35.8})  # every 15 min
    clock.advance(hours=6)
    expected = expected_slots(parse(high["next_due_at"]), 15, clock.now)
    assert len(expected) == 22  # due +15 min, then every 15 min while slot + 15 min < now
    found = []
    for _ in range(5):
        found += [d for *_, d in sweep(app, clock.now)]
    assert found == expected
