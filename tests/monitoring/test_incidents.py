"""Incidents: reported with type, time, people, what was done and severity; linked to the
escalation or dose concerned; the manager's review; the regulator's notification prompt and
its record; the inspector's figures. API and pages."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from config.extensions import db
from tests.items import ciwa
from tests.stay_helpers import crew, flashes, page_form  # noqa: F401
from tests.unit.helpers import assert_problem, row_counts, writes_between

def incident_body(clock, **kw) -> dict:
    return {"type": "fall", "severity": "low", "occurred_at": (clock() - timedelta(minutes=10)).isoformat(),
            "description": "Found on the bathroom floor, conscious", "action_taken": "Checked for injury, NEWS2 taken",
            **kw}


def section(app, unit_code: str, clock, days: int = 30) -> dict:
    """The inspector report's incidents section for the last ``days`` days."""
    from monitoring.incidents import incidents_section
    from unit.models import Unit

    with app.app_context():
        unit = db.session.scalars(sa.select(Unit).where(Unit.code == unit_code)).one()
        return incidents_section(unit, clock() - timedelta(days=days), clock() + timedelta(seconds=1), clock())


def report(client, clock, **kw) -> dict:
    response = client.post("/api/v1/incidents", json=incident_body(clock, **kw))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def dose_given(unit, admission_id: int) -> int:
    """A PRN chlordiazepoxide dose given to the resident (medically managed unit); its id."""
    order = unit.doctor.post(f"/api/v1/admissions/{admission_id}/orders", json={
        "kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral",
        "min_interval_minutes": 120, "max_daily_mg": 200,
        "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}})
    assert order.status_code == 201, order.get_json()
    unit.nurse.post(f"/api/v1/admissions/{admission_id}/observations", json={"scale": "ciwa-ar", "items": ciwa(10)})
    dose = unit.nurse.post(f"/api/v1/orders/{order.get_json()['id']}/administrations",
                           json={"outcome": "given", "dose_mg": 20})
    assert dose.status_code == 201, dose.get_json()
    return dose.get_json()["id"]


def test_an_incident_is_reported_with_who_what_and_when(app, crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    sam = unit.admit(name="Sam Example")
    incident = report(unit.nurse, clock, type="aggression", severity="no_harm", admission_id=alex["id"],
                      location="Lounge", people_involved=[{"role": "resident", "admission_id": sam["id"]},
                                                          {"role": "visitor", "name": "A visitor"}])
    assert incident["status"] == "open" and incident["resident"] == "Alex Example"
    assert incident["type_label"] == "Aggression or violence" and incident["severity_label"] == "No harm"
    assert incident["people_involved"] == [
        {"role": "resident", "name": "Alex Example", "admission_id": alex["id"]},
        {"role": "resident", "name": "Sam Example", "admission_id": sam["id"]},
        {"role": "visitor", "name": "A visitor", "admission_id": None}]
    assert incident["notification_required"] is False and incident["notification_reasons"] == []
    assert incident["reported_by"]["username"] == unit.usernames["nurse"]
    assert unit.inspector.get(f"/api/v1/incidents/{incident['id']}").get_json() == incident
    assert [i["id"] for i in unit.nurse.get(f"/api/v1/incidents?admission_id={alex['id']}").get_json()] == [incident["id"]]
    assert unit.nurse.get(f"/api/v1/incidents?admission_id={sam['id']}").get_json() == []
    with app.app_context():
        from unit.models import AuditEvent

        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "incident.report")).one()
        assert event.after["type"] == "aggression" and event.resident_id is not None


def test_incident_input_is_checked_field_by_field(app, crew, clock):
    unit = crew()
    alex = unit.admit()
    cases = [
        ({"type": "tantrum"}, "type"),
        ({"severity": "catastrophic"}, "severity"),
        ({"occurred_at": (clock() + timedelta(hours=1)).isoformat()}, "occurred_at"),
        ({"occurred_at": "2025-01-01T10:00:00"}, "occurred_at"),  # no time zone
        ({"description": "  "}, "description"),
        ({"action_taken": ""}, "action_taken"),
        ({"police_involved": "yes"}, "police_involved"),
        ({"people_involved": [{"role": "staff"}]}, "people_involved.0.name"),
        ({"people_involved": [{"role": "resident", "admission_id": 987654}]}, "people_involved.0.admission_id"),
        ({"links": [{"kind": "horoscope", "id": 1}]}, "links.0.kind"),
        ({"links": [{"kind": "escalation", "id": 987654}]}, "links.0.id"),
        ({"admission_id": "1"}, "admission_id"),
    ]
    before = row_counts(app)
    for change, field in cases:
        body = {**incident_body(clock, admission_id=alex["id"]), **change}
        problem = assert_problem(unit.nurse.post("/api/v1/incidents", json=body), 422)
        flat = problem.get("errors", {})
        assert field in flat or field.split(".")[0] in flat, (field, problem)
    assert writes_between(before, row_counts(app)) == {}
    assert_problem(unit.nurse.post("/api/v1/incidents", json=incident_body(clock, admission_id=987654)), 404)


def test_haz_072_an_incident_the_regulator_must_be_told_of_is_prompted_until_recorded(app, crew, clock):
    """HAZ-072: a death, a serious injury, an allegation of abuse or police involvement makes
    the regulator's notification due: the reply says why, the board and the incident page show
    it in red until a manager records the notification (once), and the report counts it."""
    unit = crew()
    alex = unit.admit(name="Alex Example")
    minor = report(unit.nurse, clock, admission_id=alex["id"])
    assert minor["notification_required"] is False
    police = report(unit.nurse, clock, type="substance_found", severity="no_harm", police_involved=True)
    assert police["notification_reasons"] == ["Reported to or investigated by the police (regulation 18(2)(f))"]
    severe = report(unit.nurse, clock, type="fall", severity="severe", admission_id=alex["id"])
    assert severe["notification_required"] and severe["notification_due"]
    assert severe["notification_reasons"] == ["Serious injury (regulation 18(2)(a))"]
    safeguarding = report(unit.nurse, clock, type="safeguarding", severity="no_harm")
    assert safeguarding["notification_reasons"] == ["Abuse or an allegation of abuse (regulation 18(2)(e))"]
    board = unit.nurse.get("/").get_data(as_text=True)
    assert board.count('data-testid="notification-due"') == 3
    page = unit.nurse.get(f"/incidents/{severe['id']}").get_data(as_text=True)
    assert 'data-testid="notification-prompt"' in page and "A manager records the notification" in page

    assert_problem(unit.nurse.post(f"/api/v1/incidents/{severe['id']}/notification",
                                   json={"reference": "CQC-1"}), 403)
    recorded = unit.manager.post(f"/api/v1/incidents/{severe['id']}/notification",
                                 json={"reference": "CQC-2026-0042", "note": "Via the portal"})
    assert recorded.status_code == 200, recorded.get_json()
    body = recorded.get_json()
    assert body["notification_due"] is False and body["notification_reference"] == "CQC-2026-0042"
    assert body["notified_by"]["username"] == unit.usernames["manager"]
    assert_problem(unit.manager.post(f"/api/v1/incidents/{severe['id']}/notification",
                                     json={"reference": "again"}), 409, "notification-recorded")
    assert unit.nurse.get("/").get_data(as_text=True).count('data-testid="notification-due"') == 2
    figures = section(app, unit.code, clock)
    assert (figures["notifications_required"], figures["notifications_made"]) == (3, 1)
    assert sorted(o["incident_id"] for o in figures["notifications_outstanding"]) == sorted(
        [police["id"], safeguarding["id"]])


def test_notification_input_is_checked(crew, clock):
    unit = crew()
    incident = report(unit.nurse, clock, severity="death")
    for body, field in (({}, "reference"), ({"reference": ""}, "reference"),
                        ({"reference": "x", "notified_at": (clock() + timedelta(hours=2)).isoformat()},
                         "notified_at"),
                        ({"reference": "x", "notified_at": (clock() - timedelta(days=3)).isoformat()},
                         "notified_at")):
        assert field in assert_problem(unit.manager.post(f"/api/v1/incidents/{incident['id']}/notification",
                                                         json=body), 422)["errors"]


def test_a_manager_reviews_with_an_outcome_and_lessons_and_may_regrade(crew, clock):
    unit = crew()
    incident = report(unit.nurse, clock)
    assert_problem(unit.nurse.post(f"/api/v1/incidents/{incident['id']}/review",
                                   json={"outcome": "Falls plan", "lessons": "Night light"}), 403)
    missing = assert_problem(unit.manager.post(f"/api/v1/incidents/{incident['id']}/review",
                                               json={"outcome": "ok"}), 422)
    assert set(missing["errors"]) == {"outcome", "lessons"}
    clock.advance(hours=5)
    reviewed = unit.manager.post(f"/api/v1/incidents/{incident['id']}/review", json={
        "outcome": "Falls risk assessment updated", "lessons": "Night lights in en-suites",
        "severity": "severe"})
    assert reviewed.status_code == 200, reviewed.get_json()
    body = reviewed.get_json()
    assert body["status"] == "reviewed" and body["severity"] == "severe"
    # Re-graded to a serious injury: the notification is now due.
    assert body["notification_required"] and body["notification_due"]
    assert_problem(unit.manager.post(f"/api/v1/incidents/{incident['id']}/review",
                                     json={"outcome": "again", "lessons": "again"}), 409, "incident-reviewed")
    assert [i["id"] for i in unit.nurse.get("/api/v1/incidents?status=reviewed").get_json()] == [incident["id"]]
    assert unit.nurse.get("/api/v1/incidents?status=open").get_json() == []


def test_an_incident_is_linked_to_the_escalation_and_the_dose_concerned(app, crew, clock):
    unit = crew("medically_managed")
    alex, sam = unit.admit(name="Alex Example"), unit.admit(name="Sam Example")
    dose = dose_given(unit, alex["id"])
    escalation = unit.nurse.post(f"/api/v1/admissions/{alex['id']}/observations",
                                 json={"scale": "ciwa-ar", "items": ciwa(17)}).get_json()["escalation"]
    other_dose = dose_given(unit, sam["id"])
    incident = report(unit.nurse, clock, type="medication_error", severity="moderate", admission_id=alex["id"],
                      links=[{"kind": "escalation", "id": escalation["id"]},
                             {"kind": "administration", "id": dose}])
    assert incident["escalation_id"] == escalation["id"]
    kinds = {(link["kind"], link["id"]) for link in incident["links"]}
    assert kinds == {("escalation", escalation["id"]), ("administration", dose)}
    label = next(link["label"] for link in incident["links"] if link["kind"] == "administration")
    assert label.startswith("Chlordiazepoxide 20 mg given")
    # Another resident's dose is refused, naming the field; nothing is written.
    before = row_counts(app)
    problem = assert_problem(unit.nurse.post(f"/api/v1/incidents/{incident['id']}/links",
                                             json={"kind": "administration", "id": other_dose}), 422,
                             "incident-invalid")
    assert problem["errors"] == {"link.0.id": ["Another resident's dose."]}
    assert writes_between(before, row_counts(app)) == {}
    # Linked later, and listed with its label.
    plain = report(unit.nurse, clock, admission_id=sam["id"])
    linked = unit.nurse.post(f"/api/v1/incidents/{plain['id']}/links", json={"kind": "administration", "id": other_dose})
    assert linked.status_code == 200
    assert [link["id"] for link in linked.get_json()["links"]] == [other_dose]
    listed = {i["id"]: i["links"] for i in unit.nurse.get("/api/v1/incidents").get_json()}
    assert len(listed[incident["id"]]) == 2 and len(listed[plain["id"]]) == 1


def test_another_units_incidents_are_not_found(crew, clock):
    ours, theirs = crew(), crew()
    incident = report(theirs.nurse, clock)
    assert_problem(ours.nurse.get(f"/api/v1/incidents/{incident['id']}"), 404, "incident-not-found")
    assert_problem(ours.manager.post(f"/api/v1/incidents/{incident['id']}/review",
                                     json={"outcome": "xxx", "lessons": "yyy"}), 404)
    assert ours.nurse.get("/api/v1/incidents").get_json() == []
    their_resident = theirs.admit()
    assert_problem(ours.nurse.post("/api/v1/incidents",
                                   json=incident_body(clock, admission_id=their_resident["id"])), 404)


def test_a_retried_report_records_once(crew, clock):
    unit = crew()
    body = incident_body(clock)
    first = unit.nurse.post("/api/v1/incidents", json=body, headers={"Idempotency-Key": "incident-1"})
    again = unit.nurse.post("/api/v1/incidents", json=body, headers={"Idempotency-Key": "incident-1"})
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(unit.nurse.get("/api/v1/incidents").get_json()) == 1


def test_the_report_counts_incidents_by_type_and_severity_and_time_to_review(app, crew, clock):
    unit = crew()
    falls = [report(unit.nurse, clock, type="fall", severity="low") for _ in range(2)]
    report(unit.nurse, clock, type="aggression", severity="no_harm")
    report(unit.nurse, clock, type="fall", severity="moderate")
    clock.advance(hours=3)
    unit.manager.post(f"/api/v1/incidents/{falls[0]['id']}/review", json={"outcome": "Plan", "lessons": "Lights"})
    clock.advance(hours=6)
    unit.manager.post(f"/api/v1/incidents/{falls[1]['id']}/review", json={"outcome": "Plan", "lessons": "Lights"})
    figures = section(app, unit.code, clock)
    assert figures["total"] == 4
    assert figures["by_type"] == {"aggression": 1, "fall": 3}
    assert figures["by_severity"] == {"no_harm": 1, "low": 2, "moderate": 1}
    assert figures["by_type_and_severity"] == [
        {"type": "aggression", "severity": "no_harm", "count": 1},
        {"type": "fall", "severity": "low", "count": 2},
        {"type": "fall", "severity": "moderate", "count": 1}]
    assert (figures["reviewed"], figures["awaiting_review"]) == (2, 2)
    assert figures["review_hours_median"] == 6.0 and figures["review_hours_max"] == 9.0
    assert figures["longest_awaiting_review_hours"] == 9.0
    from monitoring.incidents import incident_alerts, incident_tables

    tables = incident_tables(figures)
    assert ["fall", "low", 2] in tables["incidents_by_type_and_severity"][1]
    assert ["total", 4] in tables["incidents"][1] and tables["notifications_outstanding"][1] == []
    assert incident_alerts(figures) == []


# --- pages ------------------------------------------------------------------------------------

def test_a_nurse_reports_an_incident_through_the_page_and_a_manager_reviews_it(crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    form_page = unit.nurse.get(f"/incidents/new?admission_id={alex['id']}")
    assert form_page.status_code == 200 and "Alex Example" in form_page.get_data(as_text=True)
    local = (clock() - timedelta(minutes=5)).astimezone(__import__("zoneinfo").ZoneInfo("Europe/London"))
    form = page_form(unit.nurse, "/incidents/new", type="fall", severity="severe",
                     occurred_at=f"{local:%Y-%m-%dT%H:%M}", admission_id=str(alex["id"]),
                     description="Fell in the corridor", action_taken="999 called, hip X-ray",
                     others="Night porter")
    response = unit.nurse.post("/incidents/new", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    (incident,) = unit.nurse.get("/api/v1/incidents").get_json()
    assert response.location.endswith(f"/incidents/{incident['id']}")
    assert [p["name"] for p in incident["people_involved"]] == ["Alex Example", "Night porter"]
    assert incident["notification_due"] is True
    assert "The regulator must be told" in flashes(unit.nurse)[-1]
    resident = unit.nurse.get(f"/admissions/{alex['id']}").get_data(as_text=True)
    assert 'data-testid="resident-incidents"' in resident and "Fell in the corridor" in resident

    review = page_form(unit.manager, "/", outcome="Falls plan updated", lessons="Corridor lighting")
    assert unit.manager.post(f"/incidents/{incident['id']}/review", data=review).status_code == 303
    notify = page_form(unit.manager, "/", reference="CQC-7", note="")
    assert unit.manager.post(f"/incidents/{incident['id']}/notification", data=notify).status_code == 303
    detail = unit.inspector.get(f"/incidents/{incident['id']}").get_data(as_text=True)
    assert "Falls plan updated" in detail and 'data-testid="notification-recorded"' in detail
    assert "CQC-7" in detail
    listing = unit.inspector.get("/incidents").get_data(as_text=True)
    assert "Fell in the corridor" in listing and "Report an incident" not in listing


def test_the_report_form_names_the_fields_in_error(crew, clock):
    unit = crew()
    form = page_form(unit.nurse, "/incidents/new", type="fall", severity="", occurred_at="", description="")
    response = unit.nurse.post("/incidents/new", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert html.count('class="fielderror"') == 4  # severity, when, what happened, what was done
    assert unit.nurse.get("/api/v1/incidents").get_json() == []
