"""Medication orders: prescribing rules per order kind, phone orders and their countersignature,
stopping and changing an order (docs/clinical-rules.md section 5)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select

from config.clock import unit_zone
from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from medication.drugs import (
    BUPRENORPHINE_FIRST_DOSE,
    CHLORDIAZEPOXIDE_PRN,
    METHADONE_START,
    TIMES,
    Drug,
    drug_or_invalid,
    reducing_regimen,
)
from medication.errors import OrderInvalid, OrderNotActive, OrderNotFound
from medication.models import MedicationOrder, ScheduledDose
from medication.settings import medication_settings
from monitoring.escalations import Trigger, raise_escalation
from monitoring.scales import get_scale
from unit.audit import record_event
from unit.auth import PRESCRIBERS
from unit.models import Admission, Staff
from unit.services import active_admission, get_admission, model_at



# --- the prescribing rules, one check per order kind -----------------------------------------

def _check_route_and_strength(drug: Drug, body: dict) -> None:
    if body["route"] not in drug.routes:
        raise OrderInvalid(f"{drug.name} is not given by the {body['route']} route here.",
                           errors={"route": [f"One of: {', '.join(drug.routes)}."]})
    if body.get("strength") is not None and body["strength"] not in drug.strengths:
        raise OrderInvalid(f"{drug.name} is not stocked as {body['strength']!r} here.",
                           errors={"strength": [f"One of: {', '.join(drug.strengths)}."]})


def _check_symptom_triggered(drug: Drug, body: dict) -> None:
    """PRN and induction doses: a dose, its trigger, and the drug's single-dose ceiling."""
    dose = body.get("dose_mg")
    if dose is None:
        raise OrderInvalid("A dose is required.", errors={"dose_mg": ["Required."]})
    if body.get("trigger") is None:
        raise OrderInvalid("A symptom-triggered order needs its trigger (scale and band or score).",
                           errors={"trigger": ["Required."]})
    if drug.max_single_mg and dose > drug.max_single_mg:
        raise OrderInvalid(f"{drug.name}: at most {drug.max_single_mg:g} mg a dose.",
                           errors={"dose_mg": [f"At most {drug.max_single_mg:g}."]})


def _check_daily_ceiling(drug: Drug, body: dict) -> None:
    if body.get("max_daily_mg") and drug.max_daily_mg and body["max_daily_mg"] > drug.max_daily_mg:
        raise OrderInvalid(f"{drug.name}: at most {drug.max_daily_mg:g} mg in 24 hours.",
                           errors={"max_daily_mg": [f"At most {drug.max_daily_mg:g}."]})


def _check_trigger_band(body: dict) -> None:
    trigger = body.get("trigger")
    if trigger:
        scale = get_scale(trigger["scale"])
        bands = [b.code for b in scale.bands]
        if trigger.get("min_band") and trigger["min_band"] not in bands:
            raise OrderInvalid(f"{scale.name} has no band {trigger['min_band']!r}.",
                               errors={"trigger": {"min_band": [f"One of: {', '.join(bands)}."]}})


def _check_prn(admission: Admission, drug: Drug, body: dict, now: datetime) -> list[str]:
    """A PRN order: interval and 24-hour maximum, benzodiazepines only where enabled (NICE
    CG100), and the chlordiazepoxide PRN limits (NICE CG115)."""
    _check_symptom_triggered(drug, body)
    dose = body["dose_mg"]
    if body.get("min_interval_minutes") is None or body.get("max_daily_mg") is None:
        raise OrderInvalid("A PRN order needs a minimum interval and a 24-hour maximum.",
                           errors={k: ["Required."] for k in ("min_interval_minutes", "max_daily_mg")
                                   if body.get(k) is None})
    if drug.group == "benzodiazepine" and model_at(admission.unit_id, now) == "medically_monitored" \
            and not medication_settings(admission.unit_id)["prn_benzodiazepines_on_monitored"]:
        raise OrderInvalid(
            "NICE CG100: symptom-triggered benzodiazepine dosing needs 24-hour assessment, and this "
            "medically monitored unit's protocol does not enable it. Prescribe a fixed reducing regimen.",
            errors={"kind": ["PRN benzodiazepines are not enabled on this unit."]})
    if drug.code == "chlordiazepoxide":
        low, high = CHLORDIAZEPOXIDE_PRN["dose"]
        errors = {}
        if not low <= dose <= high:
            errors["dose_mg"] = [f"Chlordiazepoxide PRN is {low}-{high} mg a dose."]
        if body["min_interval_minutes"] < CHLORDIAZEPOXIDE_PRN["min_interval"]:
            errors["min_interval_minutes"] = ["At least 120 minutes apart."]
        if body["max_daily_mg"] > CHLORDIAZEPOXIDE_PRN["max_daily"]:
            errors["max_daily_mg"] = ["At most 250 mg in 24 hours."]
        if errors:
            raise OrderInvalid("The PRN order breaks the chlordiazepoxide limits (NICE CG115).",
                               errors=errors)
    _check_daily_ceiling(drug, body)
    return []


