"""Escalation: who must know, how fast, and what happens when nobody answers.

docs/clinical-rules.md section 3. Routing follows the unit's care model at the moment of
escalation: medically managed -> the on-site doctor on duty; medically monitored -> the
visiting GP on call (and, for an emergency, the nurse is told to call 999 now: no doctor is on
site). Who holds each duty is the rota (``monitoring.rota``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from config.clock import local
from config.db import insert_rows, unit_of_work
from config.errors import Forbidden
from config.extensions import db
from monitoring.outbox import enqueue_many, one_line
from monitoring.errors import EscalationClosed, EscalationNotFound, OverrideRefused
from monitoring.models import Escalation, EscalationStep, MissedObservation, Observation
from monitoring.rota import DUTY_LABELS, on_duty
from monitoring.scales import Band, get_scale
from monitoring.settings import escalation_settings, monitoring_settings, unit_bands
from unit.audit import record_event
from unit.auth import CLINICAL_LEADS
from unit.models import Admission, Staff
from unit.services import active_admission, load_protocols, model_at, models_at

SEVERITY_RANK = {"soon": 1, "urgent": 2, "emergency": 3}
ROUTE_ROLES = {"on_site_doctor": {"doctor"}, "visiting_gp": {"gp"}, "nurse_in_charge": {"nurse"}}
CLINICAL_SIGNS = {"seizure": "Seizure", "delirium_tremens": "Signs of delirium tremens",
                  "wernicke": "Signs of Wernicke's encephalopathy"}


@dataclass(frozen=True)
class Trigger:
    """Why an escalation is raised: its cause (for deduplication), severity and words."""

    code: str
    severity: str
    reason: str
    dedup_key: str


def _span(band: Band, max_total: int) -> str:
    """A band's range in words: "16 or more", "5-6", "0"."""
    if band.high >= max_total:
        return f"{band.low} or more"
    return f"{band.low}" if band.low == band.high else f"{band.low}-{band.high}"


def trigger_for(observation: Observation) -> Trigger | None:
    """The escalation an observation calls for under the unit's protocol, if any.

    Bands are the unit's own (their names are fixed, their ranges are the unit's), so each
    reason states the range the unit uses; the CIWA-Ar emergency total is a protocol setting.
    """
    scale, total, band = observation.scale, observation.total, observation.band
    if scale not in ("news2", "ciwa-ar", "cows", "gmaws"):
        return None
    definition = get_scale(scale)
    bands = {b.code: b for b in (unit_bands(monitoring_settings(observation.unit_id), scale)
                                 or definition.bands)}

    def span(code: str) -> str:
        # A protocol stored before band names were checked may lack the name: say the default.
        band = bands.get(code) or next(b for b in definition.bands if b.code == code)
        return _span(band, definition.max_total)

    key = f"obs:{scale}"
    if scale == "news2":
        if band == "high":
            return Trigger("news2_high", "emergency", f"NEWS2 {total}: high risk ({span('high')})", key)
        if band == "medium":
            return Trigger("news2_medium", "urgent", f"NEWS2 {total}: medium risk ({span('medium')})", key)
        if band == "low-medium":
            threes = [k.replace("_", " ") for k, v in (observation.item_scores or {}).items() if v >= 3]
            return Trigger("news2_single_3", "urgent",
                           f"NEWS2 {total}: a single parameter scored 3 ({', '.join(threes)})", key)
    if scale == "ciwa-ar":
        emergency = escalation_settings(observation.unit_id)["ciwa_emergency_total"]
        # docs/clinical-rules.md s1/s3: emergency at 20 or more by default (consider transfer).
        if total >= emergency:
            return Trigger("ciwa_emergency", "emergency",
                           f"CIWA-Ar {total}: {emergency} or more, consider transfer", key)
        if band == "severe":
            return Trigger("ciwa_severe", "urgent",
                           f"CIWA-Ar {total}: severe withdrawal ({span('severe')})", key)
    if scale == "cows":
        if band == "severe":
            return Trigger("cows_severe", "emergency",
                           f"COWS {total}: severe withdrawal ({span('severe')})", key)
        if band == "moderately_severe":
            return Trigger("cows_moderately_severe", "urgent",
                           f"COWS {total}: moderately severe withdrawal ({span('moderately_severe')})", key)
    if scale == "gmaws" and band == "severe":
        return Trigger("gmaws_severe", "urgent",
                       f"GMAWS {total}: severe ({span('severe')}): urgent medical review", key)
    return None


