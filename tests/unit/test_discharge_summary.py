"""The way out: a discharge summary for every discharge (the stay, the detox given, last scores,
incidents, screens, the reason for discharge, the aftercare plan, named contacts), its PDF
letter to the GP and the referrer, and follow-up tasks on the board until done."""
from __future__ import annotations

import io
from datetime import datetime, timedelta

from pypdf import PdfReader

from tests.conftest import PASSWORD
from tests.items import ciwa
from tests.stay_helpers import crew, flashes, page_form, today  # noqa: F401
from tests.unit.helpers import assert_problem

GP = {"name": "Dr Amina Shah", "organisation": "Canal Street Surgery", "address": "1 Canal Street, Manchester"}
REFERRER = {"name": "Pat Lee", "organisation": "Northside Recovery Team", "contact": "0161 496 0000"}
AFTERCARE = {"community_team": "Northside Recovery Team, appointment 14 Mar", "mutual_aid": ["SMART Recovery"],
             "gp_follow_up": "Review liver function in 4 weeks"}
CONTACTS = [{"role": "key worker", "name": "Pat Lee", "contact": "0161 496 0000"}]


def prn_dose(unit, admission_id: int) -> None:
    order = unit.doctor.post(f"/api/v1/admissions/{admission_id}/orders", json={
        "kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral", "min_interval_minutes": 120,
        "max_daily_mg": 200, "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}}).get_json()
    unit.nurse.post(f"/api/v1/admissions/{admission_id}/observations", json={"scale": "ciwa-ar", "items": ciwa(10)})
    assert unit.nurse.post(f"/api/v1/orders/{order['id']}/administrations",
                           json={"outcome": "given", "dose_mg": 20}).status_code == 201


def discharged(unit, clock, substances=("alcohol",), **kw) -> dict:
    """A resident admitted from the waiting list (GP and referrer known), a stay, a discharge."""
    planned = unit.nurse.post("/api/v1/waiting-list", json={
        "resident": {"name": kw.get("name", "Jordan Carter"), "date_of_birth": "1980-05-17",
                     "nhs_number": "943 476 5919"},
        "substances": list(substances),
        "assessment": {"sadq": 20, "audit": 25, "units_per_day": 12, "history_of_seizures": False,
                       "history_of_delirium_tremens": False, "significant_comorbidity": False, "pregnant": False,
                       **({"current_opioids": ["heroin"]} if "opioids" in substances else {})},
        "planned_date": today(clock).isoformat(), "gp": GP, "referrer": REFERRER}).get_json()
    admission = unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={}).get_json()
    return admission


def discharge(unit, admission_id: int, kind: str = "completed", note: str | None = "Detox completed on plan"):
    response = unit.nurse.post(f"/api/v1/admissions/{admission_id}/discharge",
                               json={"discharge_type": kind, "note": note})
    assert response.status_code == 200, response.get_json()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_a_discharge_opens_a_draft_summary_of_the_stay(crew, clock):
    """HAZ-075: every discharge opens a draft summary, on the board until signed off."""
    unit = crew("medically_managed")
    admission = discharged(unit, clock)
    aid = admission["id"]
    prn_dose(unit, aid)
    unit.nurse.post("/api/v1/incidents", json={
        "type": "fall", "severity": "low", "occurred_at": clock().isoformat(), "admission_id": aid,
        "description": "Slipped in the shower", "action_taken": "Checked, no injury"})
    unit.nurse.post(f"/api/v1/admissions/{aid}/screens", json={"kind": "breath", "mg_per_l": 0.0})
    assert_problem(unit.nurse.get(f"/api/v1/admissions/{aid}/discharge-summary"), 409,
                   "discharge-summary-not-ready")
    clock.advance(days=7)
    discharge(unit, aid)
    summary = unit.nurse.get(f"/api/v1/admissions/{aid}/discharge-summary").get_json()
    assert summary["status"] == "draft"
    assert summary["resident"] == {"name": "Jordan Carter", "date_of_birth": "17 May 1980",
                                   "age": summary["resident"]["age"], "nhs_number": "943 476 5919"}
    assert summary["gp"]["name"] == "Dr Amina Shah" and summary["referrer"]["name"] == "Pat Lee"
    sections = {s["key"]: s for s in summary["sections"]}
    assert list(sections) == ["stay", "detox", "scores", "incidents", "screens"]
    assert "completed the detox" in sections["stay"]["lines"][1] and "7 days" in sections["stay"]["lines"][1]
    assert sections["stay"]["lines"][2] == "Reason for discharge: Detox completed on plan"
    assert sections["detox"]["lines"][0].startswith("Chlordiazepoxide: 1 dose, 20 mg in all")
    assert sections["detox"]["table"]["rows"][0][1:] == ["Chlordiazepoxide", "1", "20"]
    assert sections["scores"]["table"]["rows"][0][:2] == ["CIWA-Ar", "10 (moderate)"]
    assert "Fall (low harm): Slipped in the shower" in sections["incidents"]["lines"][0]
    assert sections["screens"]["lines"][0].startswith("Breath alcohol")
    assert set(summary["missing"]) == {"aftercare", "contacts"}
    assert summary["naloxone_required"] == []
    board = unit.nurse.get("/").get_data(as_text=True)
    assert 'data-testid="summary-to-write"' in board and "Jordan Carter" in board


def test_haz_074_an_opioid_user_does_not_leave_without_naloxone_and_the_tolerance_talk(crew, clock):
    """HAZ-074: the summary of a resident at opioid risk (opioids declared, or methadone given
    here) cannot be signed off until naloxone is supplied (or why not is recorded) and the
    loss of tolerance has been explained, nor anyone's without an aftercare plan."""
    unit = crew("medically_managed")
    admission = discharged(unit, clock, substances=("opioids",))
    discharge(unit, admission["id"], kind="self-discharged", note="Left against advice")
    url = f"/api/v1/admissions/{admission['id']}/discharge-summary"
    summary = unit.nurse.get(url).get_json()
    assert summary["naloxone_required"] == ["opioids declared at admission"]
    refused = assert_problem(unit.nurse.post(url + "/finalise", json={}), 422, "discharge-summary-incomplete")
    assert set(refused["errors"]) == {"aftercare", "aftercare.naloxone_supplied",
                                      "aftercare.tolerance_explained", "contacts"}
    unit.nurse.post(url, json={"aftercare": AFTERCARE, "contacts": CONTACTS})
    refused = assert_problem(unit.nurse.post(url + "/finalise", json={}), 422)
    assert set(refused["errors"]) == {"aftercare.naloxone_supplied", "aftercare.tolerance_explained"}
    unit.nurse.post(url, json={"aftercare": {"naloxone_supplied": False,
                                             "naloxone_not_supplied_reason": "Declined; leaflet given"}})
    assert set(assert_problem(unit.nurse.post(url + "/finalise", json={}), 422)["errors"]) == {
        "aftercare.tolerance_explained"}
    unit.nurse.post(url, json={"aftercare": {"tolerance_explained": True}})
    final = unit.nurse.post(url + "/finalise", json={})
    assert final.status_code == 200, final.get_json()
    assert "Naloxone not supplied: Declined; leaflet given" in final.get_json()["aftercare_text"]

    # Methadone given here puts an alcohol admission at opioid risk too.
    other = crew("medically_managed")
    alcohol = other.admit(name="Sam Example", substances=("alcohol",))
    order = other.doctor.post(f"/api/v1/admissions/{alcohol['id']}/orders", json={
        "kind": "induction", "drug": "methadone", "dose_mg": 20, "route": "oral",
        "min_interval_minutes": 1440, "trigger": {"scale": "cows", "min_total": 8}}).get_json()
    cows12 = {"resting_pulse": 0, "sweating": 0, "restlessness": 5, "pupil_size": 5, "bone_joint_aches": 0,
              "runny_nose_tearing": 0, "gi_upset": 0, "tremor": 2, "yawning": 0, "anxiety_irritability": 0,
              "gooseflesh": 0}
    other.nurse.post(f"/api/v1/admissions/{alcohol['id']}/observations", json={"scale": "cows", "items": cows12})
    dose = other.nurse.post(f"/api/v1/orders/{order['id']}/administrations", json={
        "outcome": "given", "dose_mg": 20, "witness": {"username": other.usernames["doctor"], "password": PASSWORD}})
    assert dose.status_code == 201, dose.get_json()
    discharge(other, alcohol["id"])
    needed = other.nurse.get(f"/api/v1/admissions/{alcohol['id']}/discharge-summary").get_json()
    assert needed["naloxone_required"] == ["Methadone given here"]


def test_signing_off_freezes_the_summary_and_sets_the_72_hour_call(crew, clock):
    """HAZ-075: signing the summary off sets a call within 72 hours of discharge; it stays on
    the ward board (red once overdue) until someone records what came of it; the letter's
    content is frozen when signed off."""
    unit = crew("medically_managed")
    admission = discharged(unit, clock)
    clock.advance(days=5)
    discharge(unit, admission["id"])
    left_at = clock()
    url = f"/api/v1/admissions/{admission['id']}/discharge-summary"
    unit.nurse.post(url, json={"aftercare": AFTERCARE, "contacts": CONTACTS})
    extra = {"title": "Check the rehab placement started", "due_at": (clock() + timedelta(days=10)).isoformat()}
    final = unit.nurse.post(url + "/finalise", json={"follow_ups": [extra]})
    assert final.status_code == 200, final.get_json()
    body = final.get_json()
    assert body["status"] == "final" and body["finalised_by"]["username"] == unit.usernames["nurse"]
    assert [(t["title"].split(":")[0], datetime.fromisoformat(t["due_at"])) for t in body["follow_ups"]] == [
        ("Phone Jordan Carter within 72 hours of discharge", left_at + timedelta(hours=72)),
        ("Check the rehab placement started", clock() + timedelta(days=10))]
    # Frozen: an incident recorded afterwards is not in the signed-off summary; no more edits.
    unit.nurse.post("/api/v1/incidents", json={
        "type": "other", "severity": "no_harm", "occurred_at": clock().isoformat(), "admission_id": admission["id"],
        "description": "Phoned the unit after leaving", "action_taken": "Advice given"})
    again = unit.nurse.get(url).get_json()
    assert again["sections"] == body["sections"]
    assert_problem(unit.nurse.post(url, json={"note": "late"}), 409, "discharge-summary-final")
    assert_problem(unit.nurse.post(url + "/finalise", json={}), 409, "discharge-summary-final")

    # The call is on the board until done; red once overdue.
    board = unit.nurse.get("/").get_data(as_text=True)
    assert board.count('data-testid="follow-up"') == 2 and "OVERDUE" not in board
    clock.advance(hours=73)
    assert "OVERDUE: Follow-up</strong> for Jordan Carter" in unit.nurse.get("/").get_data(as_text=True)
    call = body["follow_ups"][0]
    assert_problem(unit.nurse.post(f"/api/v1/follow-ups/{call['id']}/done", json={"outcome": ""}), 422)
    done = unit.nurse.post(f"/api/v1/follow-ups/{call['id']}/done", json={"outcome": "Spoke to him: doing well"})
    assert done.status_code == 200 and done.get_json()["done_by"]["username"] == unit.usernames["nurse"]
    assert_problem(unit.nurse.post(f"/api/v1/follow-ups/{call['id']}/done", json={"outcome": "again"}), 409,
                   "follow-up-done")
    assert unit.nurse.get("/").get_data(as_text=True).count('data-testid="follow-up"') == 1
    assert [t["id"] for t in unit.nurse.get("/api/v1/follow-ups?status=done").get_json()] == [call["id"]]


def test_the_letter_to_the_gp_and_the_referrer(crew, clock):
    unit = crew("medically_managed")
    admission = discharged(unit, clock)
    prn_dose(unit, admission["id"])
    clock.advance(days=6)
    discharge(unit, admission["id"])
    url = f"/api/v1/admissions/{admission['id']}/discharge-summary"
    assert_problem(unit.nurse.get(url + "/letter?to=gp"), 409, "discharge-summary-not-final")
    unit.nurse.post(url, json={"aftercare": {**AFTERCARE, "naloxone_supplied": True,
                                             "naloxone_detail": "Prenoxad kit, shown how to use it"},
                               "contacts": CONTACTS})
    assert unit.nurse.post(url + "/finalise", json={}).status_code == 200
    response = unit.inspector.get(url + "/letter?to=gp")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text = pdf_text(response.data)
    for expected in ("Dr Amina Shah", "Canal Street Surgery", "Discharge summary: Jordan Carter",
                     "NHS number 943 476 5919", "Dear Dr Amina Shah", "Chlordiazepoxide: 1 dose, 20 mg in all",
                     "completed the detox", "Community drug and alcohol team: Northside Recovery Team",
                     "Mutual aid: SMART Recovery", "Naloxone supplied: Prenoxad kit", "key worker - Pat Lee",
                     "Copy to: Pat Lee, Northside Recovery Team", "CIWA-Ar"):
        assert expected in text, (expected, text)
    referrer = pdf_text(unit.nurse.get(url + "/letter?to=referrer").data)
    assert "Dear Pat Lee" in referrer and "Copy to: Dr Amina Shah, Canal Street Surgery" in referrer
    assert "to" in assert_problem(unit.nurse.get(url + "/letter?to=coroner"), 422)["errors"]


def test_a_letter_needs_its_recipient(crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    discharge(unit, alex["id"])
    url = f"/api/v1/admissions/{alex['id']}/discharge-summary"
    unit.nurse.post(url, json={"aftercare": AFTERCARE, "contacts": CONTACTS})
    assert set(assert_problem(unit.nurse.post(url + "/finalise", json={}), 422)["errors"]) == {"gp"}
    unit.nurse.post(url, json={"gp": GP})
    assert unit.nurse.post(url + "/finalise", json={}).status_code == 200
    assert assert_problem(unit.nurse.get(url + "/letter?to=referrer"), 422)["errors"] == {
        "to": ["No such recipient recorded."]}


def test_summary_input_is_checked_field_by_field(crew, clock):
    unit = crew()
    alex = unit.admit()
    discharge(unit, alex["id"])
    url = f"/api/v1/admissions/{alex['id']}/discharge-summary"
    for body, field in (({"aftercare": {"naloxone_supplied": "yes"}}, "aftercare"),
                        ({"aftercare": {"mutual_aid": "AA"}}, "aftercare"),
                        ({"aftercare": {"rehab": "x"}}, "aftercare"),
                        ({"contacts": [{"role": "key worker"}]}, "contacts"),
                        ({"gp": {"organisation": "No name"}}, "gp"),
                        ({"note": "x" * 4001}, "note")):
        assert field in assert_problem(unit.nurse.post(url, json=body), 422)["errors"], body
    unit.nurse.post(url, json={"aftercare": AFTERCARE, "contacts": CONTACTS, "gp": GP})
    past = {"title": "Too late", "due_at": (clock() - timedelta(days=1)).isoformat()}
    problem = assert_problem(unit.nurse.post(url + "/finalise", json={"follow_ups": [past]}), 422)
    assert problem["errors"] == {"follow_ups.0.due_at": ["Must not be in the past."]}
    assert unit.nurse.get(url).get_json()["status"] == "draft"


def test_another_units_summaries_and_tasks_are_not_found(crew, clock):
    ours, theirs = crew(), crew()
    resident = theirs.admit()
    discharge(theirs, resident["id"])
    url = f"/api/v1/admissions/{resident['id']}/discharge-summary"
    theirs.nurse.post(url, json={"aftercare": AFTERCARE, "contacts": CONTACTS, "gp": GP})
    task = theirs.nurse.post(url + "/finalise", json={}).get_json()["follow_ups"][0]
    assert_problem(ours.nurse.get(url), 404)
    assert_problem(ours.nurse.post(url, json={"note": "x"}), 404)
    assert_problem(ours.nurse.post(f"/api/v1/follow-ups/{task['id']}/done", json={"outcome": "Called"}), 404,
                   "follow-up-not-found")
    assert ours.nurse.get("/api/v1/follow-ups").get_json() == []


def test_the_summary_is_written_and_signed_off_through_its_page(crew, clock):
    unit = crew()
    admission = discharged(unit, clock, substances=("opioids",))
    discharge(unit, admission["id"])
    page = unit.nurse.get(f"/admissions/{admission['id']}/discharge-summary")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-testid="naloxone-needed"' in html and "Dr Amina Shah" in html
    resident = unit.nurse.get(f"/admissions/{admission['id']}").get_data(as_text=True)
    assert 'data-testid="resident-discharge"' in resident
    form = page_form(unit.nurse, "/", community_team="Northside team", mutual_aid="NA, SMART Recovery",
                     naloxone_supplied="yes", naloxone_detail="Nyxoid", tolerance_explained="yes",
                     contact0_role="key worker", contact0_name="Pat Lee", contact0_contact="0161",
                     gp_name="Dr Amina Shah", gp_organisation="Canal Street Surgery")
    assert unit.nurse.post(f"/admissions/{admission['id']}/discharge-summary", data=form).status_code == 303
    saved = unit.nurse.get(f"/api/v1/admissions/{admission['id']}/discharge-summary").get_json()
    assert saved["aftercare"]["mutual_aid"] == ["NA", "SMART Recovery"] and saved["missing"] == {}
    finalise = page_form(unit.nurse, "/")
    response = unit.nurse.post(f"/admissions/{admission['id']}/discharge-summary/finalise", data=finalise)
    assert response.status_code == 303 and flashes(unit.nurse)[-1].startswith("Discharge summary signed off")
    signed = unit.inspector.get(f"/admissions/{admission['id']}/discharge-summary").get_data(as_text=True)
    assert "Signed off" in signed and "Letter to the GP (PDF)" in signed and "Save the draft" not in signed
    task = unit.nurse.get("/api/v1/follow-ups?status=open").get_json()[0]
    done = page_form(unit.nurse, "/", outcome="Answered, doing well")
    assert unit.nurse.post(f"/follow-ups/{task['id']}/done", data=done).status_code == 303
    assert unit.nurse.get("/api/v1/follow-ups?status=open").get_json() == []
