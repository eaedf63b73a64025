"""POST/GET /api/v1/admissions/<id>/observations: recording, refused timestamps, not-done,
the listing; and corrections through POST /api/v1/observations/<id>/strike."""
from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from config.extensions import db
from monitoring.models import Observation, ObservationSchedule
from tests.monitoring.helpers import (
    NEWS2_ZERO,
    assert_problem,
    ciwa,
    iso,
    parse,
    post_observation,
    record,
    row_counts,
)
from unit.models import AuditEvent


def audit_actions(app, entity_type: str, entity_id) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.entity_type == entity_type,
                                               AuditEvent.entity_id == str(entity_id))
            .order_by(AuditEvent.seq)))


def schedule_of(app, admission_id: int, scale: str) -> ObservationSchedule:
    with app.app_context():
        schedule = db.session.scalars(sa.select(ObservationSchedule).where(
            ObservationSchedule.admission_id == admission_id,
            ObservationSchedule.scale == scale)).one()
        db.session.expunge(schedule)
        return schedule


# --------------------------------------------------------------------------- recording

def test_recording_replies_with_score_next_due_and_escalation(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=10)
    body = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(17), note="tremulous, sweating")
    assert (body["scale"], body["total"], body["band"], body["status"]) == ("ciwa-ar", 17, "severe", "recorded")
    assert parse(body["observed_at"]) == clock.now  # defaults to now
    assert parse(body["next_due_at"]) == clock.now + timedelta(minutes=60)  # severe: hourly
    assert body["interval_minutes"] == 60
    assert "escalation" in body  # severe: escalation's business (tested with escalations)
    assert body["note"] == "tremulous, sweating"
    assert body["recorded_by"] == ward.usernames["nurse"]
    assert body["due_at"] is not None  # it answered the admission's first due time
    assert audit_actions(app, "observation", body["id"]) == ["observation.record"]
    clock.advance(minutes=30)
    calm = record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)
    assert (calm["total"], calm["risk"], calm["escalation"]) == (0, "low", None)
    assert parse(calm["next_due_at"]) == clock.now + timedelta(minutes=720)


def test_observed_at_may_be_given(ward, clock):
    admission = ward.admit()
    clock.advance(minutes=40)
    at = clock.now - timedelta(minutes=25)
    body = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(9), observed_at=at)
    assert parse(body["observed_at"]) == at
    assert parse(body["next_due_at"]) == at + timedelta(minutes=120)  # moderate: every 2 h


def test_a_scale_without_schedule_is_recorded_without_next_due(ward):
    admission = ward.admit(substances=("alcohol",))
    body = record(ward.nurse, admission["id"], "gmaws",
                  {"tremor": 1, "sweating": 1, "hallucinations": 0, "orientation": 0, "agitation": 1})
    assert (body["total"], body["band"], body["next_due_at"]) == (3, "mild", None)


def test_invalid_items_are_refused_naming_the_item_and_nothing_is_written(app, ward):
    admission = ward.admit(substances=("opioids",))
    before = row_counts(app)
    response = post_observation(ward.nurse, admission["id"], {
        "scale": "cows", "items": {"resting_pulse": 0, "restlessness": 2}})
    body = assert_problem(response, 422, "scale-input-invalid")
    assert "0, 1, 3, 5" in " ".join(body["errors"]["items"]["restlessness"])
    assert "sweating" in body["errors"]["items"]
    assert row_counts(app) == before


def test_items_or_a_not_done_reason_are_required(ward):
    admission = ward.admit()
    assert_problem(post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar"}), 422)
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "items": ciwa(0), "not_done_reason": "asleep"}), 422)
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "not_done_reason": "sleeping"}), 422)
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa", "items": ciwa(0)}), 422)


def test_the_inspector_may_not_record(ward):
    admission = ward.admit()
    response = post_observation(ward.clients["inspector"], admission["id"],
                                {"scale": "ciwa-ar", "items": ciwa(0)})
    assert_problem(response, 403)


def test_another_units_admission_is_not_found(ward, make_unit, make_staff, login):
    admission = ward.admit()
    other = login(make_staff(make_unit(), "nurse"))
    assert_problem(post_observation(other, admission["id"], {"scale": "ciwa-ar", "items": ciwa(0)}),
                   404)
    assert_problem(other.get(f"/api/v1/admissions/{admission['id']}/observations"), 404)


# --------------------------------------------------------------------------- refused timestamps

