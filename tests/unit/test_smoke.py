from tests.conftest import referral


def test_nurse_admits_and_lists(unit_staff):
    code, clients = unit_staff("medically_monitored")
    nurse = clients["nurse"]
    created = nurse.post("/api/v1/admissions", json=referral())
    assert created.status_code == 201
    listed = nurse.get("/api/v1/admissions?status=active").get_json()
    assert [a["id"] for a in listed] == [created.get_json()["id"]]
