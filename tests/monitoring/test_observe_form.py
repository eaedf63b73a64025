"""The tablet observation form at /admissions/<id>/observe/<scale>: every item from the scale's
definition, a save that happens once whatever the taps, errors shown next to the item."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from config.extensions import db
from monitoring.models import Observation
from tests.monitoring.helpers import CIWA_KEYS, COWS_KEYS, CSRF, IDEMPOTENCY, ciwa, row_counts


def form_page(client, admission_id: int, scale: str) -> tuple[str, str, str]:
    response = client.get(f"/admissions/{admission_id}/observe/{scale}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, CSRF.search(html).group(1), IDEMPOTENCY.search(html).group(1)


def observations(app, admission_id: int) -> list[Observation]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Observation).where(Observation.admission_id == admission_id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def test_the_ciwa_form_has_every_item_with_every_allowed_value(ward):
    admission = ward.admit()
    html, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    assert csrf and key
    for item in CIWA_KEYS:
        assert f'data-item="{item}"' in html
        values = re.findall(r'<input type="radio" name="%s" value="(\d+)"' % item, html)
        assert values == [str(v) for v in range(5 if item == "orientation" else 8)], item
    assert 'id="observe-submit" disabled' in html  # enabled by the script once all are answered
    assert 'id="running-total"' in html
    assert "Nausea" in html and "Orientation" in html


def test_the_news2_form_takes_numbers_and_choices(ward):
    admission = ward.admit()
    html, _, _ = form_page(ward.nurse, admission["id"], "news2")
    for item in ("respiration_rate", "spo2", "systolic_bp", "pulse"):
        assert re.search(r'<input name="%s" type="text" inputmode="numeric"' % item, html), item
    assert re.search(r'<input name="temperature" type="text" inputmode="decimal"', html)
    assert re.search(r'name="spo2_scale" value="1" checked', html)  # scale 1 by default
    assert re.search(r'name="spo2_scale" value="2" >', html)
    assert sorted(re.findall(r'name="supplemental_oxygen" value="(\w+)"', html)) == ["false", "true"]
    assert re.findall(r'name="consciousness" value="(\w)"', html) == ["A", "C", "V", "P", "U"]


def test_the_cows_form_offers_the_pulse_in_bpm(ward):
    admission = ward.admit(substances=("opioids",))
    html, _, _ = form_page(ward.nurse, admission["id"], "cows")
    for item in COWS_KEYS:
        assert f'data-item="{item}"' in html
    assert re.search(r'<input name="resting_pulse_bpm" type="text" inputmode="numeric"', html)


def ciwa_form(total: int, csrf: str, key: str, **extra) -> dict:
    return {"csrf_token": csrf, "idempotency_key": key, **{k: str(v) for k, v in ciwa(total).items()}, **extra}


def test_saving_twice_with_the_forms_key_saves_once(app, ward, clock):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    form = ciwa_form(12, csrf, key, note="anxious, sweating")
    first = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=form)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    assert "Idempotent-Replayed" not in first.headers
    after_first = row_counts(app)
    again = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=form)
    assert again.status_code == 303 and again.headers["Location"] == "/"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert row_counts(app) == after_first
    saved = observations(app, admission["id"])
    assert [(o.total, o.band, o.note) for o in saved] == [(12, "moderate", "anxious, sweating")]
    # The board says what was saved and when it is next due.
    board = ward.nurse.get("/").get_data(as_text=True)
    assert "CIWA-Ar 12 (moderate) recorded; next due" in board


def test_a_resent_form_says_what_was_saved_once(app, ward, clock):
    # The resend does the work again and rolls it back: what that undone work would have
    # said is not shown beside the first save's message.
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    form = ciwa_form(9, csrf, key)
    for _ in range(2):
        assert ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=form).status_code == 303
    board = ward.nurse.get("/").get_data(as_text=True)
    assert board.count("CIWA-Ar 9 (moderate) recorded; next due") == 1
    assert len(observations(app, admission["id"])) == 1


def test_an_invalid_value_is_shown_next_to_the_item_and_nothing_is_saved(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    before = row_counts(app)
    form = ciwa_form(3, csrf, key, orientation="5")
    response = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Not saved" in html
    error = re.search(r'data-item="orientation".*?<span class="fielderror">(.*?)</span>', html, re.S)
    assert error and "0, 1, 2, 3, 4" in error.group(1)
    # What was entered is kept; a new key is issued for the corrected save.
    assert re.search(r'name="nausea_vomiting" value="3" checked', html)
    assert re.search(r'name="tremor" value="0" checked', html)
    assert IDEMPOTENCY.search(html).group(1) != key
    assert row_counts(app) == before
    # The same key may be used once the values are right (the refusal did not use it up).
    fixed = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=ciwa_form(3, csrf, key))
    assert fixed.status_code == 303
    assert len(observations(app, admission["id"])) == 1


def test_a_missing_item_is_named(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    form = ciwa_form(3, csrf, key)
    del form["headache"]
    response = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=form)
    assert response.status_code == 422
    error = re.search(r'data-item="headache".*?<span class="fielderror">(.*?)</span>',
                      response.get_data(as_text=True), re.S)
    assert error and "required" in error.group(1).lower()
    assert observations(app, admission["id"]) == []


def test_news2_from_the_form(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "news2")
    form = {"csrf_token": csrf, "idempotency_key": key, "respiration_rate": "22", "spo2": "96",
            "spo2_scale": "1", "supplemental_oxygen": "false", "systolic_bp": "150", "pulse": "112",
            "consciousness": "A", "temperature": "37.9"}
    response = ward.nurse.post(f"/admissions/{admission['id']}/observe/news2", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    [saved] = observations(app, admission["id"])
    assert (saved.total, saved.risk) == (4, "low")
    assert saved.items["temperature"] == 37.9 and saved.items["supplemental_oxygen"] is False


def test_a_key_reused_with_other_values_is_refused(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    url = f"/admissions/{admission['id']}/observe/ciwa-ar"
    assert ward.nurse.post(url, data=ciwa_form(3, csrf, key)).status_code == 303
    response = ward.nurse.post(url, data=ciwa_form(4, csrf, key))  # back button, changed, resent
    assert response.status_code == 422
    assert len(observations(app, admission["id"])) == 1


def test_not_done_from_the_form(app, ward, clock):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    form = {"csrf_token": csrf, "idempotency_key": key + "-nd", "not_done_reason": "asleep", "note": "settled"}
    url = f"/admissions/{admission['id']}/observe/ciwa-ar"
    assert ward.nurse.post(url, data=form).status_code == 303
    assert ward.nurse.post(url, data=form).headers["Idempotent-Replayed"] == "true"
    [saved] = observations(app, admission["id"])
    assert (saved.status, saved.not_done_reason, saved.note) == ("not_done", "asleep", "settled")


def test_the_form_refuses_without_csrf_or_key(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    url = f"/admissions/{admission['id']}/observe/ciwa-ar"
    no_csrf = ciwa_form(3, csrf, key)
    del no_csrf["csrf_token"]
    assert ward.nurse.post(url, data=no_csrf).status_code == 400
    no_key = ciwa_form(3, csrf, "")
    response = ward.nurse.post(url, data=no_key)
    assert response.status_code == 422 and "reload it" in response.get_data(as_text=True)
    assert observations(app, admission["id"]) == []


@pytest.mark.parametrize("role, status", [("inspector", 403)])
def test_who_may_open_the_form(ward, role, status):
    admission = ward.admit()
    assert ward.clients[role].get(f"/admissions/{admission['id']}/observe/ciwa-ar").status_code == status
    assert ward.nurse.get(f"/admissions/{admission['id']}/observe/nope").status_code == 404


def test_a_discharged_resident_cannot_be_recorded_from_the_form(app, ward):
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge", json={"discharge_type": "completed"})
    response = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=ciwa_form(3, csrf, key))
    assert response.status_code == 422
    assert "discharged" in response.get_data(as_text=True)
    assert observations(app, admission["id"]) == []


def test_striking_on_the_tablet_leads_to_the_correction_linked_to_it(app, ward, clock):
    admission = ward.admit()
    url = f"/admissions/{admission['id']}/observe/ciwa-ar"
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    ward.nurse.post(url, data=ciwa_form(21, csrf, key))
    (wrong,) = observations(app, admission["id"])
    clock.advance(minutes=20)
    struck = ward.nurse.post(f"/observations/{wrong.id}/strike",
                             data={"csrf_token": csrf, "reason": "Scored the wrong resident"})
    assert struck.status_code == 302
    assert struck.headers["Location"] == f"{url}?replaces={wrong.id}"
    page = ward.nurse.get(struck.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="correcting"' in page and "Scored the wrong resident" in page
    key = IDEMPOTENCY.search(page).group(1)
    saved = ward.nurse.post(f"{url}?replaces={wrong.id}", data=ciwa_form(6, csrf, key, replaces=str(wrong.id)))
    assert saved.status_code == 303
    rows = {o.id: o for o in observations(app, admission["id"])}
    (correction,) = [o for o in rows.values() if o.id != wrong.id]
    assert (correction.total, correction.replaces_id) == (6, wrong.id)
    assert correction.observed_at == wrong.observed_at  # recorded at the time of the struck one
    assert rows[wrong.id].struck_at is not None  # both kept
    # One correction per struck entry; an entry not struck cannot be "corrected" this way.
    assert ward.nurse.get(f"{url}?replaces={wrong.id}").status_code == 404
    assert ward.nurse.get(f"{url}?replaces={correction.id}").status_code == 404
    assert ward.nurse.get(f"/admissions/{admission['id']}/observe/news2?replaces={wrong.id}").status_code == 404
    for nonsense in ("²", "abc", str(10**22)):  # "²".isdigit() is true, but it is no id
        assert ward.nurse.get(f"{url}?replaces={nonsense}").status_code == 404


@pytest.mark.parametrize("extra, shown", [
    ({"note": "x" * 2001}, "Note: Longer than maximum length 2000."),
    ({"not_done_reason": "bored"}, "Not done reason: Must be one of: asleep, refused, off_unit, other."),
])
def test_the_form_is_loaded_by_the_apis_schema(app, ward, extra, shown):
    """The form's note and not-done reason pass the same checks as the API's (ObservationIn)."""
    admission = ward.admit()
    _, csrf, key = form_page(ward.nurse, admission["id"], "ciwa-ar")
    response = ward.nurse.post(f"/admissions/{admission['id']}/observe/ciwa-ar", data=ciwa_form(3, csrf, key, **extra))
    assert response.status_code == 422
    assert shown in response.get_data(as_text=True)
    assert observations(app, admission["id"]) == []