def test_observed_at_more_than_2_minutes_ahead_is_refused_and_nothing_written(app, ward, clock):
    admission = ward.admit()
    before = row_counts(app)
    for ahead in (timedelta(minutes=2, seconds=1), timedelta(minutes=10), timedelta(days=1)):
        response = post_observation(ward.nurse, admission["id"], {
            "scale": "ciwa-ar", "items": ciwa(0), "observed_at": iso(clock.now + ahead)})
        body = assert_problem(response, 422, "observation-time-invalid")
        assert "observed_at" in body["errors"]
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "not_done_reason": "asleep",
        "observed_at": iso(clock.now + timedelta(minutes=5))}), 422, "observation-time-invalid")
    assert row_counts(app) == before


def test_observed_at_1_minute_ahead_is_accepted(ward, clock):
    admission = ward.admit()
    clock.advance(minutes=5)
    at = clock.now + timedelta(minutes=1)  # a tablet clock a little fast
    body = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(0), observed_at=at)
    assert parse(body["observed_at"]) == at
    at = clock.now + timedelta(minutes=2)  # exactly the allowed skew
    assert parse(record(ward.nurse, admission["id"], "news2", NEWS2_ZERO, observed_at=at)["observed_at"]) == at


def test_observed_at_before_the_admission_is_refused(app, ward, clock):
    admission = ward.admit()
    clock.advance(hours=1)
    before = row_counts(app)
    response = post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "items": ciwa(0),
        "observed_at": iso(parse(admission["admitted_at"]) - timedelta(seconds=1))})
    body = assert_problem(response, 422, "observation-time-invalid")
    assert "before the admission" in " ".join(body["errors"]["observed_at"])
    assert row_counts(app) == before


def test_a_discharged_admission_takes_no_observation(app, ward, clock):
    admission = ward.admit()
    clock.advance(hours=2)
    response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                               json={"discharge_type": "completed"})
    assert response.status_code == 200, response.get_json()
    before = row_counts(app)
    assert_problem(post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": ciwa(0)}),
                   409, "admission-not-active")
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "items": ciwa(0),
        "observed_at": iso(clock.now - timedelta(hours=1))}), 409)  # even backdated
    assert_problem(post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "not_done_reason": "off_unit"}), 409)
    assert row_counts(app) == before
    # Discharge stopped every schedule.
    assert not schedule_of(app, admission["id"], "ciwa-ar").active


def test_a_timestamp_without_zone_is_refused(ward, clock):
    admission = ward.admit()
    response = post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "items": ciwa(0),
        "observed_at": clock.now.replace(tzinfo=None).isoformat()})
    assert_problem(response, 422)


# --------------------------------------------------------------------------- not done

def test_not_done_asks_again_in_30_minutes(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=5)
    response = post_observation(ward.nurse, admission["id"], {
        "scale": "ciwa-ar", "not_done_reason": "asleep", "note": "settled, breathing normally"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["status"], body["not_done_reason"], body["total"]) == ("not_done", "asleep", None)
    assert parse(body["next_due_at"]) == clock.now + timedelta(minutes=30)
    assert body["escalation"] is None
    assert audit_actions(app, "observation", body["id"]) == ["observation.not_done"]


def test_not_done_retry_is_never_later_than_the_interval(ward, clock):
    admission = ward.admit(substances=("alcohol",))
    record(ward.nurse, admission["id"], "news2", {
        "respiration_rate": 8, "spo2": 90, "spo2_scale": 1, "supplemental_oxygen": True,
        "systolic_bp": 98, "pulse": 52, "consciousness": "V", "temperature": 35.8})  # high: 15 min
    clock.advance(minutes=15)
    body = post_observation(ward.nurse, admission["id"], {
        "scale": "news2", "not_done_reason": "refused"}).get_json()
    assert parse(body["next_due_at"]) == clock.now + timedelta(minutes=15)


def escalations_of(app, admission_id: int) -> list[tuple]:
    from monitoring.models import Escalation

    with app.app_context():
        return list(db.session.execute(
            sa.select(Escalation.trigger, Escalation.severity, Escalation.source_id)
            .where(Escalation.admission_id == admission_id).order_by(Escalation.id)).all())


def test_a_second_refusal_in_a_row_escalates_and_the_reply_says_so(app, ward, clock):
    admission = ward.admit()
    first = post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": "refused"})
    assert first.get_json()["escalation"] is None and escalations_of(app, admission["id"]) == []
    clock.advance(minutes=30)
    second = post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": "refused"})
    assert second.status_code == 201
    escalation = second.get_json()["escalation"]
    assert (escalation["trigger"], escalation["severity"], escalation["source_type"]) == \
        ("repeated_refusal", "soon", "observation")
    assert escalation["reason"] == "CIWA-AR refused twice in a row"
    assert escalations_of(app, admission["id"]) == [("repeated_refusal", "soon", second.get_json()["id"])]


def test_refusals_not_in_a_row_do_not_escalate(app, ward, clock):
    admission = ward.admit()
    reasons = ["refused", "asleep", "refused"]
    for reason in reasons:
        post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": reason})
        clock.advance(minutes=30)
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(2))
    clock.advance(minutes=5)
    post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": "refused"})
    assert escalations_of(app, admission["id"]) == []
    # Another scale's refusal does not count towards this one.
    post_observation(ward.nurse, admission["id"], {"scale": "news2", "not_done_reason": "refused"})
    assert escalations_of(app, admission["id"]) == []


