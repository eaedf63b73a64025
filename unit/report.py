"""The unit's part of the inspection report: its declared model and admissions against competence."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select

from config.extensions import db
from unit.models import Admission, CareModelChange, Referral, Resident, Staff, Unit


def model_history(unit: Unit, start: datetime, end: datetime) -> list[dict]:
    """The model in force at the start of the period and every change within it, who and why."""
    changes = db.session.execute(
        select(CareModelChange, Staff.username).outerjoin(Staff, Staff.id == CareModelChange.changed_by_id)
        .where(CareModelChange.unit_id == unit.id, CareModelChange.effective_at < end)
        .order_by(CareModelChange.effective_at, CareModelChange.id)).all()
    in_force = [row for row in changes if row[0].effective_at <= start][-1:]
    during = [row for row in changes if row[0].effective_at > start]
    return [{"model": change.model, "effective_at": change.effective_at.isoformat(),
             "reason": change.reason, "changed_by": username, "recorded_at": change.recorded_at.isoformat(),
             "in_force_at_start": change.effective_at <= start}
            for change, username in in_force + during]


def admissions_section(unit: Unit, start: datetime, end: datetime) -> dict:
    """Referrals admitted and declined with the criteria met; monitored-unit exceptions; transfers."""
    referrals = db.session.scalars(select(Referral).where(
        Referral.unit_id == unit.id, Referral.decided_at >= start, Referral.decided_at < end)
        .order_by(Referral.decided_at)).all()
    declined = [r for r in referrals if r.decision == "declined"]
    reasons = Counter(reason["code"] for r in declined for reason in r.reasons)
    # Should be none: a resident admitted while the unit was monitored whose referral met a criterion.
    exceptions = [{"referral_id": r.id, "resident": r.resident_snapshot["name"], "decided_at": r.decided_at.isoformat(),
                   "criteria": [c["criterion"] for c in r.reasons]}
                  for r in referrals if r.decision == "admitted" and r.unit_model == "medically_monitored" and r.reasons]
    transfers = db.session.execute(select(Admission, Resident.name).join(Resident, Resident.id == Admission.resident_id)
                                   .where(Admission.unit_id == unit.id, Admission.discharge_type == "transferred",
                                          Admission.discharged_at >= start, Admission.discharged_at < end)).all()
    discharges = Counter(t for (t,) in db.session.execute(select(Admission.discharge_type).where(
        Admission.unit_id == unit.id, Admission.discharged_at >= start, Admission.discharged_at < end)))
    admitted_ids = dict(db.session.execute(select(Admission.referral_id, Admission.id).where(
        Admission.referral_id.in_([r.id for r in referrals if r.decision == "admitted" and r.reasons]))).all())
    return {
        "admitted": sum(1 for r in referrals if r.decision == "admitted"),
        "declined": len(declined),
        "declined_reasons": dict(sorted(reasons.items())),
        "high_risk_admitted": sum(1 for r in referrals if r.decision == "admitted" and r.reasons),
        "admitted_meeting_decline_criteria_while_monitored": exceptions,
        "declined_referrals": [{"referral_id": r.id, "resident": r.resident_snapshot["name"],
                                "decided_at": r.decided_at.isoformat(), "unit_model": r.unit_model,
                                "criteria": [c["criterion"] for c in r.reasons],
                                "criteria_codes": [c["code"] for c in r.reasons],
                                "recommended_setting": r.recommended_setting} for r in declined],
        # Admitted although a decline criterion was met (a medically managed unit may): each
        # with the criteria, so an inspector sees what the unit took on and under which model.
        "high_risk_admissions": [{"admission_id": admitted_ids.get(r.id), "referral_id": r.id,
                                  "resident": r.resident_snapshot["name"], "decided_at": r.decided_at.isoformat(),
                                  "unit_model": r.unit_model, "criteria": [c["criterion"] for c in r.reasons],
                                  "criteria_codes": [c["code"] for c in r.reasons],
                                  "recommended_setting": r.recommended_setting}
                                 for r in referrals if r.decision == "admitted" and r.reasons],
        "transferred_out": [{"admission_id": a.id, "resident": name, "at": a.discharged_at.isoformat(),
                             "why": a.discharge_note} for a, name in transfers],
        "discharges": dict(discharges),
        "treatment_episodes": treatment_episodes(unit, start, end),
    }


def treatment_episodes(unit: Unit, start: datetime, end: datetime) -> list[dict]:
    """For each calendar month the period touches, the whole month's episodes as the
    commissioners' return counts them (started, completed, incomplete by reason), so that the
    unit and the commissioner read the same figures."""
    from unit.returns import month_bounds, month_counts, months_between

    return [{"month": month, **month_counts(unit.id, *month_bounds(month))}
            for month in months_between(start, end)]
