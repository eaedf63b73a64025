"""GET /api/v1/scales and POST /api/v1/scales/<code>/score (nothing is saved)."""
from __future__ import annotations

import pytest

from tests.monitoring.helpers import (
    CIWA_KEYS,
    COWS_ZERO,
    NEWS2_HIGH,
    NEWS2_LOW_MEDIUM,
    NEWS2_ZERO,
    assert_problem,
    ciwa,
    row_counts,
)


def test_every_scale_is_listed_with_items_allowed_values_and_descriptors(ward):
    response = ward.nurse.get("/api/v1/scales")
    assert response.status_code == 200
    scales = {s["code"]: s for s in response.get_json()}
    assert set(scales) == {"ciwa-ar", "cows", "sows", "gmaws", "news2"}
    assert scales["ciwa-ar"]["name"] == "CIWA-Ar"
    ciwa_items = {i["key"]: i for i in scales["ciwa-ar"]["items"]}
    assert tuple(ciwa_items) == CIWA_KEYS
    assert [c["value"] for c in ciwa_items["orientation"]["choices"]] == [0, 1, 2, 3, 4]
    # Descriptors (docs/clinical-rules.md s1 anchors) travel with the values.
    nausea = {c["value"]: c["label"] for c in ciwa_items["nausea_vomiting"]["choices"]}
    assert "vomiting" in nausea[7].lower() and nausea[0].lower().startswith("no")
    cows = {i["key"]: i for i in scales["cows"]["items"]}
    assert [c["value"] for c in cows["restlessness"]["choices"]] == [0, 1, 3, 5]
    assert [c["value"] for c in cows["gooseflesh"]["choices"]] == [0, 3, 5]
    assert cows["resting_pulse"]["alternative"]["key"] == "resting_pulse_bpm"
    news2 = {i["key"]: i for i in scales["news2"]["items"]}
    assert news2["spo2_scale"]["default"] == 1
    assert [c["value"] for c in news2["consciousness"]["choices"]] == ["A", "C", "V", "P", "U"]
    assert [b["code"] for b in scales["ciwa-ar"]["bands"]] == ["minimal", "moderate", "severe"]
    # Everyone on the unit may read them, the inspector too.
    assert ward.clients["inspector"].get("/api/v1/scales").status_code == 200


@pytest.mark.parametrize("total, band", [(0, "minimal"), (7, "minimal"), (8, "moderate"),
                                         (15, "moderate"), (16, "severe"), (67, "severe")])
def test_ciwa_ar_scores_and_bands(ward, total, band):
    response = ward.nurse.post("/api/v1/scales/ciwa-ar/score", json={"items": ciwa(total)})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["scale"], body["total"], body["band"]) == ("ciwa-ar", total, band)
    assert body["item_scores"] == ciwa(total)
    assert "risk" not in body


def test_news2_reply_carries_risk(app, ward):
    before = row_counts(app)
    high = ward.nurse.post("/api/v1/scales/news2/score", json={"items": NEWS2_HIGH}).get_json()
    assert (high["total"], high["band"], high["risk"]) == (14, "high", "high")
    low_medium = ward.nurse.post("/api/v1/scales/news2/score",
                                 json={"items": NEWS2_LOW_MEDIUM}).get_json()
    assert (low_medium["total"], low_medium["risk"]) == (3, "low-medium")
    zero = ward.nurse.post("/api/v1/scales/news2/score", json={"items": NEWS2_ZERO}).get_json()
    assert (zero["total"], zero["risk"]) == (0, "low")
    assert row_counts(app) == before  # scoring saves nothing


@pytest.mark.parametrize("bpm, points", [(80, 0), (81, 1), (100, 1), (101, 2), (120, 2), (121, 4)])
def test_cows_accepts_resting_pulse_in_bpm(ward, bpm, points):
    items = {k: v for k, v in COWS_ZERO.items() if k != "resting_pulse"}
    body = ward.nurse.post("/api/v1/scales/cows/score",
                           json={"items": {**items, "resting_pulse_bpm": bpm}}).get_json()
    assert body["item_scores"]["resting_pulse"] == points
    assert body["total"] == points


def _item_errors(response, status=422) -> dict:
    body = assert_problem(response, status)
    return body["errors"]["items"]


def test_cows_restlessness_2_is_refused_naming_the_allowed_values(ward):
    response = ward.nurse.post("/api/v1/scales/cows/score",
                               json={"items": {**COWS_ZERO, "restlessness": 2}})
    errors = _item_errors(response)
    assert set(errors) == {"restlessness"}
    text = " ".join(errors["restlessness"])
    assert "0, 1, 3, 5" in text


def test_ciwa_orientation_5_is_refused_naming_the_allowed_values(ward):
    response = ward.nurse.post("/api/v1/scales/ciwa-ar/score",
                               json={"items": {**ciwa(0), "orientation": 5}})
    errors = _item_errors(response)
    assert set(errors) == {"orientation"}
    assert "0, 1, 2, 3, 4" in " ".join(errors["orientation"])


def test_missing_item_is_named_with_its_allowed_values(ward):
    items = ciwa(3)
    del items["headache"]
    errors = _item_errors(ward.nurse.post("/api/v1/scales/ciwa-ar/score", json={"items": items}))
    assert set(errors) == {"headache"}
    text = " ".join(errors["headache"])
    assert "required" in text.lower() and "0, 1, 2, 3, 4, 5, 6, 7" in text


def test_unknown_item_is_named(ward):
    errors = _item_errors(ward.nurse.post(
        "/api/v1/scales/ciwa-ar/score", json={"items": {**ciwa(0), "seizures": 1}}))
    assert set(errors) == {"seizures"}
    assert "unknown" in " ".join(errors["seizures"]).lower()


def test_every_bad_item_is_named_at_once(ward):
    items = {**COWS_ZERO, "restlessness": 2, "gooseflesh": 4}
    del items["yawning"]
    errors = _item_errors(ward.nurse.post("/api/v1/scales/cows/score", json={"items": items}))
    assert set(errors) == {"restlessness", "gooseflesh", "yawning"}
    assert "0, 3, 5" in " ".join(errors["gooseflesh"])


def test_unknown_scale_is_404_and_missing_items_key_is_422(ward):
    assert_problem(ward.nurse.post("/api/v1/scales/ciwa/score", json={"items": ciwa(0)}), 404,
                   "unknown-scale")
    body = assert_problem(ward.nurse.post("/api/v1/scales/ciwa-ar/score", json={}), 422)
    assert "items" in body["errors"]


def test_scales_need_a_signed_in_user(client):
    assert client.get("/api/v1/scales").status_code == 401