def _check_fixed(admission: Admission, drug: Drug, body: dict, now: datetime) -> list[str]:
    """A fixed reducing regimen: chlordiazepoxide only, from a starting dose of 15-50 mg (NICE CG115)."""
    _check_daily_ceiling(drug, body)
    if drug.code != "chlordiazepoxide":
        raise OrderInvalid("Fixed reducing regimens are generated for chlordiazepoxide.",
                           errors={"drug": ["Only chlordiazepoxide has a reducing template."]})
    try:
        reducing_regimen(int(body.get("start_dose_mg") or 0))
    except ValueError as error:
        raise OrderInvalid(f"Chlordiazepoxide regimen: {error}.",
                           errors={"start_dose_mg": ["15-50 mg in steps of 5."]}) from None
    if body["start_dose_mg"] > 30:
        return ["Above 30 mg four times daily: close monitoring needed (NICE CG115)."]
    return []


def _check_induction(admission: Admission, drug: Drug, body: dict, now: datetime) -> list[str]:
    """An induction: buprenorphine (first dose, last opioid recorded) or methadone (starting dose)."""
    _check_symptom_triggered(drug, body)
    _check_daily_ceiling(drug, body)
    dose = body["dose_mg"]
    if drug.code == "buprenorphine":
        low, high = BUPRENORPHINE_FIRST_DOSE
        if not low <= dose <= high:
            raise OrderInvalid(f"Buprenorphine induction: first dose {low}-{high} mg.",
                               errors={"dose_mg": [f"{low}-{high} mg."]})
        if body.get("last_opioid_at") is None:
            raise OrderInvalid("Record when the last short-acting opioid was used.",
                               errors={"last_opioid_at": ["Required for buprenorphine induction."]})
    elif drug.code == "methadone":
        low, high = METHADONE_START
        if not low <= dose <= high:
            raise OrderInvalid(f"Methadone starts at {low}-{high} mg daily.",
                               errors={"dose_mg": [f"{low}-{high} mg."]})
    else:
        raise OrderInvalid("Induction orders are for buprenorphine or methadone.",
                           errors={"drug": ["buprenorphine or methadone."]})
    return []


# The prescribing rules of each order kind (docs/clinical-rules.md section 5): each returns
# its warnings and raises on a breach.
ORDER_CHECKS: dict[str, Callable[[Admission, Drug, dict, datetime], list[str]]] = {
    "fixed": _check_fixed, "prn": _check_prn, "induction": _check_induction}


# --- orders ---------------------------------------------------------------------------------

def _prescriber(actor: Staff, body: dict) -> tuple[Staff, bool]:
    """Who prescribes: the actor (doctor or GP), or the GP of a phone order a nurse records."""
    phone = body.get("phone_order")
    if actor.role in PRESCRIBERS and not phone:
        return actor, False
    if not phone:
        raise Forbidden("Only a doctor or GP may prescribe. A nurse records a GP's verbal order as a "
                        "phone order, with the read-back confirmed.")
    if actor.role not in ("nurse", "manager"):
        raise Forbidden("Phone orders are recorded by nurses.")
    if not phone.get("read_back_confirmed"):
        raise OrderInvalid("Read the order back to the prescriber and confirm it first.",
                           errors={"phone_order": {"read_back_confirmed": ["Must be true."]}})
    prescriber = db.session.scalars(select(Staff).where(
        Staff.username == phone["prescriber"], Staff.unit_id == actor.unit_id,
        Staff.role.in_(PRESCRIBERS), Staff.active.is_(True))).first()
    if prescriber is None:
        raise OrderInvalid("The prescriber must be a doctor or GP of this unit.",
                           errors={"phone_order": {"prescriber": ["Not a doctor or GP of this unit."]}})
    return prescriber, True


