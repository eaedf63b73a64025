"""The escalation flow in a real browser on a medically monitored unit: a nurse records a NEWS2
of 14 (through the API), the visiting GP signs in, finds it in the queue and taps Acknowledge;
the nurse's ward board then shows it acknowledged. Screenshots at 1280x800 and 800x1280."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PORTRAIT
from tests.monitoring.escalation_support import NEWS2_HIGH_14, ciwa, observe


def no_sideways_scroll(page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url}: scrollWidth {scroll_width} > {width}"


@pytest.fixture
def healthy_scheduler(app, clock):
    """Recent heartbeats of the alerting jobs, so the pages show the unit as it normally looks."""
    from config.jobs import WATCHED_JOBS, _beat

    with app.app_context():
        for job in WATCHED_JOBS:
            _beat(job, clock.now, None)


@pytest.mark.parametrize("viewport", [DESKTOP, PORTRAIT], ids=["1280x800", "800x1280"])
def test_gp_acknowledges_news2_emergency_and_the_board_shows_it(
        viewport, app, new_page, make_unit, make_staff, login, admit, sign_in, screenshot,
        healthy_scheduler):
    unit = make_unit(model="medically_monitored", name="Riverside Detox")
    nurse = make_staff(unit, "nurse", username="nurse.okafor", email="okafor@example.org")
    gp = make_staff(unit, "gp", username="dr.patel", email="patel@example.org")
    nurse_api = login(nurse)
    jordan = admit(nurse_api, name="Jordan Carter", dob="1979-03-14")
    sam = admit(nurse_api, name="Sam Whitfield", dob="1988-11-02")
    emergency = observe(nurse_api, jordan["id"], "news2", NEWS2_HIGH_14)["escalation"]
    urgent = observe(nurse_api, sam["id"], "ciwa-ar", ciwa(17))["escalation"]
    assert (emergency["severity"], emergency["route"], emergency["call_999"]) == (
        "emergency", "visiting_gp", True)

    # The nurse's board: the emergency on top with what to do now, the GP paged.
    nurse_page = new_page(viewport)
    sign_in(nurse_page, nurse)
    nurse_page.goto("/")
    alert = nurse_page.get_by_test_id("emergency-alert")
    expect(alert).to_contain_text("Jordan Carter")
    expect(alert).to_contain_text("CALL 999 NOW")
    row = nurse_page.locator(f"tr[data-admission='{jordan['id']}']")
    expect(row.locator("[data-testid=board-escalation][data-status=open]")).to_contain_text("Dr.Patel")
    no_sideways_scroll(nurse_page, viewport["width"])
    screenshot(nurse_page, "board-open")

    # The GP: the queue, most severe first, then Acknowledge.
    gp_page = new_page(viewport)
    sign_in(gp_page, gp)
    gp_page.goto("/escalations")
    items = gp_page.get_by_test_id("queue-item")
    expect(items).to_have_count(2)
    item = gp_page.locator(f"[data-testid=queue-item][data-escalation='{emergency['id']}']")
    expect(items.first).to_have_attribute("data-escalation", str(emergency["id"]))
    expect(item).to_have_attribute("data-status", "open")
    expect(item).to_contain_text("Jordan Carter")
    expect(item).to_contain_text("EMERGENCY")
    expect(item).to_contain_text("NEWS2 14")
    expect(item).to_contain_text("The nurse was told: CALL 999 NOW")
    no_sideways_scroll(gp_page, viewport["width"])
    screenshot(gp_page, "queue")

    item.get_by_test_id("acknowledge").click()
    expect(gp_page).to_have_url(re.compile(r"/escalations$"))
    expect(gp_page.get_by_text("Escalation acknowledged.")).to_be_visible()
    item = gp_page.locator(f"[data-testid=queue-item][data-escalation='{emergency['id']}']")
    expect(item).to_have_attribute("data-status", "acknowledged")
    expect(item.get_by_test_id("acknowledge")).to_have_count(0)
    expect(item).to_contain_text("acknowledged by Dr.Patel")
    other = gp_page.locator(f"[data-testid=queue-item][data-escalation='{urgent['id']}']")
    expect(other).to_have_attribute("data-status", "open")
    screenshot(gp_page, "queue-acknowledged")

    listed = {e["id"]: e for e in nurse_api.get("/api/v1/escalations").get_json()}
    assert listed[emergency["id"]]["status"] == "acknowledged"
    assert listed[emergency["id"]]["acknowledged_at"] is not None
    assert listed[urgent["id"]]["status"] == "open"

    # The nurse's board shows it acknowledged, by whom.
    nurse_page.goto("/")
    row = nurse_page.locator(f"tr[data-admission='{jordan['id']}']")
    acknowledged = row.locator("[data-testid=board-escalation][data-status=acknowledged]")
    expect(acknowledged).to_be_visible()
    expect(acknowledged).to_contain_text("EMERGENCY")
    expect(acknowledged).to_contain_text("Dr.Patel")
    expect(nurse_page.locator(f"tr[data-admission='{sam['id']}'] "
                              "[data-testid=board-escalation][data-status=open]")).to_be_visible()
    no_sideways_scroll(nurse_page, viewport["width"])
    screenshot(nurse_page, "board")
