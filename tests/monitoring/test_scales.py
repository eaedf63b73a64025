"""monitoring.scales against docs/clinical-rules.md sections 1 and 2.

Every expected key, value, band and threshold below is copied from docs/clinical-rules.md by
hand, never read from the definitions under test, so a slip in a definition fails here.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from monitoring.scales import (
    CIWA_EMERGENCY_TOTAL,
    SCALES,
    Band,
    ScaleValidationError,
    UnknownScale,
    get_scale,
)

REQUIRED = "Missing data for required field."

# ------------------------------------------------------- docs/clinical-rules.md s1, literally

ZERO_TO_7 = [0, 1, 2, 3, 4, 5, 6, 7]
ZERO_TO_4 = [0, 1, 2, 3, 4]
ZERO_TO_2 = [0, 1, 2]

EXPECTED_CHOICES: dict[str, dict[str, list[int]]] = {
    "ciwa-ar": {
        "nausea_vomiting": ZERO_TO_7,
        "tremor": ZERO_TO_7,
        "paroxysmal_sweats": ZERO_TO_7,
        "anxiety": ZERO_TO_7,
        "agitation": ZERO_TO_7,
        "tactile_disturbances": ZERO_TO_7,
        "auditory_disturbances": ZERO_TO_7,
        "visual_disturbances": ZERO_TO_7,
        "headache": ZERO_TO_7,
        "orientation": ZERO_TO_4,
    },
    "cows": {
        "resting_pulse": [0, 1, 2, 4],
        "sweating": [0, 1, 2, 3, 4],
        "restlessness": [0, 1, 3, 5],
        "pupil_size": [0, 1, 2, 5],
        "bone_joint_aches": [0, 1, 2, 4],
        "runny_nose_tearing": [0, 1, 2, 4],
        "gi_upset": [0, 1, 2, 3, 5],
        "tremor": [0, 1, 2, 4],
        "yawning": [0, 1, 2, 4],
        "anxiety_irritability": [0, 1, 2, 4],
        "gooseflesh": [0, 3, 5],
    },
    "sows": {
        "anxious": ZERO_TO_4,
        "yawning": ZERO_TO_4,
        "perspiring": ZERO_TO_4,
        "tearing": ZERO_TO_4,
        "runny_nose": ZERO_TO_4,
        "goose_flesh": ZERO_TO_4,
        "shaking": ZERO_TO_4,
        "hot_flushes": ZERO_TO_4,
        "cold_flushes": ZERO_TO_4,
        "aches": ZERO_TO_4,
        "restless": ZERO_TO_4,
        "nauseous": ZERO_TO_4,
        "vomiting": ZERO_TO_4,
        "twitching": ZERO_TO_4,
        "stomach_cramps": ZERO_TO_4,
        "craving": ZERO_TO_4,
    },
    "gmaws": {
        "tremor": ZERO_TO_2,
        "sweating": ZERO_TO_2,
        "hallucinations": ZERO_TO_2,
        "orientation": ZERO_TO_2,
        "agitation": ZERO_TO_2,
    },
}

EXPECTED_META: dict[str, dict[str, Any]] = {
    "ciwa-ar": {"substance": "alcohol", "rater": "clinician", "max_total": 67,
                "bands": [("minimal", 0, 7), ("moderate", 8, 15), ("severe", 16, 67)]},
    "cows": {"substance": "opioids", "rater": "clinician", "max_total": 48,
             "bands": [("none", 0, 4), ("mild", 5, 12), ("moderate", 13, 24),
                       ("moderately_severe", 25, 36), ("severe", 37, 48)]},
    "sows": {"substance": "opioids", "rater": "self", "max_total": 64,
             "bands": [("none", 0, 0), ("mild", 1, 10), ("moderate", 11, 20), ("severe", 21, 64)]},
    "gmaws": {"substance": "alcohol", "rater": "clinician", "max_total": 10,
              "bands": [("mild", 0, 3), ("moderate", 4, 7), ("severe", 8, 10)]},
    "news2": {"substance": None, "rater": "clinician", "max_total": 20,
              "bands": [("low", 0, 4), ("medium", 5, 6), ("high", 7, 20)]},
}

NEWS2_KEYS = ["respiration_rate", "spo2", "spo2_scale", "supplemental_oxygen", "systolic_bp",
              "pulse", "consciousness", "temperature"]
NEWS2_SCORED_KEYS = ["respiration_rate", "spo2", "supplemental_oxygen", "systolic_bp", "pulse",
                     "consciousness", "temperature"]
# All parameters scoring 0, scale 1 by default (spo2_scale omitted).
NEWS2_BASE = {"respiration_rate": 16, "spo2": 97, "supplemental_oxygen": False,
              "systolic_bp": 120, "pulse": 70, "consciousness": "A", "temperature": 37.0}

ITEM_DICT_KEYS = {"key", "label", "kind", "choices", "minimum", "maximum", "step", "unit", "help"}

CHOICE_SCALES = list(EXPECTED_CHOICES)


def zeros(code: str) -> dict[str, int]:
    """Every item of a choice scale at 0."""
    return {key: 0 for key in EXPECTED_CHOICES[code]}


def with_total(code: str, total: int) -> dict[str, int]:
    """A valid input of a choice scale adding up to ``total`` (items without a 1 go first)."""
    items = sorted(EXPECTED_CHOICES[code].items(), key=lambda kv: 1 in kv[1])
    raw, remaining = {}, total
    for key, values in items:
        raw[key] = max(v for v in values if v <= remaining)
        remaining -= raw[key]
    assert remaining == 0, f"cannot build {code} total {total}"
    return raw


def news2(**changes: Any) -> dict[str, Any]:
    """NEWS2 input: the all-zero baseline with some parameters changed."""
    return {**NEWS2_BASE, **changes}


def errors_of(code: str, raw: Any) -> dict[str, list[str]]:
    """The validation errors for ``raw`` (fails if it validates)."""
    with pytest.raises(ScaleValidationError) as info:
        get_scale(code).validate(raw)
    return info.value.errors


# ------------------------------------------------------------------------ registry and description

def test_scales_in_stable_order() -> None:
    assert list(SCALES) == ["ciwa-ar", "cows", "sows", "gmaws", "news2"]


@pytest.mark.parametrize("code", ["", "CIWA-AR", "ciwa", "sads"])
def test_unknown_scale_raises_lookup_error(code: str) -> None:
    with pytest.raises(UnknownScale) as info:
        get_scale(code)
    assert isinstance(info.value, LookupError)
    assert info.value.code == code


@pytest.mark.parametrize("code", list(EXPECTED_META))
def test_description_metadata(code: str) -> None:
    described = get_scale(code).to_dict()
    json.dumps(described)  # JSON-able as served by GET /api/v1/scales
    expected = EXPECTED_META[code]
    assert described["code"] == code
    assert described["name"]
    assert described["substance"] == expected["substance"]
    assert described["rater"] == expected["rater"]
    assert described["max_total"] == expected["max_total"]
    assert [(b["code"], b["low"], b["high"]) for b in described["bands"]] == expected["bands"]
    assert all(b["label"] for b in described["bands"])
    for item in described["items"]:
        assert ITEM_DICT_KEYS <= set(item)


@pytest.mark.parametrize("code", CHOICE_SCALES)
def test_choice_items_and_values_exposed(code: str) -> None:
    items = get_scale(code).to_dict()["items"]
    assert [item["key"] for item in items] == list(EXPECTED_CHOICES[code])
    for item in items:
        assert item["kind"] == "choice"
        assert item["label"]
        assert [c["value"] for c in item["choices"]] == EXPECTED_CHOICES[code][item["key"]]
        assert all(isinstance(c["label"], str) and c["label"] for c in item["choices"])


@pytest.mark.parametrize(("code", "key", "value", "words"), [
    # docs/clinical-rules.md s1 anchors
    ("ciwa-ar", "nausea_vomiting", 0, "no nausea and no vomiting"),
    ("ciwa-ar", "nausea_vomiting", 7, "constant nausea"),
    ("ciwa-ar", "tremor", 1, "felt"),
    ("ciwa-ar", "paroxysmal_sweats", 7, "drenching"),
    ("ciwa-ar", "anxiety", 7, "panic"),
    ("ciwa-ar", "agitation", 4, "fidgety"),
    ("ciwa-ar", "tactile_disturbances", 1, "very mild"),
    ("ciwa-ar", "auditory_disturbances", 2, "mild"),
    ("ciwa-ar", "auditory_disturbances", 3, "moderate"),
    ("ciwa-ar", "visual_disturbances", 4, "moderately severe hallucinations"),
    ("ciwa-ar", "visual_disturbances", 5, "severe"),
    ("ciwa-ar", "tactile_disturbances", 6, "extremely severe"),
    ("ciwa-ar", "visual_disturbances", 7, "continuous"),
    ("ciwa-ar", "headache", 7, "extremely severe"),
    ("ciwa-ar", "orientation", 4, "place"),
    ("sows", "craving", 0, "not at all"),
    ("sows", "craving", 1, "a little"),
    ("sows", "craving", 2, "moderately"),
    ("sows", "craving", 3, "quite a bit"),
    ("sows", "craving", 4, "extremely"),
    ("gmaws", "tremor", 1, "on movement"),
    ("gmaws", "tremor", 2, "at rest"),
    ("gmaws", "hallucinations", 2, "continuous or distressed"),
    ("gmaws", "agitation", 2, "distressed or pacing"),
])
def test_choice_labels_carry_descriptors(code: str, key: str, value: int, words: str) -> None:
    item = next(i for i in get_scale(code).to_dict()["items"] if i["key"] == key)
    label = next(c["label"] for c in item["choices"] if c["value"] == value)
    assert words in label.lower()


def test_news2_description() -> None:
    items = {item["key"]: item for item in get_scale("news2").to_dict()["items"]}
    assert list(items) == NEWS2_KEYS
    assert [c["value"] for c in items["consciousness"]["choices"]] == ["A", "C", "V", "P", "U"]
    assert [c["value"] for c in items["spo2_scale"]["choices"]] == [1, 2]
    assert items["spo2_scale"]["required"] is False and items["spo2_scale"]["default"] == 1
    assert items["supplemental_oxygen"]["kind"] == "boolean"
    assert items["supplemental_oxygen"]["required"] is True
    temperature = items["temperature"]
    assert (temperature["kind"], temperature["minimum"], temperature["maximum"],
            temperature["step"]) == ("number", 25.0, 45.0, 0.1)
    for key in ("respiration_rate", "spo2", "systolic_bp", "pulse"):
        assert items[key]["kind"] == "number" and items[key]["step"] == 1


def test_schema_is_a_strict_marshmallow_schema() -> None:
    schema = get_scale("gmaws").schema()
    assert isinstance(schema, Schema)
    assert schema.load(zeros("gmaws")) == zeros("gmaws")
    with pytest.raises(ValidationError) as info:
        schema.load({**zeros("gmaws"), "extra": 1})
    assert info.value.messages == {"extra": ["Unknown field."]}


# --------------------------------------------------------------------- validation of choice scales

ACCEPT_CASES = [(code, key, value) for code, items in EXPECTED_CHOICES.items()
                for key, values in items.items() for value in values]


@pytest.mark.parametrize(("code", "key", "value"), ACCEPT_CASES)
def test_every_allowed_value_accepted_and_scored(code: str, key: str, value: int) -> None:
    result = get_scale(code).score({**zeros(code), key: value})
    assert result.items[key] == value
    assert result.item_scores[key] == value
    assert result.total == value


def _outside(values: list[int]) -> list[int]:
    """Integers just outside the range plus every gap inside it."""
    return [-1, max(values) + 1] + [v for v in range(min(values), max(values)) if v not in values]


INT_REFUSE_CASES = [(code, key, bad, values) for code, items in EXPECTED_CHOICES.items()
                    for key, values in items.items() for bad in _outside(values)]


@pytest.mark.parametrize(("code", "key", "bad", "values"), INT_REFUSE_CASES)
def test_integer_outside_allowed_values_refused(code: str, key: str, bad: int,
                                                values: list[int]) -> None:
    errors = errors_of(code, {**zeros(code), key: bad})
    assert errors == {key: ["Must be one of: " + ", ".join(map(str, values)) + "."]}


@pytest.mark.parametrize(("code", "key", "bad"), [
    ("cows", "restlessness", 2),
    ("cows", "restlessness", 4),
    ("cows", "gooseflesh", 1),
    ("cows", "resting_pulse", 3),
    ("ciwa-ar", "orientation", 5),
    ("ciwa-ar", "headache", 8),
    ("ciwa-ar", "tremor", -1),
    ("sows", "craving", 5),
    ("gmaws", "tremor", 3),
])
def test_named_examples_refused(code: str, key: str, bad: int) -> None:
    assert key in errors_of(code, {**zeros(code), key: bad})


WRONG_TYPES: list[Any] = [True, False, "1", "0", 1.5, 1.0, None, [1]]
TYPE_REFUSE_CASES = [(code, key, bad) for code, items in EXPECTED_CHOICES.items()
                     for key in items for bad in WRONG_TYPES]


@pytest.mark.parametrize(("code", "key", "bad"), TYPE_REFUSE_CASES)
def test_wrong_types_refused(code: str, key: str, bad: Any) -> None:
    # True is not 1 and "1" is not 1: booleans and strings never pass as scores.
    errors = errors_of(code, {**zeros(code), key: bad})
    assert list(errors) == [key]


MISSING_CASES = [(code, key, values) for code, items in EXPECTED_CHOICES.items()
                 for key, values in items.items()]


@pytest.mark.parametrize(("code", "key", "values"), MISSING_CASES)
def test_missing_item_named_with_allowed_values(code: str, key: str, values: list[int]) -> None:
    raw = zeros(code)
    del raw[key]
    errors = errors_of(code, raw)
    assert list(errors) == [key]
    assert errors[key][0] == REQUIRED
    assert errors[key][1].startswith("Allowed values: " + ", ".join(map(str, values)) + ".")


@pytest.mark.parametrize("code", list(EXPECTED_META))
def test_unknown_item_named(code: str) -> None:
    raw = dict(NEWS2_BASE) if code == "news2" else zeros(code)
    errors = errors_of(code, {**raw, "bogus_item": 1})
    assert errors == {"bogus_item": ["Unknown field."]}


@pytest.mark.parametrize("code", CHOICE_SCALES)
def test_empty_input_names_every_item(code: str) -> None:
    assert set(errors_of(code, {})) == set(EXPECTED_CHOICES[code])


@pytest.mark.parametrize("raw", [[], "nausea", None, 3])
def test_non_mapping_input_refused(raw: Any) -> None:
    errors_of("ciwa-ar", raw)


# ------------------------------------------------------------------------------------------- bands

BAND_CASES = [
    # CIWA-Ar: minimal 0-7, moderate 8-15, severe 16-67
    ("ciwa-ar", 0, "minimal"), ("ciwa-ar", 7, "minimal"), ("ciwa-ar", 8, "moderate"),
    ("ciwa-ar", 15, "moderate"), ("ciwa-ar", 16, "severe"), ("ciwa-ar", 67, "severe"),
    # COWS: none 0-4, mild 5-12, moderate 13-24, moderately_severe 25-36, severe 37-48
    ("cows", 0, "none"), ("cows", 4, "none"), ("cows", 5, "mild"), ("cows", 12, "mild"),
    ("cows", 13, "moderate"), ("cows", 24, "moderate"), ("cows", 25, "moderately_severe"),
    ("cows", 36, "moderately_severe"), ("cows", 37, "severe"), ("cows", 48, "severe"),
    # SOWS: none 0, mild 1-10, moderate 11-20, severe 21-64
    ("sows", 0, "none"), ("sows", 1, "mild"), ("sows", 10, "mild"), ("sows", 11, "moderate"),
    ("sows", 20, "moderate"), ("sows", 21, "severe"), ("sows", 64, "severe"),
    # GMAWS: mild 0-3, moderate 4-7, severe 8-10
    ("gmaws", 0, "mild"), ("gmaws", 3, "mild"), ("gmaws", 4, "moderate"),
    ("gmaws", 7, "moderate"), ("gmaws", 8, "severe"), ("gmaws", 10, "severe"),
]


@pytest.mark.parametrize(("code", "total", "band"), BAND_CASES)
def test_band_boundaries(code: str, total: int, band: str) -> None:
    result = get_scale(code).score(with_total(code, total))
    assert (result.total, result.band, result.risk) == (total, band, None)


def test_ciwa_emergency_threshold_is_a_constant_not_a_band() -> None:
    assert CIWA_EMERGENCY_TOTAL == 20
    assert "emergency" not in [b["code"] for b in get_scale("ciwa-ar").to_dict()["bands"]]
    assert get_scale("ciwa-ar").score(with_total("ciwa-ar", 20)).band == "severe"


# Unit protocol overrides; docs/clinical-rules.md s1 CIWA-Ar:
# "Others: severe from 15; minimal up to 10; US 10-18 / 19+".
CIWA_US = [Band("minimal", "Minimal", 0, 9), Band("moderate", "Moderate", 10, 18),
           Band("severe", "Severe", 19, 67)]
CIWA_SEVERE_FROM_15 = [Band("minimal", "Minimal", 0, 7), Band("moderate", "Moderate", 8, 14),
                       Band("severe", "Severe", 15, 67)]
COWS_OWN_CODES = [Band("high", "High", 13, 48), Band("low", "Low", 0, 12)]  # any order


@pytest.mark.parametrize(("code", "bands", "total", "band"), [
    ("ciwa-ar", CIWA_US, 9, "minimal"),
    ("ciwa-ar", CIWA_US, 10, "moderate"),
    ("ciwa-ar", CIWA_US, 18, "moderate"),
    ("ciwa-ar", CIWA_US, 19, "severe"),
    ("ciwa-ar", CIWA_SEVERE_FROM_15, 14, "moderate"),
    ("ciwa-ar", CIWA_SEVERE_FROM_15, 15, "severe"),
    ("cows", COWS_OWN_CODES, 12, "low"),
    ("cows", COWS_OWN_CODES, 13, "high"),
])
def test_unit_bands_override_defaults(code: str, bands: list[Band], total: int, band: str) -> None:
    raw = with_total(code, total)
    assert get_scale(code).score(raw, bands=bands).band == band
    described = get_scale(code).to_dict(bands=bands)["bands"]
    assert sorted((b["code"], b["low"], b["high"]) for b in described) == \
        sorted((b.code, b.low, b.high) for b in bands)


def test_unit_bands_change_the_result_compared_with_defaults() -> None:
    raw = with_total("ciwa-ar", 9)
    assert get_scale("ciwa-ar").score(raw).band == "moderate"
    assert get_scale("ciwa-ar").score(raw, bands=CIWA_US).band == "minimal"


def test_news2_unit_bands_keep_single_parameter_rule() -> None:
    bands = [Band("low", "Low", 0, 4), Band("medium", "Medium", 5, 5), Band("high", "High", 6, 20)]
    scale = get_scale("news2")
    six = scale.score(news2(respiration_rate=22, pulse=111, systolic_bp=95), bands=bands)
    assert (six.total, six.band, six.risk) == (6, "high", "high")
    three = scale.score(news2(respiration_rate=25), bands=bands)
    assert (three.total, three.band) == (3, "low-medium")


@pytest.mark.parametrize("bands", [
    [Band("a", "A", 0, 7), Band("b", "B", 9, 67)],        # gap
    [Band("a", "A", 0, 8), Band("b", "B", 8, 67)],        # overlap
    [Band("a", "A", 0, 7), Band("b", "B", 8, 60)],        # stops short of 67
    [Band("a", "A", 1, 67)],                              # does not start at 0
    [Band("a", "A", 0, 7), Band("a", "A2", 8, 67)],       # repeated code
    [],
])
def test_invalid_unit_bands_refused(bands: list[Band]) -> None:
    with pytest.raises(ValueError):
        get_scale("ciwa-ar").score(zeros("ciwa-ar"), bands=bands)


# ----------------------------------------------------------------------- COWS resting pulse in bpm

@pytest.mark.parametrize(("bpm", "points"), [
    (20, 0), (80, 0), (81, 1), (100, 1), (101, 2), (120, 2), (121, 4), (250, 4),
])
def test_cows_pulse_derived_from_bpm(bpm: int, points: int) -> None:
    raw = zeros("cows")
    del raw["resting_pulse"]
    result = get_scale("cows").score({**raw, "resting_pulse_bpm": bpm})
    assert result.items["resting_pulse"] == points
    assert result.items["resting_pulse_bpm"] == bpm  # kept in the normalized items
    assert result.item_scores["resting_pulse"] == points
    assert "resting_pulse_bpm" not in result.item_scores
    assert result.total == points


def test_cows_pulse_score_alone_has_no_bpm() -> None:
    items = get_scale("cows").validate({**zeros("cows"), "resting_pulse": 2})
    assert items["resting_pulse"] == 2 and "resting_pulse_bpm" not in items


def test_cows_pulse_and_bpm_both_given_is_an_error_on_bpm() -> None:
    errors = errors_of("cows", {**zeros("cows"), "resting_pulse_bpm": 90})
    assert list(errors) == ["resting_pulse_bpm"]


def test_cows_pulse_and_bpm_neither_given_is_missing_resting_pulse() -> None:
    raw = zeros("cows")
    del raw["resting_pulse"]
    errors = errors_of("cows", raw)
    assert list(errors) == ["resting_pulse"]
    assert errors["resting_pulse"][0] == REQUIRED
    assert "resting_pulse_bpm" in errors["resting_pulse"][1]


@pytest.mark.parametrize("bpm", [19, 251, True, "90", 90.5, None])
def test_cows_bad_bpm_refused(bpm: Any) -> None:
    raw = zeros("cows")
    del raw["resting_pulse"]
    assert list(errors_of("cows", {**raw, "resting_pulse_bpm": bpm})) == ["resting_pulse_bpm"]


# --------------------------------------------------------------- NEWS2 scoring (RCP NEWS2 chart 1)

NEWS2_PARAMETER_CASES = [
    # respiration: <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3
    ("respiration_rate", 0, 3), ("respiration_rate", 8, 3), ("respiration_rate", 9, 1),
    ("respiration_rate", 11, 1), ("respiration_rate", 12, 0), ("respiration_rate", 20, 0),
    ("respiration_rate", 21, 2), ("respiration_rate", 24, 2), ("respiration_rate", 25, 3),
    ("respiration_rate", 80, 3),
    # systolic: <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3
    ("systolic_bp", 40, 3), ("systolic_bp", 90, 3), ("systolic_bp", 91, 2),
    ("systolic_bp", 100, 2), ("systolic_bp", 101, 1), ("systolic_bp", 110, 1),
    ("systolic_bp", 111, 0), ("systolic_bp", 219, 0), ("systolic_bp", 220, 3),
    ("systolic_bp", 300, 3),
    # pulse: <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3
    ("pulse", 20, 3), ("pulse", 40, 3), ("pulse", 41, 1), ("pulse", 50, 1), ("pulse", 51, 0),
    ("pulse", 90, 0), ("pulse", 91, 1), ("pulse", 110, 1), ("pulse", 111, 2),
    ("pulse", 130, 2), ("pulse", 131, 3), ("pulse", 250, 3),
    # consciousness: A 0; C, V, P, U 3
    ("consciousness", "A", 0), ("consciousness", "C", 3), ("consciousness", "V", 3),
    ("consciousness", "P", 3), ("consciousness", "U", 3),
    # temperature: <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2
    ("temperature", 25.0, 3), ("temperature", 35.0, 3), ("temperature", 35.1, 1),
    ("temperature", 36.0, 1), ("temperature", 36.1, 0), ("temperature", 38.0, 0),
    ("temperature", 38.1, 1), ("temperature", 39.0, 1), ("temperature", 39.1, 2),
    ("temperature", 45.0, 2), ("temperature", 36, 1), ("temperature", 37, 0),
]


@pytest.mark.parametrize(("key", "value", "points"), NEWS2_PARAMETER_CASES)
def test_news2_parameter_boundaries(key: str, value: Any, points: int) -> None:
    result = get_scale("news2").score(news2(**{key: value}))
    assert result.item_scores[key] == points
    assert result.total == points


# SpO2 scale 1 (same on air and oxygen): <=91 3, 92-93 2, 94-95 1, >=96 0
SPO2_SCALE_1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
# SpO2 scale 2: <=83 3, 84-85 2, 86-87 1, 88-92 0, >=93 on air 0
SPO2_SCALE_2_AIR = [(50, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0),
                    (93, 0), (94, 0), (96, 0), (97, 0), (100, 0)]
# ... on oxygen: 93-94 1, 95-96 2, >=97 3
SPO2_SCALE_2_OXYGEN = [(50, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0),
                       (93, 1), (94, 1), (95, 2), (96, 2), (97, 3), (100, 3)]
SPO2_CASES = (
    [(1, False, spo2, points) for spo2, points in SPO2_SCALE_1]
    + [(1, True, spo2, points) for spo2, points in SPO2_SCALE_1]
    + [(2, False, spo2, points) for spo2, points in SPO2_SCALE_2_AIR]
    + [(2, True, spo2, points) for spo2, points in SPO2_SCALE_2_OXYGEN]
)


@pytest.mark.parametrize(("spo2_scale", "oxygen", "spo2", "points"), SPO2_CASES)
def test_news2_spo2_boundaries_on_both_scales(spo2_scale: int, oxygen: bool, spo2: int,
                                              points: int) -> None:
    result = get_scale("news2").score(
        news2(spo2=spo2, spo2_scale=spo2_scale, supplemental_oxygen=oxygen))
    assert result.item_scores["spo2"] == points
    assert result.item_scores["supplemental_oxygen"] == (2 if oxygen else 0)
    assert result.total == points + (2 if oxygen else 0)


def test_news2_item_scores_keys_and_default_scale() -> None:
    result = get_scale("news2").score(NEWS2_BASE)
    assert list(result.item_scores) == NEWS2_SCORED_KEYS
    assert result.items["spo2_scale"] == 1  # the only optional input, default scale 1
    assert list(result.items) == NEWS2_KEYS
    assert (result.total, result.band, result.risk) == (0, "low", "low")


@pytest.mark.parametrize(("changes", "total", "risk"), [
    ({}, 0, "low"),
    ({"pulse": 91}, 1, "low"),
    ({"respiration_rate": 22, "pulse": 111}, 4, "low"),                       # 4, no single 3
    ({"respiration_rate": 25}, 3, "low-medium"),                              # single 3
    ({"consciousness": "C"}, 3, "low-medium"),
    ({"respiration_rate": 25, "pulse": 91}, 4, "low-medium"),                 # 4 with a 3
    ({"respiration_rate": 25, "pulse": 111}, 5, "medium"),                    # 5 with a 3
    ({"respiration_rate": 22, "pulse": 111, "temperature": 38.5}, 5, "medium"),
    ({"respiration_rate": 22, "pulse": 111, "systolic_bp": 95}, 6, "medium"),
    ({"respiration_rate": 25, "pulse": 131}, 6, "medium"),
    ({"respiration_rate": 25, "pulse": 131, "temperature": 38.5}, 7, "high"),
    ({"respiration_rate": 22, "pulse": 111, "systolic_bp": 95, "temperature": 38.5}, 7, "high"),
    ({"respiration_rate": 8, "spo2": 91, "supplemental_oxygen": True, "systolic_bp": 90,
      "pulse": 131, "consciousness": "U", "temperature": 35.0}, 20, "high"),
])
def test_news2_risk(changes: dict[str, Any], total: int, risk: str) -> None:
    result = get_scale("news2").score(news2(**changes))
    assert (result.total, result.risk, result.band) == (total, risk, risk)


# docs/clinical-rules.md s1 worked checks: RR, SpO2, scale, oxygen, SBP, pulse, ACVPU, temperature.
NEWS2_WORKED_CHECKS = [
    (18, 97, 1, False, 128, 88, "A", 37.2, 0, "low"),
    (22, 96, 1, False, 150, 112, "A", 37.9, 4, "low"),
    (26, 96, 1, False, 120, 80, "A", 36.8, 3, "low-medium"),
    (18, 95, 1, False, 135, 105, "C", 38.3, 6, "medium"),
    (8, 90, 1, True, 98, 52, "V", 35.8, 14, "high"),
    (20, 93, 2, False, 115, 92, "A", 36.0, 2, "low"),
    (20, 93, 2, True, 115, 92, "A", 36.0, 5, "medium"),
]


@pytest.mark.parametrize(("rr", "spo2", "spo2_scale", "oxygen", "sbp", "pulse", "acvpu", "temp",
                          "total", "risk"), NEWS2_WORKED_CHECKS)
def test_news2_worked_checks(rr: int, spo2: int, spo2_scale: int, oxygen: bool, sbp: int,
                             pulse: int, acvpu: str, temp: float, total: int, risk: str) -> None:
    result = get_scale("news2").score({
        "respiration_rate": rr, "spo2": spo2, "spo2_scale": spo2_scale,
        "supplemental_oxygen": oxygen, "systolic_bp": sbp, "pulse": pulse,
        "consciousness": acvpu, "temperature": temp})
    assert (result.total, result.risk, result.band) == (total, risk, risk)


# -------------------------------------------------------------------------------- NEWS2 validation

@pytest.mark.parametrize(("key", "bad"), [
    ("respiration_rate", -1), ("respiration_rate", 81), ("respiration_rate", True),
    ("respiration_rate", "18"), ("respiration_rate", 18.5), ("respiration_rate", None),
    ("spo2", 49), ("spo2", 101), ("spo2", True), ("spo2", "97"), ("spo2", 96.5),
    ("spo2_scale", 0), ("spo2_scale", 3), ("spo2_scale", True), ("spo2_scale", "2"),
    ("supplemental_oxygen", 1), ("supplemental_oxygen", 0), ("supplemental_oxygen", "true"),
    ("supplemental_oxygen", "yes"), ("supplemental_oxygen", None),
    ("systolic_bp", 39), ("systolic_bp", 301), ("systolic_bp", True), ("systolic_bp", "120"),
    ("pulse", 19), ("pulse", 251), ("pulse", False), ("pulse", 70.5),
    ("consciousness", "a"), ("consciousness", "X"), ("consciousness", ""),
    ("consciousness", "Alert"), ("consciousness", 0), ("consciousness", None),
    ("temperature", 24.9), ("temperature", 45.1), ("temperature", 37.25), ("temperature", 36.05),
    ("temperature", 38.01), ("temperature", "37.2"), ("temperature", True),
    ("temperature", math.nan), ("temperature", math.inf), ("temperature", None),
])
def test_news2_bad_values_refused(key: str, bad: Any) -> None:
    assert list(errors_of("news2", news2(**{key: bad}))) == [key]


def test_news2_two_decimal_temperature_message() -> None:
    errors = errors_of("news2", news2(temperature=37.25))
    assert errors == {"temperature": ["Must have at most 1 decimal place."]}


@pytest.mark.parametrize("key", NEWS2_SCORED_KEYS)
def test_news2_missing_input_named(key: str) -> None:
    raw = dict(NEWS2_BASE)
    del raw[key]
    errors = errors_of("news2", raw)
    assert list(errors) == [key] and errors[key][0] == REQUIRED


def test_news2_temperature_normalized_to_one_decimal_number() -> None:
    items = get_scale("news2").validate(news2(temperature=37))
    assert items["temperature"] == 37.0 and isinstance(items["temperature"], float)


@pytest.mark.parametrize(("age", "pregnant", "expected"), [
    (None, None, []),
    (16, None, []),
    (40, False, []),
    (15, None, ["16"]),
    (40, True, ["pregnan"]),
    (15, True, ["16", "pregnan"]),
])
def test_news2_population_warnings(age: int | None, pregnant: bool | None,
                                   expected: list[str]) -> None:
    result = get_scale("news2").score(NEWS2_BASE, age=age, pregnant=pregnant)
    assert len(result.warnings) == len(expected)
    for warning, words in zip(result.warnings, expected):
        assert words in warning
    assert ("warnings" in result.to_dict()) == bool(expected)


def test_other_scales_ignore_population() -> None:
    assert get_scale("ciwa-ar").score(zeros("ciwa-ar"), age=12, pregnant=True).warnings == ()


# ------------------------------------------------------------------------------------ result shape

def test_result_to_dict_shapes() -> None:
    ciwa = get_scale("ciwa-ar").score({**zeros("ciwa-ar"), "tremor": 4, "orientation": 4})
    assert ciwa.to_dict() == {
        "scale": "ciwa-ar", "total": 8, "band": "moderate",
        "item_scores": {**zeros("ciwa-ar"), "tremor": 4, "orientation": 4},
    }
    news = get_scale("news2").score(news2(respiration_rate=25)).to_dict()
    assert set(news) == {"scale", "total", "band", "item_scores", "risk"}
    assert (news["scale"], news["total"], news["band"], news["risk"]) == \
        ("news2", 3, "low-medium", "low-medium")
    json.dumps(news)


# ------------------------------------------------------------------------------- tablet form input

def test_parse_form_turns_strings_into_typed_input() -> None:
    scale = get_scale("news2")
    form = {"respiration_rate": "18", "spo2": "97", "spo2_scale": "",
            "supplemental_oxygen": "false", "systolic_bp": "128", "pulse": "88",
            "consciousness": "A", "temperature": "37.2"}
    result = scale.score(scale.parse_form(form))
    assert (result.total, result.items["spo2_scale"], result.items["temperature"]) == (0, 1, 37.2)
    cows_form = {key: "0" for key in EXPECTED_CHOICES["cows"] if key != "resting_pulse"}
    cows = get_scale("cows")
    assert cows.score(cows.parse_form({**cows_form, "resting_pulse_bpm": "101"})).total == 2


@pytest.mark.parametrize(("key", "text"), [
    ("temperature", "37.25"), ("pulse", "abc"), ("supplemental_oxygen", "maybe"),
    ("respiration_rate", ""), ("consciousness", "x"),
])
def test_parse_form_bad_strings_still_refused(key: str, text: str) -> None:
    scale = get_scale("news2")
    form = {k: str(v) for k, v in NEWS2_BASE.items()} | {"supplemental_oxygen": "false", key: text}
    assert list(errors_of("news2", scale.parse_form(form))) == [key]
