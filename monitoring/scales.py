"""Observation scales: one declarative definition each, from which validation, scoring,
the API description and the tablet form all derive.

Clinical source of truth: /work/shared/CLINICAL.md sections 1 (scales) and 2 (schedules).
Item keys, allowed values, band codes and thresholds are a public API contract.
Pure Python and marshmallow only: no Flask, no SQLAlchemy.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, Literal

from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow import validate as mm_validate

__all__ = [
    "Alternative",
    "Band",
    "CIWA_EMERGENCY_TOTAL",
    "Choice",
    "GMAWS_URGENT_REVIEW_TOTAL",
    "Item",
    "PointsTable",
    "SCALES",
    "Scale",
    "ScaleValidationError",
    "ScoreResult",
    "SingleItemRule",
    "UnknownScale",
    "check_bands",
    "default_interval_minutes",
    "get_scale",
    "grace_minutes",
    "news2_monitoring_minutes",
]

Kind = Literal["choice", "number", "boolean"]
ChoiceValue = int | str | bool

REQUIRED_MESSAGE = "Missing data for required field."

# CLINICAL.md s1 CIWA-Ar: "Emergency: 20 or more (consider transfer)". A threshold, not a band.
CIWA_EMERGENCY_TOTAL = 20
# CLINICAL.md s1 GMAWS (NHS GGC): 8 or more persisting beyond an hour -> urgent medical review.
GMAWS_URGENT_REVIEW_TOTAL = 8


# --------------------------------------------------------------------------- errors

class UnknownScale(LookupError):
    """No scale has this code."""

    type = "unknown-scale"

    def __init__(self, code: str) -> None:
        super().__init__(f"Unknown scale: {code!r}")
        self.code = code


class ScaleValidationError(ValueError):
    """The input does not fit the scale; ``errors`` maps each item key to its messages."""

    type = "scale-validation"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("Invalid scale input: " + ", ".join(sorted(errors)))
        self.errors = errors


# --------------------------------------------------------------------------- definitions

@dataclass(frozen=True)
class Choice:
    """One allowed value of a choice item; ``points`` defaults to the value itself."""

    value: ChoiceValue
    label: str
    points: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON description of the choice."""
        return {"value": self.value, "label": self.label}


