"""The medication protocol: its defaults and the reader of a unit's own values."""
from __future__ import annotations

from typing import Any

from unit.services import protocol_settings

MEDICATION_DEFAULTS: dict[str, Any] = {
    "prn_trigger_max_age_minutes": 60,        # a PRN dose needs a qualifying score this recent
    # NICE CG100: symptom-triggered dosing needs 24-hour assessment; a monitored unit must opt in.
    "prn_benzodiazepines_on_monitored": False,
    "countersign_hours": 24,                  # phone orders countersigned within this
    "scheduled_early_minutes": 60,            # a scheduled dose may be given this early
    "hold_respiration_at_or_below": 8,        # NEWS2 respiration rate that holds sedating drugs
    "hold_consciousness": ["V", "P", "U"],    # NEWS2 consciousness that holds sedating drugs
    "hold_systolic_at_or_below": 90,          # lofexidine: hold for hypotension
    "hold_pulse_at_or_below": 50,             # lofexidine: hold for bradycardia
    "hold_news2_max_age_hours": 12,
}


def medication_settings(unit_id: int) -> dict[str, Any]:
    """The unit's medication protocol."""
    return protocol_settings(unit_id, "medication", MEDICATION_DEFAULTS)
