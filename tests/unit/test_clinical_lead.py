"""The clinical lead (role ``clinical_lead``) is a doctor: wherever a doctor or GP may act, so
may they (issue 14), and they answer escalations whichever route they took (the last level of
the paging policy). What each package checks in its services is checked here through the API.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.items import ciwa
from tests.unit.helpers import assert_problem


@pytest.fixture
def lead_unit(app, make_unit, make_staff, login, admit):
    """make(model) -> (nurse client, clinical lead client, an admission) on a new unit."""
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))

    def make(model: str):
        code = make_unit(model=model)
        nurse, lead = login(make_staff(code, "nurse")), login(make_staff(code, "clinical_lead"))
        return nurse, lead, admit(nurse, name=f"Resident of {code}")

    return make


@pytest.mark.parametrize("model, route", [("medically_managed", "on_site_doctor"),
                                          ("medically_monitored", "visiting_gp")])
def test_the_clinical_lead_answers_an_escalation_on_either_route(lead_unit, model, route):
    """HAZ-032: an escalation that climbed to the clinical lead is answered by them, whichever
    doctor it was routed to first."""
    nurse, lead, admission = lead_unit(model)
    reply = nurse.post(f"/api/v1/admissions/{admission['id']}/observations",
                       json={"scale": "ciwa-ar", "items": ciwa(16)})
    escalation = reply.get_json()["escalation"]
    assert escalation["route"] == route
    assert_problem(nurse.post(f"/api/v1/escalations/{escalation['id']}/acknowledge"), 403)
    response = lead.post(f"/api/v1/escalations/{escalation['id']}/acknowledge")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "acknowledged"
    response = lead.post(f"/api/v1/escalations/{escalation['id']}/resolve",
                         json={"outcome": "Reviewed", "note": "Continue the regimen"})
    assert response.status_code == 200, response.get_json()


def test_the_clinical_lead_prescribes_changes_and_stops_like_a_doctor(lead_unit):
    """HAZ-032: the clinical lead prescribes, changes and stops an order (a doctor's acts)."""
    nurse, lead, admission = lead_unit("medically_managed")
    order = {"kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": 20, "route": "oral"}
    response = lead.post(f"/api/v1/admissions/{admission['id']}/orders", json=order)
    assert response.status_code == 201, response.get_json()
    order_id = response.get_json()["id"]
    response = lead.post(f"/api/v1/orders/{order_id}/change",
                         json={**order, "start_dose_mg": 15, "reason": "Less tremor"})
    assert response.status_code == 201, response.get_json()
    new_id = response.get_json()["id"]
    response = lead.post(f"/api/v1/orders/{new_id}/stop", json={"reason": "Detox complete"})
    assert response.status_code == 200, response.get_json()
    assert_problem(nurse.post(f"/api/v1/admissions/{admission['id']}/orders", json=order), 403)


def test_the_clinical_lead_records_observations_doses_and_schedules(lead_unit):
    """HAZ-032: the clinical lead records an observation, gives a dose and sets a schedule."""
    _, lead, admission = lead_unit("medically_managed")
    observed = lead.post(f"/api/v1/admissions/{admission['id']}/observations",
                         json={"scale": "ciwa-ar", "items": ciwa(10)})
    assert observed.status_code == 201, observed.get_json()
    prn = {"kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral",
           "min_interval_minutes": 120, "max_daily_mg": 200,
           "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}}
    order_id = lead.post(f"/api/v1/admissions/{admission['id']}/orders", json=prn).get_json()["id"]
    given = lead.post(f"/api/v1/orders/{order_id}/administrations", json={"outcome": "given", "dose_mg": 20})
    assert given.status_code == 201, given.get_json()
    schedules = lead.get(f"/api/v1/admissions/{admission['id']}/schedules").get_json()
    ciwa_schedule = next(s for s in schedules if s["scale"] == "ciwa-ar")
    changed = lead.post(f"/api/v1/schedules/{ciwa_schedule['id']}",
                        json={"max_interval_minutes": 60, "reason": "New tremor on the ward round"})
    assert changed.status_code == 200, changed.get_json()


def test_a_gap_in_the_clinical_leads_rota_pages_the_clinical_lead(app, clock, make_unit, make_staff,
                                                                  login, admit):
    """HAZ-032: an escalation that climbs to the clinical lead's level with nobody on that
    rota pages every clinical lead of the unit (and the managers), not the managers alone."""
    from monitoring.escalations import re_escalate_due
    from tests.monitoring.escalation_support import NEWS2_HIGH_14, outbox_rows

    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))
    code = make_unit(model="medically_monitored")
    nurse = login(make_staff(code, "nurse", email="nurse@unit.test"))
    for role in ("gp", "manager", "clinical_lead"):
        make_staff(code, role, email=f"{role}@unit.test")
    admission = admit(nurse, name="Climbing Escalation")
    reply = nurse.post(f"/api/v1/admissions/{admission['id']}/observations",
                       json={"scale": "news2", "items": NEWS2_HIGH_14})
    escalation = reply.get_json()["escalation"]
    assert escalation["severity"] == "emergency"  # target 5 minutes
    raised = clock.now
    with app.app_context():
        assert [e.id for e in re_escalate_due(raised + timedelta(minutes=6))] == [escalation["id"]]
        assert [e.id for e in re_escalate_due(raised + timedelta(minutes=12))] == [escalation["id"]]
    recipients = [m.recipient_address for m in outbox_rows(app, escalation["id"])]
    assert "clinical_lead@unit.test" in recipients and "manager@unit.test" in recipients