def _doctor_route(unit_id: int, at: datetime) -> tuple[str, str]:
    model = model_at(unit_id, at)
    return ("on_site_doctor" if model == "medically_managed" else "visiting_gp"), model


def advice(escalation: Escalation) -> str | None:
    """What the nurse must do now, beside waiting for the doctor."""
    if escalation.severity != "emergency" or escalation.status == "resolved":
        return None
    if escalation.unit_model == "medically_monitored":
        return "CALL 999 NOW: no doctor is on site. Then tell the visiting GP."
    return "The on-site doctor has been called. Call 999 (advised)."


# --- raising and updating -------------------------------------------------------------------

def raise_escalation(admission: Admission, trigger: Trigger, *, source_type: str,
                     source_id: int | None, actor: Staff | None, now: datetime,
                     route: str | None = None) -> Escalation:
    """Open an escalation, or update the live one for the same cause (a worsening re-alerts)."""
    live = db.session.scalars(
        select(Escalation).where(Escalation.admission_id == admission.id,
                                 Escalation.dedup_key == trigger.dedup_key,
                                 Escalation.status != "resolved").with_for_update()).first()
    targets = escalation_settings(admission.unit_id)["targets"]
    if live is not None:
        return _update(live, trigger, source_type, source_id, actor, now, targets)
    unit_model = model_at(admission.unit_id, now)
    if route is None:
        route, unit_model = _doctor_route(admission.unit_id, now)
    escalation = Escalation(**_opened(admission, trigger, source_type=source_type,
                                      source_id=source_id, actor=actor, now=now, route=route,
                                      unit_model=unit_model, target=targets[trigger.severity]))
    db.session.add(escalation)
    db.session.flush()
    _step(escalation, now, "raised", f"{trigger.severity}: {trigger.reason}", actor)
    _notify(escalation, now)
    record_event(**_raise_event(escalation, admission, trigger, actor, now))
    return escalation


def _opened(admission: Admission, trigger: Trigger, *, source_type: str, source_id: int | None,
            actor: Staff | None, now: datetime, route: str, unit_model: str,
            target: int) -> dict[str, Any]:
    """The row of a new escalation (its columns' values)."""
    return dict(
        unit_id=admission.unit_id, admission_id=admission.id, dedup_key=trigger.dedup_key,
        trigger=trigger.code, severity=trigger.severity, reason=trigger.reason,
        source_type=source_type, source_id=source_id, status="open", route=route,
        unit_model=unit_model, call_999=trigger.severity == "emergency", level=1,
        target_minutes=target, raised_at=now, escalate_at=now + timedelta(minutes=target),
        raised_by_id=actor.id if actor else None, updated_at=now)


def _raise_event(escalation: Escalation, admission: Admission, trigger: Trigger,
                 actor: Staff | None, now: datetime) -> dict[str, Any]:
    """The audit event of a raised escalation (``record_event``'s arguments)."""
    return {"unit_id": admission.unit_id, "actor": actor, "action": "escalation.raise",
            "entity_type": "escalation", "entity_id": escalation.id,
            "resident_id": admission.resident_id, "now": now,
            "after": {"trigger": trigger.code, "severity": trigger.severity,
                      "reason": trigger.reason, "route": escalation.route,
                      "model": escalation.unit_model,
                      "source": f"{escalation.source_type}:{escalation.source_id}"}}


def _update(live: Escalation, trigger: Trigger, source_type: str, source_id: int | None,
            actor: Staff | None, now: datetime, targets: dict[str, int]) -> Escalation:
    worse, step, event = _revise(live, trigger, source_type, source_id, actor, now, targets)
    db.session.add(EscalationStep(**step))
    if worse:
        _notify(live, now)
    record_event(**event)
    return live


