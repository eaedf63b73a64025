"""Services of the medication package: orders, the eMAR with its safety checks, the CD register."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select

from config.clock import local, unit_zone
from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from medication.drugs import (
    BUPRENORPHINE_DAY_MAX,
    BUPRENORPHINE_FIRST_DOSE,
    BUPRENORPHINE_HOURS_AFTER_SHORT_ACTING,
    CHLORDIAZEPOXIDE_PRN,
    DIAZEPAM_EQUIVALENT_REVIEW_MG,
    DRUGS,
    METHADONE_START,
    TIMES,
    Drug,
    reducing_regimen,
)
from medication.errors import (
    AdministrationInvalid,
    DoseRefused,
    NoDoseDue,
    OrderInvalid,
    OrderNotActive,
    OrderNotFound,
    RegisterInvalid,
    WitnessInvalid,
)
from medication.models import (
    REASON_CODES,
    Administration,
    CDRegisterEntry,
    MedicationOrder,
    SafetyRefusal,
    ScheduledDose,
)
from monitoring.escalations import Trigger, raise_escalation
from monitoring.models import Observation
from monitoring.scales import get_scale
from monitoring.services import settings_for as monitoring_settings
from monitoring.services import unit_bands
from unit.audit import record_event
from unit.auth import check_password
from unit.models import Admission, Staff
from unit.services import active_admission, get_admission, model_at, protocol_settings

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
PRESCRIBERS = ("doctor", "gp")


def settings_for(unit_id: int) -> dict[str, Any]:
    """The unit's medication protocol."""
    return protocol_settings(unit_id, "medication", MEDICATION_DEFAULTS)


def drug_or_invalid(code: str) -> Drug:
    """The drug definition, or a 422 naming the field."""
    if code not in DRUGS:
        raise OrderInvalid(f"Unknown drug {code!r}.", errors={"drug": [f"One of: {', '.join(DRUGS)}."]})
    return DRUGS[code]


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


def _check_order(admission: Admission, drug: Drug, body: dict, now: datetime) -> list[str]:
    """The prescribing rules of CLINICAL.md section 5; returns warnings, raises on a breach."""
    kind, dose = body["kind"], body.get("dose_mg")
    warnings: list[str] = []
    if body["route"] not in drug.routes:
        raise OrderInvalid(f"{drug.name} is not given by the {body['route']} route here.",
                           errors={"route": [f"One of: {', '.join(drug.routes)}."]})
    if body.get("strength") is not None and body["strength"] not in drug.strengths:
        raise OrderInvalid(f"{drug.name} is not stocked as {body['strength']!r} here.",
                           errors={"strength": [f"One of: {', '.join(drug.strengths)}."]})
    if kind in ("prn", "induction"):
        if dose is None:
            raise OrderInvalid("A dose is required.", errors={"dose_mg": ["Required."]})
        if body.get("trigger") is None:
            raise OrderInvalid("A symptom-triggered order needs its trigger (scale and band or score).",
                               errors={"trigger": ["Required."]})
        if drug.max_single_mg and dose > drug.max_single_mg:
            raise OrderInvalid(f"{drug.name}: at most {drug.max_single_mg:g} mg a dose.",
                               errors={"dose_mg": [f"At most {drug.max_single_mg:g}."]})
    if kind == "prn":
        if body.get("min_interval_minutes") is None or body.get("max_daily_mg") is None:
            raise OrderInvalid("A PRN order needs a minimum interval and a 24-hour maximum.",
                               errors={k: ["Required."] for k in ("min_interval_minutes", "max_daily_mg")
                                       if body.get(k) is None})
        if drug.group == "benzodiazepine" and model_at(admission.unit_id, now) == "medically_monitored" \
                and not settings_for(admission.unit_id)["prn_benzodiazepines_on_monitored"]:
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
    if body.get("max_daily_mg") and drug.max_daily_mg and body["max_daily_mg"] > drug.max_daily_mg:
        raise OrderInvalid(f"{drug.name}: at most {drug.max_daily_mg:g} mg in 24 hours.",
                           errors={"max_daily_mg": [f"At most {drug.max_daily_mg:g}."]})
    if kind == "fixed":
        if drug.code != "chlordiazepoxide":
            raise OrderInvalid("Fixed reducing regimens are generated for chlordiazepoxide.",
                               errors={"drug": ["Only chlordiazepoxide has a reducing template."]})
        try:
            reducing_regimen(int(body.get("start_dose_mg") or 0))
        except ValueError as error:
            raise OrderInvalid(f"Chlordiazepoxide regimen: {error}.",
                               errors={"start_dose_mg": ["15-50 mg in steps of 5."]}) from None
        if body["start_dose_mg"] > 30:
            warnings.append("Above 30 mg four times daily: close monitoring needed (NICE CG115).")
    if kind == "induction":
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
    trigger = body.get("trigger")
    if trigger:
        scale = get_scale(trigger["scale"])
        bands = [b.code for b in scale.bands]
        if trigger.get("min_band") and trigger["min_band"] not in bands:
            raise OrderInvalid(f"{scale.name} has no band {trigger['min_band']!r}.",
                               errors={"trigger": {"min_band": [f"One of: {', '.join(bands)}."]}})
    return warnings


