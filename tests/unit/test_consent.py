"""Consent and information sharing: recorded by a named person with the date, superseded by a
new decision, withdrawable, one decision in force per recipient."""
from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import audit_rows
from tests.unit.helpers import assert_problem, row_counts, writes_between


def _resident(nurse, admit) -> int:
    return admit(nurse)["resident"]["id"]


def test_a_decision_is_recorded_by_a_named_person_with_the_date(app, team, admit, clock):
    staff = team()
    nurse = staff.client("nurse")
    resident = _resident(nurse, admit)
    decided = (date.today() - timedelta(days=1)).isoformat()
    response = nurse.post(f"/api/v1/residents/{resident}/consents", json={
        "recipient": "gp", "recipient_name": "Dr Shah, Hyde Park Surgery", "decision": "given",
        "decided_on": decided})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["recipient"], body["decision"], body["status"], body["decided_on"]) == \
        ("gp", "given", "active", decided)
    assert body["recorded_by"]["username"] == staff.usernames["nurse"]
    assert body["recorded_at"]
    listed = staff.client("inspector").get(f"/api/v1/residents/{resident}/consents").get_json()
    assert [c["id"] for c in listed] == [body["id"]]
    assert [row.action for row in audit_rows(app, staff.code)].count("consent.record") == 1


def test_the_date_of_the_decision_defaults_to_today_in_the_units_time_zone(team, admit, clock):
    nurse = team().client("nurse")
    resident = _resident(nurse, admit)
    body = nurse.post(f"/api/v1/residents/{resident}/consents",
                      json={"recipient": "ndtms", "decision": "refused"}).get_json()
    assert body["decided_on"] == clock().astimezone(ZoneInfo("Europe/London")).date().isoformat()


def test_a_new_decision_supersedes_the_one_in_force(team, admit):
    nurse = team().client("nurse")
    resident = _resident(nurse, admit)
    url = f"/api/v1/residents/{resident}/consents"
    first = nurse.post(url, json={"recipient": "ndtms", "decision": "given"}).get_json()
    second = nurse.post(url, json={"recipient": "ndtms", "decision": "refused"}).get_json()
    listed = {c["id"]: c for c in nurse.get(url).get_json()}
    assert listed[second["id"]]["status"] == "active"
    assert listed[first["id"]]["status"] == "superseded"
    assert listed[first["id"]]["ended_at"]
    assert nurse.get(url).get_json()[0]["id"] == second["id"]  # in force first


def test_consent_is_withdrawn_once_and_stays_on_the_record(app, team, admit):
    staff = team()
    nurse = staff.client("nurse")
    resident = _resident(nurse, admit)
    consent = nurse.post(f"/api/v1/residents/{resident}/consents",
                         json={"recipient": "community_team", "decision": "given"}).get_json()
    response = nurse.post(f"/api/v1/consents/{consent['id']}/withdraw",
                          json={"reason": "Resident asked us to stop sharing"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["end_reason"]) == ("withdrawn", "Resident asked us to stop sharing")
    assert body["ended_by"]["username"] == staff.usernames["nurse"]
    before = row_counts(app)
    assert_problem(nurse.post(f"/api/v1/consents/{consent['id']}/withdraw",
                              json={"reason": "again"}), 409, "consent-not-active")
    assert writes_between(before, row_counts(app)) == {}
    assert "consent.withdraw" in [row.action for row in audit_rows(app, staff.code)]


def test_a_family_member_must_be_named_and_each_named_one_has_their_own_decision(team, admit):
    nurse = team().client("nurse")
    resident = _resident(nurse, admit)
    url = f"/api/v1/residents/{resident}/consents"
    problem = assert_problem(nurse.post(url, json={"recipient": "family", "decision": "given"}), 422)
    assert "recipient_name" in problem["errors"]
    nurse.post(url, json={"recipient": "family", "recipient_name": "Sam Morgan (sister)",
                          "decision": "given"})
    nurse.post(url, json={"recipient": "family", "recipient_name": "Lee Morgan (father)",
                          "decision": "refused"})
    active = [c for c in nurse.get(url).get_json() if c["status"] == "active"]
    assert sorted(c["recipient_name"] for c in active) == ["Lee Morgan (father)", "Sam Morgan (sister)"]


def test_bad_decisions_are_422_and_write_nothing(app, team, admit):
    nurse = team().client("nurse")
    resident = _resident(nurse, admit)
    url = f"/api/v1/residents/{resident}/consents"
    before = row_counts(app)
    for body, field in (({"recipient": "police", "decision": "given"}, "recipient"),
                        ({"recipient": "gp", "decision": "maybe"}, "decision"),
                        ({"recipient": "gp", "decision": "given",
                          "decided_on": (date.today() + timedelta(days=2)).isoformat()}, "decided_on")):
        assert field in assert_problem(nurse.post(url, json=body), 422)["errors"]
    assert writes_between(before, row_counts(app)) == {}


def test_another_units_resident_and_consent_are_not_found(team, admit):
    nurse = team().client("nurse")
    resident = _resident(nurse, admit)
    consent = nurse.post(f"/api/v1/residents/{resident}/consents",
                         json={"recipient": "gp", "decision": "given"}).get_json()
    other = team().client("nurse")
    assert_problem(other.get(f"/api/v1/residents/{resident}/consents"), 404, "resident-not-found")
    assert_problem(other.post(f"/api/v1/residents/{resident}/consents",
                              json={"recipient": "gp", "decision": "refused"}), 404)
    assert_problem(other.post(f"/api/v1/consents/{consent['id']}/withdraw",
                              json={"reason": "not ours"}), 404, "consent-not-found")
