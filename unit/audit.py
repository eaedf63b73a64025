"""The audit log: append-only events, hash-chained per unit, and the chain's verification."""
from __future__ import annotations

import functools
import hashlib
import json
from json.encoder import encode_basestring
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy import select

from config.extensions import db
from unit.models import AuditChainHead, AuditCheckpoint, AuditEvent, Staff, Unit

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


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no spaces. JSON columns are stored in it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the event's content and the previous link."""
    return _content_hash(event, canonical_json(event.before), canonical_json(event.after))


def _content_hash(event, before_text: str, after_text: str) -> str:
    head, middle, tail = _content_parts(event, before_text, after_text)
    text = head + _str(event.prev_hash) + middle + _int(event.seq) + tail
    return hashlib.sha256(text.encode()).hexdigest()


def _content_parts(event, before_text: str, after_text: str) -> tuple[str, str, str]:
    # The canonical JSON of the event's content, built around the before/after texts as they
    # are stored (canonical too), so that verification need not parse and re-serialise them;
    # in three parts around the link (prev_hash, then seq), which the one-statement append on
    # PostgreSQL fills in from the locked head. ``at`` in UTC, as the database gives it back:
    # a caller's "now" in another offset must not make a sound event look altered.
    return (('{"action":' + _str(event.action) + ',"actor_id":' + _int(event.actor_id)
             + ',"actor_role":' + _str(event.actor_role) + ',"after":' + after_text
             + ',"at":' + _str(event.at.astimezone(timezone.utc).isoformat())
             + ',"before":' + before_text + ',"entity_id":' + _str(event.entity_id)
             + ',"entity_type":' + _str(event.entity_type) + ',"prev_hash":'),
            ',"resident_id":' + _int(event.resident_id) + ',"seq":',
            ',"unit_id":' + _int(event.unit_id) + "}")


def _str(value: str | None) -> str:
    # What json.dumps(value, ensure_ascii=False) gives, without its per-call overhead.
    return "null" if value is None else encode_basestring(value)


def _int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def start_chain(unit: Unit) -> None:
    """Create the head of a new unit's chain (called when the unit is created)."""
    db.session.add(AuditChainHead(unit_id=unit.id, seq=0, hash=GENESIS_HASH))


_PENDING = "audit_events_pending"


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget_pending_events(session, transaction) -> None:
    # A rolled-back transaction leaves no events; a committed one wrote them.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def record_event(*, unit_id: int, actor: Staff | None, action: str, entity_type: str,
                 entity_id: Any, now: datetime, before: Any = None, after: Any = None,
                 resident_id: int | None = None) -> None:
    """Append an audit event to the caller's transaction; it is chained when it commits.

    The events of a transaction are linked into their units' chains and written just before
    the commit (``_chain_pending_events``), in the order they were recorded.
    """
    db.session.info.setdefault(_PENDING, []).append({
        "unit_id": unit_id, "at": now, "actor_id": actor.id if actor else None,
        "actor_role": actor.role if actor else None, "action": action,
        "entity_type": entity_type, "entity_id": None if entity_id is None else str(entity_id),
        "resident_id": resident_id, "before": jsonable(before), "after": jsonable(after)})


@sa.event.listens_for(sa.orm.Session, "before_commit")
def _chain_pending_events(session) -> None:
    """Link the transaction's events into their units' chains and write them.

    The chain heads are the last rows a transaction locks, in unit order, once everything
    else is flushed; holding them, it waits for nothing else. So no two transactions can
    deadlock over them, and each head is held only for the moment of the commit: writes to one
    unit queue on their head for that moment alone.
    """
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()  # the rows the events name exist before the events (foreign keys)
    connection = session.connection()  # Core statements: no ORM work is wanted on them
    if len(pending) == 1 and connection.dialect.name == "postgresql":
        _append_one_on_postgresql(connection, pending[0])
        return
    heads = {unit_id: [seq, hash_] for unit_id, seq, hash_ in connection.execute(
        _LOCK_HEADS, {"units": sorted({event["unit_id"] for event in pending})})}
    for event in pending:
        head = heads[event["unit_id"]]
        event["seq"], event["prev_hash"] = head[0] + 1, head[1]
        event["hash"] = _content_hash(SimpleNamespace(**event), canonical_json(event["before"]),
                                      canonical_json(event["after"]))
        head[:] = event["seq"], event["hash"]
    connection.execute(_INSERT_EVENTS, pending)
    connection.execute(_MOVE_HEAD, [{"head_unit": unit_id, "head_seq": seq, "head_hash": hash_}
                                    for unit_id, (seq, hash_) in heads.items()])


