"""Admissions: admit, read, list, discharge, and the harm-reduction checklist after self-discharge."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from config.extensions import db
from tests.conftest import audit_rows, referral, years_ago
from tests.unit.helpers import assert_problem, row_counts, writes_between

ALL_ITEMS = {"tolerance_explained": True, "naloxone_offered": True, "gp_informed": True,
             "keyworker_informed": True}


@pytest.fixture
def nurse(make_unit, make_staff, login):
    return login(make_staff(make_unit(model="medically_monitored"), "nurse"))


def test_an_admission_is_created_and_read_back(nurse, admit, clock):
    created = admit(nurse, name="  Alex   Example ", dob="1980-05-17", nhs_number="943 476 5919",
                    substances=("alcohol", "opioids"))
    assert created["status"] == "active"
    assert created["resident"]["name"] == "Alex Example"  # whitespace normalised
    assert created["resident"]["date_of_birth"] == "1980-05-17"
    assert created["resident"]["nhs_number"] == "9434765919"
    today = clock().date()
    expected_age = today.year - 1980 - ((today.month, today.day) < (5, 17))
    assert created["resident"]["age"] == expected_age
    assert created["substances"] == ["alcohol", "opioids"]
    assert created["assessment"]["sadq"] == 20
    assert created["unit_model"] == "medically_monitored"
    assert created["recommended_setting"] == "residential_medically_monitored"
    assert datetime.fromisoformat(created["admitted_at"]) == clock()
    assert created["discharged_at"] is None and created["harm_reduction"] is None
    assert nurse.get(f"/api/v1/admissions/{created['id']}").get_json() == created


def test_the_resident_may_be_given_at_the_top_level(nurse):
    body = referral()
    flat = {**body.pop("resident"), **body}
    response = nurse.post("/api/v1/admissions", json=flat)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["resident"]["name"] == "Alex Example"


def test_lists_by_status_newest_first(nurse, admit, clock):
    first = admit(nurse, name="First One")
    clock.advance(minutes=5)
    second = admit(nurse, name="Second One")
    clock.advance(minutes=5)
    third = admit(nurse, name="Third One")
    response = nurse.post(f"/api/v1/admissions/{second['id']}/discharge",
                          json={"discharge_type": "completed"})
    assert response.status_code == 200

    def ids(query=""):
        response = nurse.get(f"/api/v1/admissions{query}")
        assert response.status_code == 200
        return [a["id"] for a in response.get_json()]

    assert ids() == [third["id"], second["id"], first["id"]]
    assert ids("?status=active") == [third["id"], first["id"]]
    assert ids("?status=discharged") == [second["id"]]
    body = assert_problem(nurse.get("/api/v1/admissions?status=gone"), 422, "validation-error")
    assert "status" in body["errors"]


@pytest.mark.parametrize("kind", ["completed", "transferred", "other"])
def test_discharge_types(app, make_unit, make_staff, login, admit, clock, kind):
    username = make_staff(make_unit(), "nurse")
    nurse = login(username)
    admission = admit(nurse)
    clock.advance(minutes=20)
    response = nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                          json={"discharge_type": kind, "note": "Went home"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "discharged"
    assert body["discharge_type"] == kind
    assert body["discharge_note"] == "Went home"
    assert datetime.fromisoformat(body["discharged_at"]) == clock()
    assert body["harm_reduction"] is None
    assert nurse.get("/api/v1/admissions?status=active").get_json() == []
    # No checklist to tick after a planned discharge.
    assert_problem(nurse.post(f"/api/v1/admissions/{admission['id']}/harm-reduction",
                              json={"tolerance_explained": True}), 409, "checklist-not-open")


def test_discharge_accepts_the_underscore_spelling(nurse, admit):
    admission = admit(nurse)
    response = nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                          json={"discharge_type": "self_discharged"})
    assert response.status_code == 200
    assert response.get_json()["discharge_type"] == "self-discharged"


def test_self_discharge_opens_the_harm_reduction_checklist(app, nurse, admit, clock):
    admission = admit(nurse)
    url = f"/api/v1/admissions/{admission['id']}"
    body = nurse.post(f"{url}/discharge", json={"discharge_type": "self-discharged"}).get_json()
    checklist = body["harm_reduction"]
    assert checklist["completed_at"] is None
    assert datetime.fromisoformat(checklist["opened_at"]) == clock()
    assert not any(checklist[item] for item in ALL_ITEMS)

    partial = nurse.post(f"{url}/harm-reduction", json={"tolerance_explained": True,
                                                         "naloxone_offered": True,
                                                         "note": "Naloxone kit supplied"})
    assert partial.status_code == 200
    assert partial.get_json()["completed_at"] is None
    assert partial.get_json()["tolerance_explained"] is True
    assert partial.get_json()["gp_informed"] is False
    assert partial.get_json()["note"] == "Naloxone kit supplied"

    clock.advance(minutes=10)
    done = nurse.post(f"{url}/harm-reduction", json={"gp_informed": True, "keyworker_informed": True})
    assert done.status_code == 200
    assert datetime.fromisoformat(done.get_json()["completed_at"]) == clock()
    assert all(done.get_json()[item] for item in ALL_ITEMS)
    assert nurse.get(url).get_json()["harm_reduction"]["completed_at"] is not None

    # Completed: it is closed.
    assert_problem(nurse.post(f"{url}/harm-reduction", json={"gp_informed": False}), 409,
                   "checklist-not-open")
    actions = [row[1] for row in audit_rows(app, nurse.get("/api/v1/unit").get_json()["code"])]
    assert actions.count("harm_reduction.update") == 2


def test_open_checklists_are_listed_for_the_unit(app, nurse, admit):
    from unit.services import open_checklists

    left = admit(nurse, name="Left Early")
    nurse.post(f"/api/v1/admissions/{left['id']}/discharge", json={"discharge_type": "self-discharged"})
    stayed = admit(nurse, name="Stayed On")
    nurse.post(f"/api/v1/admissions/{stayed['id']}/discharge", json={"discharge_type": "completed"})
    unit_id = nurse.get("/api/v1/unit").get_json()["id"]
    with app.app_context():
        assert [c.admission_id for c in open_checklists(unit_id)] == [left["id"]]
    nurse.post(f"/api/v1/admissions/{left['id']}/harm-reduction", json=ALL_ITEMS)
    with app.app_context():
        assert open_checklists(unit_id) == []


def test_a_second_discharge_is_a_conflict_and_changes_nothing(app, nurse, admit):
    admission = admit(nurse)
    url = f"/api/v1/admissions/{admission['id']}/discharge"
    assert nurse.post(url, json={"discharge_type": "completed"}).status_code == 200
    before = row_counts(app)
    assert_problem(nurse.post(url, json={"discharge_type": "self-discharged"}), 409, "admission-not-active")
    assert writes_between(before, row_counts(app)) == {}
    assert nurse.get(f"/api/v1/admissions/{admission['id']}").get_json()["discharge_type"] == "completed"


INVALID_DISCHARGES = [
    ({"discharge_type": "escaped"}, "discharge_type"),
    ({}, "discharge_type"),
    ({"discharge_type": "completed", "note": "x" * 2001}, "note"),
    ({"discharge_type": "completed", "when": "now"}, "when"),
    ({"discharge_type": 3}, "discharge_type"),
]
INVALID_TICKS = [
    ({"tolerance_explained": "yes"}, "tolerance_explained"),
    ({"naloxone_offered": 1}, "naloxone_offered"),
    ({"gp_informed": None}, "gp_informed"),
    ({"kit": True}, "kit"),
]


def test_invalid_discharges_and_ticks_name_the_field(app, nurse, admit):
    active = admit(nurse, name="Still Here")
    left = admit(nurse, name="Left Early")
    nurse.post(f"/api/v1/admissions/{left['id']}/discharge", json={"discharge_type": "self-discharged"})
    before = row_counts(app)
    for payload, field in INVALID_DISCHARGES:
        response = nurse.post(f"/api/v1/admissions/{active['id']}/discharge", json=payload)
        assert field in assert_problem(response, 422)["errors"], payload
    for payload, field in INVALID_TICKS:
        response = nurse.post(f"/api/v1/admissions/{left['id']}/harm-reduction", json=payload)
        assert field in assert_problem(response, 422)["errors"], payload
    assert writes_between(before, row_counts(app)) == {}


def test_unknown_admissions_are_not_found(nurse):
    # 424242 could be an id ("admission-not-found"); 0 and past 2**31 - 1 cannot ("not-found":
    # no route takes them, so they never reach the database).
    for admission_id in (0, 424242, 2**31, 10**30):
        assert_problem(nurse.get(f"/api/v1/admissions/{admission_id}"), 404, "not-found")
        assert_problem(nurse.post(f"/api/v1/admissions/{admission_id}/discharge",
                                  json={"discharge_type": "completed"}), 404, "not-found")
        assert_problem(nurse.post(f"/api/v1/admissions/{admission_id}/harm-reduction",
                                  json={"gp_informed": True}), 404, "not-found")
        assert nurse.get(f"/admissions/{admission_id}").status_code == 404
    assert_problem(nurse.get("/api/v1/admissions/424242"), 404, "admission-not-found")


def test_a_resident_cannot_be_admitted_twice_at_once(app, nurse, admit):
    admit(nurse, nhs_number="9434765919")
    before = row_counts(app)
    response = nurse.post("/api/v1/admissions", json=referral(nhs_number="9434765919"))
    assert_problem(response, 409, "already-admitted")
    assert writes_between(before, row_counts(app)) == {}  # not even the referral


def test_a_discharged_resident_is_readmitted_as_the_same_person(nurse, admit):
    first = admit(nurse, nhs_number="9434765919")
    nurse.post(f"/api/v1/admissions/{first['id']}/discharge", json={"discharge_type": "self-discharged"})
    second = admit(nurse, nhs_number="9434765919", name="Alex Example")
    assert second["id"] != first["id"]
    assert second["resident"]["id"] == first["resident"]["id"]


def test_an_nhs_number_with_another_date_of_birth_is_refused(app, nurse, admit):
    first = admit(nurse, nhs_number="9434765919", dob="1980-05-17")
    nurse.post(f"/api/v1/admissions/{first['id']}/discharge", json={"discharge_type": "completed"})
    before = row_counts(app)
    response = nurse.post("/api/v1/admissions", json=referral(nhs_number="9434765919", dob="1981-05-17"))
    body = assert_problem(response, 422, "resident-mismatch")
    assert "resident" in body["errors"]
    assert writes_between(before, row_counts(app)) == {}


def test_the_database_allows_one_active_admission_per_resident(app, nurse, admit):
    from sqlalchemy.exc import IntegrityError

    from unit.models import Admission

    first = admit(nurse, nhs_number="9434765919")
    with app.app_context():
        original = db.session.get(Admission, first["id"])
        duplicate = Admission(unit_id=original.unit_id, resident_id=original.resident_id,
                              referral_id=original.referral_id + 1000, substances=["alcohol"],
                              admitted_at=original.admitted_at, admitted_by_id=original.admitted_by_id)
        db.session.add(duplicate)
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_age_at_admission_boundary_and_in_the_view(nurse, admit):
    body = admit(nurse, dob=years_ago(18))
    assert body["resident"]["age"] == 18


def test_date_of_birth_rules(app, nurse):
    future = date.today().replace(year=date.today().year + 1).isoformat()
    for dob in (future, "1890-01-01", "1980-02-30", "17/05/1980", ""):
        before = row_counts(app)
        body = assert_problem(nurse.post("/api/v1/admissions", json=referral(dob=dob)), 422)
        assert "date_of_birth" in body["errors"]["resident"]
        assert writes_between(before, row_counts(app)) == {}


# Issue 3: an Idempotency-Key is required on every clinical write; a tablet's retry of an
# admission (same key, same body) must never admit the same person twice.
@pytest.mark.parametrize("write", ["admit", "discharge", "harm-reduction"])
def test_admission_writes_need_an_idempotency_key(app, nurse, admit, write):
    admission = admit(nurse, name="Keyed Example")
    nurse.post(f"/api/v1/admissions/{admission['id']}/discharge", json={"discharge_type": "self-discharged"})
    url, body = {"admit": ("/api/v1/admissions", referral(name="Another Example")),
                 "discharge": (f"/api/v1/admissions/{admission['id']}/discharge", {"discharge_type": "completed"}),
                 "harm-reduction": (f"/api/v1/admissions/{admission['id']}/harm-reduction",
                                    {"naloxone_offered": True})}[write]
    before = row_counts(app)
    assert_problem(nurse.post(url, json=body, headers={"Idempotency-Key": ""}), 400, "idempotency-key-missing")
    assert writes_between(before, row_counts(app)) == {}


def test_a_retried_admission_admits_once(app, nurse):
    body = referral(name="Retry Example")  # no NHS number: nothing else would catch the copy
    first = nurse.post("/api/v1/admissions", json=body, headers={"Idempotency-Key": "tablet-1"})
    again = nurse.post("/api/v1/admissions", json=body, headers={"Idempotency-Key": "tablet-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    names = [a["resident"]["name"] for a in nurse.get("/api/v1/admissions?status=active").get_json()]
    assert names.count("Retry Example") == 1
    other = nurse.post("/api/v1/admissions", json=referral(name="Other Example"),
                       headers={"Idempotency-Key": "tablet-1"})
    assert_problem(other, 422, "idempotency-key-reused")


def _admit_form(client, name: str, key: str) -> dict:
    from tests.unit.helpers import csrf_token

    return {"csrf_token": csrf_token(client), "idempotency_key": key, "name": name,
            "date_of_birth": "1970-01-01", "substances": "alcohol", "sadq": "12", "audit": "20",
            "units_per_day": "10"}


def test_a_double_tapped_admission_form_admits_once(app, nurse):
    form = _admit_form(nurse, "Double Tap", "form-key-1")
    first = nurse.post("/admissions/new", data=form)
    again = nurse.post("/admissions/new", data=form)
    assert first.status_code == again.status_code == 302
    assert again.location == first.location  # the same resident page
    assert again.headers["Idempotent-Replayed"] == "true"
    names = [a["resident"]["name"] for a in nurse.get("/api/v1/admissions?status=active").get_json()]
    assert names.count("Double Tap") == 1
    # The page hands out a fresh key each time it is shown.
    keys = {re.search(r'name="idempotency_key" value="([^"]+)"', nurse.get("/admissions/new")
                      .get_data(as_text=True)).group(1) for _ in range(2)}
    assert len(keys) == 2


def test_discharge_from_the_page_needs_the_confirmation_ticked(app, nurse, admit):
    from tests.unit.helpers import csrf_token

    admission = admit(nurse, name="Confirm Example")
    url = f"/admissions/{admission['id']}/discharge"
    form = {"csrf_token": csrf_token(nurse), "discharge_type": "completed"}
    response = nurse.post(url, data=form, follow_redirects=True)
    assert "tick the box to confirm" in response.get_data(as_text=True)
    assert nurse.get(f"/api/v1/admissions/{admission['id']}").get_json()["status"] == "active"
    nurse.post(url, data={**form, "confirm": "yes"})
    assert nurse.get(f"/api/v1/admissions/{admission['id']}").get_json()["status"] == "discharged"