@dataclass(frozen=True)
class PointsTable:
    """Points by inclusive range: rows of (low or None, high or None, points)."""

    rows: tuple[tuple[int | Decimal | None, int | Decimal | None, int], ...]

    def __call__(self, value: int | float | Decimal) -> int:
        """Points for a value; a float is compared as its shortest decimal form."""
        number = value if isinstance(value, (int, Decimal)) else Decimal(str(value))
        for low, high, points in self.rows:
            if (low is None or number >= low) and (high is None or number <= high):
                return points
        raise ValueError(f"{value!r} falls outside every row of the points table")

    def describe(self) -> str:
        """Human-readable rows, e.g. '<=8: 3, 9-11: 1, >=25: 3'."""
        parts = []
        for low, high, points in self.rows:
            if low is None:
                span = f"<={high}"
            elif high is None:
                span = f">={low}"
            elif low == high:
                span = f"{low}"
            else:
                span = f"{low}-{high}"
            parts.append(f"{span}: {points}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Alternative:
    """Another input from which an item's score is derived (COWS resting pulse in bpm)."""

    key: str
    label: str
    minimum: int
    maximum: int
    unit: str
    derive: Callable[[int], int]

    def to_dict(self) -> dict[str, Any]:
        """JSON description of the alternative input."""
        return {"key": self.key, "label": self.label, "kind": "number",
                "minimum": self.minimum, "maximum": self.maximum, "step": 1, "unit": self.unit}


@dataclass(frozen=True)
class Item:
    """One input of a scale."""

    key: str
    label: str
    kind: Kind = "choice"
    choices: tuple[Choice, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    step: int | float | None = None
    unit: str | None = None
    help: str = ""
    required: bool = True
    default: Any = None
    scored: bool = True
    # Points for a (normalized) value given all normalized values; None: choice points/value.
    points: Callable[[Any, Mapping[str, Any]], int] | None = None
    alternative: Alternative | None = None

    @property
    def allowed_values(self) -> tuple[ChoiceValue, ...]:
        """Values a choice or boolean item accepts."""
        return tuple(choice.value for choice in self.choices)

    @property
    def places(self) -> int:
        """Decimal places a number item accepts (0 for integers)."""
        exponent = Decimal(str(self.step if self.step is not None else 1)).as_tuple().exponent
        return max(0, -int(exponent))

    def allowed_text(self) -> str:
        """What the item accepts, in words, appended to a missing-item error."""
        if self.kind == "number":
            text = f"Allowed: {self.minimum} to {self.maximum}"
            if self.places:
                text += f" ({self.places} decimal place{'s' if self.places > 1 else ''} at most)"
            text += "."
        else:
            text = "Allowed values: " + ", ".join(_text(v) for v in self.allowed_values) + "."
        if self.alternative is not None:
            alt = self.alternative
            text += f" Or give {alt.key} ({alt.minimum} to {alt.maximum} {alt.unit})."
        return text

    def field(self) -> fields.Field:
        """The marshmallow field validating this item."""
        # Required is enforced by Scale.validate when another input may stand in.
        required = self.required and self.alternative is None
        extra: dict[str, Any] = {"required": required}
        if self.default is not None:
            extra["load_default"] = self.default
        if self.kind == "boolean":
            return _StrictBoolean(**extra)
        if self.kind == "number":
            if self.places == 0:
                return _StrictInteger(
                    validate=mm_validate.Range(self.minimum, self.maximum), **extra)
            return _StrictDecimal(
                places=self.places,
                validate=mm_validate.Range(Decimal(str(self.minimum)), Decimal(str(self.maximum))),
                **extra,
            )
        values = list(self.allowed_values)
        field_class = _StrictString if isinstance(values[0], str) else _StrictInteger
        return field_class(validate=mm_validate.OneOf(values), **extra)

    def score_for(self, value: Any, items: Mapping[str, Any]) -> int:
        """Points this item contributes for a normalized value."""
        if self.points is not None:
            return self.points(value, items)
        for choice in self.choices:
            # Same type too: True must not match a choice of 1.
            if choice.value == value and type(choice.value) is type(value):
                return choice.points if choice.points is not None else int(choice.value)
        raise ValueError(f"{self.key}: no points for {value!r}")

    def max_points(self) -> int | None:
        """Highest points of a choice item (None when points come from a function)."""
        if self.points is not None or not self.choices:
            return None
        return max(c.points if c.points is not None else int(c.value) for c in self.choices)

    def to_dict(self) -> dict[str, Any]:
        """JSON description of the item for the API and the tablet form."""
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "choices": [choice.to_dict() for choice in self.choices],
            "minimum": self.minimum,
            "maximum": self.maximum,
            "step": self.step,
            "unit": self.unit,
            "help": self.help,
            "required": self.required,
            "default": self.default,
            "alternative": self.alternative.to_dict() if self.alternative else None,
        }


@dataclass(frozen=True)
class Band:
    """A named inclusive range of totals."""

    code: str
    label: str
    low: int
    high: int

    def to_dict(self) -> dict[str, Any]:
        """JSON description of the band."""
        return {"code": self.code, "label": self.label, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class SingleItemRule:
    """A band reached by one item alone: if the total's band is ``from_band`` and any single
    item scores ``points`` or more, the band becomes ``code`` (NEWS2 low-medium)."""

    from_band: str
    points: int
    code: str
    label: str

    def to_dict(self) -> dict[str, Any]:
        """JSON description of the rule."""
        return {"from_band": self.from_band, "points": self.points,
                "code": self.code, "label": self.label}


@dataclass(frozen=True)
class ScoreResult:
    """A scored observation."""

    scale: str
    total: int
    band: str
    item_scores: dict[str, int]
    risk: str | None
    items: dict[str, Any]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON result: scale, total, band, item_scores; risk for NEWS2; warnings if any."""
        out: dict[str, Any] = {"scale": self.scale, "total": self.total, "band": self.band,
                               "item_scores": dict(self.item_scores)}
        if self.risk is not None:
            out["risk"] = self.risk
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def check_bands(bands: Sequence[Band], max_total: int) -> tuple[Band, ...]:
    """Return bands sorted by ``low``; raise ValueError unless they tile 0..max_total exactly."""
    ordered = tuple(sorted(bands, key=lambda band: band.low))
    if not ordered:
        raise ValueError("no bands given")
    codes = [band.code for band in ordered]
    if len(set(codes)) != len(codes):
        raise ValueError(f"band codes repeat: {codes}")
    expected_low = 0
    for band in ordered:
        if band.low > band.high:
            raise ValueError(f"band {band.code!r}: low {band.low} above high {band.high}")
        if band.low != expected_low:
            raise ValueError(f"band {band.code!r} starts at {band.low}, expected {expected_low}")
        expected_low = band.high + 1
    if expected_low != max_total + 1:
        raise ValueError(f"bands end at {expected_low - 1}, expected {max_total}")
    return ordered


@dataclass(frozen=True)
class Scale:
    """A scale definition: its items, default bands and how its total is read."""

    code: str
    name: str
    substance: Literal["alcohol", "opioids"] | None
    rater: Literal["clinician", "self"]
    items: tuple[Item, ...]
    bands: tuple[Band, ...]
    max_total: int
    single_item_rule: SingleItemRule | None = None
    reports_risk: bool = False  # NEWS2: the band is the clinical risk
    min_age: int | None = None  # validated only from this age (NEWS2: 16)
    valid_in_pregnancy: bool = True

    def __post_init__(self) -> None:
        check_bands(self.bands, self.max_total)
        keys = [item.key for item in self.items]
        keys += [item.alternative.key for item in self.items if item.alternative]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.code}: item keys repeat")
        # Where every item's points are fixed choices, their maxima must add up to max_total.
        maxima = [item.max_points() for item in self.items if item.scored]
        if None not in maxima:
            reachable = sum(m for m in maxima if m is not None)
            if reachable != self.max_total:
                raise ValueError(f"{self.code}: items add up to {reachable}, not {self.max_total}")

    def item(self, key: str) -> Item:
        """The item with this key (KeyError if none)."""
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(key)

    @cached_property
    def _schema_class(self) -> type[Schema]:
        declared: dict[str, fields.Field] = {}
        for item in self.items:
            declared[item.key] = item.field()
            if item.alternative is not None:
                alt = item.alternative
                declared[alt.key] = _StrictInteger(
                    validate=mm_validate.Range(alt.minimum, alt.maximum))
        name = "".join(part.capitalize() for part in re.split(r"[^a-z0-9]+", self.code)) + "Schema"
        return _ScaleSchema.from_dict(declared, name=name)

    @cached_property
    def _schema(self) -> Schema:
        return self._schema_class()  # kept: a schema holds no state between loads

    def schema(self) -> Schema:
        """A marshmallow schema for the raw input (required items, unknown fields raise)."""
        return self._schema

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Normalized item values, or ScaleValidationError naming every bad item."""
        errors: dict[str, list[str]] = {}
        loaded: dict[str, Any] = {}
        try:
            loaded = self.schema().load(raw)
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            errors = {key: list(value) if isinstance(value, list) else [str(value)]
                      for key, value in messages.items()}
        if isinstance(raw, Mapping):
            for item in self.items:
                alt = item.alternative
                if alt is None:
                    continue
                if item.key in raw and alt.key in raw:
                    errors.setdefault(alt.key, []).append(
                        f"Give either {item.key} or {alt.key}, not both.")
                elif item.key not in raw and alt.key not in raw:
                    errors.setdefault(item.key, []).append(REQUIRED_MESSAGE)
        for key, messages in errors.items():
            if REQUIRED_MESSAGE in messages:
                messages.append(self.item(key).allowed_text())
        if errors:
            raise ScaleValidationError(errors)
        normalized: dict[str, Any] = {}
        for item in self.items:
            alt = item.alternative
            if alt is not None and alt.key in loaded:
                normalized[item.key] = alt.derive(loaded[alt.key])
                normalized[alt.key] = loaded[alt.key]
            else:
                normalized[item.key] = _jsonable(loaded[item.key])
        return normalized

    def band_for(self, total: int, bands: Sequence[Band] | None = None) -> str:
        """Code of the band holding this total (unit bands if given, else the defaults)."""
        for band in (check_bands(bands, self.max_total) if bands is not None else self.bands):
            if band.low <= total <= band.high:
                return band.code
        raise ValueError(f"{self.code}: total {total} outside 0-{self.max_total}")

    def score(self, raw: Mapping[str, Any], bands: Sequence[Band] | None = None, *,
              age: int | None = None, pregnant: bool | None = None) -> ScoreResult:
        """Validate then score; ``bands`` are the unit protocol's, if it overrides the defaults."""
        items = self.validate(raw)
        item_scores = {item.key: item.score_for(items[item.key], items)
                       for item in self.items if item.scored}
        total = sum(item_scores.values())
        band = self.band_for(total, bands)
        rule = self.single_item_rule
        if rule is not None and band == rule.from_band and any(
                points >= rule.points for points in item_scores.values()):
            band = rule.code
        warnings: list[str] = []
        if self.min_age is not None and age is not None and age < self.min_age:
            warnings.append(f"{self.name} is not validated under age {self.min_age}: "
                            "use clinical judgement.")
        if not self.valid_in_pregnancy and pregnant is True:
            warnings.append(f"{self.name} is not validated in pregnancy: use clinical judgement.")
        return ScoreResult(scale=self.code, total=total, band=band, item_scores=item_scores,
                           risk=band if self.reports_risk else None, items=items,
                           warnings=tuple(warnings))

    def parse_form(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Turn posted form strings into typed raw input for validate(); blanks count as absent.

        Strings that do not parse are passed on unchanged so validate() reports them, and
        keys that are not inputs of the scale are passed on too (strip CSRF tokens first).
        """
        kinds: dict[str, Item | Alternative] = {}
        for item in self.items:
            kinds[item.key] = item
            if item.alternative is not None:
                kinds[item.alternative.key] = item.alternative
        raw: dict[str, Any] = {}
        for key, value in form.items():
            if isinstance(value, str) and value.strip() == "":
                continue
            target = kinds.get(key)
            raw[key] = _parse_form_value(target, value) if target is not None else value
        return raw

    def to_dict(self, bands: Sequence[Band] | None = None) -> dict[str, Any]:
        """JSON description for GET /api/v1/scales (with a unit's bands, if given)."""
        shown = check_bands(bands, self.max_total) if bands is not None else self.bands
        return {
            "code": self.code,
            "name": self.name,
            "substance": self.substance,
            "rater": self.rater,
            "max_total": self.max_total,
            "bands": [band.to_dict() for band in shown],
            "single_item_rule": self.single_item_rule.to_dict() if self.single_item_rule else None,
            "items": [item.to_dict() for item in self.items],
        }


# --------------------------------------------------------------------------- strict fields
# JSON input must carry real types: True is not 1, "3" is not 3 (forms go through parse_form).

class _StrictInteger(fields.Field):
    default_error_messages = {"invalid": "Not a valid integer."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class _StrictString(fields.Field):
    default_error_messages = {"invalid": "Not a valid string."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value


class _StrictBoolean(fields.Field):
    default_error_messages = {"invalid": "Not a valid boolean (true or false)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class _StrictDecimal(fields.Field):
    default_error_messages = {
        "invalid": "Not a valid number.",
        "places": "Must have at most {places} decimal place{plural}.",
    }

    def __init__(self, *, places: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.places = places

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise self.make_error("invalid")
        # str() of a float is its shortest round-trip form: 37.2 -> "37.2", exact in Decimal.
        number = Decimal(str(value))
        if not number.is_finite():
            raise self.make_error("invalid")
        if -int(number.as_tuple().exponent) > self.places and number != round(number, self.places):
            plural = "" if self.places == 1 else "s"
            raise self.make_error("places", places=self.places, plural=plural)
        return round(number, self.places)


class _ScaleSchema(Schema):
    class Meta:
        unknown = RAISE


def _jsonable(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _text(value: ChoiceValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse_form_value(target: Item | Alternative, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if isinstance(target, Alternative):
        return int(text) if _INT_RE.match(text) else value
    if target.kind == "boolean":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else value
    if target.kind == "number" and target.places:
        try:
            number = Decimal(text)
        except InvalidOperation:
            return value
        return float(number) if number.is_finite() else value
    if target.kind == "number" or not isinstance(target.allowed_values[0], str):
        return int(text) if _INT_RE.match(text) else value
    return text


# --------------------------------------------------------------------------- builders

def _anchored(maximum: int, anchors: Mapping[int, str]) -> tuple[Choice, ...]:
    """Every integer 0..maximum; anchors carry descriptors, values between show the number."""
    return tuple(Choice(value, anchors.get(value, str(value))) for value in range(maximum + 1))


def _listed(labels: Mapping[int, str]) -> tuple[Choice, ...]:
    """Exactly the listed values (COWS: gaps between values are not allowed)."""
    return tuple(Choice(value, label) for value, label in labels.items())


# --------------------------------------------------------------------------- CIWA-Ar
# Sullivan JT et al. 1989, Br J Addict 84:1353 (public domain); CLINICAL.md s1.

_HALLUCINATION_GRADES = {4: "Moderately severe hallucinations", 5: "Severe hallucinations",
                         6: "Extremely severe hallucinations", 7: "Continuous hallucinations"}

CIWA_AR = Scale(
    code="ciwa-ar",
    name="CIWA-Ar",
    substance="alcohol",
    rater="clinician",
    max_total=67,
    items=(
        Item("nausea_vomiting", "Nausea and vomiting", choices=_anchored(7, {
            0: "No nausea and no vomiting",
            1: "Mild nausea with no vomiting",
            4: "Intermittent nausea with dry heaves",
            7: "Constant nausea, frequent dry heaves and vomiting",
        }), help='Ask "Do you feel sick to your stomach? Have you vomited?" Observation.'),
        Item("tremor", "Tremor", choices=_anchored(7, {
            0: "No tremor",
            1: "Not visible, but can be felt fingertip to fingertip",
            4: "Moderate, with arms extended",
            7: "Severe, even with arms not extended (at rest)",
        }), help="Arms extended and fingers spread apart. Observation."),
        Item("paroxysmal_sweats", "Paroxysmal sweats", choices=_anchored(7, {
            0: "No sweat visible",
            1: "Barely perceptible sweating, palms moist",
            4: "Beads of sweat obvious on forehead",
            7: "Drenching sweats",
        }), help="Observation."),
        Item("anxiety", "Anxiety", choices=_anchored(7, {
            0: "No anxiety, at ease",
            1: "Mildly anxious",
            4: "Moderately anxious, or guarded, so anxiety is inferred",
            7: "Equivalent to acute panic states",
        }), help='Ask "Do you feel nervous?" Observation.'),
        Item("agitation", "Agitation", choices=_anchored(7, {
            0: "Normal activity",
            1: "Somewhat more than normal activity",
            4: "Moderately fidgety and restless",
            7: "Paces back and forth, or constantly thrashes about",
        }), help="Observation."),
        Item("tactile_disturbances", "Tactile disturbances", choices=_anchored(7, {
            0: "None",
            1: "Very mild itching, pins and needles, burning or numbness",
            2: "Mild itching, pins and needles, burning or numbness",
            3: "Moderate itching, pins and needles, burning or numbness",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Have you any itching, pins and needles, burning or numbness, '
                 'or do you feel bugs crawling on or under your skin?"'),
        Item("auditory_disturbances", "Auditory disturbances", choices=_anchored(7, {
            0: "Not present",
            1: "Very mild harshness or ability to frighten",
            2: "Mild harshness or ability to frighten",
            3: "Moderate harshness or ability to frighten",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Are you more aware of sounds around you? Are they harsh? Do they '
                 'frighten you? Are you hearing anything that disturbs you?"'),
        Item("visual_disturbances", "Visual disturbances", choices=_anchored(7, {
            0: "Not present",
            1: "Very mild sensitivity",
            2: "Mild sensitivity",
            3: "Moderate sensitivity",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Does the light appear too bright? Is its colour different? Does it hurt '
                 'your eyes? Are you seeing anything that disturbs you?"'),
        Item("headache", "Headache, fullness in head", choices=_anchored(7, {
            0: "Not present",
            1: "Very mild",
            2: "Mild",
            3: "Moderate",
            4: "Moderately severe",
            5: "Severe",
            6: "Very severe",
            7: "Extremely severe",
        }), help='Ask "Does your head feel different? Does it feel like there is a band around '
                 'your head?" Do not rate dizziness or light-headedness.'),
        Item("orientation", "Orientation and clouding of sensorium", choices=_anchored(4, {
            0: "Oriented and can do serial additions",
            1: "Cannot do serial additions or is uncertain about date",
            2: "Disoriented for date by no more than 2 calendar days",
            3: "Disoriented for date by more than 2 calendar days",
            4: "Disoriented for place and/or person",
        }), help='Ask "What day is this? Where are you? Who am I?"'),
    ),
    # CLINICAL.md s1 defaults; alternatives (severe from 15, minimal to 10, US 10-18/19+)
    # are unit protocol overrides passed to score(bands=...).
    bands=(
        Band("minimal", "Minimal", 0, 7),
        Band("moderate", "Moderate", 8, 15),
        Band("severe", "Severe", 16, 67),
    ),
)


# --------------------------------------------------------------------------- COWS
# Wesson DR, Ling W 2003, J Psychoactive Drugs 35:253; CLINICAL.md s1.

# COWS resting pulse: <=80 -> 0, 81-100 -> 1, 101-120 -> 2, >120 -> 4.
COWS_PULSE_POINTS = PointsTable(((None, 80, 0), (81, 100, 1), (101, 120, 2), (121, None, 4)))

COWS = Scale(
    code="cows",
    name="COWS",
    substance="opioids",
    rater="clinician",
    max_total=48,
    items=(
        Item("resting_pulse", "Resting pulse rate", choices=_listed({
            0: "Pulse rate 80 or below",
            1: "Pulse rate 81-100",
            2: "Pulse rate 101-120",
            4: "Pulse rate greater than 120",
        }), help="Beats per minute, after sitting or lying for one minute. "
                 "Give the score, or resting_pulse_bpm and the score is derived.",
            alternative=Alternative("resting_pulse_bpm", "Resting pulse (beats per minute)",
                                    20, 250, "/min", COWS_PULSE_POINTS)),
        Item("sweating", "Sweating", choices=_listed({
            0: "No report of chills or flushing",
            1: "Subjective report of chills or flushing",
            2: "Flushed or observable moistness on face",
            3: "Beads of sweat on brow or face",
            4: "Sweat streaming off face",
        }), help="Over the past half hour, not accounted for by room temperature or activity."),
        Item("restlessness", "Restlessness", choices=_listed({
            0: "Able to sit still",
            1: "Reports difficulty sitting still, but is able to do so",
            3: "Frequent shifting or extraneous movements of legs or arms",
            5: "Unable to sit still for more than a few seconds",
        }), help="Observation during assessment."),
        Item("pupil_size", "Pupil size", choices=_listed({
            0: "Pupils pinned or normal size for room light",
            1: "Pupils possibly larger than normal for room light",
            2: "Pupils moderately dilated",
            5: "Pupils so dilated that only the rim of the iris is visible",
        })),
        Item("bone_joint_aches", "Bone or joint aches", choices=_listed({
            0: "Not present",
            1: "Mild diffuse discomfort",
            2: "Reports severe diffuse aching of joints or muscles",
            4: "Rubbing joints or muscles and unable to sit still because of discomfort",
        }), help="If pain was present before, score only the part attributed to withdrawal."),
        Item("runny_nose_tearing", "Runny nose or tearing", choices=_listed({
            0: "Not present",
            1: "Nasal stuffiness or unusually moist eyes",
            2: "Nose running or tearing",
            4: "Nose constantly running or tears streaming down cheeks",
        }), help="Not accounted for by cold symptoms or allergies."),
        Item("gi_upset", "GI upset", choices=_listed({
            0: "No GI symptoms",
            1: "Stomach cramps",
            2: "Nausea or loose stool",
            3: "Vomiting or diarrhoea",
            5: "Multiple episodes of diarrhoea or vomiting",
        }), help="Over the last half hour."),
        Item("tremor", "Tremor", choices=_listed({
            0: "No tremor",
            1: "Tremor can be felt, but not observed",
            2: "Slight tremor observable",
            4: "Gross tremor or muscle twitching",
        }), help="Observation of outstretched hands."),
        Item("yawning", "Yawning", choices=_listed({
            0: "No yawning",
            1: "Yawning once or twice during assessment",
            2: "Yawning three or more times during assessment",
            4: "Yawning several times a minute",
        }), help="Observation during assessment."),
        Item("anxiety_irritability", "Anxiety or irritability", choices=_listed({
            0: "None",
            1: "Reports increasing irritability or anxiousness",
            2: "Obviously irritable or anxious",
            4: "So irritable or anxious that taking part in the assessment is difficult",
        })),
        Item("gooseflesh", "Gooseflesh skin", choices=_listed({
            0: "Skin is smooth",
            3: "Piloerection can be felt or hairs standing up on arms",
            5: "Prominent piloerection",
        })),
    ),
    bands=(
        Band("none", "No active withdrawal", 0, 4),
        Band("mild", "Mild", 5, 12),
        Band("moderate", "Moderate", 13, 24),
        Band("moderately_severe", "Moderately severe", 25, 36),
        Band("severe", "Severe", 37, 48),
    ),
)


# --------------------------------------------------------------------------- SOWS
# Handelsman L et al. 1987, Am J Drug Alcohol Abuse 13:293 (16 items; not Gossop's SOWS).

_SOWS_CHOICES = _listed({0: "Not at all", 1: "A little", 2: "Moderately",
                         3: "Quite a bit", 4: "Extremely"})

SOWS = Scale(
    code="sows",
    name="SOWS",
    substance="opioids",
    rater="self",
    max_total=64,
    items=tuple(Item(key, label, choices=_SOWS_CHOICES, help="How do you feel right now?")
                for key, label in (
        ("anxious", "I feel anxious"),
        ("yawning", "I feel like yawning"),
        ("perspiring", "I am perspiring"),
        ("tearing", "My eyes are tearing"),
        ("runny_nose", "My nose is running"),
        ("goose_flesh", "I have goosebumps"),
        ("shaking", "I am shaking"),
        ("hot_flushes", "I have hot flushes"),
        ("cold_flushes", "I have cold flushes"),
        ("aches", "My bones and muscles ache"),
        ("restless", "I feel restless"),
        ("nauseous", "I feel nauseous"),
        ("vomiting", "I feel like vomiting"),
        ("twitching", "My muscles twitch"),
        ("stomach_cramps", "I have stomach cramps"),
        ("craving", "I feel like using now"),
    )),
    # No published bands: CLINICAL.md s1 local defaults, always shown with the raw total.
    bands=(
        Band("none", "None", 0, 0),
        Band("mild", "Mild", 1, 10),
        Band("moderate", "Moderate", 11, 20),
        Band("severe", "Severe", 21, 64),
    ),
)


# --------------------------------------------------------------------------- GMAWS
# Glasgow Modified Alcohol Withdrawal Scale, NHS GGC alcohol guideline; CLINICAL.md s1.

GMAWS = Scale(
    code="gmaws",
    name="GMAWS",
    substance="alcohol",
    rater="clinician",
    max_total=10,
    items=(
        Item("tremor", "Tremor",
             choices=_listed({0: "No tremor", 1: "On movement", 2: "At rest"})),
        Item("sweating", "Sweating",
             choices=_listed({0: "No sweating", 1: "Moist", 2: "Drenching"})),
        Item("hallucinations", "Hallucinations",
             choices=_listed({0: "None", 1: "Mild or distractable",
                              2: "Continuous or distressed"})),
        Item("orientation", "Orientation",
             choices=_listed({0: "Oriented", 1: "Uncertain", 2: "Disoriented"})),
        Item("agitation", "Agitation",
             choices=_listed({0: "Calm", 1: "Anxious", 2: "Distressed or pacing"})),
    ),
    bands=(
        Band("mild", "Mild", 0, 3),
        Band("moderate", "Moderate", 4, 7),
        Band("severe", "Severe", 8, 10),
    ),
)


# --------------------------------------------------------------------------- NEWS2
# Royal College of Physicians, National Early Warning Score 2 (2017), chart 1; CLINICAL.md s1.

NEWS2_RESPIRATION = PointsTable(((None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3)))
NEWS2_SPO2_SCALE_1 = PointsTable(((None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)))
# RCP chart 1, SpO2 scale 2 (target 88-92%): on air, 93 and above scores 0.
NEWS2_SPO2_SCALE_2_AIR = PointsTable(((None, 83, 3), (84, 85, 2), (86, 87, 1), (88, None, 0)))
NEWS2_SPO2_SCALE_2_OXYGEN = PointsTable(((None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0),
                                         (93, 94, 1), (95, 96, 2), (97, None, 3)))
NEWS2_SYSTOLIC = PointsTable(((None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0),
                              (220, None, 3)))
NEWS2_PULSE = PointsTable(((None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2),
                           (131, None, 3)))
# One-decimal bands, compared as Decimal so 36.0 / 36.1 never fall between floats.
NEWS2_TEMPERATURE = PointsTable((
    (None, Decimal("35.0"), 3),
    (Decimal("35.1"), Decimal("36.0"), 1),
    (Decimal("36.1"), Decimal("38.0"), 0),
    (Decimal("38.1"), Decimal("39.0"), 1),
    (Decimal("39.1"), None, 2),
))


def _news2_spo2_points(spo2: int, items: Mapping[str, Any]) -> int:
    if items["spo2_scale"] == 2:
        if items["supplemental_oxygen"]:
            return NEWS2_SPO2_SCALE_2_OXYGEN(spo2)
        return NEWS2_SPO2_SCALE_2_AIR(spo2)
    return NEWS2_SPO2_SCALE_1(spo2)


def _table_points(table: PointsTable) -> Callable[[Any, Mapping[str, Any]], int]:
    return lambda value, _items: table(value)


NEWS2 = Scale(
    code="news2",
    name="NEWS2",
    substance=None,
    rater="clinician",
    max_total=20,
    items=(
        Item("respiration_rate", "Respiration rate", kind="number", minimum=0, maximum=80,
             step=1, unit="/min", points=_table_points(NEWS2_RESPIRATION),
             help=f"Breaths per minute. Points: {NEWS2_RESPIRATION.describe()}."),
        Item("spo2", "SpO2", kind="number", minimum=50, maximum=100, step=1, unit="%",
             points=_news2_spo2_points,
             help=f"Scale 1 points: {NEWS2_SPO2_SCALE_1.describe()}. Scale 2 points: "
                  f"{NEWS2_SPO2_SCALE_2_OXYGEN.describe()} (93 and above score 0 on air)."),
        Item("spo2_scale", "SpO2 scale", choices=(
            Choice(1, "Scale 1"),
            Choice(2, "Scale 2 (recorded target 88-92%, e.g. hypercapnic respiratory failure)"),
        ), required=False, default=1, scored=False,
            help="Use scale 2 only for a target range of 88-92% recorded by a clinician."),
        Item("supplemental_oxygen", "Air or oxygen", kind="boolean", choices=(
            Choice(False, "Air", points=0),
            Choice(True, "Oxygen", points=2),
        ), help="Any supplemental oxygen scores 2."),
        Item("systolic_bp", "Systolic blood pressure", kind="number", minimum=40, maximum=300,
             step=1, unit="mmHg", points=_table_points(NEWS2_SYSTOLIC),
             help=f"Points: {NEWS2_SYSTOLIC.describe()}."),
        Item("pulse", "Pulse", kind="number", minimum=20, maximum=250, step=1, unit="/min",
             points=_table_points(NEWS2_PULSE), help=f"Points: {NEWS2_PULSE.describe()}."),
        Item("consciousness", "Consciousness", choices=(
            Choice("A", "Alert", points=0),
            Choice("C", "New confusion", points=3),
            Choice("V", "Responds to voice", points=3),
            Choice("P", "Responds to pain", points=3),
            Choice("U", "Unresponsive", points=3),
        ), help="ACVPU. New confusion, voice, pain or unresponsive each score 3."),
        Item("temperature", "Temperature", kind="number", minimum=25.0, maximum=45.0, step=0.1,
             unit="°C", points=_table_points(NEWS2_TEMPERATURE),
             help=f"One decimal place. Points: {NEWS2_TEMPERATURE.describe()}."),
    ),
    # RCP: aggregate 0-4 low, 5-6 medium, 7+ high; a single parameter scoring 3 -> low-medium.
    bands=(
        Band("low", "Low", 0, 4),
        Band("medium", "Medium", 5, 6),
        Band("high", "High", 7, 20),
    ),
    single_item_rule=SingleItemRule(from_band="low", points=3, code="low-medium",
                                    label="Low-medium (a single parameter scoring 3)"),
    reports_risk=True,
    # RCP: NEWS2 is not validated under 16 or in pregnancy.
    min_age=16,
    valid_in_pregnancy=False,
)


SCALES: dict[str, Scale] = {scale.code: scale for scale in (CIWA_AR, COWS, SOWS, GMAWS, NEWS2)}


def get_scale(code: str) -> Scale:
    """The scale with this code, or UnknownScale."""
    try:
        return SCALES[code]
    except (KeyError, TypeError):
        raise UnknownScale(code) from None


# --------------------------------------------------------------------------- schedules
# CLINICAL.md s2 observation schedule defaults (unit protocols may override).

NEWS2_RISKS = ("low", "low-medium", "medium", "high")


def news2_monitoring_minutes(risk: str, total: int) -> int:
    """Minimum NEWS2 interval: total 0 12 h, low 4 h, low-medium/medium 1 h, high 15 min."""
    # RCP NEWS2 chart 2 (clinical response); "continuous" for high is asked every 15 minutes here.
    if risk == "high":
        return 15
    if risk in ("medium", "low-medium"):
        return 60
    if risk == "low":
        return 720 if total == 0 else 240
    raise ValueError(f"Unknown NEWS2 risk: {risk!r}")


CIWA_MINIMAL_STREAK = 3  # CLINICAL.md s2: after 3 minimal in a row, every 8 h
CIWA_EXTENDED_MINUTES = 480

_DEFAULT_INTERVALS: dict[str, dict[str, int]] = {
    "ciwa-ar": {"severe": 60, "moderate": 120, "minimal": 240},
    "cows": {"severe": 60, "moderately_severe": 60, "moderate": 120, "mild": 240, "none": 240},
    "gmaws": {"severe": 60, "moderate": 120, "mild": 120},
    # Local default: CLINICAL.md s2 gives no SOWS schedule; every 4 h like COWS "otherwise".
    "sows": {"none": 240, "mild": 240, "moderate": 240, "severe": 240},
}


def default_interval_minutes(scale_code: str, band: str, consecutive_minimal: int = 0, *,
                             total: int | None = None) -> int:
    """Default minutes to the next observation after a result in ``band``.

    ``consecutive_minimal``: CIWA-Ar minimal results in a row ending with this one (this one
    included). ``total``: the NEWS2 total, which tells 0 (12 h) from 1-4 (4 h) in the low
    risk; without it a low NEWS2 gets the safer 4 h.
    """
    get_scale(scale_code)
    if scale_code == "news2":
        return news2_monitoring_minutes(band, 1 if total is None else total)
    try:
        minutes = _DEFAULT_INTERVALS[scale_code][band]
    except KeyError:
        raise ValueError(f"No default interval for {scale_code} band {band!r}") from None
    if scale_code == "ciwa-ar" and band == "minimal" and consecutive_minimal >= CIWA_MINIMAL_STREAK:
        return CIWA_EXTENDED_MINUTES
    return minutes


def grace_minutes(interval_minutes: int) -> int:
    """Minutes after due before an observation is missed: 15 for intervals up to 1 h, else 30."""
    if interval_minutes <= 0:
        raise ValueError("interval must be positive")
    return 15 if interval_minutes <= 60 else 30
