"""The escalation API: routing by the unit's care model at the moment of escalation (and across
a model change), who may acknowledge and resolve, nurse overrides, listing, and the rota.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.monitoring.escalation_support import (
    NEWS2_HIGH_14,
    NEWS2_MEDIUM_6,
    ciwa,
    escalation_rows,
    iso,
    observe,
    outbox_rows,
    parse,
    steps_of,
)
from tests.unit.helpers import assert_problem as problem
from unit.models import Staff

PUBLIC_FIELDS = {"id", "admission_id", "severity", "reason", "status", "route", "level", "raised_at",
                 "acknowledged_at", "target_minutes"}


# --- 2. routing by the care model -------------------------------------------------------------

def test_managed_unit_routes_to_the_on_site_doctor(make_ward):
    ward = make_ward("medically_managed")
    admission = ward.admit()
    emergency = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    urgent = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]

    assert PUBLIC_FIELDS <= set(emergency)
    assert (emergency["route"], emergency["unit_model"]) == ("on_site_doctor", "medically_managed")
    assert "on-site doctor" in emergency["advice"]
    assert "CALL 999 NOW" not in emergency["advice"]   # a doctor is on site: 999 advised only
    assert (urgent["route"], urgent["call_999"], urgent["advice"]) == ("on_site_doctor", False, None)


def test_monitored_unit_routes_to_the_visiting_gp_and_emergency_says_call_999(make_ward):
    ward = make_ward("medically_monitored")
    admission = ward.admit()
    emergency = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    urgent = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]

    assert (emergency["route"], emergency["unit_model"]) == ("visiting_gp", "medically_monitored")
    assert emergency["call_999"] is True
    assert "999" in emergency["advice"] and "no doctor is on site" in emergency["advice"]
    assert (urgent["route"], urgent["call_999"], urgent["advice"]) == ("visiting_gp", False, None)
    # The same shows in the list and the detail.
    listed = {e["id"]: e for e in ward.gp.get("/api/v1/escalations").get_json()}
    assert listed[emergency["id"]]["call_999"] is True
    assert listed[emergency["id"]]["advice"] == emergency["advice"]
    # The GP's message tells what the nurse was told.
    (message,) = outbox_rows(ward.app, emergency["id"])
    assert message.recipient_address == ward.email("gp")
    assert "999" in message.body


ESCALATION_FIELDS = PUBLIC_FIELDS | {"trigger", "unit_model", "call_999", "advice", "resolved_at",
                                     "escalate_at", "outcome", "note", "overridden", "source_type",
                                     "source_id"}


def test_an_observations_escalation_is_the_escalation_the_api_shows(make_ward, clock):
    """The same shape in an observation's reply, the list and the detail (times as ISO 8601)."""
    ward = make_ward("medically_monitored")
    admission = ward.admit()
    reply = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)
    escalation = reply["escalation"]
    assert set(escalation) == ESCALATION_FIELDS
    assert (escalation["source_type"], escalation["source_id"]) == ("observation", reply["id"])
    assert parse(escalation["raised_at"]) == clock.now
    assert parse(escalation["escalate_at"]) == clock.now + timedelta(minutes=5)
    assert escalation["acknowledged_at"] is None and escalation["resolved_at"] is None
    detail = ward.gp.get(f"/api/v1/escalations/{escalation['id']}").get_json()
    assert {k: v for k, v in detail.items() if k != "steps"} == escalation
    (listed,) = ward.gp.get("/api/v1/escalations").get_json()
    assert listed == escalation


def test_the_openapi_document_describes_the_escalation_in_an_observations_reply(make_ward):
    ward = make_ward()
    schemas = ward.nurse.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    escalation = schemas["Recorded"]["properties"]["escalation"]
    assert {"$ref": "#/components/schemas/Escalation"} in escalation.get("anyOf", [escalation])
    properties = schemas["Escalation"]["properties"]
    assert set(properties) == ESCALATION_FIELDS
    for time in ("raised_at", "acknowledged_at", "resolved_at", "escalate_at"):
        assert properties[time]["format"] == "date-time", time
    assert properties["advice"]["type"] == "string"