# Built once: every clinical write runs them, and building one costs as much as running it.
_HEADS = AuditChainHead.__table__
_LOCK_HEADS = (select(_HEADS.c.unit_id, _HEADS.c.seq, _HEADS.c.hash)
               .where(_HEADS.c.unit_id.in_(sa.bindparam("units", expanding=True)))
               .order_by(_HEADS.c.unit_id).with_for_update())
_INSERT_EVENTS = sa.insert(AuditEvent.__table__)
_MOVE_HEAD = (sa.update(_HEADS).where(_HEADS.c.unit_id == sa.bindparam("head_unit"))
              .values(seq=sa.bindparam("head_seq"), hash=sa.bindparam("head_hash")))


def _append_one_on_postgresql(connection, event: dict[str, Any]) -> None:
    """The usual transaction (one event) on PostgreSQL, in one statement and round trip.

    The head is locked, the event's hash made from it (PostgreSQL's sha256 over the same
    bytes ``_content_hash`` hashes: the parts are made here, the link filled in there), the
    event inserted and the head moved. Verification recomputes every hash in Python.
    """
    head, middle, tail = _content_parts(SimpleNamespace(**event),
                                        canonical_json(event["before"]),
                                        canonical_json(event["after"]))
    appended = connection.execute(_APPEND_ONE, {
        **event, "hash_head": head.encode(), "hash_middle": middle.encode(),
        "hash_tail": tail.encode()})
    if appended.rowcount != 1:
        raise RuntimeError(f"unit {event['unit_id']} has no audit chain head")


_APPEND_ONE = sa.text("""
WITH head AS (
    SELECT seq, hash FROM audit_chain_heads WHERE unit_id = :unit_id FOR UPDATE
), moved AS (
    UPDATE audit_chain_heads AS moving
    SET seq = head.seq + 1,
        hash = encode(sha256(CAST(:hash_head AS BYTEA) || convert_to('"' || head.hash || '"', 'UTF8')
                             || CAST(:hash_middle AS BYTEA)
                             || convert_to(CAST(head.seq + 1 AS TEXT), 'UTF8')
                             || CAST(:hash_tail AS BYTEA)), 'hex')
    FROM head WHERE moving.unit_id = :unit_id
    RETURNING moving.seq, moving.hash, head.hash AS prev_hash
)
INSERT INTO audit_events (unit_id, seq, at, actor_id, actor_role, action, entity_type,
                          entity_id, resident_id, before, after, prev_hash, hash)
SELECT CAST(:unit_id AS INTEGER), moved.seq, CAST(:at AS TIMESTAMP WITH TIME ZONE),
       CAST(:actor_id AS INTEGER), CAST(:actor_role AS VARCHAR), CAST(:action AS VARCHAR),
       CAST(:entity_type AS VARCHAR), CAST(:entity_id AS VARCHAR), CAST(:resident_id AS INTEGER),
       CAST(:before AS JSON), CAST(:after AS JSON), moved.prev_hash, moved.hash
FROM moved
""").bindparams(sa.bindparam("at", type_=AuditEvent.__table__.c.at.type),
                sa.bindparam("before", type_=AuditEvent.__table__.c.before.type),
                sa.bindparam("after", type_=AuditEvent.__table__.c.after.type))


@dataclass
class ChainReport:
    unit_code: str
    events: int
    verified: bool
    broken_at_seq: int | None = None
    problem: str | None = None
    checked_from_seq: int = 1
    full_verification_at: datetime | None = None