@dataclass
class Ordered:
    """A new order and the prescribing warnings it raised."""

    order: MedicationOrder
    warnings: list[str]


@unit_of_work
def create_order(actor: Staff, admission_id: int, body: dict, *, now: datetime,
                 supersedes: MedicationOrder | None = None) -> Ordered:
    """Prescribe (doctor or GP), or record a GP's phone order (nurse, read back)."""
    admission = active_admission(actor, admission_id)
    prescriber, phone = _prescriber(actor, body)
    drug = drug_or_invalid(body["drug"])
    _check_route_and_strength(drug, body)
    warnings = ORDER_CHECKS[body["kind"]](admission, drug, body, now)
    _check_trigger_band(body)
    starts_at = body.get("starts_at") or now
    kind = body["kind"]
    ends_at = body.get("ends_at")
    if kind == "prn" and ends_at is None and drug.code == "chlordiazepoxide":
        ends_at = starts_at + timedelta(days=CHLORDIAZEPOXIDE_PRN["course_days"])
    settings = medication_settings(admission.unit_id)
    order = MedicationOrder(
        unit_id=admission.unit_id, admission_id=admission.id, kind=kind, drug=drug.code,
        form=body.get("form") or drug.forms[0], route=body["route"], dose_mg=body.get("dose_mg"),
        strength=body.get("strength") or drug.strengths[0],
        start_dose_mg=body.get("start_dose_mg"), min_interval_minutes=body.get("min_interval_minutes"),
        max_daily_mg=body.get("max_daily_mg") or drug.max_daily_mg, trigger=body.get("trigger"),
        controlled=drug.cd_schedule is not None, cd_schedule=drug.cd_schedule, starts_at=starts_at,
        ends_at=ends_at, status="active", version=(supersedes.version + 1) if supersedes else 1,
        supersedes_id=supersedes.id if supersedes else None, prescriber_id=prescriber.id,
        entered_by_id=actor.id, phone_order=phone, read_back_confirmed=phone,
        countersign_due_at=now + timedelta(hours=settings["countersign_hours"]) if phone else None,
        last_opioid_at=body.get("last_opioid_at"), note=body.get("note"), created_at=now)
    db.session.add(order)
    db.session.flush()
    if kind == "fixed":
        _generate_doses(order, int(body["start_dose_mg"]))
    record_event(unit_id=order.unit_id, actor=actor, action="order.create", entity_type="medication_order",
                 entity_id=order.id, resident_id=admission.resident_id, now=now,
                 after={**{k: v for k, v in body.items() if k != "phone_order"},
                        "prescriber": prescriber.username, "phone_order": phone,
                        "version": order.version, "supersedes": order.supersedes_id})
    return Ordered(order, warnings)


def _generate_doses(order: MedicationOrder, start_mg: int) -> None:
    zone = unit_zone()
    first_day = order.starts_at.astimezone(zone).date()
    for day, frequency, mg in reducing_regimen(start_mg):
        date = first_day + timedelta(days=day - 1)
        for time in TIMES[frequency]:
            hour, minute = map(int, time.split(":"))
            due = datetime(date.year, date.month, date.day, hour, minute, tzinfo=zone)
            if due < order.starts_at - timedelta(hours=1):
                continue  # the regimen starts with the next slot after the order
            db.session.add(ScheduledDose(order_id=order.id, admission_id=order.admission_id,
                                         due_at=due.astimezone(ZoneInfo("UTC")), dose_mg=mg,
                                         label=f"day {day} {frequency} {time}"))
    last_day = first_day + timedelta(days=len(reducing_regimen(start_mg)))
    order.ends_at = datetime(last_day.year, last_day.month, last_day.day, tzinfo=zone)


def get_order(actor: Staff, order_id: int, *, lock: bool = False) -> MedicationOrder:
    """An order of the actor's unit."""
    query = select(MedicationOrder).where(MedicationOrder.id == order_id)
    if lock:
        query = query.with_for_update()
    order = db.session.scalars(query).first()
    if order is None or order.unit_id != actor.unit_id:
        raise OrderNotFound(f"There is no medication order {order_id} on your unit.")
    return order