def test_model_change_routes_from_its_effective_time(make_ward, app, clock):
    ward = make_ward("medically_monitored")
    start = clock.now
    change = ward.manager.post("/api/v1/unit/model", json={
        "model": "medically_managed", "reason": "On-site doctor from tomorrow",
        "effective_at": iso(start + timedelta(hours=2))})
    assert change.status_code == 201, change.get_json()
    first, second, third = ward.admit(), ward.admit(), ward.admit()

    before = observe(ward.nurse, first["id"], "news2", NEWS2_HIGH_14)["escalation"]
    clock.set(start + timedelta(hours=1, minutes=59))
    just_before = observe(ward.nurse, second["id"], "ciwa-ar", ciwa(17))["escalation"]
    clock.set(start + timedelta(hours=2, minutes=1))
    after = observe(ward.nurse, third["id"], "news2", NEWS2_HIGH_14)["escalation"]

    assert (before["route"], before["unit_model"], before["call_999"]) == (
        "visiting_gp", "medically_monitored", True)
    assert "CALL 999 NOW" in before["advice"]
    assert (just_before["route"], just_before["unit_model"]) == ("visiting_gp", "medically_monitored")
    assert (after["route"], after["unit_model"]) == ("on_site_doctor", "medically_managed")
    assert "on-site doctor" in after["advice"]

    # An escalation keeps the route it was raised with, and its answerers.
    listed = {e["id"]: e for e in ward.manager.get("/api/v1/escalations").get_json()}
    assert listed[before["id"]]["route"] == "visiting_gp"
    assert ward.doctor.post(f"/api/v1/escalations/{before['id']}/acknowledge").status_code == 403
    assert ward.gp.post(f"/api/v1/escalations/{before['id']}/acknowledge").status_code == 200
    assert ward.gp.post(f"/api/v1/escalations/{after['id']}/acknowledge").status_code == 403
    assert ward.doctor.post(f"/api/v1/escalations/{after['id']}/acknowledge").status_code == 200


def test_model_change_to_monitored_makes_emergencies_call_999(make_ward, clock):
    ward = make_ward("medically_managed")
    start = clock.now
    assert ward.manager.post("/api/v1/unit/model", json={
        "model": "medically_monitored", "reason": "Doctor cover withdrawn",
        "effective_at": iso(start + timedelta(minutes=30))}).status_code == 201
    admission = ward.admit()
    before = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    assert ward.doctor.post(f"/api/v1/escalations/{before['id']}/resolve",
                            json={"outcome": "Seen in person"}).status_code == 200
    clock.set(start + timedelta(minutes=31))
    after = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    assert before["route"] == "on_site_doctor" and after["route"] == "visiting_gp"
    assert after["call_999"] is True and "CALL 999 NOW" in after["advice"]


# --- 3. who may answer ----------------------------------------------------------------------

ANSWERERS = {"on_site_doctor": {"doctor", "manager"}, "visiting_gp": {"gp", "manager"}}
CASES = [(model, route, role, action)
         for model, route in (("medically_managed", "on_site_doctor"), ("medically_monitored", "visiting_gp"))
         for role in ("nurse", "doctor", "gp", "manager", "inspector")
         for action in ("acknowledge", "resolve")]


@pytest.mark.parametrize("model, route, role, action", CASES,
                         ids=[f"{c[1]}-{c[2]}-{c[3]}" for c in CASES])
def test_only_the_routed_doctor_or_a_manager_may_answer(make_ward, app, model, route, role, action):
    ward = make_ward(model)
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert escalation["route"] == route
    body = {"outcome": "Reviewed: continue plan", "note": "chlordiazepoxide as charted"} \
        if action == "resolve" else None
    response = ward.clients[role].post(f"/api/v1/escalations/{escalation['id']}/{action}", json=body)

    if role in ANSWERERS[route]:
        assert response.status_code == 200, response.get_json()
        answered = response.get_json()
        assert answered["status"] == ("acknowledged" if action == "acknowledge" else "resolved")
        assert answered["acknowledged_at"] is not None
        if action == "resolve":
            assert (answered["outcome"], answered["note"]) == (body["outcome"], body["note"])
    else:
        problem(response, 403)
        (row,) = escalation_rows(app, admission["id"])
        assert (row.status, row.acknowledged_at) == ("open", None)


@pytest.mark.parametrize("role, allowed", [("nurse", True), ("manager", True), ("doctor", False),
                                           ("gp", False)])
