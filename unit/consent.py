"""Consent and information sharing: what of a resident's record may be shared with whom.

A resident decides, per recipient (their GP, the community team, a family member they name,
NDTMS), to give or refuse consent; a named member of staff records it with the date, and it
can be withdrawn. No decision in force, or a refusal: nothing is shared with that recipient.
Every export and FHIR read made for a recipient asks ``shared_with`` first. The unit's own
staff read their residents' records for their care whatever the resident decided about others.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from config.clock import local
from config.db import unit_of_work
from config.extensions import db
from unit.audit import record_event
from unit.errors import ConsentNotActive, ConsentNotFound, ResidentNotFound
from unit.models import Consent, Resident, Staff

MAX_ID = 2**31 - 1


def _resident(actor: Staff, resident_id: int) -> Resident:
    resident = db.session.get(Resident, resident_id) if 0 < resident_id <= MAX_ID else None
    if resident is None or resident.unit_id != actor.unit_id:
        raise ResidentNotFound(f"There is no resident {resident_id} on your unit.")
    return resident


def _key(recipient: str, name: str | None) -> str:
    # One decision in force per named family member; one per recipient otherwise.
    return " ".join((name or "").split()).casefold() if recipient == "family" else ""


def _consent_view(consent: Consent) -> dict:
    return {"recipient": consent.recipient, "recipient_name": consent.recipient_name,
            "decision": consent.decision, "decided_on": consent.decided_on,
            "status": consent.status, "note": consent.note}


@unit_of_work
def record_consent(actor: Staff, resident_id: int, *, recipient: str, decision: str,
                   recipient_name: str | None, decided_on, note: str | None,
                   now: datetime) -> Consent:
    """Record a resident's decision to give or refuse consent to share with a recipient; it
    supersedes the decision in force for that recipient (kept, marked superseded)."""
    resident = _resident(actor, resident_id)
    key = _key(recipient, recipient_name)
    current = db.session.scalars(select(Consent).where(
        Consent.resident_id == resident.id, Consent.recipient == recipient,
        Consent.recipient_key == key, Consent.status == "active").with_for_update()).first()
    if current is not None:
        current.status, current.ended_at, current.ended_by_id = "superseded", now, actor.id
        current.end_reason = "Superseded by a new decision."
        db.session.flush()  # the partial unique index admits the new one only after this
    consent = Consent(unit_id=resident.unit_id, resident_id=resident.id, recipient=recipient,
                      recipient_name=recipient_name, recipient_key=key, decision=decision,
                      decided_on=decided_on or local(now).date(), note=note, status="active",
                      recorded_at=now, recorded_by_id=actor.id)
    db.session.add(consent)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="consent.record",
                 entity_type="consent", entity_id=consent.id, resident_id=resident.id, now=now,
                 before=_consent_view(current) if current else None, after=_consent_view(consent))
    return consent


@unit_of_work
def withdraw_consent(actor: Staff, consent_id: int, *, reason: str, now: datetime) -> Consent:
    """End a decision in force (the resident withdraws their consent, or their refusal): from
    now on nothing is shared with that recipient until a new decision is recorded."""
    consent = db.session.scalars(select(Consent).where(Consent.id == consent_id)
                                 .with_for_update()).first() if 0 < consent_id <= MAX_ID else None
    if consent is None or consent.unit_id != actor.unit_id:
        raise ConsentNotFound(f"There is no consent decision {consent_id} on your unit.")
    if consent.status != "active":
        raise ConsentNotActive(f"This decision was already {consent.status}: record a new one.")
    consent.status, consent.ended_at, consent.ended_by_id = "withdrawn", now, actor.id
    consent.end_reason = reason
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="consent.withdraw",
                 entity_type="consent", entity_id=consent.id, resident_id=consent.resident_id,
                 now=now, before={"status": "active"},
                 after={"status": "withdrawn", "reason": reason})
    return consent


def list_consents(actor: Staff, resident_id: int) -> list[Consent]:
    """Every decision of a resident of the actor's unit, those in force first, newest first."""
    resident = _resident(actor, resident_id)
    return list(db.session.scalars(
        select(Consent).where(Consent.resident_id == resident.id)
        .options(selectinload(Consent.recorded_by), selectinload(Consent.ended_by))
        .order_by((Consent.status == "active").desc(), Consent.recorded_at.desc(),
                  Consent.id.desc())))


def shared_with(recipient: str) -> sa.Select:
    """The ids of the residents whose record may be shared with ``recipient`` now: those with
    a decision in force giving consent (a subquery for ``Resident.id.in_(...)``)."""
    return select(Consent.resident_id).where(Consent.recipient == recipient,
                                             Consent.status == "active",
                                             Consent.decision == "given")


def consent_states(resident_ids: list[int], recipient: str) -> dict[int, str]:
    """For each resident: ``given``, ``refused``, ``withdrawn`` (their last decision was
    withdrawn) or ``not_recorded``, for one recipient, in one query."""
    states = {resident_id: "not_recorded" for resident_id in resident_ids}
    rows = db.session.execute(
        select(Consent.resident_id, Consent.status, Consent.decision)
        .where(Consent.resident_id.in_(resident_ids), Consent.recipient == recipient,
               Consent.status.in_(("active", "withdrawn")))
        .order_by(Consent.resident_id, Consent.recorded_at, Consent.id)).all()
    for resident_id, status, decision in rows:  # the latest decision of each wins
        if status == "active":
            states[resident_id] = decision
        elif states[resident_id] == "not_recorded" or states[resident_id] == "withdrawn":
            states[resident_id] = "withdrawn"
    return states
