"""Services of the unit package: the only place its domain rules live."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from config.clock import local
from config.db import unit_of_work
from config.errors import Forbidden, ValidationFailed
from config.extensions import db
from unit.audit import record_event, start_chain
from unit.auth import DOCTORS, check_new_password, hash_password
from unit.competence import COMPETENCE_DEFAULTS, TIGHTEN_DIRECTION, age_on, assess_competence
from unit.errors import (
    AdmissionDeclined,
    AdmissionNotActive,
    AdmissionNotFound,
    AlreadyAdmitted,
    CareModelChangeInvalid,
    ChecklistNotOpen,
    OverrideNotPermitted,
    ProtocolInvalid,
    ReReferralUnexplained,
    ResidentMismatch,
    UnitNotFound,
)
from unit.envelope import Bound
from unit.referrals import changed_figures, previous_decline, resident_snapshot, shown_figure
from unit.models import (
    CARE_MODELS,
    HARM_REDUCTION_ITEMS,
    Admission,
    CareModelChange,
    HarmReductionChecklist,
    Referral,
    Resident,
    Staff,
    ProtocolProposal,
    Unit,
    UnitProtocol,
)
from unit.record import apply_return_fields

# Ids are 32-bit integers in the database: a larger id in a URL names nothing (and must not
# reach the driver, which would fail with an overflow instead of "not found").
MAX_ID = 2**31 - 1

# How far back a model change may be dated: clock skew only. History is never rewritten.
BACKDATE_TOLERANCE = timedelta(minutes=5)

# Called after an admission is created / discharged, in the same transaction. Other packages
# (monitoring: observation schedules) register here when the app is assembled.
AdmissionHook = Callable[[Admission, Staff, datetime], None]
admitted_hooks: list[AdmissionHook] = []
discharged_hooks: list[AdmissionHook] = []


# --- units and their care model -------------------------------------------------------------

def get_unit(code: str) -> Unit:
    """The unit with this code."""
    unit = db.session.scalars(select(Unit).where(Unit.code == code)).first()
    if unit is None:
        raise UnitNotFound(f"No unit has the code {code!r}.")
    return unit


@unit_of_work
def create_unit(code: str, name: str, model: str, *, now: datetime) -> Unit:
    """Register a unit with its declared care model (from the CLI)."""
    if model not in CARE_MODELS:
        raise ValidationFailed(f"Unknown care model {model!r}.", errors={"model": [f"Must be one of: {', '.join(CARE_MODELS)}."]})
    if db.session.scalars(select(Unit).where(Unit.code == code)).first():
        raise CareModelChangeInvalid(f"A unit with the code {code!r} already exists.")
    unit = Unit(code=code, name=name, created_at=now)
    db.session.add(unit)
    db.session.flush()
    start_chain(unit)
    change = CareModelChange(unit_id=unit.id, model=model, effective_at=now,
                             reason="Unit registered", recorded_at=now)
    db.session.add(change)
    db.session.flush()
    record_event(unit_id=unit.id, actor=None, action="unit.create", entity_type="unit",
                 entity_id=unit.id, now=now, after={"code": code, "name": name, "model": model})
    return unit


def model_at(unit_id: int, at: datetime) -> str:
    """The care model the unit followed at ``at`` (the latest change in force then)."""
    model = db.session.scalar(
        select(CareModelChange.model)
        .where(CareModelChange.unit_id == unit_id, CareModelChange.effective_at <= at)
        .order_by(CareModelChange.effective_at.desc(), CareModelChange.id.desc()).limit(1)
    )
    if model is None:
        raise CareModelChangeInvalid(f"The unit had no declared model at {at.isoformat()}.")
    return model


def models_at(unit_ids: Iterable[int], at: datetime) -> dict[int, str]:
    """The care model each unit followed at ``at``, as ``model_at`` says, in one query.

    For a job spanning many units (the due sweep): one read instead of one per unit.
    """
    wanted = sorted(set(unit_ids))
    ranked = select(
        CareModelChange.unit_id, CareModelChange.model,
        sa.func.row_number().over(
            partition_by=CareModelChange.unit_id,
            order_by=(CareModelChange.effective_at.desc(), CareModelChange.id.desc())).label("rank"),
    ).where(CareModelChange.unit_id.in_(wanted), CareModelChange.effective_at <= at).subquery()
    models = dict(db.session.execute(select(ranked.c.unit_id, ranked.c.model)
                                     .where(ranked.c.rank == 1)).all())
    if len(models) < len(wanted):
        raise CareModelChangeInvalid(f"The unit had no declared model at {at.isoformat()}.")
    return models


def model_history(unit_id: int) -> list[CareModelChange]:
    """Every declaration of the unit's model, oldest first."""
    return list(db.session.scalars(
        select(CareModelChange).where(CareModelChange.unit_id == unit_id)
        .order_by(CareModelChange.effective_at, CareModelChange.id)
    ))