def verify_chain(unit: Unit, *, from_checkpoint: bool = False) -> ChainReport:
    """Walk one unit's chain in order and report the first broken link.

    ``from_checkpoint``: start after the last full verification (its link is checked), so a
    report over a year of events stays fast; ``flask audit verify`` and the nightly job walk
    the whole chain and move the checkpoint.
    """
    prev_hash, expected_seq = GENESIS_HASH, 1
    checkpoint = db.session.get(AuditCheckpoint, unit.id) if from_checkpoint else None
    # The JSON columns are read as their stored text (canonical_json), not parsed.
    columns = [c for c in AuditEvent.__table__.c if c.name not in ("before", "after")]
    texts = (sa.cast(AuditEvent.before, sa.Text).label("before_text"),
             sa.cast(AuditEvent.after, sa.Text).label("after_text"))
    if checkpoint is not None:
        # The checkpoint's own event is checked in full: its stored hash against the one the
        # full verification saw, and its content against that hash (an edit that left the
        # hash column alone must not pass).
        stored = db.session.execute(select(*columns, *texts).where(
            AuditEvent.unit_id == unit.id, AuditEvent.seq == checkpoint.seq)).first()
        if stored is None or stored.hash != checkpoint.hash or _content_hash(
                stored, stored.before_text or "null", stored.after_text or "null") != stored.hash:
            return ChainReport(unit.code, checkpoint.seq, False, checkpoint.seq,
                               "the event at the last full verification has changed",
                               full_verification_at=checkpoint.verified_at)
        prev_hash, expected_seq = checkpoint.hash, checkpoint.seq + 1
    first_seq, count = expected_seq, expected_seq - 1
    stream = db.session.execute(
        select(*columns, *texts)
        .where(AuditEvent.unit_id == unit.id, AuditEvent.seq >= first_seq)
        .order_by(AuditEvent.seq).execution_options(yield_per=5000)
    )
    report = functools.partial(ChainReport, unit.code, checked_from_seq=first_seq,
                               full_verification_at=checkpoint.verified_at if checkpoint else None)
    for event in stream:
        count += 1
        if event.seq != expected_seq:
            return report(count, False, expected_seq, f"event {expected_seq} is missing (found {event.seq})")
        if event.prev_hash != prev_hash:
            return report(count, False, event.seq, "the link to the previous event does not match")
        if _content_hash(event, event.before_text or "null", event.after_text or "null") != event.hash:
            return report(count, False, event.seq, "the event's content does not match its hash (altered)")
        prev_hash, expected_seq = event.hash, expected_seq + 1
    head = db.session.get(AuditChainHead, unit.id)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return report(count, False, expected_seq,
                      f"the chain ends at {expected_seq - 1} but its head says {head.seq} "
                      "(events removed from the end)")
    return report(count, True)


def search_events(unit_id: int, *, resident: str | None, user: str | None, action: str | None,
                  start: datetime | None, end: datetime | None, page: int, per_page: int):
    """The unit's audit events matching a search, newest first, with the total count."""
    import sqlalchemy as sa

    from unit.models import Resident
    from unit.schemas import whole_number

    where = [AuditEvent.unit_id == unit_id]
    if resident:
        if (number := whole_number(resident)) is not None:  # an id (too large for one: nobody's)
            where.append(AuditEvent.resident_id == number if number < 2**31 else sa.false())
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
    if (page - 1) * per_page >= total:
        return [], total  # past the last page (also a page number too large for an OFFSET)
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


def verify_all_chains(now: datetime) -> list[ChainReport]:
    """Verify every unit's whole chain; where it holds, move the unit's checkpoint to its end."""
    from config.db import unit_of_work

    reports = []
    for unit in db.session.scalars(select(Unit).order_by(Unit.code)).all():
        report = verify_chain(unit)
        reports.append(report)
        if report.verified and report.events:
            last = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.unit_id == unit.id,
                                                                   AuditEvent.seq == report.events))
            unit_of_work(lambda u=unit, n=report.events, h=last: _save_checkpoint(u.id, n, h, now))()
    return reports


def _save_checkpoint(unit_id: int, seq: int, hash_: str, now: datetime) -> None:
    checkpoint = db.session.get(AuditCheckpoint, unit_id)
    if checkpoint is None:
        db.session.add(AuditCheckpoint(unit_id=unit_id, seq=seq, hash=hash_, verified_at=now))
    elif seq >= checkpoint.seq:
        checkpoint.seq, checkpoint.hash, checkpoint.verified_at = seq, hash_, now