def list_orders(actor: Staff, admission_id: int) -> list[MedicationOrder]:
    """Every version of every order of an admission, newest first."""
    get_admission(actor, admission_id)
    return list(db.session.scalars(select(MedicationOrder).where(MedicationOrder.admission_id == admission_id)
                                   .order_by(MedicationOrder.created_at.desc(), MedicationOrder.id.desc())))


@unit_of_work
def stop_order(actor: Staff, order_id: int, *, reason: str, now: datetime) -> MedicationOrder:
    """A doctor or GP stops an order (kept, marked stopped)."""
    if actor.role not in PRESCRIBERS:
        raise Forbidden("Only a doctor or GP may stop an order.")
    order = get_order(actor, order_id, lock=True)
    if order.status != "active":
        raise OrderNotActive(f"Order {order_id} is {order.status}.")
    order.status, order.stopped_at, order.stopped_by_id, order.stop_reason = "stopped", now, actor.id, reason
    record_event(unit_id=order.unit_id, actor=actor, action="order.stop", entity_type="medication_order",
                 entity_id=order.id, now=now, before={"status": "active"},
                 after={"status": "stopped", "reason": reason})
    return order


@unit_of_work
def change_order(actor: Staff, order_id: int, body: dict, *, reason: str, now: datetime) -> Ordered:
    """A change is a new version that supersedes the old one (never an edit in place)."""
    if actor.role not in PRESCRIBERS:
        raise Forbidden("Only a doctor or GP may change an order.")
    old = get_order(actor, order_id, lock=True)
    if old.status != "active":
        raise OrderNotActive(f"Order {order_id} is {old.status}.")
    old.status, old.stopped_at, old.stopped_by_id = "superseded", now, actor.id
    old.stop_reason = f"Changed: {reason}"
    # The old version's own record changed too: its event carries its row (unit.audit).
    record_event(unit_id=old.unit_id, actor=actor, action="order.supersede", entity_type="medication_order",
                 entity_id=old.id, now=now, before={"status": "active"},
                 after={"status": "superseded", "reason": reason})
    return create_order(actor, old.admission_id, body, now=now, supersedes=old)


@unit_of_work
def countersign_order(actor: Staff, order_id: int, *, now: datetime) -> MedicationOrder:
    """The prescriber countersigns a phone order."""
    order = get_order(actor, order_id, lock=True)
    if not order.phone_order:
        raise OrderInvalid("Only phone orders are countersigned.")
    if actor.id != order.prescriber_id:
        raise Forbidden("Only the prescriber who gave the phone order may countersign it.")
    if order.countersigned_at is None:
        order.countersigned_at = now
        record_event(unit_id=order.unit_id, actor=actor, action="order.countersign",
                     entity_type="medication_order", entity_id=order.id, now=now,
                     after={"countersigned": True, "late": now > order.countersign_due_at})
    return order


@unit_of_work
def escalate_uncountersigned(now: datetime) -> list[MedicationOrder]:
    """Phone orders past their countersign deadline are escalated to the prescriber's route."""
    overdue = list(db.session.scalars(select(MedicationOrder).where(
        MedicationOrder.phone_order.is_(True), MedicationOrder.countersigned_at.is_(None),
        MedicationOrder.countersign_escalated_at.is_(None), MedicationOrder.countersign_due_at <= now)))
    for order in overdue:
        admission = db.session.get(Admission, order.admission_id)
        prescriber = db.session.get(Staff, order.prescriber_id)
        # To the prescriber (the visiting GP who phoned it in), whatever the unit's model.
        route = "visiting_gp" if prescriber.role == "gp" else "on_site_doctor"
        raise_escalation(admission, Trigger("phone_order_not_countersigned", "soon",
                                            f"Phone order {order.id} ({order.drug}) by {prescriber.full_name} "
                                            f"not countersigned within "
                                            f"{medication_settings(order.unit_id)['countersign_hours']} hours",
                                            f"countersign:{order.id}"),
                         source_type="medication_order", source_id=order.id, actor=None, now=now,
                         route=route)
        order.countersign_escalated_at = now
    return overdue
