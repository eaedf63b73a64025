"""The monitoring package's sections of the unit protocol: what a unit may set, and the checks
that refuse anything else before it is stored (an unchecked band set made every later
observation of that scale fail).

Registered with ``unit.services.protocol_sections`` by config/app.py (unit never imports
monitoring). Defaults are docs/clinical-rules.md sections 1-3.
"""
from __future__ import annotations

from typing import Any

from monitoring.escalations import SEVERITY_RANK
from monitoring.rota import DUTY_LABELS
from monitoring.scales import CIWA_AR, SCALES, Band, Scale, check_bands, get_scale
from monitoring.schedules import NEWS2_RISKS, default_interval_minutes
from monitoring.settings import (
    ESCALATION_DEFAULTS,
    MONITORING_DEFAULTS,
    monitoring_settings,
    unit_bands,
)
from unit.envelope import at_most
from unit.services import ProtocolSection

Errors = dict[str, list[str]]

# Bounds a unit's own value must keep to (inclusive). Wider than any published protocol,
# narrow enough that a slip of the keyboard (600 for 60) is refused.
MONITORING_LIMITS: dict[str, tuple[int, int]] = {
    "not_done_retry_minutes": (5, 240),
    "refusals_to_escalate": (1, 10),
    "clock_skew_minutes": (0, 15),
    "initial_interval_minutes": (5, 1440),
}
INTERVAL_LIMITS = (5, 1440)       # an observation at least every 24 hours
TARGET_LIMITS = (1, 240)          # acknowledgement targets, minutes
MAX_LEVELS = 5


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_error(value: Any, low: int, high: int) -> list[str]:
    if not _is_int(value):
        return [f"Must be a whole number from {low} to {high}."]
    if not low <= value <= high:
        return [f"Must be from {low} to {high}."]
    return []


def _band_codes(scale: Scale) -> list[str]:
    return [band.code for band in scale.bands]


def _check_bands(scale: Scale, rows: Any) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """The unit's bands for one scale, sorted, or the reasons they are refused.

    The band names are the scale's own (schedules, escalation and PRN triggers key on them);
    only where each band starts and ends is the unit's to set, and together the bands must
    cover every total from 0 to the scale's maximum, without gaps or overlaps.
    """
    expected = _band_codes(scale)
    usage = (f"A list of {len(expected)} bands {{code, low, high, label?}} with the codes "
             f"{', '.join(expected)}, covering 0-{scale.max_total}.")
    if not isinstance(rows, list) or not rows:
        return None, [usage]
    labels = {band.code: band.label for band in scale.bands}
    bands, messages = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            messages.append(f"Band {index + 1}: must be an object {{code, low, high, label?}}.")
            continue
        unknown = sorted(set(row) - {"code", "label", "low", "high"})
        if unknown:
            messages.append(f"Band {index + 1}: unknown field(s) {', '.join(unknown)}.")
        code, label = row.get("code"), row.get("label", labels.get(row.get("code")))
        if not isinstance(code, str):
            messages.append(f"Band {index + 1}: code must be one of {', '.join(expected)}.")
            continue
        if not isinstance(label, str) or not label.strip() or len(label) > 60:
            messages.append(f"Band {code!r}: label must be a short text.")
        if not (_is_int(row.get("low")) and _is_int(row.get("high"))):
            messages.append(f"Band {code!r}: low and high must be whole numbers.")
            continue
        bands.append(Band(code, label if isinstance(label, str) else code, row["low"], row["high"]))
    codes = [band.code for band in bands]
    if not messages and sorted(codes) != sorted(expected):
        messages.append(f"The band codes must be exactly {', '.join(expected)} (given: "
                        f"{', '.join(codes)}); a unit sets where bands start and end, not their names.")
    if not messages:
        try:
            ordered = check_bands(bands, scale.max_total)
        except ValueError as gap:
            return None, [f"The bands must cover 0-{scale.max_total} without gaps or "
                          f"overlaps: {gap}."]
        if [band.code for band in ordered] != expected:
            messages.append(f"The bands must run in the order {', '.join(expected)} "
                            "(each higher than the one before).")
        else:
            return [band.to_dict() for band in ordered], []
    return None, messages


def _interval_bands(code: str) -> tuple[str, ...]:
    # NEWS2 schedules follow its risk, which includes low-medium (a single parameter of 3).
    return NEWS2_RISKS if code == "news2" else tuple(_band_codes(get_scale(code)))