def test_missed_observation_escalation_is_answered_by_a_nurse(make_ward, app, clock, role, allowed):
    from monitoring.services import flag_missed_observations

    ward = make_ward()
    ward.admit()
    clock.advance(minutes=20)
    with app.app_context():
        flag_missed_observations(clock.now)
    escalation = ward.nurse.get("/api/v1/escalations?status=open").get_json()[0]
    assert escalation["route"] == "nurse_in_charge"
    response = ward.clients[role].post(f"/api/v1/escalations/{escalation['id']}/acknowledge")
    assert response.status_code == (200 if allowed else 403)


def test_acknowledge_twice_and_resolve_after_resolve(make_ward, clock):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    clock.advance(minutes=4)
    first = ward.gp.post(f"/api/v1/escalations/{escalation['id']}/acknowledge").get_json()
    clock.advance(minutes=4)
    second = ward.gp.post(f"/api/v1/escalations/{escalation['id']}/acknowledge").get_json()
    assert first["acknowledged_at"] == second["acknowledged_at"]   # the first one counts
    assert parse(first["acknowledged_at"]) == clock.now - timedelta(minutes=4)
    assert ward.gp.post(f"/api/v1/escalations/{escalation['id']}/resolve",
                        json={"outcome": "No action needed"}).status_code == 200
    problem(ward.gp.post(f"/api/v1/escalations/{escalation['id']}/resolve",
                         json={"outcome": "No action needed"}), 409, "escalation-resolved")
    problem(ward.gp.post(f"/api/v1/escalations/{escalation['id']}/acknowledge"), 409, "escalation-resolved")


@pytest.mark.parametrize("action, body", [("acknowledge", None), ("resolve", {"outcome": "Seen"}),
                                          ("override", {"reason": "Settled on review"})])
def test_answering_an_escalation_needs_an_idempotency_key(make_ward, action, body):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    who = ward.nurse if action == "override" else ward.gp
    problem(who.post(f"/api/v1/escalations/{escalation['id']}/{action}", json=body,
                     headers={"Idempotency-Key": ""}), 400, "idempotency-key-missing")
    after = ward.gp.get(f"/api/v1/escalations/{escalation['id']}").get_json()
    assert (after["status"], after["acknowledged_at"]) == ("open", None)


def test_resolve_needs_an_outcome(make_ward):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    problem(ward.gp.post(f"/api/v1/escalations/{escalation['id']}/resolve", json={}), 422)
    problem(ward.gp.post(f"/api/v1/escalations/{escalation['id']}/resolve", json={"outcome": ""}), 422)


def test_another_units_escalation_is_not_found(make_ward):
    ours, theirs = make_ward(), make_ward()
    admission = theirs.admit()
    escalation = observe(theirs.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    for path in ("acknowledge", "resolve"):
        problem(ours.gp.post(f"/api/v1/escalations/{escalation['id']}/{path}",
                             json={"outcome": "Seen in person"} if path == "resolve" else None), 404,
                "escalation-not-found")
    problem(ours.gp.get(f"/api/v1/escalations/{escalation['id']}"), 404, "escalation-not-found")
    assert ours.gp.get("/api/v1/escalations").get_json() == []


# --- overrides ------------------------------------------------------------------------------

def test_nurse_override_is_recorded_and_the_routed_doctor_told(make_ward, app, clock):
    ward = make_ward("medically_monitored")
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", NEWS2_MEDIUM_6)["escalation"]
    clock.advance(minutes=6)
    reason = "Known confusion since admission, temperature after a hot shower"
    response = ward.nurse.post(f"/api/v1/escalations/{escalation['id']}/override", json={"reason": reason})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["status"], body["overridden"], body["note"]) == ("resolved", True, reason)
    assert parse(body["resolved_at"]) == clock.now

    steps = steps_of(app, escalation["id"])
    overridden = [s for s in steps if s.kind == "overridden"]
    assert len(overridden) == 1 and reason in overridden[0].detail and overridden[0].at == clock.now
    # The GP it was routed to gets a second message, saying it was overridden and why.
    messages = [m for m in outbox_rows(app, escalation["id"]) if m.recipient_address == ward.email("gp")]
    assert len(messages) == 2
    assert "overrid" in (messages[1].subject + messages[1].body).lower()
    assert reason in messages[1].body
    assert "Acknowledge within" not in messages[1].body   # nothing left to acknowledge


