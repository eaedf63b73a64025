"""The eMAR: every safety check a dose must pass, recording a dose (or why it was not given),
what is due now, and the benzodiazepine total in diazepam equivalents (docs/clinical-rules.md
section 5)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select

from config.clock import local, unit_zone
from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from medication.drugs import (
    BUPRENORPHINE_DAY_MAX,
    BUPRENORPHINE_HOURS_AFTER_SHORT_ACTING,
    DIAZEPAM_EQUIVALENT_REVIEW_MG,
    DRUGS,
    Drug,
)
from medication.errors import AdministrationInvalid, DoseRefused, NoDoseDue
from medication.models import REASON_CODES, Administration, MedicationOrder, SafetyRefusal, ScheduledDose
from medication.orders import get_order
from medication.register import append_register_entry, verify_witness
from medication.settings import medication_settings
from monitoring.escalations import Trigger, raise_escalation
from monitoring.models import Observation
from monitoring.scales import get_scale
from monitoring.schemas import EscalationSchema
from monitoring.settings import monitoring_settings, unit_bands
from unit.audit import record_event
from unit.auth import CLINICAL_STAFF
from unit.models import Admission, Staff
from unit.services import get_admission


def given_in_window(admission_id: int, drug: str, start: datetime, end: datetime) -> float:
    """Milligrams of a drug given to an admission in (start, end]."""
    return float(db.session.scalar(select(sa.func.coalesce(sa.func.sum(Administration.dose_mg), 0)).where(
        Administration.admission_id == admission_id, Administration.drug == drug,
        Administration.outcome == "given", Administration.given_at > start,
        Administration.given_at <= end)) or 0)


def last_given(admission_id: int, drug: str) -> Administration | None:
    """The latest dose of a drug given to an admission."""
    return db.session.scalars(select(Administration).where(
        Administration.admission_id == admission_id, Administration.drug == drug,
        Administration.outcome == "given").order_by(Administration.given_seq.desc()).limit(1)).first()


def _latest_observation(admission_id: int, scale: str) -> Observation | None:
    return db.session.scalars(select(Observation).where(
        Observation.admission_id == admission_id, Observation.scale == scale,
        Observation.status == "recorded", Observation.struck_at.is_(None))
        .order_by(Observation.observed_at.desc(), Observation.id.desc()).limit(1)).first()


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


class _Refuse(Exception):
    def __init__(self, check: str, detail: str, escalate: str | None = None) -> None:
        super().__init__(detail)
        self.check, self.detail, self.escalate = check, detail, escalate


def safety_checks(order: MedicationOrder, admission: Admission, dose_mg: float, now: datetime,
                  settings: dict[str, Any]) -> Observation | None:
    """Every check a dose must pass; returns the PRN's triggering observation."""
    drug = DRUGS[order.drug]
    zone = unit_zone()
    if admission.status != "active":
        raise _Refuse("discharged", f"{admission.resident.name} is discharged: no dose may be given.")
    if order.status != "active":
        raise _Refuse("order_stopped", f"This order is {order.status}" +
                      (f" ({order.stop_reason})" if order.stop_reason else "") + ".")
    if order.ends_at and now >= order.ends_at:
        raise _Refuse("order_ended", f"This order ended at {order.ends_at.astimezone(zone):%d %b %H:%M}.")
    if now < order.starts_at - timedelta(minutes=settings["scheduled_early_minutes"]):
        raise _Refuse("order_not_started", f"This order starts at {order.starts_at.astimezone(zone):%d %b %H:%M}.")
    if order.min_interval_minutes:
        last = last_given(admission.id, order.drug)
        if last is not None and now - last.given_at < timedelta(minutes=order.min_interval_minutes):
            next_at = last.given_at + timedelta(minutes=order.min_interval_minutes)
            raise _Refuse("too_soon",
                          f"Too soon: {drug.name} {last.dose_mg:g} mg was given at "
                          f"{last.given_at.astimezone(zone):%H:%M} ({_minutes(now - last.given_at)} ago); "
                          f"this order needs {_minutes(timedelta(minutes=order.min_interval_minutes))} "
                          f"between doses. Next from {next_at.astimezone(zone):%H:%M}.")
    in_24h = given_in_window(admission.id, order.drug, now - timedelta(hours=24), now)
    limits = [m for m in (order.max_daily_mg, drug.max_daily_mg) if m]
    if order.kind == "induction" and order.drug == "buprenorphine":
        first = db.session.scalars(select(Administration.given_at).where(
            Administration.order_id == order.id, Administration.outcome == "given")
            .order_by(Administration.given_at).limit(1)).first()
        day = 1 if first is None else (now - first).days + 1
        if day in BUPRENORPHINE_DAY_MAX:
            day_start = now - timedelta(hours=24) if first is None else first + timedelta(days=day - 1)
            if given_in_window(admission.id, order.drug, day_start - timedelta(microseconds=1), now) + dose_mg \
                    > BUPRENORPHINE_DAY_MAX[day]:
                raise _Refuse("max_daily", f"Buprenorphine day {day}: at most {BUPRENORPHINE_DAY_MAX[day]} mg.",
                              escalate="maximum reached")
        if first is None and order.last_opioid_at and now - order.last_opioid_at < \
                timedelta(hours=BUPRENORPHINE_HOURS_AFTER_SHORT_ACTING):
            raise _Refuse("too_soon_after_opioid",
                          f"Buprenorphine may start {BUPRENORPHINE_HOURS_AFTER_SHORT_ACTING} h after the last "
                          f"short-acting opioid (used {_minutes(now - order.last_opioid_at)} ago): "
                          "precipitated withdrawal risk.")
    for limit in limits:
        if in_24h + dose_mg > limit:
            raise _Refuse("max_daily",
                          f"Over the 24-hour maximum: {in_24h:g} mg of {drug.name} given in the last 24 hours; "
                          f"{dose_mg:g} mg more would exceed {limit:g} mg.", escalate="maximum reached")
    trigger_observation = None
    if order.trigger:
        trigger_observation = _check_trigger(order, admission, now, settings)
    _check_hold(drug, admission, now, settings)
    return trigger_observation