# --------------------------------------------------------------------------- listing

def test_listing_is_newest_first_paginated_and_filtered(ward, clock):
    admission = ward.admit()
    ids = []
    for i in range(5):
        clock.advance(minutes=20)
        ids.append(record(ward.nurse, admission["id"], "ciwa-ar", ciwa(i))["id"])
        ids.append(record(ward.nurse, admission["id"], "news2", NEWS2_ZERO)["id"])
    url = f"/api/v1/admissions/{admission['id']}/observations"
    response = ward.nurse.get(url, query_string={"page": 1, "page_size": 4})
    assert response.status_code == 200
    page1 = response.get_json()
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 10 and pagination["total_pages"] == 3
    observed = [parse(o["observed_at"]) for o in page1]
    assert observed == sorted(observed, reverse=True)
    assert {o["id"] for o in page1} == set(ids[-4:])
    page3 = ward.nurse.get(url, query_string={"page": 3, "page_size": 4}).get_json()
    assert {o["id"] for o in page3} == set(ids[:2])
    ciwa_only = ward.nurse.get(url, query_string={"scale": "ciwa-ar", "page_size": 50})
    assert [o["total"] for o in ciwa_only.get_json()] == [4, 3, 2, 1, 0]
    assert json.loads(ciwa_only.headers["X-Pagination"])["total"] == 5
    assert_problem(ward.nurse.get(url, query_string={"scale": "nope"}), 422)
    # The inspector may read.
    assert ward.clients["inspector"].get(url).status_code == 200


# --------------------------------------------------------------------------- corrections

def strike(client, observation_id: int, body: dict):
    from tests.monitoring.helpers import key

    return client.post(f"/api/v1/observations/{observation_id}/strike", json=body,
                       headers={"Idempotency-Key": key()})