@unit_of_work
def change_care_model(actor: Staff, *, model: str, reason: str, effective_at: datetime | None,
                      now: datetime) -> CareModelChange:
    """A manager declares a new care model, in force from ``effective_at`` (default now)."""
    if actor.role != "manager":
        raise Forbidden("Only a manager may change the unit's care model.")
    effective_at = effective_at or now
    if effective_at < now - BACKDATE_TOLERANCE:
        raise CareModelChangeInvalid(
            "A model change cannot be backdated: the model the unit followed in the past is a "
            "matter of record.", errors={"effective_at": ["Must not be in the past."]})
    current = model_at(actor.unit_id, effective_at)
    if current == model:
        raise CareModelChangeInvalid(
            f"The unit already follows {model} at that time.", errors={"model": ["Unchanged."]})
    change = CareModelChange(unit_id=actor.unit_id, model=model, effective_at=effective_at,
                             reason=reason, changed_by_id=actor.id, recorded_at=now)
    db.session.add(change)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="unit.model_change",
                 entity_type="care_model_change", entity_id=change.id, now=now,
                 before={"model": current},
                 after={"model": model, "effective_at": effective_at, "reason": reason})
    return change


def high_risk_admissions(unit_id: int) -> list[Admission]:
    """Active admissions flagged high-risk (which a monitored unit could not have admitted)."""
    return list(db.session.scalars(
        select(Admission).where(Admission.unit_id == unit_id, Admission.status == "active",
                                Admission.high_risk.is_(True)).order_by(Admission.id)
    ))


# --- protocol --------------------------------------------------------------------------------

_PROTOCOLS = "unit_protocols_read"


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget_protocols(session, transaction) -> None:
    if transaction.parent is None:  # another transaction may see a newer version
        session.info.pop(_PROTOCOLS, None)