@dataclass
class Ordered:
    order: MedicationOrder
    warnings: list[str]


@unit_of_work
def create_order(actor: Staff, admission_id: int, body: dict, *, now: datetime,
                 supersedes: MedicationOrder | None = None) -> Ordered:
    """Prescribe (doctor or GP), or record a GP's phone order (nurse, read back)."""
    admission = active_admission(actor, admission_id)
    prescriber, phone = _prescriber(actor, body)
    drug = drug_or_invalid(body["drug"])
    warnings = _check_order(admission, drug, body, now)
    starts_at = body.get("starts_at") or now
    kind = body["kind"]
    ends_at = body.get("ends_at")
    if kind == "prn" and ends_at is None and drug.code == "chlordiazepoxide":
        ends_at = starts_at + timedelta(days=CHLORDIAZEPOXIDE_PRN["course_days"])
    settings = settings_for(admission.unit_id)
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
                                            f"{settings_for(order.unit_id)['countersign_hours']} hours",
                                            f"countersign:{order.id}"),
                         source_type="medication_order", source_id=order.id, actor=None, now=now,
                         route=route)
        order.countersign_escalated_at = now
    return overdue


# --- the eMAR -------------------------------------------------------------------------------

def verify_witness(actor: Staff, witness: dict | None) -> Staff:
    """The witness confirms with their own credentials; never the giver; same unit, clinical role."""
    if not witness:
        raise WitnessInvalid("A controlled drug needs a second member of staff to witness the dose.",
                             errors={"witness": ["Required for a Schedule 2 or 3 controlled drug."]})
    staff = db.session.scalars(select(Staff).where(
        Staff.username == str(witness.get("username", "")).strip().lower())).first()
    if staff is None or not staff.active or not check_password(staff.password_hash, witness.get("password", "")):
        raise WitnessInvalid("The witness's username or password is not correct.",
                             errors={"witness": ["Not confirmed."]})
    if staff.id == actor.id:
        raise WitnessInvalid("The witness cannot be the person giving the dose.",
                             errors={"witness": ["Must be a second member of staff."]})
    if staff.unit_id != actor.unit_id or staff.role == "inspector":
        raise WitnessInvalid("The witness must be clinical staff of this unit.",
                             errors={"witness": ["Not clinical staff of this unit."]})
    return staff


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
    administration: Administration
    escalation: Any = None


