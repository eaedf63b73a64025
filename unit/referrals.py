"""Referrals of the same person: a referral within 30 days of a decline on the unit is linked
to that decline, each changed figure needs a reason before admitting (docs/clinical-rules.md
s4), and the inspector's report lists these re-referrals and the doctors' overrides."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from config.extensions import db
from unit.competence import REFERRAL_FIGURES
from unit.models import Admission, Referral, Staff

# A referral of the same person this soon after a decline is linked to it (docs/clinical-rules.md s4).
RE_REFERRAL_WINDOW = timedelta(days=30)


def _same_person(snapshot: dict, resident: dict) -> bool:
    """The same person: the same NHS number, or the same name and date of birth."""
    nhs = resident.get("nhs_number")
    if nhs and snapshot.get("nhs_number") == nhs:
        return True
    return (" ".join(snapshot["name"].split()).casefold() == " ".join(resident["name"].split()).casefold()
            and snapshot["date_of_birth"] == resident["date_of_birth"].isoformat())


def previous_decline(unit_id: int, resident: dict, now: datetime) -> Referral | None:
    """The latest decline of the same person on this unit within the last 30 days, if any."""
    declines = db.session.scalars(
        select(Referral).where(Referral.unit_id == unit_id, Referral.decision == "declined",
                               Referral.decided_at > now - RE_REFERRAL_WINDOW,
                               Referral.decided_at <= now)
        .order_by(Referral.decided_at.desc(), Referral.id.desc()))
    return next((r for r in declines if _same_person(r.resident_snapshot, resident)), None)


def _figures(resident_snapshot: dict, substances: list[str], assessment: dict) -> dict[str, Any]:
    figures = {"date_of_birth": resident_snapshot["date_of_birth"], "substances": sorted(substances)}
    for key in REFERRAL_FIGURES[2:]:
        value = assessment.get(key)
        figures[key] = sorted(value) if isinstance(value, list) else value
    return figures


def changed_figures(declined: Referral, snapshot: dict, substances: list[str], assessment: dict,
                    reasons: dict[str, str] | None) -> list[dict[str, Any]]:
    """Each figure of a referral that differs from the declined one's, with the reason given."""
    before = _figures(declined.resident_snapshot, declined.substances, declined.assessment)
    after = _figures(snapshot, substances, assessment)
    return [{"field": key, "before": before[key], "after": after[key],
             "reason": (reasons or {}).get(key)}
            for key in REFERRAL_FIGURES if before[key] != after[key]]


def resident_snapshot(resident: dict) -> dict[str, Any]:
    """The resident as a referral keeps them (JSON)."""
    return {"name": resident["name"], "date_of_birth": resident["date_of_birth"].isoformat(),
            "nhs_number": resident.get("nhs_number")}


def shown_figure(value: Any) -> str:
    """A figure in words for a nurse: "not given", "yes", "22", "heroin, methadone"."""
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)



# --- for the inspector's report ----------------------------------------------------------------

def doctor_overrides(unit_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Admissions in [start, end) of a referral every unit declines otherwise (hospital
    recommended, under 16), each with the doctor who admitted it, the criteria overridden and
    the reason, oldest first."""
    rows = db.session.execute(
        select(Admission, Referral, Staff.username)
        .join(Referral, Referral.id == Admission.referral_id)
        .join(Staff, Staff.id == Admission.admitted_by_id)
        .where(Admission.unit_id == unit_id, Admission.override_reason.is_not(None),
               Admission.admitted_at >= start, Admission.admitted_at < end)
        .order_by(Admission.admitted_at, Admission.id)).all()
    return [{"admission_id": admission.id, "referral_id": referral.id,
             "resident": referral.resident_snapshot["name"],
             "admitted_at": admission.admitted_at.isoformat(), "unit_model": referral.unit_model,
             "criteria": admission.override_criteria, "reason": admission.override_reason,
             "doctor": username, "recommended_setting": referral.recommended_setting}
            for admission, referral, username in rows]


def re_referrals(unit_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Referrals decided in [start, end) that came within 30 days of a decline of the same
    person: the decision, the decline they follow, and each changed figure with its reason."""
    rows = db.session.execute(
        select(Referral, Admission.id)
        .outerjoin(Admission, Admission.referral_id == Referral.id)
        .where(Referral.unit_id == unit_id, Referral.previous_decline_id.is_not(None),
               Referral.decided_at >= start, Referral.decided_at < end)
        .order_by(Referral.decided_at, Referral.id)).all()
    declined_at = dict(db.session.execute(select(Referral.id, Referral.decided_at).where(
        Referral.id.in_({referral.previous_decline_id for referral, _ in rows}))).all())
    return [{"referral_id": referral.id, "resident": referral.resident_snapshot["name"],
             "decided_at": referral.decided_at.isoformat(), "decision": referral.decision,
             "admission_id": admission_id, "previous_decline_id": referral.previous_decline_id,
             "previous_declined_at": declined_at[referral.previous_decline_id].isoformat(),
             "changes": referral.changed_figures or []}
            for referral, admission_id in rows]
