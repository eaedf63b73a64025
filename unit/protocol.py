"""Changing the unit protocol: a manager proposes, a clinical lead approves (a new version in
force) or rejects, and no change crosses the safety envelope (docs/clinical-rules.md: each
default's safety bound; ``unit.envelope``).

Nothing a manager proposes is in force until a clinical lead, a second person, approves it;
each proposal is decided once. The values are checked by the section's owner and against the
envelope when proposed, and again when approved (on the protocol in force then). Reading the
protocol in force is ``unit.services.protocol_settings`` / ``effective_protocol``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from config.clock import local
from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from unit.audit import record_event
from unit.auth import CLINICAL_LEADS, MANAGERS
from unit.envelope import bound_errors
from unit.errors import (
    ProtocolInvalid,
    ProtocolOutsideEnvelope,
    ProtocolProposalDecided,
    ProtocolProposalNotFound,
    ProtocolSelfApproval,
)
from unit.models import ProtocolProposal, Staff, UnitProtocol
from unit.services import (
    MAX_ID,
    forget_protocols,
    latest_protocol,
    merge_settings,
    protocol_sections,
)


def _checked(section: str, values: Any, in_force: dict[str, Any]) -> tuple[dict, dict, dict]:
    """The values as stored, and the section before and after them over ``in_force`` (the
    unit's settings); a 422 naming each bad key when the section's owner refuses a value, or
    when the section would then cross its safety envelope."""
    definition = protocol_sections.get(section)
    if definition is None:
        raise ProtocolInvalid(f"There is no protocol section {section!r}.", errors={
            "section": [f"One of: {', '.join(sorted(protocol_sections))}."]})
    if not isinstance(values, dict) or not values:
        raise ProtocolInvalid("Give at least one setting to change.",
                              errors={"values": ["An object of at least one setting."]})
    values, errors = definition.check(values)
    if errors:
        raise ProtocolInvalid(f"The {section} settings are not valid: "
                              f"{', '.join(sorted(errors))}.", errors=errors)
    before = in_force.get(section, {})
    after = merge_settings(before, values)
    for key in values:
        # protocol_settings overlays a section on its defaults one level deep: a setting that
        # is an object (escalation targets) is stored whole, its other entries the defaults.
        if isinstance(definition.defaults.get(key), dict):
            after[key] = merge_settings(definition.defaults[key], after[key])
    effective = merge_settings(definition.defaults, after)
    errors = bound_errors(effective, definition.bounds)
    for key, messages in (definition.envelope(effective) if definition.envelope else {}).items():
        errors.setdefault(key, []).extend(messages)
    if errors:
        raise ProtocolOutsideEnvelope(
            f"The {section} settings would cross a safety bound: {', '.join(sorted(errors))}. "
            "No unit may set a protocol outside these bounds.", errors=errors)
    return values, before, after


def _in_force(unit_id: int) -> tuple[UnitProtocol | None, dict[str, Any]]:
    latest = latest_protocol(unit_id)
    return latest, dict(latest.settings) if latest else {}


@unit_of_work
def propose_protocol_change(actor: Staff, *, section: str, values: dict[str, Any], reason: str,
                            now: datetime) -> ProtocolProposal:
    """A manager proposes new protocol values for a section; nothing changes in force until a
    clinical lead approves. Refused (422, nothing stored) when the values are not valid or
    would cross the safety envelope."""
    if actor.role not in MANAGERS:
        raise Forbidden("Only a manager may propose a change of the unit protocol.")
    _, settings = _in_force(actor.unit_id)
    values, _, _ = _checked(section, values, settings)
    proposal = ProtocolProposal(unit_id=actor.unit_id, section=section, values=values,
                                reason=reason, status="proposed", proposed_by_id=actor.id,
                                proposed_at=now)
    db.session.add(proposal)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="protocol.propose",
                 entity_type="protocol_proposal", entity_id=proposal.id, now=now,
                 after={"section": section, "values": values, "reason": reason,
                        "proposed_by": actor.username})
    return proposal


def _load_proposal(actor: Staff, proposal_id: int, *, lock: bool = False) -> ProtocolProposal:
    proposal = None
    if 0 < proposal_id <= MAX_ID:
        query = select(ProtocolProposal).where(ProtocolProposal.id == proposal_id)
        proposal = db.session.scalars(query.with_for_update() if lock else query).first()
    if proposal is None or proposal.unit_id != actor.unit_id:
        raise ProtocolProposalNotFound(f"There is no protocol proposal {proposal_id} on your unit.")
    return proposal


def _undecided(proposal: ProtocolProposal) -> None:
    if proposal.status != "proposed":
        raise ProtocolProposalDecided(
            f"Protocol proposal {proposal.id} was {proposal.status} by "
            f"{proposal.decided_by.full_name} at {local(proposal.decided_at):%d %b %Y %H:%M}; "
            "a proposal is decided once. Propose the change again if it is still wanted.")


def _approver(actor: Staff, proposal: ProtocolProposal) -> None:
    if actor.role not in CLINICAL_LEADS:
        raise Forbidden("Only the unit's clinical lead may approve a change of the unit protocol.")
    if proposal.proposed_by_id == actor.id:
        raise ProtocolSelfApproval("You proposed this change: another clinician, the clinical "
                                   "lead, must approve it.")


def _adopt(proposal: ProtocolProposal, approver: Staff, now: datetime) -> UnitProtocol:
    """The proposal's values in force from now: a new version with both names, audited."""
    latest, settings = _in_force(proposal.unit_id)
    section = proposal.section
    _, before, after = _checked(section, proposal.values, settings)  # again, on what is in force now
    settings[section] = after
    protocol = UnitProtocol(unit_id=proposal.unit_id, version=(latest.version + 1) if latest else 1,
                            settings=settings, reason=proposal.reason,
                            created_by_id=proposal.proposed_by_id, approved_by_id=approver.id,
                            created_at=now)
    db.session.add(protocol)
    db.session.flush()
    proposal.status, proposal.decided_by_id, proposal.decided_at = "approved", approver.id, now
    proposal.protocol_id = protocol.id
    forget_protocols()  # the next read in this transaction sees this version
    record_event(unit_id=proposal.unit_id, actor=approver, action="protocol.update",
                 entity_type="unit_protocol", entity_id=protocol.id, now=now,
                 before={section: before},
                 after={section: after, "reason": proposal.reason, "version": protocol.version,
                        "proposal_id": proposal.id, "proposed_by": proposal.proposed_by.username,
                        "approved_by": approver.username})
    return protocol


@unit_of_work
def approve_protocol_proposal(actor: Staff, proposal_id: int, *, now: datetime) -> UnitProtocol:
    """The clinical lead approves a proposal (never their own): its values are in force from
    now, as a new version naming who proposed and who approved it."""
    proposal = _load_proposal(actor, proposal_id, lock=True)
    _approver(actor, proposal)
    _undecided(proposal)
    return _adopt(proposal, actor, now)


@unit_of_work
def reject_protocol_proposal(actor: Staff, proposal_id: int, *, reason: str,
                             now: datetime) -> ProtocolProposal:
    """The clinical lead rejects a proposal, with the reason; nothing changes in force."""
    if actor.role not in CLINICAL_LEADS:
        raise Forbidden("Only the unit's clinical lead may reject a proposed protocol change.")
    proposal = _load_proposal(actor, proposal_id, lock=True)
    _undecided(proposal)
    proposal.status, proposal.decided_by_id, proposal.decided_at = "rejected", actor.id, now
    proposal.decision_reason = reason
    record_event(unit_id=proposal.unit_id, actor=actor, action="protocol.reject",
                 entity_type="protocol_proposal", entity_id=proposal.id, now=now,
                 before={"status": "proposed"},
                 after={"status": "rejected", "reason": reason,
                        "proposed_by": proposal.proposed_by.username,
                        "rejected_by": actor.username})
    return proposal


@unit_of_work
def update_protocol(actor: Staff, *, section: str, values: dict[str, Any], reason: str,
                    approved_by: Staff, now: datetime) -> UnitProtocol:
    """A manager's change and the clinical lead's approval at once (the command line, when the
    clinical lead has signed the change off): a proposal, approved, in one transaction."""
    if approved_by.unit_id != actor.unit_id or not approved_by.active:
        raise Forbidden(f"{approved_by.username} is not an active member of this unit's staff.")
    proposal = propose_protocol_change(actor, section=section, values=values, reason=reason, now=now)
    _approver(approved_by, proposal)
    return _adopt(proposal, approved_by, now)


def list_protocol_proposals(actor: Staff, *, status: str | None = None) -> list[ProtocolProposal]:
    """The unit's protocol proposals, newest first, optionally by status."""
    query = (select(ProtocolProposal).where(ProtocolProposal.unit_id == actor.unit_id)
             .options(selectinload(ProtocolProposal.proposed_by),
                      selectinload(ProtocolProposal.decided_by),
                      selectinload(ProtocolProposal.protocol)))
    if status:
        query = query.where(ProtocolProposal.status == status)
    return list(db.session.scalars(query.order_by(ProtocolProposal.proposed_at.desc(),
                                                  ProtocolProposal.id.desc())))


def get_protocol_proposal(actor: Staff, proposal_id: int) -> ProtocolProposal:
    """One protocol proposal of the actor's unit (another unit's is not found)."""
    return _load_proposal(actor, proposal_id)


def protocol_versions(unit_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """For the inspector's report: the protocol version in force at ``start`` and every version
    adopted in [start, end), oldest first, each with the sections it changed, its reason, who
    proposed it and who approved it (both usernames; ``approved_by`` is None only for a
    version from before approval was required)."""
    rows = db.session.execute(
        select(UnitProtocol, ProtocolProposal.id, ProtocolProposal.section)
        .outerjoin(ProtocolProposal, ProtocolProposal.protocol_id == UnitProtocol.id)
        .where(UnitProtocol.unit_id == unit_id, UnitProtocol.created_at < end)
        .options(selectinload(UnitProtocol.created_by), selectinload(UnitProtocol.approved_by))
        .order_by(UnitProtocol.version)).all()
    found, previous = [], {}
    for protocol, proposal_id, section in rows:
        changed = [section] if section else sorted(
            name for name in set(protocol.settings) | set(previous)
            if protocol.settings.get(name) != previous.get(name))
        previous = protocol.settings
        found.append({
            "version": protocol.version, "in_force_from": protocol.created_at.isoformat(),
            "in_force_at_start": protocol.created_at <= start, "sections": changed,
            "reason": protocol.reason, "proposal_id": proposal_id,
            "proposed_by": protocol.created_by.username if protocol.created_by else None,
            "approved_by": protocol.approved_by.username if protocol.approved_by else None,
        })
    at_start = [row for row in found if row["in_force_at_start"]][-1:]
    return at_start + [row for row in found if not row["in_force_at_start"]]