def test_override_tells_the_routed_doctor_even_after_re_escalation(make_ward, app, clock, make_staff):
    from monitoring.escalations import re_escalate_due

    ward = make_ward("medically_monitored")
    gp_id, doctor_id = ward.staff_id("gp"), ward.staff_id("doctor")
    day = {"starts_at": iso(clock.now - timedelta(hours=1)), "ends_at": iso(clock.now + timedelta(hours=12))}
    for duty, staff_id in (("visiting_gp", gp_id), ("second_on_call", doctor_id)):
        assert ward.manager.post("/api/v1/rota", json={"duty": duty, "staff_id": staff_id, **day}).status_code == 201
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]
    clock.advance(minutes=31)
    with app.app_context():
        re_escalate_due(clock.now)
    clock.advance(minutes=2)
    assert ward.nurse.post(f"/api/v1/escalations/{escalation['id']}/override",
                           json={"reason": "Score inflated by anxiety about a visit"}).status_code == 200
    gp_messages = [m for m in outbox_rows(app, escalation["id"]) if m.recipient_address == ward.email("gp")]
    assert len(gp_messages) == 2 and "Score inflated" in gp_messages[-1].body


def test_emergency_cannot_be_overridden(make_ward, app):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    problem(ward.nurse.post(f"/api/v1/escalations/{escalation['id']}/override",
                            json={"reason": "Looks fine to me"}), 409, "override-refused")
    (row,) = escalation_rows(app, admission["id"])
    assert (row.status, row.overridden) == ("open", False)


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "no"}, {"reason": None}])
def test_override_needs_a_reason(make_ward, app, body):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    problem(ward.nurse.post(f"/api/v1/escalations/{escalation['id']}/override", json=body), 422)
    (row,) = escalation_rows(app, admission["id"])
    assert row.status == "open"


@pytest.mark.parametrize("role, status", [("manager", 200), ("doctor", 403), ("gp", 403), ("inspector", 403)])
def test_who_may_override(make_ward, role, status):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    response = ward.clients[role].post(f"/api/v1/escalations/{escalation['id']}/override",
                                       json={"reason": "Reviewed at the bedside"})
    assert response.status_code == status


def test_resolved_escalation_cannot_be_overridden(make_ward):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert ward.gp.post(f"/api/v1/escalations/{escalation['id']}/resolve",
                        json={"outcome": "Seen in person"}).status_code == 200
    problem(ward.nurse.post(f"/api/v1/escalations/{escalation['id']}/override",
                            json={"reason": "Not needed"}), 409)


# --- listing --------------------------------------------------------------------------------

def test_list_filters_by_status_most_severe_first(make_ward, clock):
    ward = make_ward()
    one, two, three = ward.admit(), ward.admit(), ward.admit()
    urgent = observe(ward.nurse, one["id"], "ciwa-ar", ciwa(16))["escalation"]
    clock.advance(minutes=1)
    emergency = observe(ward.nurse, two["id"], "news2", NEWS2_HIGH_14)["escalation"]
    clock.advance(minutes=1)
    resolved = observe(ward.nurse, three["id"], "ciwa-ar", ciwa(18))["escalation"]
    assert ward.gp.post(f"/api/v1/escalations/{resolved['id']}/resolve",
                        json={"outcome": "No action needed"}).status_code == 200
    assert ward.gp.post(f"/api/v1/escalations/{urgent['id']}/acknowledge").status_code == 200

    def ids(query=""):
        response = ward.inspector.get(f"/api/v1/escalations{query}")
        assert response.status_code == 200
        return [e["id"] for e in response.get_json()]

    assert ids() == [emergency["id"], urgent["id"], resolved["id"]]
    assert ids("?status=open") == [emergency["id"]]
    assert ids("?status=acknowledged") == [urgent["id"]]
    assert ids("?status=resolved") == [resolved["id"]]
    problem(ward.inspector.get("/api/v1/escalations?status=closed"), 422)
    for e in ward.inspector.get("/api/v1/escalations").get_json():
        assert PUBLIC_FIELDS <= set(e)


def test_detail_lists_every_step_with_its_time(make_ward, clock):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    raised = clock.now
    clock.advance(minutes=7)
    ward.gp.post(f"/api/v1/escalations/{escalation['id']}/acknowledge")
    body = ward.nurse.get(f"/api/v1/escalations/{escalation['id']}").get_json()
    kinds = [(s["kind"], parse(s["at"])) for s in body["steps"]]
    assert kinds[0] == ("raised", raised)
    assert ("notified", raised) in kinds
    assert kinds[-1] == ("acknowledged", clock.now)


# --- the rota -------------------------------------------------------------------------------