def test_strike_without_replacement_keeps_the_row_and_the_schedule_forgets_it(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=5)
    first = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(3))      # minimal: 4 h
    clock.advance(minutes=30)
    wrong = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(30))     # severe: 1 h
    assert wrong["interval_minutes"] == 60
    clock.advance(minutes=2)
    response = strike(ward.doctor, wrong["id"], {"reason": "entered for the wrong resident"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["replacement"] is None
    assert body["struck"]["id"] == wrong["id"]
    assert parse(body["struck"]["struck_at"]) == clock.now
    assert body["struck"]["struck_reason"] == "entered for the wrong resident"
    assert body["struck"]["total"] == 30  # kept as it was
    listed = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/observations").get_json()
    assert {o["id"] for o in listed} == {first["id"], wrong["id"]}
    schedule = schedule_of(app, admission["id"], "ciwa-ar")
    assert schedule.last_observation_id == first["id"]
    assert schedule.interval_minutes == 240
    assert audit_actions(app, "observation", wrong["id"]) == ["observation.record", "observation.strike"]


def test_strike_with_replacement_keeps_both_and_the_replacement_drives_the_schedule(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=5)
    wrong = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(6))      # minimal (typo)
    clock.advance(minutes=3)
    response = strike(ward.nurse, wrong["id"], {
        "reason": "tremor was 6 not 0", "replacement": {"items": ciwa(18), "note": "corrected"}})
    assert response.status_code == 200, response.get_json()
    replacement = response.get_json()["replacement"]
    assert (replacement["total"], replacement["band"]) == (18, "severe")
    assert replacement["replaces_id"] == wrong["id"]
    # The replacement keeps the original time; the schedule follows the replacement.
    assert parse(replacement["observed_at"]) == parse(wrong["observed_at"])
    assert parse(replacement["next_due_at"]) == parse(wrong["observed_at"]) + timedelta(minutes=60)
    with app.app_context():
        rows = {o.id: o for o in db.session.scalars(
            sa.select(Observation).where(Observation.admission_id == admission["id"]))}
        assert set(rows) == {wrong["id"], replacement["id"]}
        assert rows[wrong["id"]].struck_at is not None and rows[wrong["id"]].total == 6
        assert rows[replacement["id"]].struck_at is None
    schedule = schedule_of(app, admission["id"], "ciwa-ar")
    assert schedule.last_observation_id == replacement["id"]
    assert audit_actions(app, "observation", wrong["id"]) == ["observation.record", "observation.strike"]
    assert audit_actions(app, "observation", replacement["id"]) == ["observation.record"]


def test_a_struck_observation_does_not_count_towards_three_minimal_in_a_row(app, ward, clock):
    admission = ward.admit()
    for _ in range(2):
        clock.advance(minutes=10)
        record(ward.nurse, admission["id"], "ciwa-ar", ciwa(2))
    clock.advance(minutes=10)
    third = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(1))
    assert third["interval_minutes"] == 480
    # The third was entered in error and replaced by a minimal one at the same time: still 3.
    response = strike(ward.nurse, third["id"], {"reason": "wrong resident", "replacement": {"items": ciwa(0)}})
    assert response.get_json()["replacement"]["interval_minutes"] == 480
    assert schedule_of(app, admission["id"], "ciwa-ar").consecutive_minimal == 3  # not 4
    clock.advance(minutes=10)
    fourth = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(1))
    assert fourth["interval_minutes"] == 480
    strike(ward.nurse, fourth["id"], {"reason": "duplicate entry"})
    schedule = schedule_of(app, admission["id"], "ciwa-ar")
    replacement = response.get_json()["replacement"]
    assert schedule.last_observation_id == replacement["id"]
    assert (schedule.consecutive_minimal, schedule.interval_minutes) == (3, 480)
    # Struck without replacement: only 2 valid minimal in a row remain, so 4-hourly again.
    strike(ward.nurse, replacement["id"], {"reason": "also wrong"})
    schedule = schedule_of(app, admission["id"], "ciwa-ar")
    assert schedule.interval_minutes == 240
    assert schedule.consecutive_minimal == 2
    # The next minimal one makes 3 again.
    clock.advance(minutes=10)
    assert record(ward.nurse, admission["id"], "ciwa-ar", ciwa(1))["interval_minutes"] == 480


def test_striking_twice_is_a_conflict(app, ward):
    admission = ward.admit()
    observation = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(4))
    assert strike(ward.nurse, observation["id"], {"reason": "wrong resident"}).status_code == 200
    before = row_counts(app)
    assert_problem(strike(ward.nurse, observation["id"], {"reason": "again"}), 409,
                   "observation-already-struck")
    assert_problem(strike(ward.nurse, observation["id"], {
        "reason": "again", "replacement": {"items": ciwa(1)}}), 409)
    assert row_counts(app) == before


def test_strike_needs_a_reason_and_an_observation_of_the_unit(ward, make_unit, make_staff, login):
    admission = ward.admit()
    observation = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(4))
    assert_problem(strike(ward.nurse, observation["id"], {}), 422)
    assert_problem(strike(ward.nurse, observation["id"], {"reason": "x"}), 422)
    other = login(make_staff(make_unit(), "nurse"))
    assert_problem(strike(other, observation["id"], {"reason": "not mine"}), 404)
    assert_problem(strike(ward.clients["inspector"], observation["id"], {"reason": "inspecting"}), 403)


def test_strike_with_an_invalid_replacement_changes_nothing(app, ward):
    admission = ward.admit()
    observation = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(4))
    before = row_counts(app)
    response = strike(ward.nurse, observation["id"], {
        "reason": "wrong value", "replacement": {"items": {**ciwa(0), "orientation": 5}}})
    assert_problem(response, 422, "scale-input-invalid")
    assert row_counts(app) == before
    with app.app_context():
        assert db.session.get(Observation, observation["id"]).struck_at is None
