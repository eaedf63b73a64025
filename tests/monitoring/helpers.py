"""Helpers of the monitoring tests: item sets with known totals, posting with a key, row counts.

Totals, bands and intervals here are worked out by hand from docs/clinical-rules.md, never read
from the code under test.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone


from tests.items import CIWA_KEYS, ciwa  # noqa: F401 (re-exported)
from tests.unit.helpers import assert_problem, row_counts  # noqa: F401 (re-exported)


COWS_KEYS = ("resting_pulse", "sweating", "restlessness", "pupil_size", "bone_joint_aches",
             "runny_nose_tearing", "gi_upset", "tremor", "yawning", "anxiety_irritability",
             "gooseflesh")
COWS_ZERO = {key: 0 for key in COWS_KEYS}

# docs/clinical-rules.md s1 worked checks.
NEWS2_ZERO = {"respiration_rate": 18, "spo2": 97, "spo2_scale": 1, "supplemental_oxygen": False,
              "systolic_bp": 128, "pulse": 88, "consciousness": "A", "temperature": 37.2}      # 0
NEWS2_FOUR = {**NEWS2_ZERO, "respiration_rate": 22, "spo2": 96, "systolic_bp": 150,
              "pulse": 112, "temperature": 37.9}                                                # 4 low
NEWS2_LOW_MEDIUM = {**NEWS2_ZERO, "respiration_rate": 26, "spo2": 96, "systolic_bp": 120,
                    "pulse": 80, "temperature": 36.8}                                           # 3 low-medium
NEWS2_MEDIUM = {**NEWS2_ZERO, "respiration_rate": 18, "spo2": 95, "systolic_bp": 135,
                "pulse": 105, "consciousness": "C", "temperature": 38.3}                        # 6 medium
NEWS2_HIGH = {"respiration_rate": 8, "spo2": 90, "spo2_scale": 1, "supplemental_oxygen": True,
              "systolic_bp": 98, "pulse": 52, "consciousness": "V", "temperature": 35.8}       # 14 high


def key() -> str:
    return str(uuid.uuid4())


def post_observation(client, admission_id: int, body: dict, idempotency_key: str | None = None):
    """POST an observation with a fresh Idempotency-Key (or the one given)."""
    return client.post(f"/api/v1/admissions/{admission_id}/observations", json=body,
                       headers={"Idempotency-Key": idempotency_key or key()})


def record(client, admission_id: int, scale: str, items: dict, observed_at: datetime | None = None,
           **extra) -> dict:
    """Record an observation through the API; asserts 201 and returns the reply."""
    body = {"scale": scale, "items": items, **extra}
    if observed_at is not None:
        body["observed_at"] = iso(observed_at)
    response = post_observation(client, admission_id, body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')
