"""A nurse in charge writes and hands over a shift in a real browser: she starts the handover
(each resident's SBAR pre-filled, a live escalation shown in red apart from her text), edits a
resident's situation, saves, signs; the incoming nurse opens it, reads it and acknowledges.
At 1280x800 and 800x1280: no sideways scrolling, every control at least 44x44 px."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from config.jobs import WATCHED_JOBS, run_job
from config.scheduler import jobs
from tests.browser.conftest import DESKTOP, PORTRAIT
from tests.monitoring.helpers import ciwa, record


def no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url}: scrollWidth {scroll_width} > {width}"


def controls_are_big_enough(page: Page) -> None:
    """Every visible button, text box and summary of the main content is at least 44x44 px."""
    small = page.evaluate("""() => [...document.querySelectorAll(
            'main button, main textarea, main input:not([type=hidden]), main select, main summary, main a.btn')]
        .filter(e => e.offsetParent !== null)
        .map(e => [e.outerHTML.slice(0, 80), e.getBoundingClientRect()])
        .filter(([_, r]) => r.height < 44 || r.width < 44)
        .map(([html, r]) => `${html} ${Math.round(r.width)}x${Math.round(r.height)}`)""")
    assert small == [], small


@pytest.fixture
def shift(app, clock, make_unit, make_staff, login, admit):
    """A unit with a nurse in charge on the rota now, an incoming nurse, and two residents, one
    with an urgent escalation (CIWA-Ar 17)."""
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=1))
    unit = make_unit(model="medically_monitored", name="Riverside Detox")
    in_charge = make_staff(unit, "nurse", username="nurse.okafor")
    incoming = make_staff(unit, "nurse", username="nurse.reid")
    manager = login(make_staff(unit, "manager", username="manager.lowe"))
    api = login(in_charge)
    staff_id = api.get("/api/v1/auth/session").get_json()["staff"]["id"]
    rota = manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "staff_id": staff_id,
        "starts_at": (clock() - timedelta(hours=2)).isoformat(),
        "ends_at": (clock() + timedelta(hours=6)).isoformat()})
    assert rota.status_code == 201, rota.get_json()
    jordan = admit(api, name="Jordan Carter", dob="1979-03-14")
    priya = admit(api, name="Priya Shah", dob="1990-02-11")
    record(api, jordan["id"], "ciwa-ar", ciwa(17))
    record(api, priya["id"], "ciwa-ar", ciwa(4))
    for job in jobs():  # a live scheduler: no red banner
        if job.name in WATCHED_JOBS:
            assert run_job(app, job)
    return {"in_charge": in_charge, "incoming": incoming, "jordan": jordan, "priya": priya}


@pytest.mark.parametrize("viewport", [DESKTOP, PORTRAIT], ids=["1280x800", "800x1280"])
def test_a_nurse_in_charge_writes_and_hands_over_the_shift(viewport, new_page, shift, sign_in, screenshot):
    page = new_page(viewport)
    sign_in(page, shift["in_charge"])
    page.goto("/handovers")
    page.get_by_test_id("start-handover").click()
    expect(page).to_have_url(re.compile(r"/handovers/\d+$"))
    expect(page.get_by_test_id("handover-status")).to_have_text("draft")
    entries = page.get_by_test_id("handover-entry")
    expect(entries).to_have_count(2)
    jordan = page.locator(f"[data-testid=handover-entry][data-admission='{shift['jordan']['id']}']")
    expect(jordan.get_by_test_id("live-escalation")).to_contain_text("URGENT escalation open")
    expect(jordan.get_by_test_id("live-escalation")).to_contain_text("CIWA-Ar 17")
    expect(jordan.locator("textarea[name=assessment]")).to_have_value(re.compile(r"CIWA-Ar 17 \(severe\)"))
    no_sideways_scroll(page, viewport["width"])
    controls_are_big_enough(page)
    screenshot(page, "prefilled")

    situation = jordan.locator("textarea[name=situation]")
    situation.fill("Tremulous and sweating; GP paged for the CIWA-Ar of 17, not yet called back.")
    jordan.get_by_test_id("save-entry").click()
    expect(page.get_by_text("Saved Jordan Carter's handover.")).to_be_visible()
    jordan = page.locator(f"[data-testid=handover-entry][data-admission='{shift['jordan']['id']}']")
    expect(jordan.locator("textarea[name=situation]")).to_have_value(re.compile("GP paged"))
    page.get_by_test_id("sign-handover").click()
    expect(page.get_by_text("Handover signed")).to_be_visible()
    expect(page.get_by_test_id("handover-status")).to_have_text("signed")
    expect(page.locator("textarea")).to_have_count(0)  # a signed handover is kept as signed
    expect(page.get_by_test_id("acknowledge-handover")).to_have_count(0)  # not by the signer
    screenshot(page, "signed")

    incoming = new_page(viewport)
    sign_in(incoming, shift["incoming"])
    incoming.goto("/handovers")
    incoming.get_by_role("link", name="Open this shift's handover").click()
    entry = incoming.locator(f"[data-testid=handover-entry][data-admission='{shift['jordan']['id']}']")
    expect(entry).to_contain_text("GP paged for the CIWA-Ar of 17")
    expect(entry.get_by_test_id("live-escalation")).to_contain_text("CIWA-Ar 17")
    no_sideways_scroll(incoming, viewport["width"])
    controls_are_big_enough(incoming)
    incoming.get_by_test_id("acknowledge-handover").click()
    expect(incoming.get_by_text("Handover acknowledged.")).to_be_visible()
    expect(incoming.get_by_test_id("handover-status")).to_have_text("acknowledged")
    expect(incoming.locator("main")).to_contain_text("Acknowledged by Nurse.Reid")
    screenshot(incoming, "acknowledged")

    incoming.goto(incoming.url + "/print")
    expect(incoming.get_by_test_id("handover-page")).to_have_count(1)
    expect(incoming.get_by_test_id("printed-entry")).to_have_count(2)
