"""The audit log: append-only events, hash-chained per unit, and the chain's verification."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from config.extensions import db
from unit.models import AuditChainHead, AuditEvent, Staff, Unit

GENESIS_HASH = "0" * 64


def jsonable(value: Any) -> Any:
    """Plain JSON types only, so that what is stored is exactly what was hashed."""
    return json.loads(json.dumps(value, default=_default, sort_keys=True))


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the event's content and the previous link."""
    content = {
        # In UTC, as the database gives it back: a caller's "now" in another offset must not
        # make a sound event look altered on verification.
        "unit_id": event.unit_id, "seq": event.seq,
        "at": event.at.astimezone(timezone.utc).isoformat(),
        "actor_id": event.actor_id, "actor_role": event.actor_role, "action": event.action,
        "entity_type": event.entity_type, "entity_id": event.entity_id,
        "resident_id": event.resident_id, "before": event.before, "after": event.after,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def start_chain(unit: Unit) -> None:
    """Create the head of a new unit's chain (called when the unit is created)."""
    db.session.add(AuditChainHead(unit_id=unit.id, seq=0, hash=GENESIS_HASH))


def record_event(*, unit_id: int, actor: Staff | None, action: str, entity_type: str,
                 entity_id: Any, now: datetime, before: Any = None, after: Any = None,
                 resident_id: int | None = None) -> AuditEvent:
    """Append an audit event in the caller's transaction (the chain head is row-locked)."""
    head = db.session.scalars(
        select(AuditChainHead).where(AuditChainHead.unit_id == unit_id).with_for_update()
    ).one()
    event = AuditEvent(
        unit_id=unit_id, seq=head.seq + 1, at=now,
        actor_id=actor.id if actor else None, actor_role=actor.role if actor else None,
        action=action, entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id), resident_id=resident_id,
        before=jsonable(before), after=jsonable(after), prev_hash=head.hash,
    )
    event.hash = event_hash(event)
    head.seq, head.hash = event.seq, event.hash
    db.session.add(event)
    return event


@dataclass
class ChainReport:
    unit_code: str
    events: int
    verified: bool
    broken_at_seq: int | None = None
    problem: str | None = None


def verify_chain(unit: Unit) -> ChainReport:
    """Walk one unit's chain in order and report the first broken link."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    # Plain rows, not ORM objects: a year of a unit's events is a few hundred thousand.
    stream = db.session.execute(
        select(*AuditEvent.__table__.c).where(AuditEvent.unit_id == unit.id)
        .order_by(AuditEvent.seq).execution_options(yield_per=5000)
    )
    for event in stream:
        count += 1
        if event.seq != expected_seq:
            return ChainReport(unit.code, count, False, expected_seq,
                               f"event {expected_seq} is missing (found {event.seq})")
        if event.prev_hash != prev_hash:
            return ChainReport(unit.code, count, False, event.seq,
                               "the link to the previous event does not match")
        if event_hash(event) != event.hash:
            return ChainReport(unit.code, count, False, event.seq,
                               "the event's content does not match its hash (altered)")
        prev_hash, expected_seq = event.hash, expected_seq + 1
    head = db.session.get(AuditChainHead, unit.id)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return ChainReport(unit.code, count, False, expected_seq,
                           f"the chain ends at {expected_seq - 1} but its head says {head.seq} "
                           "(events removed from the end)")
    return ChainReport(unit.code, count, True)


def search_events(unit_id: int, *, resident: str | None, user: str | None, action: str | None,
                  start: datetime | None, end: datetime | None, page: int, per_page: int):
    """The unit's audit events matching a search, newest first, with the total count."""
    import sqlalchemy as sa

    from unit.models import Resident

    where = [AuditEvent.unit_id == unit_id]
    if resident:
        if resident.isdigit():
            where.append(AuditEvent.resident_id == int(resident))
        else:
            ids = select(Resident.id).where(Resident.unit_id == unit_id, Resident.name.ilike(f"%{resident}%"))
            where.append(AuditEvent.resident_id.in_(ids))
    if user:
        ids = select(Staff.id).where(Staff.username == user.strip().lower())
        where.append(AuditEvent.actor_id.in_(ids))
    if action:
        where.append(AuditEvent.action.like(f"{action}%"))
    if start:
        where.append(AuditEvent.at >= start)
    if end:
        where.append(AuditEvent.at < end)
    total = db.session.scalar(select(sa.func.count()).select_from(AuditEvent).where(*where))
    rows = db.session.execute(
        select(AuditEvent, Staff.username).outerjoin(Staff, Staff.id == AuditEvent.actor_id).where(*where)
        .order_by(AuditEvent.seq.desc()).limit(per_page).offset((page - 1) * per_page)).all()
    return rows, total


def record_view(actor: Staff, path: str, now: datetime) -> None:
    """An inspector looked at something: that look is itself audited."""
    from config.db import unit_of_work

    unit_of_work(lambda: record_event(unit_id=actor.unit_id, actor=actor, action="inspector.view",
                                      entity_type="page", entity_id=None, now=now,
                                      after={"path": path[:500]}))()
