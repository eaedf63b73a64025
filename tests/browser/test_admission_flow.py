"""The admission flow in a real browser: sign in, admit through the form with the live
competence check, see the resident on the ward board; a decline on a monitored unit; and
the pages on a tablet held in portrait without sideways scrolling."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PORTRAIT
from tests.conftest import years_ago


def fill_admission(page: Page, *, name: str, dob: str, sadq: int, audit: int, units: float,
                   nhs_number: str | None = None) -> None:
    page.fill("input[name=name]", name)
    page.fill("input[name=date_of_birth]", dob)  # type=date takes YYYY-MM-DD
    if nhs_number:
        page.fill("input[name=nhs_number]", nhs_number)
    page.check("input[name=substances][value=alcohol]")
    page.fill("input[name=sadq]", str(sadq))
    page.fill("input[name=audit]", str(audit))
    page.fill("input[name=units_per_day]", f"{units:g}")


def open_admit(page: Page) -> None:
    page.get_by_role("link", name="Admit", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admissions/new$"))
    expect(page.get_by_role("heading", name="Admit a resident")).to_be_visible()


def assert_no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url}: scrollWidth {scroll_width} > {width}"


def test_nurse_admits_a_resident(page, make_unit, make_staff, sign_in, screenshot):
    unit = make_unit(model="medically_monitored", name="Riverside Detox")
    nurse = make_staff(unit, "nurse")
    sign_in(page, nurse)
    expect(page.get_by_role("heading", name="Ward board")).to_be_visible()

    open_admit(page)
    competence = page.locator("#competence")
    expect(competence).to_contain_text("Fill in the date of birth")
    fill_admission(page, name="Jordan Carter", dob="1979-03-14", sadq=20, audit=25, units=12)

    expect(competence).to_have_class(re.compile(r"\badmit\b"))
    expect(competence).to_contain_text("This unit can admit this referral.")
    expect(competence).to_contain_text("Recommended setting: Residential, medically monitored")
    screenshot(page, "form-checked")

    page.click("#admit-submit")
    expect(page).to_have_url(re.compile(r"/admissions/\d+$"))
    expect(page.get_by_role("heading", name="Jordan Carter", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Jordan Carter admitted.")
    screenshot(page, "resident")

    page.get_by_role("link", name="Ward board").click()
    expect(page).to_have_url(re.compile(r"/$"))
    board = page.get_by_test_id("board")
    expect(board.get_by_role("link", name="Jordan Carter")).to_be_visible()
    expect(page.get_by_text("1 resident ·")).to_be_visible()
    screenshot(page, "board")


@pytest.mark.parametrize("viewport", [DESKTOP, PORTRAIT], ids=["1280x800", "800x1280"])
def test_monitored_unit_declines_sadq_over_30(viewport, new_page, make_unit, make_staff, sign_in,
                                              screenshot):
    unit = make_unit(model="medically_monitored")
    nurse = make_staff(unit, "nurse")
    page = new_page(viewport)
    sign_in(page, nurse)
    open_admit(page)

    fill_admission(page, name="Sam Declined", dob="1975-08-02", sadq=35, audit=30, units=18)
    competence = page.locator("#competence")
    expect(competence).to_have_class(re.compile(r"\bdeclined\b"))
    expect(competence).to_contain_text("This unit must decline")
    expect(competence).to_contain_text("SADQ over 30")
    expect(competence).to_contain_text("Recommended setting: Residential, medically managed")
    # The button says what it will do now: nobody is admitted, the referral is kept.
    expect(page.locator("#admit-submit")).to_have_text("Record declined referral")
    screenshot(page, "form-checked")

    page.click("#admit-submit")
    declined = page.get_by_test_id("declined")
    expect(declined).to_be_visible()
    expect(declined).to_contain_text("Declined")
    expect(declined).to_contain_text("SADQ over 30")
    expect(declined).to_contain_text("SADQ 35")
    expect(page).to_have_url(re.compile(r"/admissions/new$"))
    # The form keeps what was typed so the nurse need not retype it.
    expect(page.locator("input[name=name]")).to_have_value("Sam Declined")
    assert_no_sideways_scroll(page, viewport["width"])
    screenshot(page, "declined")

    page.get_by_role("link", name="Ward board").click()
    expect(page.get_by_role("heading", name="Ward board")).to_be_visible()
    expect(page.get_by_text("No residents are admitted.")).to_be_visible()
    expect(page.get_by_text("Sam Declined")).to_have_count(0)
    screenshot(page, "board")


@pytest.mark.parametrize("viewport", [DESKTOP, PORTRAIT], ids=["1280x800", "800x1280"])
def test_pages_fit_the_screen(viewport, new_page, make_unit, make_staff, login, admit, sign_in,
                              screenshot):
    width = viewport["width"]
    unit = make_unit(model="medically_managed", name="St Brigid's Residential Detox Unit")
    nurse = make_staff(unit, "nurse", username="nurse.okonkwo-hamilton")
    api = login(nurse)
    # A board with something on it: a long name, an NHS number and a high-risk resident.
    admit(api, name="Maximilian Alexander Fitzgerald-Montgomery", nhs_number="943 476 5919",
          substances=("alcohol", "benzodiazepines"))
    admit(api, name="Priya Shah", dob=years_ago(34), sadq=12, audit=14, units_per_day=8)
    page = new_page(viewport)

    page.goto("/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_no_sideways_scroll(page, width)
    screenshot(page, "login")

    sign_in(page, nurse)
    expect(page.get_by_test_id("board")).to_be_visible()
    expect(page.locator("[data-testid=board] tbody tr")).to_have_count(2)
    assert_no_sideways_scroll(page, width)
    screenshot(page, "board")

    open_admit(page)
    assert_no_sideways_scroll(page, width)
    screenshot(page, "admit-empty")

    fill_admission(page, name="Jordan Carter", dob="1979-03-14", sadq=20, audit=25, units=12,
                   nhs_number="401 023 2137")
    competence = page.locator("#competence")
    expect(competence).to_contain_text("This unit can admit this referral.")
    assert_no_sideways_scroll(page, width)
    screenshot(page, "admit-filled")

    page.click("#admit-submit")
    expect(page.get_by_role("heading", name="Jordan Carter", level=1)).to_be_visible()
    assert_no_sideways_scroll(page, width)
    screenshot(page, "resident")

    page.get_by_role("link", name="Ward board").click()
    expect(page.locator("[data-testid=board] tbody tr")).to_have_count(3)
    high_risk = page.locator("[data-testid=board] tbody tr", has_text="Fitzgerald-Montgomery")
    expect(high_risk.get_by_text("High risk")).to_be_visible()
    assert_no_sideways_scroll(page, width)
