"""Every user sees only their own unit: another unit's ids are not found, lists never mix."""
from __future__ import annotations

import pytest

from tests.conftest import referral
from tests.unit.helpers import ROLES, assert_problem, csrf_token, row_counts, writes_between


@pytest.fixture
def two_units(team, admit):
    """Unit A with an active and a self-discharged admission; unit B with one of its own."""
    a, b = team("medically_monitored"), team("medically_managed")
    a_nurse, b_nurse = a.client("nurse"), b.client("nurse")
    active = admit(a_nurse, name="Ann Alpha", nhs_number="9434765919")
    left = admit(a_nurse, name="Abe Alpha")
    response = a_nurse.post(f"/api/v1/admissions/{left['id']}/discharge",
                            json={"discharge_type": "self-discharged"})
    assert response.status_code == 200
    own = admit(b_nurse, name="Bea Beta")
    return {"a": a, "b": b, "a_nurse": a_nurse, "b_nurse": b_nurse,
            "active": active["id"], "left": left["id"], "own": own["id"]}


def test_another_units_admission_is_not_found(two_units):
    for role in ROLES:
        client = two_units["b"].client(role)
        for admission_id in (two_units["active"], two_units["left"]):
            response = client.get(f"/api/v1/admissions/{admission_id}")
            assert_problem(response, 404, "admission-not-found")


def test_another_units_admission_cannot_be_discharged_or_ticked(app, two_units):
    clients = [two_units["b"].client(role) for role in ("nurse", "doctor", "gp", "manager")]
    before = row_counts(app)
    for client in clients:
        response = client.post(f"/api/v1/admissions/{two_units['active']}/discharge",
                               json={"discharge_type": "completed"})
        assert_problem(response, 404, "admission-not-found")
        response = client.post(f"/api/v1/admissions/{two_units['left']}/harm-reduction",
                               json={"tolerance_explained": True, "naloxone_offered": True,
                                     "gp_informed": True, "keyworker_informed": True})
        assert_problem(response, 404, "admission-not-found")
    assert writes_between(before, row_counts(app)) == {}
    # Unit A's records are as they were.
    a_view = two_units["a_nurse"].get(f"/api/v1/admissions/{two_units['active']}").get_json()
    assert a_view["status"] == "active"
    left = two_units["a_nurse"].get(f"/api/v1/admissions/{two_units['left']}").get_json()
    assert left["harm_reduction"]["completed_at"] is None
    assert left["harm_reduction"]["tolerance_explained"] is False


def test_the_not_found_answer_is_the_same_as_for_an_id_that_does_not_exist(two_units):
    client = two_units["b_nurse"]
    theirs = client.get(f"/api/v1/admissions/{two_units['active']}").get_json()
    nobody = client.get("/api/v1/admissions/999999").get_json()
    assert theirs["type"] == nobody["type"] and theirs["title"] == nobody["title"]
    assert "Ann" not in str(theirs)


def test_lists_show_only_the_users_unit(two_units):
    for role in ("nurse", "inspector"):
        _lists_show_only_the_users_unit(two_units, role)


def _lists_show_only_the_users_unit(two_units, role):
    b_client = two_units["b"].client(role)
    for query in ("", "?status=active", "?status=discharged"):
        listed = b_client.get(f"/api/v1/admissions{query}").get_json()
        assert two_units["active"] not in [a["id"] for a in listed]
        assert two_units["left"] not in [a["id"] for a in listed]
        assert "Alpha" not in str(listed)
    assert [a["id"] for a in b_client.get("/api/v1/admissions").get_json()] == [two_units["own"]]
    a_client = two_units["a"].client(role)
    a_ids = {a["id"] for a in a_client.get("/api/v1/admissions").get_json()}
    assert a_ids == {two_units["active"], two_units["left"]}


def test_pages_of_another_unit_are_not_found(two_units):
    client = two_units["b_nurse"]
    assert client.get(f"/admissions/{two_units['active']}").status_code == 404
    board = client.get("/").get_data(as_text=True)
    assert "Bea Beta" in board
    assert "Ann Alpha" not in board and "Abe Alpha" not in board


def test_page_forms_cannot_act_on_another_units_admission(app, two_units):
    client = two_units["b_nurse"]
    token = csrf_token(client)
    before = row_counts(app)
    client.post(f"/admissions/{two_units['active']}/discharge",
                data={"csrf_token": token, "discharge_type": "completed", "confirm": "yes"})
    client.post(f"/admissions/{two_units['left']}/harm-reduction",
                data={"csrf_token": token, "tolerance_explained": "yes"})
    assert writes_between(before, row_counts(app)) == {}
    assert two_units["a_nurse"].get(f"/api/v1/admissions/{two_units['active']}").get_json()["status"] == "active"


def test_the_unit_endpoint_shows_the_users_own_unit(two_units):
    assert two_units["a_nurse"].get("/api/v1/unit").get_json()["code"] == two_units["a"].code
    assert two_units["b_nurse"].get("/api/v1/unit").get_json()["code"] == two_units["b"].code
    session = two_units["b_nurse"].get("/api/v1/auth/session").get_json()
    assert session["unit"] == two_units["b"].code


def test_a_manager_changes_only_their_own_units_model(two_units):
    response = two_units["b"].client("manager").post(
        "/api/v1/unit/model", json={"model": "medically_monitored", "reason": "Cover ends"})
    assert response.status_code == 201
    assert two_units["a_nurse"].get("/api/v1/unit").get_json()["model"] == "medically_monitored"
    assert len(two_units["a_nurse"].get("/api/v1/unit").get_json()["model_history"]) == 1


def test_the_same_nhs_number_on_two_units_is_two_residents(two_units, admit):
    # Unit B admits the person unit A knows; neither unit sees the other's record.
    theirs = admit(two_units["b_nurse"], name="Ann Alpha", nhs_number="9434765919")
    mine = two_units["a_nurse"].get(f"/api/v1/admissions/{two_units['active']}").get_json()
    assert theirs["resident"]["id"] != mine["resident"]["id"]


def test_referral_decisions_follow_the_users_own_units_model(two_units):
    risky = referral(name="Risky", history_of_seizures=True)
    assert_problem(two_units["a_nurse"].post("/api/v1/admissions", json=risky), 422, "admission-declined")
    assert two_units["b_nurse"].post("/api/v1/admissions", json=risky).status_code == 201
