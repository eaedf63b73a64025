"""The medication section of the unit protocol: what a unit may set, checked before it is stored.

Registered with ``unit.services.protocol_sections`` by config/app.py. Defaults are
``medication.settings.MEDICATION_DEFAULTS`` (docs/clinical-rules.md section 5).
"""
from __future__ import annotations

from typing import Any

from medication.settings import MEDICATION_DEFAULTS
from unit.envelope import no_looser_than_default
from unit.services import ProtocolSection

# Bounds of a unit's own value (inclusive): wide enough for any local protocol, narrow enough
# that a slip of the keyboard is refused.
NUMBER_LIMITS: dict[str, tuple[int, int]] = {
    "prn_trigger_max_age_minutes": (5, 240),
    "countersign_hours": (1, 72),
    "scheduled_early_minutes": (0, 240),
    "hold_respiration_at_or_below": (4, 20),    # NEWS2 respiration rate, /min
    "hold_systolic_at_or_below": (60, 140),     # mmHg
    "hold_pulse_at_or_below": (30, 100),        # /min
    "hold_news2_max_age_hours": (1, 72),
}
BOOLEANS = ("prn_benzodiazepines_on_monitored",)
CONSCIOUSNESS = ("C", "V", "P", "U")  # NEWS2 ACVPU other than alert


def check_medication(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check the ``medication`` section: known keys, whole numbers in range, flags, ACVPU codes."""
    errors: dict[str, list[str]] = {}
    for key, value in values.items():
        if key in NUMBER_LIMITS:
            low, high = NUMBER_LIMITS[key]
            if not isinstance(value, int) or isinstance(value, bool):
                errors[key] = [f"Must be a whole number from {low} to {high}."]
            elif not low <= value <= high:
                errors[key] = [f"Must be from {low} to {high}."]
        elif key in BOOLEANS:
            if not isinstance(value, bool):
                errors[key] = ["Must be true or false."]
        elif key == "hold_consciousness":
            if not isinstance(value, list) or not value or \
                    any(level not in CONSCIOUSNESS for level in value) or len(set(value)) != len(value):
                errors[key] = [f"A list of NEWS2 levels, each once, from: {', '.join(CONSCIOUSNESS)}."]
        else:
            errors[key] = [f"Unknown medication setting; one of: {', '.join(MEDICATION_DEFAULTS)}."]
    return values, errors


# The safety envelope (docs/clinical-rules.md s5): the sedation holds may be tightened, never
# loosened. A new hold setting registers its bound here the same way.
MEDICATION_BOUNDS = (
    no_looser_than_default("hold_respiration_at_or_below", MEDICATION_DEFAULTS, tighter="higher",
                           unit="breaths a minute"),
    no_looser_than_default("hold_consciousness", MEDICATION_DEFAULTS, tighter="more"),
)

SECTIONS: dict[str, ProtocolSection] = {
    "medication": ProtocolSection(MEDICATION_DEFAULTS, check_medication, bounds=MEDICATION_BOUNDS),
}