def _check_trigger(order: MedicationOrder, admission: Admission, now: datetime,
                   settings: dict[str, Any]) -> Observation:
    trigger = order.trigger
    scale = get_scale(trigger["scale"])
    latest = _latest_observation(admission.id, scale.code)
    if latest is None:
        raise _Refuse("trigger_missing", f"No {scale.name} score is recorded: score first.")
    age = now - latest.observed_at
    max_age = timedelta(minutes=settings["prn_trigger_max_age_minutes"])
    if age > max_age:
        raise _Refuse("trigger_stale", f"The latest {scale.name} ({latest.total}) is {_minutes(age)} old; "
                      f"this dose needs a score from the last {_minutes(max_age)}. Score again.")
    if trigger.get("min_total") is not None and latest.total < trigger["min_total"]:
        raise _Refuse("trigger_not_met", f"{scale.name} {latest.total} is below this order's threshold "
                      f"of {trigger['min_total']}.")
    if trigger.get("min_band"):
        bands = [b.code for b in (unit_bands(monitoring_settings(admission.unit_id), scale.code) or scale.bands)]
        if latest.band in bands and bands.index(latest.band) < bands.index(trigger["min_band"]):
            raise _Refuse("trigger_not_met", f"{scale.name} {latest.total} ({latest.band.replace('_', ' ')}) "
                          f"is below this order's trigger ({trigger['min_band'].replace('_', ' ')} or above).")
    return latest


def _check_hold(drug: Drug, admission: Admission, now: datetime, settings: dict[str, Any]) -> None:
    news2 = _latest_observation(admission.id, "news2")
    if news2 is None or now - news2.observed_at > timedelta(hours=settings["hold_news2_max_age_hours"]):
        return
    items = news2.items or {}
    if drug.sedating:
        if items.get("consciousness") in settings["hold_consciousness"]:
            raise _Refuse("hold_sedation", f"Hold: the latest NEWS2 ({local(news2.observed_at):%H:%M}) records "
                          f"consciousness {items['consciousness']}: do not give a sedating drug; "
                          "record it withheld and tell the doctor.", escalate="sedation")
        if items.get("respiration_rate", 99) <= settings["hold_respiration_at_or_below"]:
            raise _Refuse("hold_sedation", f"Hold: respiration rate {items['respiration_rate']} /min on the "
                          "latest NEWS2: do not give a sedating drug.", escalate="sedation")
    if drug.code == "lofexidine":
        if items.get("systolic_bp", 999) <= settings["hold_systolic_at_or_below"] or \
                items.get("pulse", 999) <= settings["hold_pulse_at_or_below"]:
            raise _Refuse("hold_cardiovascular", f"Hold: BP {items.get('systolic_bp')} / pulse "
                          f"{items.get('pulse')} on the latest NEWS2: lofexidine lowers both.")


