"""Observation schedules (docs/clinical-rules.md s2): set at admission, adapting to the last
band, changed by nurses and doctors, every change kept as a ScheduleChange row and in the audit
trail."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from monitoring.models import ObservationSchedule, ScheduleChange
from tests.monitoring.helpers import (
    COWS_ZERO,
    NEWS2_FOUR,
    NEWS2_HIGH,
    NEWS2_LOW_MEDIUM,
    NEWS2_MEDIUM,
    NEWS2_ZERO,
    assert_problem,
    ciwa,
    iso,
    key,
    parse,
    record,
    row_counts,
)
from unit.models import AuditEvent

# COWS item sets with hand-added totals (allowed values only).
COWS = {
    0: COWS_ZERO,                                                                   # none
    5: {**COWS_ZERO, "gooseflesh": 5},                                              # mild
    13: {**COWS_ZERO, "gooseflesh": 5, "restlessness": 5, "sweating": 3},           # moderate
    25: {**COWS_ZERO, "gooseflesh": 5, "restlessness": 5, "pupil_size": 5, "gi_upset": 5,
         "sweating": 4, "resting_pulse": 1},                                        # mod. severe
    37: {**COWS_ZERO, "gooseflesh": 5, "restlessness": 5, "pupil_size": 5, "gi_upset": 5,
         "sweating": 4, "resting_pulse": 4, "bone_joint_aches": 4, "runny_nose_tearing": 4,
         "tremor": 1},                                                              # severe
}


def schedules(client, admission_id: int) -> dict[str, dict]:
    response = client.get(f"/api/v1/admissions/{admission_id}/schedules")
    assert response.status_code == 200, response.get_json()
    return {s["scale"]: s for s in response.get_json()}


def changes(app, admission_id: int, scale: str) -> list[tuple]:
    with app.app_context():
        return list(db.session.execute(
            sa.select(ScheduleChange.old_interval_minutes, ScheduleChange.new_interval_minutes,
                      ScheduleChange.reason, ScheduleChange.changed_by_id)
            .join(ObservationSchedule, ObservationSchedule.id == ScheduleChange.schedule_id)
            .where(ScheduleChange.admission_id == admission_id, ObservationSchedule.scale == scale)
            .order_by(ScheduleChange.id)).all())


def interval_audits(app, schedule_id: int) -> list[dict]:
    with app.app_context():
        return list(db.session.scalars(
            sa.select(AuditEvent.after).where(AuditEvent.action == "schedule.interval",
                                              AuditEvent.entity_id == str(schedule_id))
            .order_by(AuditEvent.seq)))


def post_json(client, url: str, body: dict):
    return client.post(url, json=body, headers={"Idempotency-Key": key()})


# --------------------------------------------------------------------------- at admission

@pytest.mark.parametrize("substances, scales", [
    (("alcohol",), {"ciwa-ar", "news2"}),
    (("opioids",), {"cows", "news2"}),
    (("alcohol", "opioids"), {"ciwa-ar", "cows", "news2"}),
    (("benzodiazepines",), {"news2"}),
])
def test_schedules_are_set_at_admission_from_the_substances(app, ward, substances, scales):
    admission = ward.admit(substances=substances)
    found = schedules(ward.nurse, admission["id"])
    assert set(found) == scales
    for schedule in found.values():
        assert schedule["active"] is True
        assert parse(schedule["next_due_at"]) == parse(admission["admitted_at"])  # due at once
        assert schedule["state"] == "due_soon"
        assert len(changes(app, admission["id"], schedule["scale"])) == 1
        assert changes(app, admission["id"], schedule["scale"])[0][0] is None
        assert len(interval_audits(app, schedule["id"])) == 1


# --------------------------------------------------------------------------- adapting to bands

def test_ciwa_ar_interval_follows_the_band(app, ward, clock):
    admission = ward.admit()
    steps = [(17, 60), (12, 120), (16, 60), (5, 240), (0, 240), (7, 480), (3, 480), (8, 120),
             (2, 240)]
    for total, minutes in steps:
        clock.advance(minutes=20)
        reply = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(total))
        assert reply["interval_minutes"] == minutes, (total, reply["band"])
        assert parse(reply["next_due_at"]) == parse(reply["observed_at"]) + timedelta(minutes=minutes)
    rows = changes(app, admission["id"], "ciwa-ar")
    # Admission (60), then only real changes: 60 -> 120 -> 60 -> 240 -> 480 -> 120 -> 240.
    assert [(old, new) for old, new, _, _ in rows] == [
        (None, 60), (60, 120), (120, 60), (60, 240), (240, 480), (480, 120), (120, 240)]
    assert "moderate" in rows[1][2] and "severe" in rows[2][2] and "minimal" in rows[4][2]
    assert all(changed_by is not None for *_, changed_by in rows)
    schedule_id = schedules(ward.nurse, admission["id"])["ciwa-ar"]["id"]
    assert [a["interval_minutes"] for a in interval_audits(app, schedule_id)] == [60, 120, 60, 240, 480, 120, 240]


def test_the_third_minimal_in_a_row_makes_it_8_hourly(ward, clock):
    admission = ward.admit()
    replies = []
    for total in (7, 0, 4):
        clock.advance(minutes=30)
        replies.append(record(ward.nurse, admission["id"], "ciwa-ar", ciwa(total)))
    assert [r["interval_minutes"] for r in replies] == [240, 240, 480]
    assert parse(replies[-1]["next_due_at"]) == clock.now + timedelta(hours=8)


@pytest.mark.parametrize("total, band, minutes", [(0, "none", 240), (5, "mild", 240), (13, "moderate", 120),
                                                  (25, "moderately_severe", 60), (37, "severe", 60)])
def test_cows_interval_follows_the_band(ward, clock, total, band, minutes):
    admission = ward.admit(substances=("opioids",))
    clock.advance(minutes=10)
    reply = record(ward.nurse, admission["id"], "cows", COWS[total])
    assert (reply["total"], reply["band"], reply["interval_minutes"]) == (total, band, minutes)
    assert parse(reply["next_due_at"]) == clock.now + timedelta(minutes=minutes)


@pytest.mark.parametrize("items, total, risk, minutes", [
    (NEWS2_ZERO, 0, "low", 720), (NEWS2_FOUR, 4, "low", 240), (NEWS2_LOW_MEDIUM, 3, "low-medium", 60),
    (NEWS2_MEDIUM, 6, "medium", 60), (NEWS2_HIGH, 14, "high", 15)])
def test_news2_interval_follows_risk_and_total(ward, clock, items, total, risk, minutes):
    admission = ward.admit()
    clock.advance(minutes=10)
    reply = record(ward.nurse, admission["id"], "news2", items)
    assert (reply["total"], reply["risk"], reply["interval_minutes"]) == (total, risk, minutes)
    assert parse(reply["next_due_at"]) == clock.now + timedelta(minutes=minutes)


def test_gmaws_added_by_a_nurse_is_hourly_when_severe_else_2_hourly(app, ward, clock):
    admission = ward.admit()
    response = post_json(ward.nurse, f"/api/v1/admissions/{admission['id']}/schedules",
                         {"scale": "gmaws", "reason": "local protocol uses GMAWS"})
    assert response.status_code == 201, response.get_json()
    added = response.get_json()
    assert parse(added["next_due_at"]) == clock.now and added["active"] is True
    assert changes(app, admission["id"], "gmaws")[0][2] == "local protocol uses GMAWS"
    severe = {"tremor": 2, "sweating": 2, "hallucinations": 2, "orientation": 1, "agitation": 1}
    mild = {"tremor": 1, "sweating": 0, "hallucinations": 0, "orientation": 0, "agitation": 0}
    clock.advance(minutes=5)
    assert record(ward.nurse, admission["id"], "gmaws", severe)["interval_minutes"] == 60
    clock.advance(minutes=30)
    assert record(ward.nurse, admission["id"], "gmaws", mild)["interval_minutes"] == 120


def test_a_late_entered_observation_does_not_move_the_schedule(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=60)
    latest = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(18))           # severe: hourly
    before = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    changes_before = changes(app, admission["id"], "ciwa-ar")
    clock.advance(minutes=10)
    # Written up late: a minimal score taken 40 minutes ago, before the latest one.
    late = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(2),
                  observed_at=clock.now - timedelta(minutes=40))
    assert late["total"] == 2
    after = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    assert (after["interval_minutes"], after["next_due_at"]) == (60, before["next_due_at"])
    assert parse(after["next_due_at"]) == parse(latest["observed_at"]) + timedelta(minutes=60)
    assert changes(app, admission["id"], "ciwa-ar") == changes_before
    with app.app_context():
        schedule = db.session.get(ObservationSchedule, after["id"])
        assert schedule.last_observation_id == latest["id"]
    # Both are listed, newest observed first.
    listed = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/observations").get_json()
    assert [o["id"] for o in listed] == [latest["id"], late["id"]]


# --------------------------------------------------------------------------- changed by staff

def test_a_doctor_sets_at_least_every_n_minutes(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=5)
    minimal = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(3))            # every 4 h
    schedule = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    clock.advance(minutes=15)
    response = post_json(ward.doctor, f"/api/v1/schedules/{schedule['id']}",
                         {"max_interval_minutes": 60, "reason": "new tremor on ward round"})
    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert (changed["interval_minutes"], changed["max_interval_minutes"]) == (60, 60)
    assert parse(changed["next_due_at"]) == parse(minimal["observed_at"]) + timedelta(minutes=60)
    old, new, reason, by = changes(app, admission["id"], "ciwa-ar")[-1]
    assert (old, new, reason) == (240, 60, "new tremor on ward round") and by is not None
    # The protocol may ask sooner, never later: a minimal score now gives 1 h, not 4 h.
    clock.advance(minutes=40)
    assert record(ward.nurse, admission["id"], "ciwa-ar", ciwa(1))["interval_minutes"] == 60
    assert record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))["interval_minutes"] == 60


def test_stopping_and_restarting_a_schedule(app, ward, clock):
    admission = ward.admit()
    schedule = schedules(ward.nurse, admission["id"])["news2"]
    url = f"/api/v1/schedules/{schedule['id']}"
    stopped = post_json(ward.nurse, url, {"active": False, "reason": "observations now by GP plan"})
    assert stopped.status_code == 200 and stopped.get_json()["active"] is False
    assert changes(app, admission["id"], "news2")[-1][2] == "Stopped: observations now by GP plan"
    clock.advance(hours=3)
    restarted = post_json(ward.doctor, url, {"active": True, "reason": "febrile again"})
    assert restarted.get_json()["active"] is True
    assert parse(restarted.get_json()["next_due_at"]) == clock.now  # due now


def test_adding_an_existing_schedule_is_a_conflict_and_a_stopped_one_restarts(app, ward, clock):
    admission = ward.admit()
    url = f"/api/v1/admissions/{admission['id']}/schedules"
    before = row_counts(app)
    assert_problem(post_json(ward.nurse, url, {"scale": "ciwa-ar", "reason": "again"}), 409, "schedule-exists")
    assert row_counts(app) == before
    sows = post_json(ward.nurse, url, {"scale": "sows", "max_interval_minutes": 120, "reason": "self-report"})
    assert sows.status_code == 201
    assert (sows.get_json()["interval_minutes"], sows.get_json()["max_interval_minutes"]) == (60, 120)
    post_json(ward.nurse, f"/api/v1/schedules/{sows.get_json()['id']}", {"active": False, "reason": "stop it"})
    clock.advance(hours=1)
    again = post_json(ward.nurse, url, {"scale": "sows", "reason": "restart it"})
    assert again.status_code == 201
    assert again.get_json()["id"] == sows.get_json()["id"]
    assert again.get_json()["active"] is True and parse(again.get_json()["next_due_at"]) == clock.now


def test_schedule_changes_are_checked(app, ward, make_unit, make_staff, login):
    admission = ward.admit()
    schedule = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    url = f"/api/v1/schedules/{schedule['id']}"
    other = login(make_staff(make_unit(), "nurse"))
    before = row_counts(app)
    assert_problem(post_json(ward.nurse, url, {"max_interval_minutes": 5, "reason": "too often"}), 422)
    assert_problem(post_json(ward.nurse, url, {"max_interval_minutes": 60}), 422)  # no reason
    assert_problem(post_json(ward.nurse, url, {"max_interval_minutes": "60", "reason": "string"}), 422)
    assert_problem(post_json(ward.clients["inspector"], url, {"max_interval_minutes": 60, "reason": "x y z"}), 403)
    assert_problem(post_json(other, url, {"max_interval_minutes": 60, "reason": "not mine"}), 404)
    assert_problem(post_json(ward.nurse, "/api/v1/schedules/999999", {"active": False, "reason": "none"}), 404)
    assert_problem(post_json(ward.nurse, f"/api/v1/admissions/{admission['id']}/schedules",
                             {"scale": "ciwa", "reason": "bad scale"}), 422)
    assert row_counts(app) == before


def test_a_discharged_admission_has_no_schedule_to_change(app, ward, clock):
    admission = ward.admit()
    schedule = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge", json={"discharge_type": "completed"})
    assert all(not s["active"] for s in schedules(ward.nurse, admission["id"]).values())
    assert_problem(post_json(ward.nurse, f"/api/v1/schedules/{schedule['id']}",
                             {"active": True, "reason": "restart"}), 409)
    assert_problem(post_json(ward.nurse, f"/api/v1/admissions/{admission['id']}/schedules",
                             {"scale": "gmaws", "reason": "add"}), 409)


def test_schedules_show_their_due_state(ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))  # hourly, due in 60 min
    assert schedules(ward.nurse, admission["id"])["ciwa-ar"]["state"] == "ok"
    clock.advance(minutes=45)
    assert schedules(ward.nurse, admission["id"])["ciwa-ar"]["state"] == "due_soon"
    clock.advance(minutes=16)
    assert schedules(ward.nurse, admission["id"])["ciwa-ar"]["state"] == "late"
    clock.advance(minutes=14)  # 15 min past due: still in grace
    assert schedules(ward.nurse, admission["id"])["ciwa-ar"]["state"] == "late"
    clock.advance(minutes=1, seconds=1)
    assert schedules(ward.nurse, admission["id"])["ciwa-ar"]["state"] == "overdue"


def test_a_late_entered_not_done_does_not_move_the_schedule(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=30)
    latest = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(18))           # hourly
    clock.advance(minutes=5)
    # Written up late: at 20 minutes after admission the resident was asleep.
    response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/observations", json={
        "scale": "ciwa-ar", "not_done_reason": "asleep", "observed_at": iso(clock.now - timedelta(minutes=15))},
        headers={"Idempotency-Key": key()})
    assert response.status_code == 201, response.get_json()
    after = schedules(ward.nurse, admission["id"])["ciwa-ar"]
    assert parse(after["next_due_at"]) == parse(latest["observed_at"]) + timedelta(minutes=60)
    assert parse(response.get_json()["next_due_at"]) == parse(after["next_due_at"])