def test_rota_shifts_and_gaps(make_ward, clock):
    ward = make_ward("medically_monitored")
    start = clock.now   # the unit was registered now
    window = f"?from={zulu(start)}&to={zulu(start + timedelta(hours=24))}"
    empty = ward.nurse.get(f"/api/v1/rota{window}").get_json()
    assert empty["shifts"] == []
    assert sorted((g["duty"], parse(g["from"]), parse(g["to"])) for g in empty["gaps"]) == [
        ("nurse_in_charge", start, start + timedelta(hours=24)),
        ("visiting_gp", start, start + timedelta(hours=24))]

    nurse = ward.manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "staff_id": ward.staff_id("nurse"),
        "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=12))})
    assert nurse.status_code == 201, nurse.get_json()
    assert nurse.get_json()["staff_name"]
    ooh = ward.manager.post("/api/v1/rota", json={
        "duty": "visiting_gp", "contact": "Out-of-hours GP service 0300 000 0000",
        "starts_at": iso(start - timedelta(hours=1)), "ends_at": iso(start + timedelta(hours=30))})
    assert ooh.status_code == 201, ooh.get_json()

    rota = ward.nurse.get(f"/api/v1/rota{window}").get_json()
    assert len(rota["shifts"]) == 2
    assert [(g["duty"], parse(g["from"]), parse(g["to"])) for g in rota["gaps"]] == [
        ("nurse_in_charge", start + timedelta(hours=12), start + timedelta(hours=24))]

    # A cancelled shift leaves its gap again.
    assert ward.manager.post(f"/api/v1/rota/{nurse.get_json()['id']}/cancel").status_code == 200
    rota = ward.nurse.get(f"/api/v1/rota{window}").get_json()
    assert [(g["duty"], parse(g["from"])) for g in rota["gaps"]] == [("nurse_in_charge", start)]


def zulu(at) -> str:
    return iso(at).replace("+00:00", "Z")


def test_managed_unit_needs_an_on_site_doctor_on_the_rota(make_ward, clock):
    ward = make_ward("medically_managed")
    gaps = ward.nurse.get("/api/v1/rota").get_json()["gaps"]
    assert sorted(g["duty"] for g in gaps) == ["nurse_in_charge", "on_site_doctor"]


def test_rota_window_from_before_the_unit_existed(make_ward, clock):
    ward = make_ward("medically_monitored")
    registered = clock.now
    response = ward.manager.get(f"/api/v1/rota?from={zulu(registered - timedelta(days=1))}"
                                f"&to={zulu(registered + timedelta(hours=6))}")
    assert response.status_code == 200, response.get_json()
    assert sorted((g["duty"], parse(g["from"]), parse(g["to"])) for g in response.get_json()["gaps"]) == [
        ("nurse_in_charge", registered, registered + timedelta(hours=6)),
        ("visiting_gp", registered, registered + timedelta(hours=6))]


def test_rota_gaps_follow_a_model_change_in_the_window(make_ward, clock):
    ward = make_ward("medically_monitored")
    start = clock.now
    change_at = start + timedelta(hours=10)
    assert ward.manager.post("/api/v1/unit/model", json={
        "model": "medically_managed", "reason": "Doctor on site from tonight",
        "effective_at": iso(change_at)}).status_code == 201
    assert ward.manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "contact": "Agency nurse in charge",
        "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=24))}).status_code == 201
    gaps = ward.manager.get(f"/api/v1/rota?from={zulu(start)}&to={zulu(start + timedelta(hours=24))}").get_json()["gaps"]
    assert [(g["duty"], parse(g["from"]), parse(g["to"])) for g in gaps] == [
        ("visiting_gp", start, change_at),
        ("on_site_doctor", change_at, start + timedelta(hours=24))]


@pytest.mark.parametrize("role", ["nurse", "doctor", "gp", "inspector"])
def test_only_managers_edit_the_rota(make_ward, clock, role):
    ward = make_ward()
    response = ward.clients[role].post("/api/v1/rota", json={
        "duty": "visiting_gp", "staff_id": ward.staff_id("gp"),
        "starts_at": iso(clock.now), "ends_at": iso(clock.now + timedelta(hours=8))})
    problem(response, 403)
    assert ward.manager.get("/api/v1/rota").get_json()["shifts"] == []