def check_monitoring(values: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Check the ``monitoring`` section: limits, bands per scale, intervals per scale and band."""
    errors: Errors = {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in MONITORING_LIMITS:
            if problems := _int_error(value, *MONITORING_LIMITS[key]):
                errors[key] = problems
            out[key] = value
        elif key == "bands":
            if not isinstance(value, dict) or not value:
                errors[key] = ["An object: scale code -> its list of bands."]
                continue
            out[key] = {}
            for code, rows in value.items():
                if code not in SCALES:
                    errors[f"bands.{code}"] = [f"Unknown scale; one of: {', '.join(SCALES)}."]
                    continue
                bands, problems = _check_bands(SCALES[code], rows)
                if problems:
                    errors[f"bands.{code}"] = problems
                out[key][code] = bands
        elif key == "intervals":
            if not isinstance(value, dict) or not value:
                errors[key] = ["An object: scale code -> {band: minutes}."]
                continue
            out[key] = value
            for code, by_band in value.items():
                if code not in SCALES:
                    errors[f"intervals.{code}"] = [f"Unknown scale; one of: {', '.join(SCALES)}."]
                    continue
                allowed = _interval_bands(code)
                if not isinstance(by_band, dict) or not by_band:
                    errors[f"intervals.{code}"] = [f"An object: band ({', '.join(allowed)}) -> minutes."]
                    continue
                for band, minutes in by_band.items():
                    if band not in allowed:
                        errors[f"intervals.{code}.{band}"] = [
                            f"Unknown band of {code}; one of: {', '.join(allowed)}."]
                    elif problems := _int_error(minutes, *INTERVAL_LIMITS):
                        errors[f"intervals.{code}.{band}"] = problems
        else:
            errors[key] = [f"Unknown monitoring setting; one of: {', '.join(MONITORING_DEFAULTS)}."]
    return out, errors


def check_escalation(values: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Check the ``escalation`` section: targets, the paging levels, the CIWA-Ar emergency total."""
    errors: Errors = {}
    for key, value in values.items():
        if key == "targets":
            if not isinstance(value, dict) or not value:
                errors[key] = [f"An object: severity ({', '.join(SEVERITY_RANK)}) -> minutes."]
                continue
            for severity, minutes in value.items():
                if severity not in SEVERITY_RANK:
                    errors[f"targets.{severity}"] = [f"Unknown severity; one of: {', '.join(SEVERITY_RANK)}."]
                elif problems := _int_error(minutes, *TARGET_LIMITS):
                    errors[f"targets.{severity}"] = problems
        elif key == "levels":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_LEVELS or \
                    any(duty not in DUTY_LABELS for duty in value):
                errors[key] = [f"A list of 1 to {MAX_LEVELS} duties, each one of: {', '.join(DUTY_LABELS)}."]
        elif key == "ciwa_emergency_total":
            # docs/clinical-rules.md s1: emergency at 20 or more by default; any total the scale can reach.
            if problems := _int_error(value, 1, CIWA_AR.max_total):
                errors[key] = problems
        else:
            errors[key] = [f"Unknown escalation setting; one of: {', '.join(ESCALATION_DEFAULTS)}."]
    return values, errors


def shown_monitoring(settings: dict[str, Any]) -> dict[str, Any]:
    """The monitoring section as GET /unit/protocol shows it: every scale's bands in force."""
    return {**settings, "bands": {code: [band.to_dict() for band in
                                         (unit_bands(settings, code) or scale.bands)]
                                  for code, scale in SCALES.items()}}


# --- the safety envelope: bounds no unit crosses (docs/clinical-rules.md s2, s3) --------------

MONITORING_BOUNDS = (
    at_most("intervals.news2.high", 30, "minutes"),
    at_most("intervals.news2.medium", 60, "minutes"),
    at_most("intervals.news2.low-medium", 60, "minutes"),
    at_most("intervals.ciwa-ar.severe", 60, "minutes"),
    at_most("intervals.cows.moderately_severe", 60, "minutes"),
    at_most("intervals.cows.severe", 60, "minutes"),
)
ESCALATION_BOUNDS = (
    at_most("targets.emergency", 15, "minutes"),
    at_most("targets.urgent", 60, "minutes"),
    at_most("ciwa_emergency_total", 25),
)


def intervals_never_lengthen(settings: dict[str, Any]) -> Errors:
    """s2: no band's interval is longer than a less severe band's of the same scale (each
    interval the unit's own or the default; NEWS2 low at its shorter default, 4 hours)."""
    errors: Errors = {}
    for code in SCALES:
        own = settings["intervals"].get(code, {})
        bands = _interval_bands(code)
        minutes = {band: own.get(band) or default_interval_minutes(code, band) for band in bands}
        for rank, band in enumerate(bands[1:], start=1):
            milder = min(bands[:rank], key=lambda b: minutes[b])
            if minutes[band] > minutes[milder]:
                errors[f"intervals.{code}.{band}"] = [
                    f"At most {minutes[milder]} minutes, the interval for {milder}: observation "
                    f"intervals never lengthen as severity rises (docs/clinical-rules.md s2); "
                    f"{minutes[band]} would be in force."]
    return errors


def targets_never_lengthen(settings: dict[str, Any]) -> Errors:
    """s3: a more severe escalation's acknowledgement target is never longer than a milder one's."""
    targets = settings["targets"]
    by_rank = sorted(SEVERITY_RANK, key=SEVERITY_RANK.get)  # soon, urgent, emergency
    errors: Errors = {}
    for rank, severity in enumerate(by_rank[1:], start=1):
        milder = min(by_rank[:rank], key=lambda s: targets[s])
        if targets[severity] > targets[milder]:
            errors[f"targets.{severity}"] = [
                f"At most {targets[milder]} minutes, the {milder} target: acknowledgement targets "
                f"never lengthen as severity rises (docs/clinical-rules.md s3); "
                f"{targets[severity]} would be in force."]
    return errors


SECTIONS: dict[str, ProtocolSection] = {
    "monitoring": ProtocolSection(MONITORING_DEFAULTS, check_monitoring, shown_monitoring,
                                  bounds=MONITORING_BOUNDS, envelope=intervals_never_lengthen),
    "escalation": ProtocolSection(ESCALATION_DEFAULTS, check_escalation,
                                  bounds=ESCALATION_BOUNDS, envelope=targets_never_lengthen),
}


def scale_for_unit(unit_id: int, code: str) -> dict[str, Any]:
    """A scale's description with the unit's own bands (what the tablet form scores live with)."""
    return get_scale(code).to_dict(unit_bands(monitoring_settings(unit_id), code))