@unit_of_work
def record_administration(actor: Staff, order_id: int, *, outcome: str, dose_mg: float,
                          reason: str | None, note: str | None, witness: dict | None,
                          scheduled_dose_id: int | None, now: datetime) -> Given:
    """Record a dose on the eMAR after every safety check; a refusal says why and is kept."""
    if actor.role not in ("nurse", "doctor", "gp", "manager"):
        raise Forbidden("Only clinical staff record doses.")
    order = get_order(actor, order_id, lock=True)
    admission = db.session.get(Admission, order.admission_id)
    drug = DRUGS[order.drug]
    settings = settings_for(order.unit_id)
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
            witness_staff = verify_witness(actor, witness)
        try:
            trigger_observation = safety_checks(order, admission, dose_mg, now, settings)
        except _Refuse as refusal:
            return _refuse(actor, order, admission, refusal, now)
    elif witness:
        witness_staff = verify_witness(actor, witness)
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
        _register_append(order.unit_id, order.drug, kind="administration", amount_mg=-dose_mg, actor=actor,
                         witness=witness_staff, now=now, admission_id=admission.id,
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
    from monitoring.escalations import escalation_view

    escalation = raise_escalation(admission, Trigger("medication_safety", "urgent",
                                                     f"{DRUGS[order.drug].name}: {reason}",
                                                     f"med:{key or order.drug}"),
                                  source_type="medication_order", source_id=order.id, actor=actor, now=now)
    return escalation_view(escalation)


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


def list_administrations(actor: Staff, admission_id: int) -> list[Administration]:
    """The admission's eMAR, newest first."""
    get_admission(actor, admission_id)
    return list(db.session.scalars(select(Administration).where(Administration.admission_id == admission_id)
                                   .order_by(Administration.given_at.desc(), Administration.id.desc())))


# --- the controlled-drug register -----------------------------------------------------------

def _register_append(unit_id: int, drug: str, *, kind: str, amount_mg: float, actor: Staff,
                     witness: Staff | None, now: datetime, counted_mg: float | None = None,
                     supplier: str | None = None, reference: str | None = None,
                     admission_id: int | None = None, administration_id: int | None = None,
                     corrects_id: int | None = None, note: str | None = None) -> CDRegisterEntry:
    if db.session.get_bind().dialect.name == "postgresql":
        # Lines are numbered per drug: two doses to different residents at the same moment
        # would both read the same last line and one would fail on the unique seq. Queue them
        # (until commit); the read below then sees the other's line. SQLite writers are serial.
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:unit_id, hashtext(:drug))"),
                           {"unit_id": unit_id, "drug": f"cd-register:{drug}"})
    last = db.session.scalars(select(CDRegisterEntry).where(
        CDRegisterEntry.unit_id == unit_id, CDRegisterEntry.drug == drug)
        .order_by(CDRegisterEntry.seq.desc()).limit(1)).first()
    balance = round((last.balance_mg if last else 0.0) + amount_mg, 4)
    # A dose given is never refused for paperwork: a balance below zero shows on the register
    # as a discrepancy to investigate. Stock cannot otherwise leave a register it is not in.
    if balance < 0 and kind != "administration":
        raise RegisterInvalid(f"The register balance of {drug} would go below zero ({balance:g} mg): "
                              "record the receipt first, or a witnessed correction.")
    entry = CDRegisterEntry(unit_id=unit_id, drug=drug, seq=(last.seq if last else 0) + 1, kind=kind,
                            amount_mg=amount_mg, balance_mg=balance, counted_mg=counted_mg,
                            supplier=supplier, reference=reference, admission_id=admission_id,
                            administration_id=administration_id, corrects_id=corrects_id, note=note,
                            at=now, recorded_by_id=actor.id, witness_id=witness.id if witness else None)
    db.session.add(entry)
    db.session.flush()
    record_event(unit_id=unit_id, actor=actor, action=f"cd_register.{kind}", entity_type="cd_register_entry",
                 entity_id=entry.id, now=now,
                 after={"drug": drug, "seq": entry.seq, "amount_mg": amount_mg, "balance_mg": balance,
                        "counted_mg": counted_mg, "witness": witness.username if witness else None,
                        "reference": reference, "supplier": supplier, "note": note})
    return entry


