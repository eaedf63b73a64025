"""Giving medication in a real browser: a nurse sees a PRN buprenorphine dose available after a
qualifying COWS score, gives it on the give screen with a second nurse signing as witness, and
a second attempt within the order's interval is refused with its reason on screen. The doses
list and the give screen are photographed on a desktop and on a tablet held in portrait."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from config.extensions import db
from medication.models import Administration, CDRegisterEntry, SafetyRefusal
from tests.browser.conftest import DESKTOP, PORTRAIT
from tests.conftest import PASSWORD

# COWS 10 (mild; buprenorphine may start from 8): sweating 2, restlessness 3, tremor 2,
# yawning 2, anxiety 1.
COWS_10 = {"resting_pulse": 0, "sweating": 2, "restlessness": 3, "pupil_size": 0, "bone_joint_aches": 0,
           "runny_nose_tearing": 0, "gi_upset": 0, "tremor": 2, "yawning": 2, "anxiety_irritability": 1,
           "gooseflesh": 0}


def post(client, url: str, body: dict):
    response = client.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


@pytest.fixture
def unit(app, make_unit, make_staff, login, admit, clock):
    """A managed unit with two nurses and a doctor; a resident on buprenorphine induction (4 mg,
    at least 2 h apart, COWS 8 or more, last heroin 13 h ago) and a chlordiazepoxide regimen."""
    # 11:40 on a weekday: the resident's 12:00 regimen dose is within the hour on /doses
    # whatever time of day the suite runs.
    clock.set(datetime(2025, 3, 3, 11, 40, tzinfo=timezone.utc))
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=2), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=3))
    code = make_unit(model="medically_managed", name="Riverside Detox")
    nurse, witness = make_staff(code, "nurse", "kim.nurse"), make_staff(code, "nurse", "lee.nurse")
    doctor = login(make_staff(code, "doctor", "dr.patel"))
    nurse_api = login(nurse)
    admission = admit(nurse_api, name="Jordan Carter", substances=("opioids",))
    buprenorphine = post(doctor, f"/api/v1/admissions/{admission['id']}/orders", {
        "kind": "induction", "drug": "buprenorphine", "dose_mg": 4, "route": "sublingual",
        "min_interval_minutes": 120, "trigger": {"scale": "cows", "min_total": 8},
        "last_opioid_at": (clock.now - timedelta(hours=13)).isoformat()})
    post(nurse_api, "/api/v1/cd-register/buprenorphine/entries",
         {"kind": "receipt", "amount_mg": 56, "supplier": "Alliance Healthcare", "reference": "GRN 2231"})
    other = admit(nurse_api, name="Sam Rivers")
    post(doctor, f"/api/v1/admissions/{other['id']}/orders",
         {"kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": 30, "route": "oral"})
    return {"nurse": nurse, "witness": witness, "nurse_api": nurse_api, "admission": admission,
            "order": buprenorphine}


def score_cows(unit) -> None:
    post(unit["nurse_api"], f"/api/v1/admissions/{unit['admission']['id']}/observations",
         {"scale": "cows", "items": COWS_10})


def open_give(page: Page, order_id: int) -> None:
    page.get_by_role("link", name="Doses", exact=True).click()
    expect(page.get_by_role("heading", name="Doses", level=1)).to_be_visible()
    row = page.get_by_test_id("prn-doses").get_by_role("row").filter(has_text="Jordan Carter")
    row.get_by_role("link", name="Give").click()
    expect(page).to_have_url(re.compile(rf"/orders/{order_id}/give$"))
    expect(page.get_by_role("heading", name="Buprenorphine · Jordan Carter")).to_be_visible()


def give_with_witness(page: Page, username: str, password: str = PASSWORD) -> None:
    witness = page.get_by_role("group", name=re.compile("Witness"))
    expect(witness).to_be_visible()
    witness.get_by_label("Witness username").fill(username)
    witness.get_by_label("Witness password").fill(password)
    page.click("#give-submit")


def assert_no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url}: scrollWidth {scroll_width} > {width}"


def test_nurse_gives_a_witnessed_prn_dose_and_a_second_is_refused(page, app, unit, sign_in, clock,
                                                                   screenshot):
    order_id = unit["order"]["id"]
    sign_in(page, unit["nurse"])

    # Before a score the dose is not available, and the list says why.
    page.goto("/doses")
    prn = page.get_by_test_id("prn-doses")
    expect(prn.get_by_test_id("prn-reason")).to_have_text("No COWS score is recorded: score first.")

    score_cows(unit)
    page.reload()
    expect(prn.get_by_test_id("prn-reason")).to_contain_text("COWS 10 (mild)")
    expect(prn.get_by_test_id("prn-reason")).to_contain_text("no dose yet")
    expect(prn.locator(".badge.ok")).to_have_text("available")

    open_give(page, order_id)
    expect(page.get_by_test_id("dose-status")).to_contain_text("Can be given: COWS 10 (mild)")
    expect(page.get_by_text("Schedule 3 CD")).to_be_visible()
    expect(page.get_by_test_id("resident-id")).to_contain_text("Born ")
    # A wrong witness password is refused and nothing is recorded.
    give_with_witness(page, unit["witness"], "not-their-password")
    expect(page.get_by_test_id("dose-error")).to_contain_text("Witness not accepted")
    give_with_witness(page, unit["witness"])
    expect(page).to_have_url(re.compile(r"/doses$"))
    expect(page.get_by_role("status")).to_have_text("Jordan Carter: Buprenorphine 4 mg recorded as given.")
    expect(prn.get_by_test_id("prn-reason")).to_contain_text("Too soon: Buprenorphine 4 mg was given at")
    expect(prn.get_by_text("not now", exact=True)).to_be_visible()

    with app.app_context():
        dose = db.session.scalars(sa.select(Administration)).one()
        assert (dose.outcome, dose.dose_mg, dose.order_id) == ("given", 4, order_id)
        assert dose.witness.username == unit["witness"] and dose.given_by.username == unit["nurse"]
        assert dose.trigger_observation_id is not None
        register = db.session.scalars(sa.select(CDRegisterEntry).order_by(CDRegisterEntry.seq)).all()
        assert [(e.kind, e.amount_mg, e.balance_mg) for e in register] == [("receipt", 56, 56),
                                                                         ("administration", -4, 52)]

    # 45 minutes later, with a fresh score, a second dose is still too soon.
    clock.advance(minutes=45)
    score_cows(unit)
    open_give(page, order_id)
    expect(page.get_by_test_id("dose-status")).to_contain_text("Cannot be given now: Too soon")
    give_with_witness(page, unit["witness"])
    refusal = page.get_by_test_id("dose-refusal")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("Not given — refused by a safety check.")
    expect(refusal).to_contain_text("Too soon: Buprenorphine 4 mg was given at 11:40 (45 min ago); "
                                    "this order needs 2 h between doses. Next from 13:40.")
    screenshot(page, "refused")

    page.goto("/cd-register/buprenorphine")
    dose_row = page.get_by_role("row").filter(has_text="dose given")
    expect(dose_row).to_contain_text("-4")
    expect(dose_row).to_contain_text("Jordan Carter · eMAR")     # the person supplied
    expect(page.get_by_text("Balance 52 mg")).to_be_visible()
    screenshot(page, "register")

    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Administration)) == 1
        refused = db.session.scalars(sa.select(SafetyRefusal)).one()
        assert refused.check == "too_soon" and refused.order_id == order_id


@pytest.mark.parametrize("viewport", [DESKTOP, PORTRAIT], ids=["1280x800", "800x1280"])
def test_doses_and_give_screen_fit_the_screen(viewport, new_page, unit, sign_in, screenshot):
    page = new_page(viewport)
    score_cows(unit)
    sign_in(page, unit["nurse"])
    page.goto("/doses")
    scheduled = page.get_by_test_id("scheduled-doses")
    expect(scheduled).to_contain_text("Sam Rivers")
    expect(scheduled).to_contain_text("12:00 upcoming")
    expect(page.get_by_test_id("prn-doses")).to_contain_text("Jordan Carter")
    assert_no_sideways_scroll(page, viewport["width"])
    screenshot(page, "doses")

    open_give(page, unit["order"]["id"])
    expect(page.locator("#give-submit")).to_be_visible()
    assert_no_sideways_scroll(page, viewport["width"])
    screenshot(page, "give")

    # The reason list follows the chosen outcome; the witness is for a dose given.
    page.get_by_label("Refused", exact=True).check()
    expect(page.get_by_label("Witness username")).not_to_have_attribute("required", "")
    page.get_by_label("Given", exact=True).check()
    expect(page.get_by_label("Witness username")).to_have_attribute("required", "")

    post(unit["nurse_api"], f"/api/v1/orders/{unit['order']['id']}/administrations",
         {"outcome": "given", "dose_mg": 4, "witness": {"username": unit["witness"], "password": PASSWORD}})
    page.goto("/cd-register/buprenorphine")
    expect(page.get_by_role("heading", name="Controlled-drug register: Buprenorphine")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="dose given")).to_contain_text("Jordan Carter")
    assert_no_sideways_scroll(page, viewport["width"])
    screenshot(page, "register")