def _scheduled_slot(order: MedicationOrder, slot_id: int | None, now: datetime,
                    settings: dict[str, Any]) -> ScheduledDose:
    if slot_id is not None:
        slot = db.session.get(ScheduledDose, slot_id)
        if slot is None or slot.order_id != order.id:
            raise AdministrationInvalid("That scheduled dose is not part of this order.",
                                        errors={"scheduled_dose_id": ["Not a dose of this order."]})
        # A named slot obeys the same rules as the next one: not taken, and due (a later day's
        # dose must not be given early by naming it).
        if db.session.scalar(select(Administration.id).where(Administration.scheduled_dose_id == slot.id)):
            raise NoDoseDue(f"The {slot.label} dose is already recorded on the chart.")
        earliest = slot.due_at - timedelta(minutes=settings["scheduled_early_minutes"])
        if now < earliest:
            zone = unit_zone()
            raise NoDoseDue(f"The {slot.label} dose is due at {slot.due_at.astimezone(zone):%d %b %H:%M}; "
                            f"it may be given from {earliest.astimezone(zone):%H:%M}.")
        return slot
    taken = select(Administration.scheduled_dose_id).where(Administration.order_id == order.id,
                                                           Administration.scheduled_dose_id.is_not(None))
    slot = db.session.scalars(select(ScheduledDose).where(
        ScheduledDose.order_id == order.id, ScheduledDose.id.not_in(taken),
        ScheduledDose.due_at <= now + timedelta(minutes=settings["scheduled_early_minutes"]))
        .order_by(ScheduledDose.due_at).limit(1)).first()
    if slot is None:
        raise NoDoseDue("No dose of this regimen is due yet.")
    return slot


@dataclass
class Given:
    """A dose recorded on the eMAR, and the escalation it raised if any."""

    administration: Administration
    escalation: Any = None


@unit_of_work
def record_administration(actor: Staff, order_id: int, *, outcome: str, dose_mg: float,
                          reason: str | None, note: str | None, witness: dict | None,
                          scheduled_dose_id: int | None, now: datetime) -> Given:
    """Record a dose on the eMAR after every safety check; a refusal says why and is kept."""
    if actor.role not in CLINICAL_STAFF:
        raise Forbidden("Only clinical staff record doses.")
    order = get_order(actor, order_id, lock=True)
    admission = db.session.get(Admission, order.admission_id)
    drug = DRUGS[order.drug]
    settings = medication_settings(order.unit_id)
    if outcome != "given":
        if not reason or reason not in REASON_CODES[outcome]:
            raise AdministrationInvalid(f"A {outcome} dose needs a reason code.",
                                        errors={"reason": [f"One of: {', '.join(REASON_CODES[outcome])}."]})
    elif reason is not None:
        raise AdministrationInvalid("A given dose takes no reason code.", errors={"reason": ["Only for "
                                    "refused, withheld or omitted doses."]})
    if admission.status != "active":
        return _refuse(actor, order, admission, _Refuse(
            "discharged", f"{admission.resident.name} is discharged: nothing more is recorded on this chart."), now)
    slot = _scheduled_slot(order, scheduled_dose_id, now, settings) if order.kind == "fixed" else None
    expected = slot.dose_mg if slot is not None else order.dose_mg
    if expected is not None and abs(dose_mg - expected) > 1e-9:
        raise AdministrationInvalid(f"This order is for {expected:g} mg, not {dose_mg:g} mg.",
                                    errors={"dose_mg": [f"Must be {expected:g}."]})
    witness_staff = None
    trigger_observation = None
    if outcome == "given":
        if drug.witness_required or witness:
            # Required for Schedule 2 and 3; a witness offered for another drug is checked and
            # kept too, never silently dropped.
            witness_staff = verify_witness(actor, witness, now=now)
        try:
            trigger_observation = safety_checks(order, admission, dose_mg, now, settings)
        except _Refuse as refusal:
            return _refuse(actor, order, admission, refusal, now)
    elif witness:
        witness_staff = verify_witness(actor, witness, now=now)
    previous = last_given(admission.id, order.drug) if outcome == "given" else None
    administration = Administration(
        unit_id=order.unit_id, admission_id=admission.id, order_id=order.id,
        scheduled_dose_id=slot.id if slot else None, drug=order.drug, outcome=outcome, dose_mg=dose_mg,
        reason_code=reason, note=note, given_seq=((previous.given_seq if previous else 0) + 1)
        if outcome == "given" else None, given_at=now, recorded_at=now, given_by_id=actor.id,
        witness_id=witness_staff.id if witness_staff else None,
        trigger_observation_id=trigger_observation.id if trigger_observation else None)
    db.session.add(administration)
    db.session.flush()
    given = Given(administration)
    if outcome == "given" and drug.register:
        append_register_entry(order.unit_id, order.drug, kind="administration", amount_mg=-dose_mg,
                              actor=actor, witness=witness_staff, now=now, admission_id=admission.id,
                              administration_id=administration.id, reference=f"eMAR {administration.id}")
    record_event(unit_id=order.unit_id, actor=actor, action=f"dose.{outcome}", entity_type="administration",
                 entity_id=administration.id, resident_id=admission.resident_id, now=now,
                 after={"order": order.id, "drug": order.drug, "dose_mg": dose_mg, "reason": reason,
                        "witness": witness_staff.username if witness_staff else None,
                        "trigger_observation": administration.trigger_observation_id,
                        "scheduled_dose": administration.scheduled_dose_id})
    if outcome == "withheld" and reason == "sedated":
        given.escalation = _medication_escalation(admission, order, "Dose withheld for sedation", now, actor)
    if outcome == "given" and drug.diazepam_equivalent:
        total = diazepam_equivalent_24h(admission.id, now)
        if total > DIAZEPAM_EQUIVALENT_REVIEW_MG:
            given.escalation = _medication_escalation(
                admission, order, f"{total:g} mg diazepam-equivalent in 24 hours (over "
                f"{DIAZEPAM_EQUIVALENT_REVIEW_MG}): senior review", now, actor, key="benzo-total")
    return given


