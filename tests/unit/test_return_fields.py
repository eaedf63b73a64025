"""The resident record's return fields: recorded at admission or later, checked, audited."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.conftest import audit_rows, referral
from tests.unit.helpers import assert_problem, row_counts, writes_between

FIELDS = {"sex": "female", "gender_identity": "female", "ethnicity": "A",
          "local_authority": "e08000035", "postcode_district": "ls6 ", "accommodation_need": "housing_problem",
          "parental_status": "some_children_live_with_client", "children_living_with": 1,
          "injecting_status": "previously", "problem_substances": ["alcohol", "cocaine"],
          "referral_source": "gp", "referral_date": (date.today() - timedelta(days=20)).isoformat(),
          "first_contact_date": (date.today() - timedelta(days=10)).isoformat()}


def test_return_fields_given_at_admission_are_kept_and_shown(team):
    nurse = team().client("nurse")
    response = nurse.post("/api/v1/admissions", json={**referral(), "return_fields": FIELDS})
    assert response.status_code == 201, response.get_json()
    shown = response.get_json()["return_fields"]
    assert shown == {**FIELDS, "local_authority": "E08000035", "postcode_district": "LS6"}
    again = nurse.get(f"/api/v1/admissions/{response.get_json()['id']}").get_json()
    assert again["return_fields"] == shown


def test_without_return_fields_an_admission_has_them_all_empty(team, admit):
    admission = admit(team().client("nurse"))
    assert set(admission["return_fields"].values()) == {None}


def test_return_fields_are_recorded_later_only_those_given_and_null_clears(app, team, admit):
    staff = team()
    nurse = staff.client("nurse")
    admission = admit(nurse)
    url = f"/api/v1/admissions/{admission['id']}/return-fields"
    first = nurse.post(url, json={"ethnicity": "N", "injecting_status": "never"})
    assert first.status_code == 200, first.get_json()
    second = nurse.post(url, json={"injecting_status": None, "sex": "male"})
    fields = second.get_json()["return_fields"]
    assert (fields["ethnicity"], fields["injecting_status"], fields["sex"]) == ("N", None, "male")
    events = [row for row in audit_rows(app, staff.code) if row.action == "admission.return_fields"]
    assert len(events) == 2


def test_return_fields_can_be_completed_after_discharge(team, admit):
    nurse = team().client("nurse")
    admission = admit(nurse)
    nurse.post(f"/api/v1/admissions/{admission['id']}/discharge", json={"discharge_type": "completed"})
    response = nurse.post(f"/api/v1/admissions/{admission['id']}/return-fields",
                          json={"referral_source": "self"})
    assert response.status_code == 200
    assert response.get_json()["return_fields"]["referral_source"] == "self"


@pytest.mark.parametrize("body, field", [
    ({"ethnicity": "Q"}, "ethnicity"),
    ({"sex": "m"}, "sex"),
    ({"local_authority": "Leeds"}, "local_authority"),
    ({"postcode_district": "LS6 2AB"}, "postcode_district"),
    ({"problem_substances": ["alcohol", "heroin", "cannabis", "cocaine"]}, "problem_substances"),
    ({"problem_substances": ["alcohol", "alcohol"]}, "problem_substances"),
    ({"problem_substances": ["glue"]}, "problem_substances"),
    ({"children_living_with": -1}, "children_living_with"),
    ({"children_living_with": "2"}, "children_living_with"),
    ({"referral_date": (date.today() + timedelta(days=1)).isoformat()}, "referral_date"),
    ({"referral_date": date.today().isoformat(),
      "first_contact_date": (date.today() - timedelta(days=1)).isoformat()}, "first_contact_date"),
    ({"accommodation_need": "homeless"}, "accommodation_need"),
    ({"colour": "blue"}, "colour"),
])
def test_a_bad_return_field_is_a_422_naming_it_and_writes_nothing(app, team, admit, body, field):
    nurse = team().client("nurse")
    admission = admit(nurse)
    before = row_counts(app)
    problem = assert_problem(nurse.post(f"/api/v1/admissions/{admission['id']}/return-fields",
                                        json=body), 422)
    assert field in problem["errors"], problem
    assert writes_between(before, row_counts(app)) == {}


def test_a_referral_after_the_admission_is_refused(app, team, admit, clock):
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=30))
    nurse = team().client("nurse")
    admission = admit(nurse)
    clock.advance(days=3)
    later = (clock().date()).isoformat()
    problem = assert_problem(nurse.post(f"/api/v1/admissions/{admission['id']}/return-fields",
                                        json={"referral_date": later}), 422)
    assert "referral_date" in problem["errors"]


def test_a_first_contact_before_the_recorded_referral_is_refused(team, admit):
    nurse = team().client("nurse")
    admission = admit(nurse)
    url = f"/api/v1/admissions/{admission['id']}/return-fields"
    assert nurse.post(url, json={"referral_date": date.today().isoformat()}).status_code == 200
    problem = assert_problem(nurse.post(url, json={
        "first_contact_date": (date.today() - timedelta(days=2)).isoformat()}), 422)
    assert "first_contact_date" in problem["errors"]


def test_nothing_to_record_is_a_422(team, admit):
    nurse = team().client("nurse")
    admission = admit(nurse)
    assert_problem(nurse.post(f"/api/v1/admissions/{admission['id']}/return-fields", json={}), 422)


def test_another_units_admission_is_not_found(team, admit):
    admission = admit(team().client("nurse"))
    other = team().client("nurse")
    assert_problem(other.post(f"/api/v1/admissions/{admission['id']}/return-fields",
                              json={"sex": "male"}), 404, "admission-not-found")


@pytest.mark.parametrize("discharge_type", ["withdrawn-by-unit", "died", "withdrawn_by_unit"])
def test_a_stay_can_end_withdrawn_by_the_unit_or_by_death(team, admit, discharge_type):
    nurse = team().client("nurse")
    admission = admit(nurse)
    response = nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                          json={"discharge_type": discharge_type})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["discharge_type"] == discharge_type.replace("_", "-")