@unit_of_work
def record_register_entry(actor: Staff, drug_code: str, *, kind: str, amount_mg: float,
                          witness: dict | None, supplier: str | None, reference: str | None,
                          corrects_id: int | None, note: str | None, now: datetime) -> CDRegisterEntry:
    """Receipts, returns, destructions and corrections; witnessed where the rules say so."""
    if actor.role not in ("nurse", "doctor", "gp", "manager"):
        raise Forbidden("Only clinical staff write in the register.")
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    if kind == "receipt":
        if amount_mg <= 0 or not supplier:
            raise RegisterInvalid("A receipt needs a positive amount and the supplier.",
                                  errors={k: ["Required."] for k, v in
                                          (("amount_mg", amount_mg > 0), ("supplier", supplier)) if not v})
        witness_staff = verify_witness(actor, witness) if witness else None
        signed = amount_mg
    elif kind in ("return", "destruction"):
        witness_staff = verify_witness(actor, witness)  # returns and destructions are witnessed
        signed = -abs(amount_mg)
    elif kind == "correction":
        witness_staff = verify_witness(actor, witness)
        if not note:
            raise RegisterInvalid("A correction needs its reason.", errors={"note": ["Required."]})
        if corrects_id is not None:
            target = db.session.get(CDRegisterEntry, corrects_id)
            if target is None or target.unit_id != actor.unit_id or target.drug != drug.code:
                raise RegisterInvalid("The corrected entry is not in this register.",
                                      errors={"corrects_id": ["Not an entry of this drug's register."]})
        signed = amount_mg
    else:
        raise RegisterInvalid(f"Unknown entry kind {kind!r}.")
    return _register_append(actor.unit_id, drug.code, kind=kind, amount_mg=signed, actor=actor,
                            witness=witness_staff, now=now, supplier=supplier, reference=reference,
                            corrects_id=corrects_id, note=note)


@unit_of_work
def record_stock_check(actor: Staff, drug_code: str, *, counted_mg: float, witness: dict | None,
                       note: str | None, now: datetime) -> CDRegisterEntry:
    """Two staff count the stock; a difference from the balance is escalated to the manager."""
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    witness_staff = verify_witness(actor, witness)
    balance = register_balance(actor.unit_id, drug.code)
    entry = _register_append(actor.unit_id, drug.code, kind="stock_check", amount_mg=0, actor=actor,
                             witness=witness_staff, now=now, counted_mg=counted_mg, note=note)
    if abs(counted_mg - balance) > 1e-6:
        from config.outbox import enqueue

        managers = db.session.scalars(select(Staff).where(Staff.unit_id == actor.unit_id,
                                                          Staff.role == "manager", Staff.active.is_(True))).all()
        text = (f"Controlled-drug discrepancy: {drug.name} counted {counted_mg:g} mg by "
                f"{actor.full_name} and {witness_staff.full_name}, register balance {balance:g} mg.")
        for manager in managers:
            enqueue(unit_id=actor.unit_id, dedup_key=f"cd-discrepancy:{entry.id}:{manager.id}",
                    recipient_staff_id=manager.id, recipient_address=manager.email,
                    subject=f"[URGENT] {text}", body=text + "\nInvestigate and record a witnessed correction.",
                    ref_type="cd_register_entry", ref_id=entry.id, now=now)
        record_event(unit_id=actor.unit_id, actor=actor, action="cd_register.discrepancy",
                     entity_type="cd_register_entry", entity_id=entry.id, now=now,
                     after={"drug": drug.code, "counted_mg": counted_mg, "balance_mg": balance,
                            "escalated_to": [m.username for m in managers]})
    return entry


def register_balance(unit_id: int, drug: str) -> float:
    """The register's running balance for a drug."""
    return float(db.session.scalar(select(CDRegisterEntry.balance_mg).where(
        CDRegisterEntry.unit_id == unit_id, CDRegisterEntry.drug == drug)
        .order_by(CDRegisterEntry.seq.desc()).limit(1)) or 0.0)


def register_entries(actor: Staff, drug_code: str) -> list[CDRegisterEntry]:
    """Every entry of a drug's register on the actor's unit, in order."""
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    return list(db.session.scalars(select(CDRegisterEntry).where(
        CDRegisterEntry.unit_id == actor.unit_id, CDRegisterEntry.drug == drug.code)
        .order_by(CDRegisterEntry.seq)))


def discrepancies(unit_id: int) -> list[CDRegisterEntry]:
    """Stock checks whose count differed from the balance before them."""
    checks = db.session.scalars(select(CDRegisterEntry).where(CDRegisterEntry.unit_id == unit_id,
                                                               CDRegisterEntry.kind == "stock_check")).all()
    return [c for c in checks if c.counted_mg is not None and abs(c.counted_mg - c.balance_mg) > 1e-6]


# --- what is due ----------------------------------------------------------------------------

def due_doses(actor: Staff, now: datetime, admission_id: int | None = None) -> dict[str, list[dict]]:
    """Scheduled doses due now or overdue, and PRN doses with whether each may be given now, and why."""
    zone = unit_zone()
    settings = settings_for(actor.unit_id)
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