@pytest.mark.parametrize("body, status, slug", [
    ({"duty": "visiting_gp"}, 422, "rota-shift-invalid"),                      # neither staff nor contact
    ({"duty": "visiting_gp", "contact": "OOH", "backwards": True}, 422, "rota-shift-invalid"),  # ends first
    ({"duty": "matron", "contact": "OOH"}, 422, "validation-error"),          # no such duty
    ({"duty": "visiting_gp", "staff_id": 999999}, 404, "rota-staff-not-found"),  # nobody on this unit
])
def test_rota_shift_validation(make_ward, clock, body, status, slug):
    ward = make_ward()
    starts, ends = clock.now, clock.now + timedelta(hours=8)
    if body.pop("backwards", False):
        starts, ends = ends, starts
    response = ward.manager.post("/api/v1/rota", json={**body, "starts_at": iso(starts), "ends_at": iso(ends)})
    problem(response, status, slug)


def test_cancelling_an_unknown_shift_is_a_404_with_its_slug(make_ward):
    ward = make_ward()
    problem(ward.manager.post("/api/v1/rota/999999/cancel"), 404, "rota-shift-not-found")


def test_no_clinical_sign_is_raised_for_a_discharged_resident(make_ward):
    ward = make_ward()
    admission = ward.admit()
    discharged = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                                 json={"discharge_type": "completed"})
    assert discharged.status_code == 200, discharged.get_json()
    problem(ward.nurse.post(f"/api/v1/admissions/{admission['id']}/escalations", json={"sign": "seizure"}),
            409, "admission-not-active")


def test_rota_decides_who_is_paged(make_ward, app, clock, make_staff, login):
    ward = make_ward("medically_monitored")
    second_gp = make_staff(ward.code, "gp", username="gp-on-call", email="gp-on-call@example.org")
    with app.app_context():
        second_id = db.session.scalar(sa.select(Staff.id).where(Staff.username == second_gp))
    assert ward.manager.post("/api/v1/rota", json={
        "duty": "visiting_gp", "staff_id": second_id, "starts_at": iso(clock.now - timedelta(hours=1)),
        "ends_at": iso(clock.now + timedelta(hours=8))}).status_code == 201
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert [m.recipient_address for m in outbox_rows(app, escalation["id"])] == ["gp-on-call@example.org"]
    notified = [s.detail for s in steps_of(app, escalation["id"]) if s.kind == "notified"]
    assert notified == ["Paged visiting GP on call: Gp-On-Call"]
    # Any GP of the unit may still answer it (the route is the role, not the person).
    assert login(second_gp).post(f"/api/v1/escalations/{escalation['id']}/acknowledge").status_code == 200


# --- the pages: queue, override and clinical-sign forms, rota form --------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return CSRF.search(response.get_data(as_text=True)).group(1)


def test_queue_shows_answer_buttons_only_to_those_who_may_answer(make_ward, app):
    ward = make_ward("medically_monitored")
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]

    gp_html = ward.gp.get("/escalations").get_data(as_text=True)
    assert f'data-escalation="{escalation["id"]}"' in gp_html
    assert 'data-testid="acknowledge"' in gp_html
    nurse_html = ward.nurse.get("/escalations").get_data(as_text=True)
    assert 'data-testid="acknowledge"' not in nurse_html
    assert "Only the visiting GP on call (or a manager) can acknowledge this." in nurse_html

    # A nurse posting the form anyway is refused, and told so.
    token = csrf_of(ward.nurse, "/escalations")
    response = ward.nurse.post(f"/escalations/{escalation['id']}/acknowledge", data={"csrf_token": token})
    assert response.status_code == 303
    assert "Not done" in ward.nurse.get("/escalations").get_data(as_text=True)
    (row,) = escalation_rows(app, admission["id"])
    assert row.status == "open"

    token = csrf_of(ward.gp, "/escalations")
    assert ward.gp.post(f"/escalations/{escalation['id']}/acknowledge",
                        data={"csrf_token": token}).status_code == 303
    (row,) = escalation_rows(app, admission["id"])
    assert row.status == "acknowledged"