def _revise(live: Escalation, trigger: Trigger, source_type: str, source_id: int | None,
            actor: Staff | None, now: datetime,
            targets: dict[str, int]) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """Apply a new trigger to the live escalation of its cause.

    Returns whether it worsened (then the duty must be paged again), its step's row and its
    audit event (``record_event``'s arguments), for the caller to write.
    """
    worse = SEVERITY_RANK[trigger.severity] > SEVERITY_RANK[live.severity]
    before = {"severity": live.severity, "reason": live.reason, "status": live.status}
    live.updated_at = now
    if SEVERITY_RANK[trigger.severity] >= SEVERITY_RANK[live.severity]:
        # The reason follows the latest score of the same or a worse severity; a milder score
        # does not rewrite why it is an emergency (that score is kept in the steps).
        live.reason, live.source_type, live.source_id = trigger.reason, source_type, source_id
    if worse:
        live.severity, live.trigger = trigger.severity, trigger.code
        live.target_minutes = targets[trigger.severity]
        live.call_999 = live.call_999 or trigger.severity == "emergency"
        if live.status == "acknowledged":
            # Worse since it was acknowledged: the doctor must know again. The earlier
            # acknowledgement stays in the steps; the escalation itself is unanswered now.
            live.status = "open"
            live.acknowledged_at, live.acknowledged_by_id = None, None
        live.escalate_at = now + timedelta(minutes=live.target_minutes)
        step = _step_row(live, now, "worsened", f"now {trigger.severity}: {trigger.reason}", actor)
    else:
        step = _step_row(live, now, "updated", f"latest: {trigger.reason}", actor)
    event = {"unit_id": live.unit_id, "actor": actor, "action": "escalation.update",
             "entity_type": "escalation", "entity_id": live.id, "now": now, "before": before,
             "after": {"severity": live.severity, "reason": live.reason, "status": live.status}}
    return worse, step, event


def _step(escalation: Escalation, now: datetime, kind: str, detail: str, actor: Staff | None) -> None:
    db.session.add(EscalationStep(**_step_row(escalation, now, kind, detail, actor)))


def _step_row(escalation: Escalation, now: datetime, kind: str, detail: str,
              actor: Staff | None) -> dict[str, Any]:
    return {"escalation_id": escalation.id, "at": now, "kind": kind, "level": escalation.level,
            "detail": detail, "staff_id": actor.id if actor else None}


def duty_for_level(escalation: Escalation, level: int) -> str:
    """The rota duty paged at a level: the route first, then the unit's escalation policy."""
    if level == 1:
        return escalation.route
    levels = escalation_settings(escalation.unit_id)["levels"]
    return levels[min(level - 2, len(levels) - 1)]


FALLBACK_ROLES = {"on_site_doctor": ("doctor",), "visiting_gp": ("gp",),
                  "nurse_in_charge": ("nurse",), "second_on_call": ("doctor", "gp"),
                  "clinical_lead": ("clinical_lead", "manager")}


Recipient = tuple[Staff | None, str | None]  # a member of staff or a rota contact, and the address


def _recipients(unit_ids: Iterable[int], duty: str, at: datetime) -> dict[int, list[Recipient]]:
    """Who is paged for a duty on each of these units at ``at``, read once for all of them."""
    found: dict[int, list[Recipient]] = {unit_id: [] for unit_id in unit_ids}
    for shift in on_duty(list(found), duty, at):
        found[shift.unit_id].append((shift.staff, shift.staff.email if shift.staff else shift.contact))
    gaps = [unit_id for unit_id, recipients in found.items() if not recipients]
    if gaps:
        # A gap in the rota: page everyone who could answer, rather than no one.
        for staff in db.session.scalars(select(Staff).where(
                Staff.unit_id.in_(gaps), Staff.active.is_(True),
                Staff.role.in_(FALLBACK_ROLES[duty])).order_by(Staff.id)):
            found[staff.unit_id].append((staff, staff.email))
    return found


