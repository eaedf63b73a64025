"""Scale items the tests post, in one place (the scale definitions themselves are under test,
so these are written out by hand from docs/clinical-rules.md, never read from monitoring.scales)."""
from __future__ import annotations

CIWA_KEYS = ("nausea_vomiting", "tremor", "paroxysmal_sweats", "anxiety", "agitation",
             "tactile_disturbances", "auditory_disturbances", "visual_disturbances", "headache",
             "orientation")

# docs/clinical-rules.md s1 worked check: NEWS2 0 (respiration 18, SpO2 97 on air, BP 128, pulse 88, alert).
NEWS2_ZERO = {"respiration_rate": 18, "spo2": 97, "spo2_scale": 1, "supplemental_oxygen": False,
              "systolic_bp": 128, "pulse": 88, "consciousness": "A", "temperature": 37.2}


def ciwa(total: int) -> dict[str, int]:
    """CIWA-Ar items adding up to ``total`` (0-67): filled 7 at a time, orientation (0-4) last."""
    assert 0 <= total <= 67
    items, left = {}, total
    for key in CIWA_KEYS:
        items[key] = min(4 if key == "orientation" else 7, left)
        left -= items[key]
    return items
