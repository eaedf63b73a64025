"""Helpers of the medication tests: order bodies, posting with an Idempotency-Key, scores
with known totals, and reading rows straight from the database.

Doses, intervals and limits here are worked out by hand from docs/clinical-rules.md section 5, never
read from the code under test.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from config.extensions import db
from tests.items import CIWA_KEYS, NEWS2_ZERO, ciwa  # noqa: F401 (re-exported)
from tests.unit.helpers import assert_problem  # noqa: F401 (re-exported)
NEWS2_CALM = NEWS2_ZERO


def cows(total: int) -> dict[str, int]:
    """COWS items adding up to ``total`` (5-20), from the scale's own answer values."""
    picks = [("restlessness", 5), ("pupil_size", 5), ("gooseflesh", 5), ("sweating", 4),
             ("tremor", 2), ("yawning", 2), ("anxiety_irritability", 1)]
    items = {name: 0 for name in ("resting_pulse", "sweating", "restlessness", "pupil_size",
                                  "bone_joint_aches", "runny_nose_tearing", "gi_upset", "tremor",
                                  "yawning", "anxiety_irritability", "gooseflesh")}
    left = total
    for name, value in picks:
        if value <= left:
            items[name], left = value, left - value
    assert left == 0, total
    return items


def key() -> str:
    return str(uuid.uuid4())


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def post(client, url: str, body: dict, idempotency_key: str | None = None):
    """POST JSON with a fresh Idempotency-Key (or the one given)."""
    return client.post(url, json=body, headers={"Idempotency-Key": idempotency_key or key()})


def order(client, admission_id: int, body: dict, status: int = 201) -> dict:
    """Create an order; asserts the status and returns the reply."""
    response = post(client, f"/api/v1/admissions/{admission_id}/orders", body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def fixed(start_dose_mg: int = 30, **kw) -> dict:
    return {"kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": start_dose_mg,
            "route": "oral", **kw}


def prn_chlordiazepoxide(dose_mg: float = 20, **kw) -> dict:
    return {"kind": "prn", "drug": "chlordiazepoxide", "dose_mg": dose_mg, "route": "oral",
            "min_interval_minutes": 120, "max_daily_mg": 200,
            "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}, **kw}


def induction_buprenorphine(last_opioid_at: datetime, dose_mg: float = 4, **kw) -> dict:
    return {"kind": "induction", "drug": "buprenorphine", "dose_mg": dose_mg, "route": "sublingual",
            "min_interval_minutes": 120, "trigger": {"scale": "cows", "min_total": 8},
            "last_opioid_at": iso(last_opioid_at), **kw}


def give(client, order_id: int, dose_mg: float, *, outcome: str = "given", witness: dict | None = None,
         idempotency_key: str | None = None, **kw):
    body = {"outcome": outcome, "dose_mg": dose_mg, **kw}
    if witness is not None:
        body["witness"] = witness
    return post(client, f"/api/v1/orders/{order_id}/administrations", body, idempotency_key)


def observe(client, admission_id: int, scale: str, items: dict, observed_at: datetime | None = None) -> dict:
    body = {"scale": scale, "items": items}
    if observed_at is not None:
        body["observed_at"] = iso(observed_at)
    response = post(client, f"/api/v1/admissions/{admission_id}/observations", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def rows(app, model, *where, order_by=None) -> list:
    """Rows of a model, read in a fresh session (detached; plain attribute access only)."""
    with app.app_context():
        query = sa.select(model).where(*where)
        if order_by is not None:
            query = query.order_by(order_by)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