def test_override_form_on_the_resident_page(make_ward, app):
    ward = make_ward()
    admission = ward.admit()
    urgent = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    emergency = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    page = f"/admissions/{admission['id']}"
    html = ward.nurse.get(page).get_data(as_text=True)
    assert f"/escalations/{urgent['id']}/override" in html
    assert f"/escalations/{emergency['id']}/override" not in html   # no override for an emergency
    token = CSRF.search(html).group(1)

    short = ward.nurse.post(f"/escalations/{urgent['id']}/override",
                            data={"csrf_token": token, "reason": "ok", "next": page})
    assert short.status_code == 303
    assert escalation_rows(app, admission["id"])[0].status == "open"

    done = ward.nurse.post(f"/escalations/{urgent['id']}/override",
                           data={"csrf_token": token, "reason": "Scored during a panic attack", "next": page})
    assert done.status_code == 303 and done.headers["Location"].endswith(page)
    rows = {r.id: r for r in escalation_rows(app, admission["id"])}
    assert (rows[urgent["id"]].status, rows[urgent["id"]].overridden) == ("resolved", True)
    assert rows[emergency["id"]].status == "open"


@pytest.mark.parametrize("model, advice", [("medically_monitored", "CALL 999 NOW"),
                                           ("medically_managed", "on-site doctor")])
def test_clinical_sign_form_raises_an_emergency(make_ward, app, model, advice):
    ward = make_ward(model)
    admission = ward.admit()
    page = f"/admissions/{admission['id']}"
    token = csrf_of(ward.nurse, page)
    response = ward.nurse.post(f"/admissions/{admission['id']}/sign",
                               data={"csrf_token": token, "sign": "delirium_tremens", "note": "tremor, visual hallucinations"})
    assert response.status_code == 303
    (row,) = escalation_rows(app, admission["id"])
    assert (row.severity, row.trigger, row.target_minutes) == ("emergency", "delirium_tremens", 5)
    assert row.reason == "Signs of delirium tremens: tremor, visual hallucinations"
    assert advice in ward.nurse.get(page).get_data(as_text=True)

    ward.nurse.post(f"/admissions/{admission['id']}/sign", data={"csrf_token": token, "sign": "fainting"})
    assert len(escalation_rows(app, admission["id"])) == 1


def test_rota_page_form_takes_unit_local_time(make_ward, app, clock):
    from datetime import datetime, timezone

    from monitoring.models import RotaShift

    clock.set(datetime(2025, 7, 1, 8, 0, tzinfo=timezone.utc))   # British Summer Time: UTC+1
    ward = make_ward()
    token = csrf_of(ward.manager, "/rota")
    response = ward.manager.post("/rota", data={
        "csrf_token": token, "duty": "visiting_gp", "staff_id": str(ward.staff_id("gp")),
        "starts_at": "2025-07-01T09:00", "ends_at": "2025-07-01T21:00"})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    with app.app_context():
        (shift,) = db.session.scalars(sa.select(RotaShift))
        assert (shift.starts_at, shift.ends_at) == (datetime(2025, 7, 1, 8, 0, tzinfo=timezone.utc),
                                                    datetime(2025, 7, 1, 20, 0, tzinfo=timezone.utc))
    bad = ward.manager.post("/rota", data={"csrf_token": token, "duty": "visiting_gp",
                                           "starts_at": "2025-07-01T09:00", "ends_at": "2025-07-01T21:00"})
    assert bad.status_code == 422   # neither a member of staff nor a contact
    nurse_token = csrf_of(ward.nurse, "/rota")
    assert ward.nurse.post("/rota", data={"csrf_token": nurse_token, "duty": "visiting_gp",
                                          "contact": "OOH", "starts_at": "2025-07-01T09:00",
                                          "ends_at": "2025-07-01T21:00"}).status_code == 403


@pytest.mark.parametrize("target", ["https://evil.example/phish", "//evil.example/x", "/\\evil.example",
                                    "/%09/evil.example", "/\t/evil.example", "/\r\nX: y", "/%0d%0aX:%20y",
                                    "/%2F%2Fevil.example"])
def test_a_form_never_sends_staff_off_site(make_ward, target):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    token = csrf_of(ward.gp, "/escalations")
    response = ward.gp.post(f"/escalations/{escalation['id']}/acknowledge",
                            data={"csrf_token": token, "next": target})
    assert response.status_code == 303
    assert response.location.endswith("/escalations")


def test_a_form_goes_back_to_the_page_it_came_from(make_ward):
    ward = make_ward()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    token = csrf_of(ward.gp, "/escalations")
    back = f"/admissions/{admission['id']}"
    response = ward.gp.post(f"/escalations/{escalation['id']}/acknowledge",
                            data={"csrf_token": token, "next": back})
    assert response.status_code == 303 and response.location.endswith(back)
