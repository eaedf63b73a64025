"""The scale machinery: items, bands, scoring, validation and the generated schemas.

Each scale (one module of this package) is a declaration of these classes, from which its
validation, scoring, API description and tablet form derive (docs/clinical-rules.md s1).
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

Kind = Literal["choice", "number", "boolean"]
ChoiceValue = int | str | bool

REQUIRED_MESSAGE = "Missing data for required field."


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

def anchored(maximum: int, anchors: Mapping[int, str]) -> tuple[Choice, ...]:
    """Every integer 0..maximum; anchors carry descriptors, values between show the number."""
    return tuple(Choice(value, anchors.get(value, str(value))) for value in range(maximum + 1))


def listed(labels: Mapping[int, str]) -> tuple[Choice, ...]:
    """Exactly the listed values (COWS: gaps between values are not allowed)."""
    return tuple(Choice(value, label) for value, label in labels.items())
