"""The shift handover: SBAR per resident pre-filled from the shift's scores, doses, escalations,
not-done observations, incidents and screens; edited (every version kept) and signed by the
outgoing nurse in charge, acknowledged by the incoming one; printable, ten residents a page."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from tests.items import ciwa
from tests.stay_helpers import crew, flashes, page_form  # noqa: F401
from tests.unit.helpers import assert_problem

# Monday 3 March 2025 (GMT: London time is UTC): the early shift runs 07:00-15:00.
MORNING = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)


def staff_id(client) -> int:
    return client.get("/api/v1/auth/session").get_json()["staff"]["id"]


def start(client) -> dict:
    response = client.post("/api/v1/handovers")
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def entry_of(handover: dict, admission_id: int) -> dict:
    return next(e for e in handover["entries"] if e["admission_id"] == admission_id)


def test_the_handover_is_prefilled_from_the_shift(crew, clock):
    clock.set(MORNING)
    unit = crew("medically_managed")
    alex = unit.admit(name="Alex Example")                      # 08:00, this shift
    clock.advance(hours=1)
    order = unit.doctor.post(f"/api/v1/admissions/{alex['id']}/orders", json={
        "kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral", "min_interval_minutes": 120,
        "max_daily_mg": 200, "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}}).get_json()
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/observations", json={"scale": "ciwa-ar", "items": ciwa(12)})
    unit.nurse.post(f"/api/v1/orders/{order['id']}/administrations", json={"outcome": "given", "dose_mg": 20})
    clock.advance(hours=1)                                       # 10:00
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/observations",
                    json={"scale": "news2", "not_done_reason": "refused"})
    unit.nurse.post("/api/v1/incidents", json={
        "type": "fall", "severity": "low", "occurred_at": clock().isoformat(), "admission_id": alex["id"],
        "description": "Slipped in the shower", "action_taken": "No injury"})
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/screens", json={"kind": "urine", "results": {"cocaine": "positive"}})
    handover = start(unit.nurse)
    assert (handover["shift"], handover["status"], handover["residents"]) == ("early", "draft", 1)
    assert handover["shift_start"].startswith("2025-03-03T07:00") and handover["shift_end"].startswith("2025-03-03T15:00")
    entry = entry_of(handover, alex["id"])
    assert entry["situation"].splitlines()[0].startswith("SOON escalation open since 03 Mar 10:00: Unexpected positive")
    assert "Admitted this shift at 08:00." in entry["situation"]
    assert entry["background"] == "Day 1 of alcohol detox."
    for text in ("CIWA-Ar 12 (moderate) at 09:00.", "Chlordiazepoxide: given 20 mg 09:00.",
                 "NEWS2 not done at 10:00 (refused).", "Incident 10:00: Fall (low harm): Slipped in the shower"):
        assert text in entry["assessment"], (text, entry["assessment"])
    assert "Next CIWA-Ar due 11:00 (every 120 min)." in entry["recommendation"]
    assert [fact["text"][:4] for fact in entry["live"]] == ["SOON"]


def test_haz_076_a_live_escalation_cannot_be_left_out_of_the_handover(crew, clock):
    """HAZ-076: live escalations are facts shown apart from the nurse's text, read again when
    the handover is signed and frozen with the signature: deleting them from the SBAR, or an
    escalation raised after the handover was started, cannot leave one out; one resolved before
    signing is not carried as live."""
    clock.set(MORNING)
    unit = crew()
    alex, sam = unit.admit(name="Alex Example"), unit.admit(name="Sam Example")
    first = unit.nurse.post(f"/api/v1/admissions/{alex['id']}/observations",
                            json={"scale": "ciwa-ar", "items": ciwa(17)}).get_json()["escalation"]
    handover = start(unit.nurse)
    alex_entry = entry_of(handover, alex["id"])
    assert "CIWA-Ar 17" in alex_entry["situation"]
    # The nurse deletes it from her text.
    unit.nurse.post(f"/api/v1/handovers/{handover['id']}/entries/{alex_entry['id']}",
                    json={"situation": "Settled.", "assessment": "Fine."})
    clock.advance(hours=2)
    later = unit.nurse.post(f"/api/v1/admissions/{sam['id']}/observations",
                            json={"scale": "ciwa-ar", "items": ciwa(18)}).get_json()["escalation"]
    signed = unit.nurse.post(f"/api/v1/handovers/{handover['id']}/sign")
    assert signed.status_code == 200, signed.get_json()
    body = signed.get_json()
    alex_entry, sam_entry = entry_of(body, alex["id"]), entry_of(body, sam["id"])
    assert alex_entry["situation"] == "Settled."
    assert [f["text"] for f in alex_entry["live"]][0].startswith("URGENT escalation open since 03 Mar 08:00: CIWA-Ar 17")
    assert "NOT YET ACKNOWLEDGED" in alex_entry["live"][0]["text"]
    assert sam_entry["live"][0]["text"].startswith("URGENT escalation open since 03 Mar 10:00: CIWA-Ar 18")
    sheet = unit.nurse.get(f"/handovers/{handover['id']}").get_data(as_text=True)
    assert sheet.count('data-testid="live-escalation"') == 2
    printed = unit.nurse.get(f"/handovers/{handover['id']}/print").get_data(as_text=True)
    assert "CIWA-Ar 17" in printed and "CIWA-Ar 18" in printed
    # Frozen: resolving the escalation afterwards does not rewrite the signed handover.
    unit.gp.post(f"/api/v1/escalations/{first['id']}/resolve", json={"outcome": "Reviewed", "note": "ok"})
    assert entry_of(unit.nurse.get(f"/api/v1/handovers/{handover['id']}").get_json(), alex["id"])["live"] == alex_entry["live"]
    # The next shift's handover: the resolved one is no longer live, the other still is.
    clock.set(MORNING.replace(hour=16))
    next_shift = start(unit.nurse)
    assert entry_of(next_shift, alex["id"])["live"] == []
    assert len(entry_of(next_shift, sam["id"])["live"]) == 1
    assert later["id"] != first["id"]


def test_the_nurse_in_charge_signs_and_another_nurse_acknowledges(crew, clock):
    clock.set(MORNING)
    unit = crew()
    unit.admit(name="Alex Example")
    charge_name, charge = unit.another("nurse")
    shift = unit.manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "staff_id": staff_id(charge),
        "starts_at": "2025-03-03T07:00:00+00:00", "ends_at": "2025-03-03T15:00:00+00:00"})
    assert shift.status_code == 201, shift.get_json()
    handover = start(unit.nurse)
    url = f"/api/v1/handovers/{handover['id']}"
    assert_problem(unit.nurse.post(url + "/sign"), 403)      # not the nurse in charge
    assert_problem(unit.doctor.post(url + "/sign"), 403)
    assert_problem(unit.nurse.post(url + "/acknowledge", json={}), 409, "handover-not-signed")
    signed = charge.post(url + "/sign")
    assert signed.status_code == 200 and signed.get_json()["signed_by"]["username"] == charge_name
    assert_problem(charge.post(url + "/acknowledge", json={}), 422, "handover-invalid")
    assert_problem(unit.doctor.post(url + "/acknowledge", json={}), 403)
    entry = handover["entries"][0]
    assert_problem(unit.nurse.post(f"{url}/entries/{entry['id']}", json={"situation": "late"}), 409,
                   "handover-signed")
    done = unit.nurse.post(url + "/acknowledge", json={"note": "Read at 15:00"})
    assert done.status_code == 200
    body = done.get_json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"]["username"] == unit.usernames["nurse"]
    assert_problem(unit.manager.post(url + "/acknowledge", json={}), 422, "handover-invalid")


def test_a_resident_admitted_after_the_start_must_be_written_before_signing(crew, clock):
    """HAZ-077: a resident admitted after the handover was started has no entry: signing is
    refused, naming them, until the handover is read again and their entry written."""
    clock.set(MORNING)
    unit = crew()
    unit.admit(name="Alex Example")
    handover = start(unit.nurse)
    clock.advance(hours=1)
    jordan = unit.admit(name="Jordan Carter")
    problem = assert_problem(unit.nurse.post(f"/api/v1/handovers/{handover['id']}/sign"), 409, "handover-incomplete")
    assert "Jordan Carter" in problem["detail"] and problem["missing_admission_ids"] == [jordan["id"]]
    refreshed = unit.nurse.post(f"/api/v1/handovers/{handover['id']}/refresh").get_json()
    assert [e["resident"] for e in refreshed["entries"]] == ["Alex Example", "Jordan Carter"]
    assert "Admitted this shift at 09:00." in entry_of(refreshed, jordan["id"])["situation"]
    assert unit.nurse.post(f"/api/v1/handovers/{handover['id']}/sign").status_code == 200


def test_every_version_of_an_entry_is_kept(crew, clock):
    clock.set(MORNING)
    unit = crew()
    alex = unit.admit(name="Alex Example")
    handover = start(unit.nurse)
    entry = entry_of(handover, alex["id"])
    url = f"/api/v1/handovers/{handover['id']}/entries/{entry['id']}"
    assert "situation" in assert_problem(unit.nurse.post(url, json={}), 422)["errors"]
    assert "assessment" in assert_problem(unit.nurse.post(url, json={"assessment": "x" * 4001}), 422)["errors"]
    assert_problem(unit.inspector.post(url, json={"situation": "x"}), 403)
    clock.advance(minutes=10)
    first = unit.nurse.post(url, json={"situation": "Anxious, settled with reassurance"}).get_json()
    clock.advance(minutes=10)
    second = unit.doctor.post(url, json={"recommendation": "CIWA-Ar 2-hourly"}).get_json()
    assert (first["revision"], second["revision"]) == (1, 2)
    assert second["situation"] == "Anxious, settled with reassurance"
    history = unit.inspector.get(url + "/revisions").get_json()
    assert [h["revision"] for h in history] == [0, 1]
    assert history[0]["situation"] == entry["situation"] and history[0]["saved_by"] is None
    assert history[1]["situation"] == "Anxious, settled with reassurance"
    assert history[1]["saved_by"]["username"] == unit.usernames["nurse"]


def test_one_handover_per_shift_and_the_history(crew, clock):
    clock.set(MORNING)
    unit = crew()
    unit.admit()
    first = start(unit.nurse)
    again = assert_problem(unit.nurse.post("/api/v1/handovers"), 409, "handover-exists")
    assert again["handover_id"] == first["id"]
    clock.set(MORNING.replace(hour=22, minute=30))   # the late shift
    late = start(unit.nurse)
    clock.set(MORNING.replace(hour=23, minute=30))   # the night shift, 23:00-07:00
    night = start(unit.nurse)
    assert night["shift"] == "night" and night["shift_end"].startswith("2025-03-04T07:00")
    assert [h["id"] for h in unit.inspector.get("/api/v1/handovers").get_json()] == [night["id"], late["id"], first["id"]]
    assert_problem(unit.inspector.post("/api/v1/handovers"), 403)


def test_another_units_handovers_are_not_found(crew, clock):
    clock.set(MORNING)
    ours, theirs = crew(), crew()
    theirs.admit()
    handover = start(theirs.nurse)
    entry = handover["entries"][0]
    assert_problem(ours.nurse.get(f"/api/v1/handovers/{handover['id']}"), 404, "handover-not-found")
    assert_problem(ours.nurse.post(f"/api/v1/handovers/{handover['id']}/entries/{entry['id']}",
                                   json={"situation": "x"}), 404)
    assert_problem(ours.nurse.post(f"/api/v1/handovers/{handover['id']}/sign"), 404)
    assert ours.nurse.get("/api/v1/handovers").get_json() == []


def test_the_printed_handover_has_ten_residents_a_page(crew, clock):
    clock.set(MORNING)
    unit = crew()
    for n in range(23):
        unit.admit(name=f"Resident {n + 1:02d}")
    handover = start(unit.nurse)
    printed = unit.inspector.get(f"/handovers/{handover['id']}/print")
    html = printed.get_data(as_text=True)
    assert printed.status_code == 200
    pages = html.split('data-testid="handover-page"')[1:]
    assert [page.count('data-testid="printed-entry"') for page in pages] == [10, 10, 3]
    assert "(page 3 of 3)" in pages[2] and "Resident 21" in pages[2] and "Resident 11" in pages[1]


def test_the_handover_is_written_signed_and_acknowledged_through_the_pages(crew, clock):
    clock.set(MORNING)
    unit = crew()
    alex = unit.admit(name="Alex Example")
    assert "Start the early shift" in unit.nurse.get("/handovers").get_data(as_text=True)
    started = unit.nurse.post("/handovers/new", data=page_form(unit.nurse, "/"))
    assert started.status_code == 303
    handover_id = int(re.search(r"/handovers/(\d+)$", started.location).group(1))
    entry = unit.nurse.get(f"/api/v1/handovers/{handover_id}").get_json()["entries"][0]
    form = page_form(unit.nurse, "/", situation="Settled", background="Day 1", assessment="CIWA-Ar 4",
                     recommendation="4-hourly CIWA-Ar")
    saved = unit.nurse.post(f"/handovers/{handover_id}/entries/{entry['id']}", data=form)
    assert saved.status_code == 303 and saved.location.endswith(f"#entry-{entry['id']}")
    assert unit.nurse.post(f"/handovers/{handover_id}/sign", data=page_form(unit.nurse, "/")).status_code == 303
    assert flashes(unit.nurse)[-1].startswith("Handover signed")
    _, incoming = unit.another("nurse")
    sheet = incoming.get(f"/handovers/{handover_id}").get_data(as_text=True)
    assert 'data-testid="acknowledge-handover"' in sheet and "4-hourly CIWA-Ar" in sheet
    ack = incoming.post(f"/handovers/{handover_id}/acknowledge", data=page_form(incoming, "/", note=""))
    assert ack.status_code == 303
    assert unit.nurse.get(f"/api/v1/handovers/{handover_id}").get_json()["status"] == "acknowledged"
    assert alex["id"] == entry["admission_id"]