def _notify(escalation: Escalation, now: datetime, level: int | None = None) -> None:
    admission = db.session.get(Admission, escalation.admission_id)
    level = level or escalation.level
    duty = duty_for_level(escalation, level)
    recipients = _recipients([escalation.unit_id], duty, now)[escalation.unit_id]
    steps = db.session.scalar(select(sa.func.count()).select_from(EscalationStep)
                              .where(EscalationStep.escalation_id == escalation.id))
    messages, notified = _pages(escalation, admission, duty, level, recipients, steps, now)
    enqueue_many(messages, now=now)
    db.session.add(EscalationStep(**notified))


def _pages(escalation: Escalation, admission: Admission, duty: str, level: int,
           recipients: list[Recipient], steps: int,
           now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The e-mails paging ``recipients`` (for ``enqueue_many``) and the step's row naming them.

    Each message's key holds the escalation's step count, so a later page is a new message
    and a retried one is not.
    """
    messages, names = [], []
    if escalation.overridden:
        # Nothing to acknowledge any more: say who overrode it and why.
        by = db.session.get(Staff, escalation.resolved_by_id)
        subject = one_line(f"[OVERRIDDEN] {admission.resident.name}: {escalation.reason}")
        body = "\n".join([
            f"The {escalation.severity} escalation for {admission.resident.name} "
            f"(admission {admission.id}) was overridden by {by.full_name} ({by.role}); "
            "no action is needed unless you disagree.",
            f"Reason for the escalation: {escalation.reason}",
            f"Override: {escalation.note}",
            f"Told as: {DUTY_LABELS[duty]} (level {level}).",
        ])
    else:
        # The reason may hold a nurse's multi-line note (a clinical sign's): one line here.
        subject = one_line(f"[{escalation.severity.upper()}] {admission.resident.name}: {escalation.reason}")
        body = "\n".join(filter(None, [
            f"{escalation.severity.upper()} escalation for {admission.resident.name} "
            f"(admission {admission.id}).",
            f"Reason: {escalation.reason}",
            f"Acknowledge within {escalation.target_minutes} minutes.",
            advice(escalation),
            f"Paged as: {DUTY_LABELS[duty]} (level {level}).",
        ]))
    for staff, address in recipients:
        key = f"esc:{escalation.id}:{steps}:{staff.id if staff else address}"
        messages.append({"unit_id": escalation.unit_id, "dedup_key": key[:200],
                         "recipient_staff_id": staff.id if staff else None,
                         "recipient_address": address, "subject": subject, "body": body,
                         "ref_type": "escalation", "ref_id": escalation.id})
        names.append(staff.full_name if staff else (address or "?"))
    detail = (f"Paged {DUTY_LABELS[duty]}: {', '.join(names)}" if names
              else f"No one to page as {DUTY_LABELS[duty]}: the rota has a gap and no fallback")
    return messages, _step_row(escalation, now, "notified", detail, None)


# --- called by observations and the sweep ---------------------------------------------------

def escalate_observation(observation: Observation, admission: Admission, actor: Staff,
                         now: datetime) -> Escalation | None:
    """Raise or update the escalation an observation calls for, if it calls for one."""
    trigger = trigger_for(observation)
    if trigger is None:
        return None
    return raise_escalation(admission, trigger, source_type="observation",
                            source_id=observation.id, actor=actor, now=now)


def escalate_repeated_refusal(observation: Observation, admission: Admission, actor: Staff,
                              now: datetime) -> Escalation:
    """A second refusal in a row: the doctor should know soon."""
    trigger = Trigger("repeated_refusal", "soon",
                      f"{observation.scale.upper()} refused twice in a row", f"refusal:{observation.scale}")
    return raise_escalation(admission, trigger, source_type="observation",
                            source_id=observation.id, actor=actor, now=now)


# docs/clinical-rules.md s3: a missed observation goes to the nurse in charge.
MISSED_ROUTE = "nurse_in_charge"


_INSERT_STEPS = sa.insert(EscalationStep.__table__)


def escalate_missed(rows: list[MissedObservation], now: datetime) -> None:
    """Missed observations go to the nurse in charge (soon): one sweep's slots, in bulk.

    Each slot raises (or updates) exactly what ``raise_escalation`` would, in the same order;
    but a sweep after downtime flags hundreds of slots on many units, so each unit's
    protocol, care model and nurse in charge are read once, the live escalations are locked
    in one query, and the rows are written together.
    """
    if not rows:
        return
    unit_ids = sorted({row.unit_id for row in rows})
    load_protocols(unit_ids)
    admissions = _admissions({row.admission_id for row in rows})
    triggers = [_missed_trigger(row) for row in rows]
    live = _live_escalations({(row.admission_id, trigger.dedup_key)
                              for row, trigger in zip(rows, triggers)})
    # The first slot of a cause with no live escalation opens one (later slots of the same
    # cause update it below); all are inserted in one statement, for their ids.
    opening_units = {row.unit_id for row, trigger in zip(rows, triggers)
                     if (row.admission_id, trigger.dedup_key) not in live}
    models = models_at(opening_units, now) if opening_units else {}
    opening: dict[int, dict[str, Any]] = {}  # by missed row id: the escalation it opens
    opened_causes: set[tuple[int, str]] = set()
    for row, trigger in zip(rows, triggers):
        cause = (row.admission_id, trigger.dedup_key)
        if cause not in live and cause not in opened_causes:
            opened_causes.add(cause)
            opening[row.id] = _opened(
                admissions[row.admission_id], trigger, source_type="missed_observation",
                source_id=row.id, actor=None, now=now, route=MISSED_ROUTE,
                unit_model=models[row.unit_id],
                target=escalation_settings(row.unit_id)["targets"][trigger.severity])
    opened = dict(zip(opening, insert_rows(Escalation, list(opening.values()))))
    for escalation in opened.values():
        live[(escalation.admission_id, escalation.dedup_key)] = escalation
    recipients = (_recipients({escalation.unit_id for escalation in opened.values()}, MISSED_ROUTE, now)
                  if opened else {})
    # What each slot writes, in slot order; then each kind of row in one statement.
    steps: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row, trigger in zip(rows, triggers):
        admission = admissions[row.admission_id]
        escalation = opened.get(row.id)
        if escalation is None:
            worse, step, event = _revise(live[(row.admission_id, trigger.dedup_key)], trigger,
                                         "missed_observation", row.id, None, now,
                                         escalation_settings(row.unit_id)["targets"])
            # "soon" is the lowest severity: a missed slot never worsens an escalation, so it
            # never pages anyone again.
            assert not worse
            steps.append(step)
            events.append(event)
            continue
        steps.append(_step_row(escalation, now, "raised", f"{trigger.severity}: {trigger.reason}", None))
        # A new escalation's one step so far is "raised": the count that keys its first page.
        paged, notified = _pages(escalation, admission, MISSED_ROUTE, escalation.level,
                                 recipients[row.unit_id], 1, now)
        messages += paged
        steps.append(notified)
        events.append(_raise_event(escalation, admission, trigger, None, now))
    # Core, not the ORM's bulk insert (its per-row bookkeeping costs more than the row).
    db.session.connection().execute(_INSERT_STEPS, steps)
    enqueue_many(messages, now=now)
    for event in events:
        record_event(**event)


def _missed_trigger(missed: MissedObservation) -> Trigger:
    return Trigger("missed_observation", "soon",
                   f"{missed.scale.upper()} observation due at {local(missed.due_at):%H:%M} "
                   f"was missed (over {missed.grace_minutes} min late)", f"missed:{missed.scale}")


CHUNK = 500  # ids or keys per IN list


def _admissions(ids: Iterable[int]) -> dict[int, Admission]:
    ids = sorted(ids)
    return {admission.id: admission
            for start in range(0, len(ids), CHUNK)
            for admission in db.session.scalars(select(Admission)
                                                .where(Admission.id.in_(ids[start:start + CHUNK])))}


def _live_escalations(causes: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Escalation]:
    """The unresolved escalations for these (admission, dedup key) causes, locked."""
    causes = sorted(causes)
    found = {}
    for start in range(0, len(causes), CHUNK):
        for escalation in db.session.scalars(
                select(Escalation).where(
                    sa.tuple_(Escalation.admission_id, Escalation.dedup_key).in_(causes[start:start + CHUNK]),
                    Escalation.status != "resolved").order_by(Escalation.id).with_for_update()):
            found[(escalation.admission_id, escalation.dedup_key)] = escalation
    return found


@unit_of_work
def raise_clinical_sign(actor: Staff, admission_id: int, *, sign: str, note: str | None,
                        now: datetime) -> Escalation:
    """A nurse reports a seizure, delirium tremens or Wernicke signs: an emergency everywhere."""
    admission = active_admission(actor, admission_id)
    reason = CLINICAL_SIGNS[sign] + (f": {note}" if note else "")
    return raise_escalation(admission, Trigger(sign, "emergency", reason, f"sign:{sign}"),
                            source_type="clinical_sign", source_id=None, actor=actor, now=now)


def close_for_discharge(admission: Admission, actor: Staff, now: datetime) -> None:
    """At discharge: live escalations are resolved (no one is paged for someone who has left)."""
    live = db.session.scalars(select(Escalation).where(Escalation.admission_id == admission.id,
                                                       Escalation.status != "resolved")).all()
    for escalation in live:
        escalation.status, escalation.escalate_at = "resolved", None
        escalation.resolved_at, escalation.resolved_by_id = now, actor.id
        escalation.outcome = f"resident discharged ({admission.discharge_type})"
        escalation.updated_at = now
        _step(escalation, now, "resolved", f"closed at discharge by {actor.full_name}", actor)
        record_event(unit_id=escalation.unit_id, actor=actor, action="escalation.resolve",
                     entity_type="escalation", entity_id=escalation.id, now=now,
                     before={"status": "open"}, after={"status": "resolved", "outcome": escalation.outcome})


# --- answering ------------------------------------------------------------------------------

def _load(actor: Staff, escalation_id: int) -> Escalation:
    escalation = db.session.scalars(select(Escalation).where(Escalation.id == escalation_id)
                                    .with_for_update()).first()
    if escalation is None or escalation.unit_id != actor.unit_id:
        raise EscalationNotFound(f"There is no escalation {escalation_id} on your unit.")
    return escalation


def may_answer(actor: Staff, escalation: Escalation) -> bool:
    """The routed role (doctor on a managed unit, GP on a monitored one), the clinical lead
    (a doctor, the last level of the paging policy) or a manager."""
    return (actor.role == "manager" or actor.role in CLINICAL_LEADS
            or actor.role in ROUTE_ROLES[escalation.route])


def _check_answerer(actor: Staff, escalation: Escalation) -> None:
    if not may_answer(actor, escalation):
        who = " or ".join(sorted(ROUTE_ROLES[escalation.route]))
        raise Forbidden(f"This escalation went to the {DUTY_LABELS[escalation.route]}: only a "
                        f"{who}, the clinical lead or a manager may answer it.")


@unit_of_work
def acknowledge(actor: Staff, escalation_id: int, *, now: datetime) -> Escalation:
    """The routed doctor (or a manager) acknowledges: re-escalation stops."""
    escalation = _load(actor, escalation_id)
    _check_answerer(actor, escalation)
    if escalation.status == "resolved":
        raise EscalationClosed(f"Escalation {escalation_id} was resolved at "
                               f"{local(escalation.resolved_at):%d %b %H:%M}.")
    if escalation.status == "acknowledged":
        return escalation  # acknowledging twice changes nothing
    escalation.status, escalation.escalate_at = "acknowledged", None
    escalation.acknowledged_at, escalation.acknowledged_by_id = now, actor.id
    escalation.updated_at = now
    minutes = (now - escalation.raised_at).total_seconds() / 60
    _step(escalation, now, "acknowledged", f"by {actor.full_name} after {minutes:.0f} min", actor)
    record_event(unit_id=escalation.unit_id, actor=actor, action="escalation.acknowledge",
                 entity_type="escalation", entity_id=escalation.id, now=now,
                 before={"status": "open"}, after={"status": "acknowledged",
                                                   "minutes_to_acknowledge": round(minutes, 1)})
    return escalation


@unit_of_work
def resolve(actor: Staff, escalation_id: int, *, outcome: str, note: str | None,
            now: datetime) -> Escalation:
    """Close an escalation with its outcome (acknowledging it too, if it was still open)."""
    escalation = _load(actor, escalation_id)
    _check_answerer(actor, escalation)
    if escalation.status == "resolved":
        raise EscalationClosed(f"Escalation {escalation_id} was resolved already.")
    before = escalation.status
    if escalation.acknowledged_at is None:
        escalation.acknowledged_at, escalation.acknowledged_by_id = now, actor.id
    escalation.status, escalation.escalate_at = "resolved", None
    escalation.resolved_at, escalation.resolved_by_id = now, actor.id
    escalation.outcome, escalation.note, escalation.updated_at = outcome, note, now
    _step(escalation, now, "resolved", f"{outcome}" + (f": {note}" if note else ""), actor)
    record_event(unit_id=escalation.unit_id, actor=actor, action="escalation.resolve",
                 entity_type="escalation", entity_id=escalation.id, now=now,
                 before={"status": before}, after={"status": "resolved", "outcome": outcome, "note": note})
    return escalation


@unit_of_work
def override(actor: Staff, escalation_id: int, *, reason: str, now: datetime) -> Escalation:
    """A nurse judges an automatic escalation not needed: recorded, and the doctor is told."""
    escalation = _load(actor, escalation_id)
    if actor.role not in ("nurse", "manager"):
        raise Forbidden("Only a nurse or a manager may override an escalation.")
    if escalation.status == "resolved":
        raise EscalationClosed(f"Escalation {escalation_id} was resolved already.")
    if escalation.severity == "emergency":
        raise OverrideRefused("An emergency cannot be overridden: the doctor must answer it.")
    escalation.status, escalation.escalate_at, escalation.overridden = "resolved", None, True
    escalation.resolved_at, escalation.resolved_by_id = now, actor.id
    escalation.outcome, escalation.note, escalation.updated_at = "overridden by nurse", reason, now
    _step(escalation, now, "overridden", f"by {actor.full_name}: {reason}", actor)
    # The routed doctor sees the override and its reason (and whoever it had climbed to).
    _notify(escalation, now, level=1)
    if escalation.level > 1:
        _notify(escalation, now)
    record_event(unit_id=escalation.unit_id, actor=actor, action="escalation.override",
                 entity_type="escalation", entity_id=escalation.id, now=now,
                 before={"status": "open", "severity": escalation.severity},
                 after={"status": "resolved", "overridden": True, "reason": reason})
    return escalation


# --- re-escalation (the scheduler) ----------------------------------------------------------

@unit_of_work
def re_escalate_due(now: datetime) -> list[Escalation]:
    """Every open escalation past its target goes to the next level of the paging policy."""
    due = (Escalation.status == "open", Escalation.escalate_at <= now)
    query = select(Escalation).where(*due).order_by(Escalation.escalate_at)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    moved = []
    for escalation in db.session.scalars(query).all():
        levels = 1 + len(escalation_settings(escalation.unit_id)["levels"])
        if escalation.level < levels:
            escalation.level += 1
            detail = (f"Not acknowledged within {escalation.target_minutes} min: to the "
                      f"{DUTY_LABELS[duty_for_level(escalation, escalation.level)]}")
        else:
            detail = f"Still not acknowledged: paging the {DUTY_LABELS[duty_for_level(escalation, levels)]} again"
        escalation.escalate_at = now + timedelta(minutes=escalation.target_minutes)
        escalation.updated_at = now
        _step(escalation, now, "re_escalated", detail, None)
        _notify(escalation, now)
        record_event(unit_id=escalation.unit_id, actor=None, action="escalation.re_escalate",
                     entity_type="escalation", entity_id=escalation.id, now=now,
                     after={"level": escalation.level, "detail": detail})
        moved.append(escalation)
    return moved


# --- reading --------------------------------------------------------------------------------

def list_escalations(actor: Staff, *, status: str | None) -> list[Escalation]:
    """The unit's escalations, most severe and oldest first."""
    query = select(Escalation).where(Escalation.unit_id == actor.unit_id)
    if status:
        query = query.where(Escalation.status == status)
    return list(db.session.scalars(query.order_by(_SEVERITY_ORDER, Escalation.raised_at)))


_SEVERITY_ORDER = sa.case({"emergency": 0, "urgent": 1, "soon": 2}, value=Escalation.severity)


def live_escalations(actor: Staff) -> list[Escalation]:
    """The unit's open and acknowledged escalations, most severe and oldest first, with each
    resident (the doctor's queue)."""
    return list(db.session.scalars(
        select(Escalation).where(Escalation.unit_id == actor.unit_id, Escalation.status != "resolved")
        .options(joinedload(Escalation.admission).joinedload(Admission.resident),
                 joinedload(Escalation.acknowledged_by), selectinload(Escalation.steps))
        .order_by(_SEVERITY_ORDER, Escalation.raised_at)).unique())


def recently_resolved(actor: Staff, limit: int = 10) -> list[Escalation]:
    """The unit's latest resolved escalations, newest first."""
    return list(db.session.scalars(
        select(Escalation).where(Escalation.unit_id == actor.unit_id, Escalation.status == "resolved")
        .order_by(Escalation.resolved_at.desc()).limit(limit)))


def open_emergencies(unit_id: int) -> list[Escalation]:
    """The unit's unacknowledged emergencies, with each resident (the board's red panel)."""
    return list(db.session.scalars(
        select(Escalation).where(Escalation.unit_id == unit_id, Escalation.status == "open",
                                 Escalation.severity == "emergency")
        .options(joinedload(Escalation.admission).joinedload(Admission.resident))))


def escalation_history(admission_id: int, limit: int = 20) -> list[Escalation]:
    """The admission's latest escalations with their steps, newest first."""
    return list(db.session.scalars(
        select(Escalation).where(Escalation.admission_id == admission_id)
        .options(selectinload(Escalation.steps))
        .order_by(Escalation.raised_at.desc()).limit(limit)))


def live_escalation_summaries(unit_id: int) -> list[sa.Row]:
    """Each live escalation of the unit, oldest first: admission, severity, status, reason,
    level, when raised and acknowledged, who acknowledged it and whom it was last paged to
    (one query; by unit, not by a list of admission ids)."""
    paged = (select(EscalationStep.detail)
             .where(EscalationStep.escalation_id == Escalation.id, EscalationStep.kind == "notified")
             .order_by(EscalationStep.id.desc()).limit(1).scalar_subquery())
    return list(db.session.execute(
        select(Escalation.admission_id, Escalation.severity, Escalation.status, Escalation.reason,
               Escalation.level, Escalation.raised_at, Escalation.acknowledged_at,
               Staff.full_name.label("acknowledged_by"), sa.func.coalesce(paged, "").label("paged"))
        .outerjoin(Staff, Staff.id == Escalation.acknowledged_by_id)
        .where(Escalation.unit_id == unit_id, Escalation.status != "resolved")
        .order_by(Escalation.raised_at)))


def last_paged(escalation: Escalation) -> str:
    """Whom the escalation was last paged to, in words ("" if no one yet)."""
    notified = [step for step in escalation.steps if step.kind == "notified"]
    return notified[-1].detail if notified else ""


def get_escalation(actor: Staff, escalation_id: int) -> Escalation:
    """One escalation of the actor's unit."""
    escalation = db.session.get(Escalation, escalation_id)
    if escalation is None or escalation.unit_id != actor.unit_id:
        raise EscalationNotFound(f"There is no escalation {escalation_id} on your unit.")
    return escalation


