"""The monitoring package's protocol settings: the defaults a unit may replace, and their readers.

Defaults are docs/clinical-rules.md sections 1-3; a unit adopts its own through its protocol
(``unit.services.protocol_settings``), checked first by ``monitoring.protocol``.
"""
from __future__ import annotations

from typing import Any

from monitoring.scales import CIWA_EMERGENCY_TOTAL, Band
from unit.services import protocol_settings

# docs/clinical-rules.md section 2 and the defaults; a unit may adopt its own (protocol
# section "monitoring": {"bands": {scale: [band...]}, "intervals": {scale: {band: minutes}}, ...}).
MONITORING_DEFAULTS: dict[str, Any] = {
    "not_done_retry_minutes": 30,      # an observation that could not be done is asked again
    "refusals_to_escalate": 2,         # a second refusal in a row escalates
    "clock_skew_minutes": 2,           # observed_at may be this far in the future
    "initial_interval_minutes": 60,    # until the first score sets the band
    "bands": {},
    "intervals": {},
}

ESCALATION_DEFAULTS: dict[str, Any] = {
    # docs/clinical-rules.md s3: acknowledgement targets in minutes.
    "targets": {"emergency": 5, "urgent": 30, "soon": 120},
    # The paging policy: level 1 the routed duty, then these duties in turn.
    "levels": ["second_on_call", "clinical_lead"],
    # docs/clinical-rules.md s1/s3: CIWA-Ar 20 or more is an emergency (consider transfer).
    "ciwa_emergency_total": CIWA_EMERGENCY_TOTAL,
}


def monitoring_settings(unit_id: int) -> dict[str, Any]:
    """The unit's monitoring protocol (defaults overlaid with the unit's own values)."""
    return protocol_settings(unit_id, "monitoring", MONITORING_DEFAULTS)


def escalation_settings(unit_id: int) -> dict[str, Any]:
    """The unit's escalation protocol (defaults overlaid with the unit's own values)."""
    return protocol_settings(unit_id, "escalation", ESCALATION_DEFAULTS)


def unit_bands(settings: dict[str, Any], code: str) -> tuple[Band, ...] | None:
    """The unit's own bands for a scale, if its protocol overrides the defaults."""
    rows = settings["bands"].get(code)
    return tuple(Band(**row) for row in rows) if rows else None