def diazepam_equivalent_24h(admission_id: int, now: datetime) -> float:
    """Benzodiazepines given in the last 24 hours, as diazepam-equivalent milligrams."""
    total = 0.0
    for code, drug in DRUGS.items():
        if drug.diazepam_equivalent:
            total += given_in_window(admission_id, code, now - timedelta(hours=24), now) * drug.diazepam_equivalent
    return round(total, 1)


def _medication_escalation(admission: Admission, order: MedicationOrder, reason: str, now: datetime,
                           actor: Staff | None, key: str | None = None):
    escalation = raise_escalation(admission, Trigger("medication_safety", "urgent",
                                                     f"{DRUGS[order.drug].name}: {reason}",
                                                     f"med:{key or order.drug}"),
                                  source_type="medication_order", source_id=order.id, actor=actor, now=now)
    return EscalationSchema().dump(escalation)


def _refuse(actor: Staff, order: MedicationOrder, admission: Admission, refusal: _Refuse, now: datetime):
    db.session.add(SafetyRefusal(unit_id=order.unit_id, admission_id=admission.id, order_id=order.id,
                                 drug=order.drug, check=refusal.check, detail=refusal.detail, at=now,
                                 staff_id=actor.id))
    record_event(unit_id=order.unit_id, actor=actor, action="dose.refused_by_check",
                 entity_type="medication_order", entity_id=order.id, resident_id=admission.resident_id,
                 now=now, after={"check": refusal.check, "detail": refusal.detail})
    escalation = None
    if refusal.escalate and admission.status == "active":
        escalation = _medication_escalation(admission, order, f"dose refused: {refusal.escalate} "
                                            f"({refusal.detail})", now, actor)
    db.session.flush()
    raise DoseRefused(refusal.detail, check=refusal.check, escalation=escalation)


def list_administrations(actor: Staff, admission_id: int, *, limit: int | None = None) -> list[Administration]:
    """The admission's eMAR, newest first (the latest ``limit`` rows if given)."""
    get_admission(actor, admission_id)
    return list(db.session.scalars(select(Administration).where(Administration.admission_id == admission_id)
                                   .order_by(Administration.given_at.desc(), Administration.id.desc())
                                   .limit(limit)))


