"""Drug screens (urine, oral fluid: each substance's result) and breath-alcohol readings on the
resident's chart; a positive explained by what was declared at admission or prescribed here is
expected, any other is flagged for the doctor. API and pages."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from config.extensions import db
from tests.items import ciwa
from tests.stay_helpers import crew, flashes, page_form  # noqa: F401
from tests.unit.helpers import assert_problem, row_counts, writes_between


def screen(client, admission_id: int, status: int = 201, **body) -> dict:
    response = client.post(f"/api/v1/admissions/{admission_id}/screens", json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def urine(**results) -> dict:
    return {"kind": "urine", "results": results}


def test_a_negative_urine_screen_is_recorded_with_each_substance(app, crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    taken = screen(unit.nurse, alex["id"], **urine(cocaine="negative", cannabis="negative", opiates="invalid"),
                   sample_at=(clock() - timedelta(minutes=20)).isoformat(), taken_by_id=None)
    assert taken["unexpected"] is False and taken["escalation_id"] is None
    assert [(r["substance"], r["result"], r["expected"]) for r in taken["results"]] == [
        ("cannabis", "negative", False), ("cocaine", "negative", False), ("opiates", "invalid", False)]
    assert taken["taken_by"]["username"] == unit.usernames["nurse"]
    assert taken["summary"].startswith("Urine screen") and "all negative; invalid opiates" in taken["summary"]
    assert unit.inspector.get(f"/api/v1/screens/{taken['id']}").get_json() == taken
    assert [s["id"] for s in unit.inspector.get(f"/api/v1/admissions/{alex['id']}/screens").get_json()] == [taken["id"]]
    assert unit.nurse.get("/api/v1/escalations").get_json() == []


def test_haz_073_an_unexpected_positive_is_flagged_for_the_doctor(app, crew, clock):
    """HAZ-073: a positive neither declared at admission nor prescribed here (cocaine, on an
    alcohol detox) raises an escalation (soon) routed to the visiting GP on a monitored unit:
    paged, on the board and in the GP's queue until answered; a second unexpected positive
    updates the same escalation rather than opening another."""
    unit = crew("medically_monitored")
    alex = unit.admit(name="Alex Example", substances=("alcohol",))
    first = screen(unit.nurse, alex["id"], **urine(cocaine="positive", alcohol="positive", cannabis="negative"))
    assert first["unexpected"] is True
    by_substance = {r["substance"]: r for r in first["results"]}
    assert by_substance["cocaine"]["expected"] is False
    assert by_substance["alcohol"]["expected"] is True
    assert by_substance["alcohol"]["expected_reason"].startswith("alcohol declared at admission")
    escalation = unit.gp.get(f"/api/v1/escalations/{first['escalation_id']}").get_json()
    assert (escalation["severity"], escalation["route"], escalation["status"], escalation["trigger"]) == (
        "soon", "visiting_gp", "open", "unexpected_positive_screen")
    assert "Cocaine" in escalation["reason"] and escalation["source_type"] == "screen"
    assert any(step["kind"] == "notified" for step in escalation["steps"])
    queue = unit.gp.get("/escalations").get_data(as_text=True)
    assert "Unexpected positive urine screen" in queue
    board = unit.nurse.get("/").get_data(as_text=True)
    assert "Unexpected positive urine screen" in board
    clock.advance(hours=2)
    second = screen(unit.nurse, alex["id"], **urine(amphetamine="positive"))
    assert second["escalation_id"] == first["escalation_id"]
    live = [e for e in unit.nurse.get("/api/v1/escalations?status=open").get_json()
            if e["trigger"] == "unexpected_positive_screen"]
    assert len(live) == 1 and "Amphetamine" in live[0]["reason"]


def test_declared_substances_are_expected_within_their_detection_window(crew, clock):
    unit = crew("medically_managed")
    sam = unit.admit(name="Sam Example", substances=("opioids",))
    clock.advance(days=2)
    early = screen(unit.nurse, sam["id"], **urine(opiates="positive", methadone="positive"))
    assert early["unexpected"] is False
    assert all(r["expected"] and "opioids declared at admission, 2 days" in r["expected_reason"]
               for r in early["results"])
    clock.advance(days=2)  # day 4: past the three days of short-acting opioids
    later = screen(unit.nurse, sam["id"], **urine(opiates="positive", methadone="positive"))
    by_substance = {r["substance"]: r["expected"] for r in later["results"]}
    assert by_substance == {"opiates": False, "methadone": True}
    assert later["unexpected"] is True


def test_a_drug_given_here_explains_its_positive(crew, clock):
    unit = crew("medically_managed")
    alex = unit.admit(name="Alex Example", substances=("alcohol",))
    order = unit.doctor.post(f"/api/v1/admissions/{alex['id']}/orders", json={
        "kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral", "min_interval_minutes": 120,
        "max_daily_mg": 200, "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}}).get_json()
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/observations", json={"scale": "ciwa-ar", "items": ciwa(10)})
    assert unit.nurse.post(f"/api/v1/orders/{order['id']}/administrations",
                           json={"outcome": "given", "dose_mg": 20}).status_code == 201
    clock.advance(hours=3)
    taken = screen(unit.nurse, alex["id"], **urine(benzodiazepines="positive"))
    (result,) = taken["results"]
    assert result["expected"] is True and result["expected_reason"].startswith("Chlordiazepoxide given here")
    assert taken["unexpected"] is False and taken["escalation_id"] is None
    # Without the dose, the same positive is unexplained.
    sam = unit.admit(name="Sam Example", substances=("alcohol",))
    assert screen(unit.nurse, sam["id"], **urine(benzodiazepines="positive"))["unexpected"] is True


def test_breath_alcohol_readings(crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example", substances=("alcohol",))
    zero = screen(unit.nurse, alex["id"], kind="breath", mg_per_l=0.0)
    assert zero["mg_per_l"] == 0.0 and zero["results"][0]["result"] == "negative" and not zero["unexpected"]
    on_arrival = screen(unit.nurse, alex["id"], kind="breath", mg_per_l=0.35, reason="admission")
    assert on_arrival["results"][0]["expected"] is True and not on_arrival["unexpected"]
    clock.advance(hours=30)  # alcohol on the breath after the first day: drunk since
    later = screen(unit.nurse, alex["id"], kind="breath", mg_per_l=0.12)
    assert later["unexpected"] is True
    escalation = unit.nurse.get(f"/api/v1/escalations/{later['escalation_id']}").get_json()
    assert escalation["reason"].startswith("Breath alcohol 0.12 mg/L")
    assert later["summary"].startswith("Breath alcohol") and "0.12 mg/L (unexpected)" in later["summary"]


def test_screen_input_is_checked_field_by_field(app, crew, clock):
    unit = crew()
    alex = unit.admit()
    other_unit = crew()
    cases = [
        ({"kind": "blood", "results": {"cocaine": "positive"}}, "kind"),
        ({"kind": "breath"}, "mg_per_l"),
        ({"kind": "breath", "mg_per_l": "0.2"}, "mg_per_l"),
        ({"kind": "breath", "mg_per_l": 9}, "mg_per_l"),
        ({"kind": "breath", "mg_per_l": 0.1, "results": {"alcohol": "positive"}}, "results"),
        ({"kind": "urine"}, "results"),
        ({"kind": "urine", "results": {}}, "results"),
        ({"kind": "urine", "results": {"chocolate": "positive"}}, "results"),
        ({"kind": "urine", "results": {"cocaine": "maybe"}}, "results"),
        ({"kind": "urine", "results": {"cocaine": "negative"}, "mg_per_l": 0.1}, "mg_per_l"),
        ({"kind": "urine", "results": {"cocaine": "negative"},
          "sample_at": (clock() + timedelta(hours=1)).isoformat()}, "sample_at"),
        ({"kind": "urine", "results": {"cocaine": "negative"},
          "sample_at": (clock() - timedelta(days=3)).isoformat()}, "sample_at"),
        ({"kind": "urine", "results": {"cocaine": "negative"}, "reason": "boredom"}, "reason"),
        ({"kind": "urine", "results": {"cocaine": "negative"},
          "taken_by_id": _staff_id(app, other_unit.usernames["nurse"])}, "taken_by_id"),
        ({"kind": "urine", "results": {"cocaine": "negative"},
          "taken_by_id": _staff_id(app, unit.usernames["inspector"])}, "taken_by_id"),
    ]
    before = row_counts(app)
    for body, field in cases:
        problem = assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/screens", json=body), 422)
        assert field in problem["errors"], (body, problem)
    assert writes_between(before, row_counts(app)) == {}
    assert_problem(unit.inspector.post(f"/api/v1/admissions/{alex['id']}/screens",
                                       json=urine(cocaine="negative")), 403)
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/discharge", json={"discharge_type": "completed"})
    assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/screens", json=urine(cocaine="negative")),
                   409, "admission-not-active")


def _staff_id(app, username: str) -> int:
    from unit.models import Staff

    with app.app_context():
        return db.session.scalar(sa.select(Staff.id).where(Staff.username == username))


def test_another_units_screens_are_not_found(crew):
    ours, theirs = crew(), crew()
    resident = theirs.admit()
    taken = screen(theirs.nurse, resident["id"], **urine(cocaine="negative"))
    assert_problem(ours.nurse.get(f"/api/v1/screens/{taken['id']}"), 404, "screen-not-found")
    assert_problem(ours.nurse.get(f"/api/v1/admissions/{resident['id']}/screens"), 404)
    assert_problem(ours.nurse.post(f"/api/v1/admissions/{resident['id']}/screens", json=urine(cocaine="negative")), 404)


def test_screens_are_recorded_from_the_resident_page(crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    breath = page_form(unit.nurse, "/", kind="breath", mg_per_l="0.00", reason="routine")
    response = unit.nurse.post(f"/admissions/{alex['id']}/screens", data=breath)
    assert response.status_code == 303 and response.location.endswith(f"/admissions/{alex['id']}#screens")
    urine_form = page_form(unit.nurse, "/", kind="urine", r_cocaine="positive", r_cannabis="negative",
                           r_opiates="", reason="suspicion")
    assert unit.nurse.post(f"/admissions/{alex['id']}/screens", data=urine_form).status_code == 303
    assert flashes(unit.nurse)[-1].endswith("Flagged for the doctor.")
    page = unit.nurse.get(f"/admissions/{alex['id']}").get_data(as_text=True)
    assert 'data-testid="resident-screens"' in page and "flagged for the doctor" in page
    assert "Breath alcohol" in page and "0.00 mg/L" in page
    listed = unit.nurse.get(f"/api/v1/admissions/{alex['id']}/screens").get_json()
    assert [sorted(r["substance"] for r in s["results"]) for s in listed] == [["cannabis", "cocaine"], ["alcohol"]]
    bad = page_form(unit.nurse, "/", kind="breath", mg_per_l="lots")
    assert unit.nurse.post(f"/admissions/{alex['id']}/screens", data=bad).status_code == 303
    assert flashes(unit.nurse)[-1].startswith("Screen not recorded: mg per l")
    assert len(unit.nurse.get(f"/api/v1/admissions/{alex['id']}/screens").get_json()) == 2