def protocol_settings(unit_id: int, section: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The unit's protocol settings for a section: the defaults overlaid with its own values.

    Read once per transaction (an observation consults three sections; a sweep many units):
    the unit's latest protocol is kept in the session until the transaction ends or a new
    version is adopted (``unit.protocol``).
    """
    cache = db.session.info.setdefault(_PROTOCOLS, {})
    if unit_id not in cache:
        cache[unit_id] = db.session.scalar(_latest_protocol_query(unit_id)) or {}
    return {**defaults, **cache[unit_id].get(section, {})}


def load_protocols(unit_ids: Iterable[int]) -> None:
    """Read the latest protocol of many units in one query into this transaction's cache.

    For a job spanning many units (the due sweep), so that ``protocol_settings`` then reads
    nothing: one query instead of one per unit.
    """
    cache = db.session.info.setdefault(_PROTOCOLS, {})
    wanted = sorted(set(unit_ids) - set(cache))
    if not wanted:
        return
    latest = (select(UnitProtocol.unit_id, sa.func.max(UnitProtocol.version).label("version"))
              .where(UnitProtocol.unit_id.in_(wanted)).group_by(UnitProtocol.unit_id).subquery())
    for protocol in db.session.scalars(select(UnitProtocol).join(
            latest, sa.and_(UnitProtocol.unit_id == latest.c.unit_id,
                            UnitProtocol.version == latest.c.version))):
        cache[protocol.unit_id] = protocol.settings
    for unit_id in wanted:
        cache.setdefault(unit_id, {})


@dataclass(frozen=True)
class ProtocolSection:
    """A section of the unit protocol, registered by the package that reads it.

    ``check(values)`` returns the values as they are to be stored (normalized) and the errors
    per key (``{"bands.ciwa-ar": ["..."]}``); any error refuses the whole change. ``shown``
    turns the effective settings into what GET /unit/protocol shows (e.g. default bands).
    ``bounds`` (``unit.envelope``) and ``envelope(settings) -> errors`` are the section's
    safety envelope, checked on the settings as they would be in force (unit.protocol).
    """

    defaults: dict[str, Any]
    check: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, list[str]]]]
    shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    bounds: tuple[Bound, ...] = ()
    envelope: Callable[[dict[str, Any]], dict[str, list[str]]] | None = None


# Section name -> its definition. monitoring ("monitoring", "escalation") and medication
# ("medication") register theirs when the app is assembled (config/app.py register_hooks):
# unit never imports them. A section nobody registered cannot be set.
protocol_sections: dict[str, ProtocolSection] = {}


def merge_settings(base: Any, new: Any) -> Any:
    """``new`` over ``base``: objects merge key by key (a scale's bands leave the other
    scales' alone); anything else, a band list included, is replaced whole."""
    if isinstance(base, dict) and isinstance(new, dict):
        return {**base, **{key: merge_settings(base.get(key), value) for key, value in new.items()}}
    return new


def latest_protocol(unit_id: int) -> UnitProtocol | None:
    """The unit's protocol version in force (None: the defaults hold)."""
    return db.session.scalars(_latest_protocol_query(unit_id, UnitProtocol)).first()


def _latest_protocol_query(unit_id: Any, what: Any = UnitProtocol.settings):
    """The unit's latest protocol version (by default its settings; no row: the defaults hold)."""
    return (select(what).where(UnitProtocol.unit_id == unit_id)
            .order_by(UnitProtocol.version.desc()).limit(1))


# Built once: on the write path building a statement costs as much as running it.
_ADMISSION_WITH_PROTOCOL = select(
    Admission, _latest_protocol_query(sa.bindparam("unit_id")).scalar_subquery()
).where(Admission.id == sa.bindparam("admission_id"))


def forget_protocols() -> None:
    """Drop this transaction's cached protocols: the next read sees a version just adopted."""
    db.session.info.pop(_PROTOCOLS, None)


def effective_protocol(unit_id: int) -> dict[str, Any]:
    """The unit's protocol as in force: every registered section with its defaults filled in,
    the unit's own values, and the version (None before any change), reason, who proposed and
    who approved it, and when it came into force."""
    latest = latest_protocol(unit_id)
    own = dict(latest.settings) if latest else {}
    sections = {}
    for name, definition in sorted(protocol_sections.items()):
        effective = merge_settings(definition.defaults, own.get(name, {}))
        sections[name] = definition.shown(effective) if definition.shown else effective
    proposal_id = db.session.scalar(select(ProtocolProposal.id).where(
        ProtocolProposal.protocol_id == latest.id)) if latest else None
    return {"version": latest.version if latest else None,
            "reason": latest.reason if latest else None,
            "created_by": latest.created_by if latest else None,
            "proposed_by": latest.created_by if latest else None,
            "approved_by": latest.approved_by if latest else None,
            "proposal_id": proposal_id,
            "created_at": latest.created_at if latest else None,
            "sections": sections, "own": own}


def _competence_check(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    try:
        _check_tightening(values)
    except ProtocolInvalid as invalid:
        return values, invalid.errors or {}
    return values, {}


def _check_tightening(values: dict[str, Any]) -> None:
    errors = {}
    for key, value in values.items():
        if key not in COMPETENCE_DEFAULTS:
            errors[key] = ["Unknown competence setting."]
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            errors[key] = ["Must be a number."]
        elif (value - COMPETENCE_DEFAULTS[key]) * TIGHTEN_DIRECTION[key] < 0:
            errors[key] = [f"A unit may only tighten this criterion (default {COMPETENCE_DEFAULTS[key]})."]
    if errors:
        raise ProtocolInvalid("The competence criteria may only be tightened.", errors=errors)


protocol_sections["competence"] = ProtocolSection(COMPETENCE_DEFAULTS, _competence_check)


# --- staff -----------------------------------------------------------------------------------

@unit_of_work
def create_staff(*, unit_code: str, username: str, role: str, password: str, full_name: str,
                 email: str | None, now: datetime, min_password_length: int = 10) -> Staff:
    """Add a member of staff with an argon2-hashed password (from the CLI); a password that
    is too short, commonly used or holds the username is refused (NIST SP 800-63B)."""
    unit = get_unit(unit_code)
    username = username.strip().lower()
    check_new_password(password, username=username, min_length=min_password_length)
    if db.session.scalars(select(Staff).where(Staff.username == username)).first():
        raise ValidationFailed(f"The username {username!r} is taken.", errors={"username": ["Taken."]})
    staff = Staff(unit_id=unit.id, username=username, role=role, full_name=full_name or username,
                  email=email, password_hash=hash_password(password), created_at=now)
    db.session.add(staff)
    db.session.flush()
    record_event(unit_id=unit.id, actor=None, action="staff.create", entity_type="staff",
                 entity_id=staff.id, now=now,
                 after={"username": username, "role": role, "full_name": staff.full_name})
    return staff


@unit_of_work
def disable_staff(*, username: str, reason: str, now: datetime) -> tuple[Staff, int]:
    """A member of staff leaves or loses access: sign-in refused from now on and every open
    session revoked at once (from the CLI). Returns the staff and the sessions revoked."""
    from unit.auth import revoke_sessions

    staff = db.session.scalars(select(Staff).where(Staff.username == username.strip().lower())).first()
    if staff is None:
        raise ValidationFailed(f"There is no user {username!r}.", errors={"username": ["Unknown."]})
    if not reason.strip():
        raise ValidationFailed("Give the reason.", errors={"reason": ["Required."]})
    was_active = staff.active
    staff.active = False
    revoked = revoke_sessions(staff, now)
    record_event(unit_id=staff.unit_id, actor=None, action="staff.disable", entity_type="staff",
                 entity_id=staff.id, now=now, before={"active": was_active},
                 after={"active": False, "sessions_revoked": revoked, "reason": reason.strip()})
    return staff, revoked


# --- referrals and admissions ----------------------------------------------------------------

def check_referral(actor: Staff, *, resident: dict, substances: list[str], assessment: dict,
                   now: datetime, override_reason: str | None = None,
                   change_reasons: dict[str, str] | None = None,
                   return_fields: dict | None = None) -> dict:
    """What the unit would decide for a referral, and the recommended setting (no write).

    docs/clinical-rules.md s4: a monitored unit declines any criterion met; every unit declines
    a referral whose recommended setting is hospital, or a resident under 16, unless a doctor
    (doctor, GP, clinical lead) gives ``override_reason``. A decline of the same person in the
    last 30 days is named, with each figure changed since and whether it has its reason.
    ``return_fields`` play no part in the decision.
    """
    model = model_at(actor.unit_id, now)
    limits = protocol_settings(actor.unit_id, "competence", COMPETENCE_DEFAULTS)
    result = assess_competence(date_of_birth=resident["date_of_birth"], substances=substances,
                               assessment=assessment, today=now.date(), limits=limits)
    overridden = bool(override_reason) and actor.role in DOCTORS
    decision = result.decision_for(model, doctor_override=overridden)
    declined_by = result.reasons_for(model)
    previous = previous_decline(actor.unit_id, resident, now)
    changes = changed_figures(previous, resident_snapshot(resident), substances, assessment,
                              change_reasons) if previous else []
    return {
        "unit_model": model,
        "decision": decision,
        "reasons": [c.to_dict() for c in declined_by] if decision == "declined" else [],
        "high_risk": model == "medically_managed" and bool(result.criteria_met),
        "risk_reasons": [c.to_dict() for c in result.criteria_met + result.declined_everywhere],
        "flags": [c.to_dict() for c in result.flags],
        "recommended_setting": result.recommended_setting,
        "recommended_reasons": result.recommended_reasons,
        "doctor_may_override": result.decision_for(model) == "declined"
        and result.decision_for(model, doctor_override=True) == "admitted",
        "override_criteria": [c.code for c in result.declined_everywhere] if overridden
        and decision == "admitted" else [],
        "previous_decline": {"referral_id": previous.id, "decided_at": previous.decided_at,
                             "reasons": previous.reasons, "changes": changes} if previous else None,
        "unexplained_changes": [change["field"] for change in changes if not change["reason"]],
    }


def _declined_detail(check: dict) -> str:
    everywhere = {"hospital_recommended", "under_16"}
    criteria = "; ".join(r["criterion"] for r in check["reasons"])
    if all(r["code"] in everywhere for r in check["reasons"]):
        return (f"Every unit declines this referral unless a doctor records why: {criteria}. "
                "A doctor, GP or the clinical lead may admit it with an override reason.")
    return f"A medically monitored unit must decline this referral: {criteria}."


@unit_of_work
def admit_resident(actor: Staff, *, resident: dict, substances: list[str], assessment: dict,
                   now: datetime, override_reason: str | None = None,
                   change_reasons: dict[str, str] | None = None,
                   return_fields: dict | None = None) -> Admission:
    """Admit a referral, or decline it (kept for the audit) when the unit cannot meet its needs.

    A doctor's override reason admits what every unit otherwise declines (kept on the
    admission); a re-referral within 30 days of a decline is linked to it, and admitting it
    needs a reason for each changed figure (422 naming each one, nothing written).
    ``return_fields`` (optional) are recorded with the admission.
    """
    if override_reason and actor.role not in DOCTORS:
        raise OverrideNotPermitted(
            "Only a doctor, GP or the clinical lead may record an override reason: ask them to "
            "admit this resident.", errors={"override_reason": ["Only a doctor may give one."]})
    check = check_referral(actor, resident=resident, substances=substances, assessment=assessment,
                           now=now, override_reason=override_reason, change_reasons=change_reasons)
    previous = check["previous_decline"]
    if check["decision"] == "admitted" and check["unexplained_changes"]:
        when = local(previous["decided_at"])
        raise ReReferralUnexplained(
            f"This person's referral was declined on {when:%d %b %Y} at {when:%H:%M} (referral "
            f"{previous['referral_id']}); to admit now, give the reason each figure changed: "
            f"{', '.join(check['unexplained_changes'])}.",
            errors={f"change_reasons.{change['field']}": [
                f"Was {shown_figure(change['before'])} when declined, now {shown_figure(change['after'])}: "
                "give the reason for the change."]
                for change in previous["changes"] if not change["reason"]},
            previous_decline_id=previous["referral_id"])
    snapshot = resident_snapshot(resident)
    referral = Referral(
        unit_id=actor.unit_id, resident_snapshot=snapshot, substances=substances,
        assessment=assessment, unit_model=check["unit_model"], decision=check["decision"],
        reasons=check["risk_reasons"], flags=check["flags"],
        recommended_setting=check["recommended_setting"],
        recommended_reasons=check["recommended_reasons"], decided_at=now, decided_by_id=actor.id,
        previous_decline_id=previous["referral_id"] if previous else None,
        changed_figures=previous["changes"] if previous else None,
    )
    db.session.add(referral)
    db.session.flush()
    if check["decision"] == "declined":
        record_event(unit_id=actor.unit_id, actor=actor, action="referral.decline",
                     entity_type="referral", entity_id=referral.id, now=now,
                     after={"resident": snapshot, "reasons": check["reasons"],
                            "model": check["unit_model"],
                            "previous_decline_id": referral.previous_decline_id})
        raise AdmissionDeclined(
            _declined_detail(check),
            reasons=check["reasons"], referral_id=referral.id,
            recommended_setting=check["recommended_setting"],
            recommended_reasons=check["recommended_reasons"],
            doctor_may_override=check["doctor_may_override"],
            previous_decline_id=referral.previous_decline_id,
        )

    person = _find_or_create_resident(actor.unit_id, resident, now)
    if db.session.scalars(select(Admission.id).where(Admission.resident_id == person.id,
                                                     Admission.status == "active")).first():
        raise AlreadyAdmitted(f"{person.name} is already admitted on this unit.")
    overridden = check["override_criteria"]
    admission = Admission(
        unit_id=actor.unit_id, resident=person, referral=referral, status="active",
        substances=substances, high_risk=check["high_risk"], admitted_at=now,
        admitted_by_id=actor.id, override_reason=override_reason if overridden else None,
        override_criteria=overridden or None,
    )
    if return_fields:
        apply_return_fields(admission, return_fields)
    db.session.add(admission)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="admission.create",
                 entity_type="admission", entity_id=admission.id, resident_id=person.id, now=now,
                 after={"resident": snapshot, "substances": substances, "assessment": assessment,
                        "model": check["unit_model"], "high_risk": admission.high_risk,
                        "risk_reasons": check["risk_reasons"],
                        "override": {"reason": override_reason, "criteria": overridden}
                        if overridden else None,
                        "previous_decline_id": referral.previous_decline_id,
                        "changes": referral.changed_figures,
                        **({"return_fields": return_fields} if return_fields else {})})
    for hook in admitted_hooks:
        hook(admission, actor, now)
    return admission


def _find_or_create_resident(unit_id: int, data: dict, now: datetime) -> Resident:
    nhs = data.get("nhs_number")
    if nhs:
        existing = db.session.scalars(select(Resident).where(
            Resident.unit_id == unit_id, Resident.nhs_number == nhs)).first()
        if existing is not None:
            if existing.date_of_birth != data["date_of_birth"]:
                raise ResidentMismatch(
                    "This NHS number is already recorded for a resident with another date of birth.",
                    errors={"resident": {"nhs_number": ["Belongs to another resident."]}})
            return existing
    person = Resident(unit_id=unit_id, name=data["name"], date_of_birth=data["date_of_birth"],
                      nhs_number=nhs, created_at=now)
    db.session.add(person)
    db.session.flush()
    return person


def get_admission(actor: Staff, admission_id: int) -> Admission:
    """An admission of the actor's unit (another unit's is not found).

    What is done with an admission follows the unit's protocol: unless this transaction has
    read it already, the protocol comes in the same query.
    """
    admission = None
    if 0 < admission_id <= MAX_ID:
        protocols = db.session.info.setdefault(_PROTOCOLS, {})
        if actor.unit_id in protocols:
            admission = db.session.get(Admission, admission_id)
        else:
            row = db.session.execute(_ADMISSION_WITH_PROTOCOL, {
                "unit_id": actor.unit_id, "admission_id": admission_id}).first()
            if row is not None:
                admission, protocols[actor.unit_id] = row[0], row[1] or {}
    if admission is None or admission.unit_id != actor.unit_id:
        raise AdmissionNotFound(f"There is no admission {admission_id} on your unit.")
    return admission


def active_admission(actor: Staff, admission_id: int) -> Admission:
    """An admission of the actor's unit that is still active: nothing is recorded or given
    for a discharged resident (409 ``admission-not-active``)."""
    admission = get_admission(actor, admission_id)
    if admission.status != "active":
        raise AdmissionNotActive(
            f"Admission {admission_id} is discharged: nothing more can be recorded or given.")
    return admission


def list_admissions(actor: Staff, *, status: str | None = None) -> list[Admission]:
    """The unit's admissions, newest first, optionally by status, with what the API shows of
    each (referral, harm-reduction checklist)."""
    query = (select(Admission).where(Admission.unit_id == actor.unit_id)
             .options(selectinload(Admission.referral), selectinload(Admission.harm_reduction)))
    if status:
        query = query.where(Admission.status == status)
    return list(db.session.scalars(query.order_by(Admission.admitted_at.desc(), Admission.id.desc())))


def list_board_residents(actor: Staff) -> list[sa.Row]:
    """The unit's active admissions as plain rows of what the ward board shows, newest first.

    Columns, not ORM objects: for 300 residents building the objects cost more than the query.
    """
    return list(db.session.execute(
        select(Admission.id, Admission.substances, Admission.high_risk, Admission.admitted_at,
               Resident.name, Resident.nhs_number, Resident.date_of_birth)
        .join(Resident, Resident.id == Admission.resident_id)
        .where(Admission.unit_id == actor.unit_id, Admission.status == "active")
        .order_by(Admission.admitted_at.desc(), Admission.id.desc())))


@unit_of_work
def discharge_admission(actor: Staff, admission_id: int, *, discharge_type: str,
                        note: str | None, now: datetime) -> Admission:
    """Discharge a resident; a self-discharge opens the harm-reduction checklist."""
    admission = db.session.scalars(
        # OF admissions: the resident is eager-loaded by an outer join, and PostgreSQL refuses
        # to lock the nullable side of one.
        select(Admission).where(Admission.id == admission_id).with_for_update(of=Admission)
    ).first() if 0 < admission_id <= MAX_ID else None
    if admission is None or admission.unit_id != actor.unit_id:
        raise AdmissionNotFound(f"There is no admission {admission_id} on your unit.")
    if admission.status != "active":
        raise AdmissionNotActive(f"Admission {admission_id} was already discharged "
                                 f"({admission.discharge_type}).")
    admission.status = "discharged"
    admission.discharged_at = now
    admission.discharge_type = discharge_type
    admission.discharge_note = note
    admission.discharged_by_id = actor.id
    if discharge_type == "self-discharged":
        db.session.add(HarmReductionChecklist(admission=admission, unit_id=admission.unit_id,
                                              opened_at=now))
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="admission.discharge",
                 entity_type="admission", entity_id=admission.id,
                 resident_id=admission.resident_id, now=now, before={"status": "active"},
                 after={"status": "discharged", "discharge_type": discharge_type, "note": note})
    for hook in discharged_hooks:
        hook(admission, actor, now)
    return admission


@unit_of_work
def update_harm_reduction(actor: Staff, admission_id: int, *, items: dict[str, bool],
                          note: str | None, now: datetime) -> HarmReductionChecklist:
    """Tick items of the harm-reduction checklist; it completes when every item is done."""
    admission = get_admission(actor, admission_id)
    checklist = admission.harm_reduction
    if checklist is None or checklist.completed_at is not None:
        raise ChecklistNotOpen("This admission has no open harm-reduction checklist.")
    before = {key: getattr(checklist, key) for key in HARM_REDUCTION_ITEMS}
    for key, value in items.items():
        setattr(checklist, key, bool(value))
    if note:
        checklist.note = note
    if all(getattr(checklist, key) for key in HARM_REDUCTION_ITEMS):
        checklist.completed_at = now
        checklist.completed_by_id = actor.id
    record_event(unit_id=actor.unit_id, actor=actor, action="harm_reduction.update",
                 entity_type="harm_reduction_checklist", entity_id=checklist.id,
                 resident_id=admission.resident_id, now=now, before=before,
                 after={**{key: getattr(checklist, key) for key in HARM_REDUCTION_ITEMS},
                        "completed": checklist.completed_at is not None, "note": note})
    return checklist


def open_checklists(unit_id: int) -> list[HarmReductionChecklist]:
    """Harm-reduction checklists still open on the unit (shown on the board)."""
    return list(db.session.scalars(
        select(HarmReductionChecklist).where(HarmReductionChecklist.unit_id == unit_id,
                                             HarmReductionChecklist.completed_at.is_(None))
        .options(selectinload(HarmReductionChecklist.admission).selectinload(Admission.resident))
        .order_by(HarmReductionChecklist.opened_at)
    ))


def age_today(date_of_birth: date, now: datetime) -> int:
    """Age in whole years at ``now``."""
    return age_on(date_of_birth, now.date())