def doses_given(admission_id: int, start: datetime, end: datetime) -> list[Administration]:
    """Doses given to an admission in [start, end], for the marks on its score charts."""
    return list(db.session.scalars(select(Administration).where(
        Administration.admission_id == admission_id, Administration.outcome == "given",
        Administration.given_at >= start, Administration.given_at <= end)))


def recent_doses(admission_ids: list[int], per_admission: int = 3) -> dict[int, list[Administration]]:
    """The latest doses given to each admission, newest first (one query, the latest 200 in all)."""
    if not admission_ids:
        return {}
    recent: dict[int, list[Administration]] = {}
    for row in db.session.scalars(select(Administration).where(
            Administration.admission_id.in_(admission_ids), Administration.outcome == "given")
            .order_by(Administration.given_at.desc()).limit(200)):
        doses = recent.setdefault(row.admission_id, [])
        if len(doses) < per_admission:
            doses.append(row)
    return recent


# --- what is due ----------------------------------------------------------------------------

def due_doses(actor: Staff, now: datetime, admission_id: int | None = None) -> dict[str, list[dict]]:
    """Scheduled doses due now or overdue, and PRN doses with whether each may be given now, and why."""
    zone = unit_zone()
    settings = medication_settings(actor.unit_id)
    where = [MedicationOrder.unit_id == actor.unit_id, MedicationOrder.status == "active",
             Admission.status == "active"]
    if admission_id is not None:
        where.append(MedicationOrder.admission_id == admission_id)
    orders = db.session.execute(select(MedicationOrder, Admission).join(
        Admission, Admission.id == MedicationOrder.admission_id).where(*where)
        .order_by(MedicationOrder.admission_id, MedicationOrder.id)).all()
    fixed_ids = [o.id for o, _ in orders if o.kind == "fixed"]
    slots: dict[int, list[ScheduledDose]] = {i: [] for i in fixed_ids}
    if fixed_ids:
        taken = select(Administration.scheduled_dose_id).where(Administration.scheduled_dose_id.is_not(None),
                                                               Administration.order_id.in_(fixed_ids))
        for slot in db.session.scalars(select(ScheduledDose).where(
                ScheduledDose.order_id.in_(fixed_ids), ScheduledDose.id.not_in(taken),
                ScheduledDose.due_at <= now + timedelta(minutes=settings["scheduled_early_minutes"]))
                .order_by(ScheduledDose.due_at)):
            slots[slot.order_id].append(slot)
    scheduled, prn = [], []
    for order, admission in orders:
        drug = DRUGS[order.drug]
        base = {"admission_id": admission.id, "resident": admission.resident.name, "order_id": order.id,
                "drug": order.drug, "kind": order.kind, "witness_required": drug.witness_required}
        if order.kind == "fixed":
            for slot in slots[order.id]:
                late = now - slot.due_at
                state = "overdue" if late > timedelta(hours=1) else "due" if late >= timedelta(0) else "upcoming"
                scheduled.append({**base, "dose_mg": slot.dose_mg, "scheduled_dose_id": slot.id,
                                  "due_at": slot.due_at, "state": state, "available": True,
                                  "reason": slot.label})  # the label names the day and local time
            continue
        try:
            observation = safety_checks(order, admission, order.dose_mg, now, settings)
            last = last_given(admission.id, order.drug)
            left = min((m for m in (order.max_daily_mg, drug.max_daily_mg) if m), default=None)
            used = given_in_window(admission.id, order.drug, now - timedelta(hours=24), now)
            parts = []
            if observation is not None:
                parts.append(f"{get_scale(observation.scale).name} {observation.total} "
                             f"({observation.band.replace('_', ' ')}) at {observation.observed_at.astimezone(zone):%H:%M}")
            parts.append(f"last dose {_minutes(now - last.given_at)} ago" if last else "no dose yet")
            if left:
                parts.append(f"{left - used:g} mg of {left:g} mg left in 24 h")
            prn.append({**base, "dose_mg": order.dose_mg, "scheduled_dose_id": None, "due_at": None,
                        "state": "available", "available": True, "reason": "; ".join(parts)})
        except _Refuse as refusal:
            prn.append({**base, "dose_mg": order.dose_mg, "scheduled_dose_id": None, "due_at": None,
                        "state": "not_available", "available": False, "reason": refusal.detail})
    return {"scheduled": scheduled, "prn": prn}
