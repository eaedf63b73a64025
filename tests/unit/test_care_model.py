"""The unit's care model: declared by a manager, kept as history, answerable for any moment."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import audit_rows, referral
from tests.unit.helpers import assert_problem, row_counts, unit_id_of, writes_between

MANAGED, MONITORED = "medically_managed", "medically_monitored"


def change(client, model, reason="The unit's staffing changed", **extra):
    return client.post("/api/v1/unit/model", json={"model": model, "reason": reason, **extra})


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def model_at(app, code, at):
    from unit.services import model_at as service

    with app.app_context():
        return service(unit_id_of(app, code), at)


def test_get_unit_returns_the_declared_model_and_its_history(team, clock):
    staff = team(MONITORED)
    body = staff.client("inspector").get("/api/v1/unit").get_json()
    assert body["code"] == staff.code
    assert body["model"] == MONITORED
    assert len(body["model_history"]) == 1
    first = body["model_history"][0]
    assert first["model"] == MONITORED
    assert first["reason"] == "Unit registered"
    assert first["changed_by"] is None
    assert parse(first["effective_at"]) == clock()


def test_manager_changes_the_model_and_history_grows(team, clock):
    staff = team(MONITORED)
    created = clock()
    clock.advance(hours=1)
    manager = staff.client("manager")
    response = change(manager, MANAGED, "Doctor now on site 24 hours")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["model"] == MANAGED
    assert body["change"]["model"] == MANAGED
    assert parse(body["change"]["effective_at"]) == clock()
    assert body["change"]["changed_by"]["username"] == staff.usernames["manager"]

    clock.advance(minutes=10)
    response = change(manager, MONITORED, "Night doctor cover ended")
    assert response.status_code == 201

    unit = manager.get("/api/v1/unit").get_json()
    assert unit["model"] == MONITORED
    history = [(h["model"], parse(h["effective_at"]), h["reason"]) for h in unit["model_history"]]
    assert history == [
        (MONITORED, created, "Unit registered"),
        (MANAGED, created + timedelta(hours=1), "Doctor now on site 24 hours"),
        (MONITORED, clock(), "Night doctor cover ended"),
    ]


def test_model_at_answers_any_past_moment(app, team, clock):
    staff = team(MONITORED)
    t0 = clock()
    clock.advance(days=1)
    t1 = clock()
    assert change(staff.client("manager"), MANAGED).status_code == 201
    clock.advance(days=2)
    t2 = clock()
    assert change(staff.client("manager"), MONITORED).status_code == 201  # the old session expired
    clock.advance(days=30)

    second = timedelta(seconds=1)
    assert model_at(app, staff.code, t0) == MONITORED
    assert model_at(app, staff.code, t1 - second) == MONITORED
    assert model_at(app, staff.code, t1) == MANAGED
    assert model_at(app, staff.code, t1 + timedelta(days=1)) == MANAGED
    assert model_at(app, staff.code, t2 - second) == MANAGED
    assert model_at(app, staff.code, t2) == MONITORED
    assert model_at(app, staff.code, clock()) == MONITORED


def test_model_at_before_the_unit_existed_is_an_error(app, team, clock):
    from unit.errors import CareModelChangeInvalid

    staff = team(MONITORED)
    with pytest.raises(CareModelChangeInvalid):
        model_at(app, staff.code, clock() - timedelta(seconds=1))


def test_a_future_change_takes_effect_when_its_time_comes(app, team, clock):
    staff = team(MONITORED)
    start = clock()
    effective = start + timedelta(hours=2)
    response = change(staff.client("manager"), MANAGED, effective_at=effective.isoformat())
    assert response.status_code == 201
    assert response.get_json()["model"] == MONITORED  # still, until the change's time
    nurse = staff.client("nurse")
    assert nurse.get("/api/v1/unit").get_json()["model"] == MONITORED

    # A seizure history is declined while monitored ...
    declined = nurse.post("/api/v1/admissions", json=referral(name="Early", history_of_seizures=True))
    assert_problem(declined, 422, "admission-declined")

    clock.set(effective)
    nurse = staff.client("nurse")
    assert nurse.get("/api/v1/unit").get_json()["model"] == MANAGED
    assert model_at(app, staff.code, effective - timedelta(seconds=1)) == MONITORED
    # ... and admitted, high-risk, once the unit is medically managed.
    admitted = nurse.post("/api/v1/admissions", json=referral(name="Later", history_of_seizures=True))
    assert admitted.status_code == 201
    assert admitted.get_json()["high_risk"] is True
    assert admitted.get_json()["unit_model"] == MANAGED


def test_backdating_is_refused(app, team, clock):
    manager = team(MONITORED).client("manager")
    before = row_counts(app)
    for back in (timedelta(hours=1), timedelta(minutes=6), timedelta(days=400)):
        response = change(manager, MANAGED, effective_at=(clock() - back).isoformat())
        body = assert_problem(response, 422, "care-model-change-invalid")
        assert "effective_at" in body["errors"], back
    assert writes_between(before, row_counts(app)) == {}
    assert manager.get("/api/v1/unit").get_json()["model"] == MONITORED


def test_only_a_manager_may_change_the_model(app, team):
    staff = team(MONITORED)
    clients = {role: staff.client(role) for role in ("nurse", "doctor", "gp", "inspector")}
    before = row_counts(app)
    for role, client in clients.items():
        assert_problem(change(client, MANAGED), 403, "forbidden")
    assert writes_between(before, row_counts(app)) == {}
    assert staff.client("manager").get("/api/v1/unit").get_json()["model"] == MONITORED


def test_the_service_refuses_a_non_manager_too(app, team, clock):
    from config.errors import Forbidden
    from unit.models import Staff
    from unit.services import change_care_model

    staff = team(MONITORED)
    with app.app_context():
        nurse = db.session.scalars(sa.select(Staff).where(Staff.username == staff.usernames["nurse"])).one()
        with pytest.raises(Forbidden):
            change_care_model(nurse, model=MANAGED, reason="Not mine to change", effective_at=None,
                              now=clock())


def test_declaring_the_model_already_in_force_is_refused(team):
    staff = team(MANAGED)
    body = assert_problem(change(staff.client("manager"), MANAGED), 422, "care-model-change-invalid")
    assert "model" in body["errors"]


INVALID_CHANGES = [
    ({"model": "residential", "reason": "A new kind"}, "model"),
    ({"model": MANAGED}, "reason"),
    ({"model": MANAGED, "reason": ""}, "reason"),
    ({"model": MANAGED, "reason": "x" * 2001}, "reason"),
    ({"model": MANAGED, "reason": "Naive time", "effective_at": "2030-01-01T09:00:00"}, "effective_at"),
    ({"model": MANAGED, "reason": "Not a time", "effective_at": "tomorrow"}, "effective_at"),
    ({"model": MANAGED, "reason": "Overflows", "effective_at": "9999-12-31T23:00:00-12:00"}, "effective_at"),
    ({"model": MANAGED, "reason": "Extra field", "by": "me"}, "by"),
]


def test_invalid_model_changes_name_the_field(app, team):
    manager = team(MONITORED).client("manager")
    before = row_counts(app)
    for payload, field in INVALID_CHANGES:
        body = assert_problem(manager.post("/api/v1/unit/model", json=payload), 422)
        assert field in body["errors"], (payload, body)
    assert writes_between(before, row_counts(app)) == {}


def test_an_offset_timestamp_is_the_same_instant(app, team, clock):
    staff = team(MONITORED)
    effective = clock() + timedelta(hours=3)
    offset = effective.astimezone(timezone(timedelta(hours=5, minutes=30)))
    response = change(staff.client("manager"), MANAGED, effective_at=offset.isoformat())
    assert response.status_code == 201
    assert parse(response.get_json()["change"]["effective_at"]) == effective
    assert model_at(app, staff.code, effective) == MANAGED
    assert model_at(app, staff.code, effective - timedelta(seconds=1)) == MONITORED


def test_switching_to_monitored_warns_of_high_risk_residents(team):
    staff = team(MANAGED)
    nurse = staff.client("nurse")
    risky = nurse.post("/api/v1/admissions", json=referral(name="Robin Risk", sadq=45))
    assert risky.status_code == 201 and risky.get_json()["high_risk"] is True
    assert nurse.post("/api/v1/admissions", json=referral(name="Sam Safe")).get_json()["high_risk"] is False
    body = change(staff.client("manager"), MONITORED, "Doctor cover ends").get_json()
    assert body["model"] == MONITORED
    assert len(body["warnings"]) == 1
    assert "Robin Risk" in body["warnings"][0]


def test_a_model_change_is_audited(app, team):
    staff = team(MONITORED)
    assert change(staff.client("manager"), MANAGED, "Doctor on site").status_code == 201
    seq, action, role = audit_rows(app, staff.code)[-1]
    assert (action, role) == ("unit.model_change", "manager")
    from unit.models import AuditEvent

    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.seq == seq,
                                   AuditEvent.unit_id == unit_id_of(app, staff.code))).one()
        assert event.before == {"model": MONITORED}
        assert event.after["model"] == MANAGED and event.after["reason"] == "Doctor on site"
