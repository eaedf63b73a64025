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
            ',"resident_id":' + _int(event.resident_id) + _row_hash_part(getattr(event, "row_hash", None)) + ',"seq":',
            ',"unit_id":' + _int(event.unit_id) + "}")


def _row_hash_part(row_hash: str | None) -> str:
    # Only events that record a clinical row carry its hash; an event without one is hashed
    # exactly as before row hashes existed, so older chains still verify.
    return "" if row_hash is None else ',"row_hash":' + _str(row_hash)


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
    unit queue on their head for that moment alone. Before them, each event that names a
    clinical row gets the row's hash (``_hash_recorded_rows``).
    """
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()  # the rows the events name exist before the events (foreign keys)
    connection = session.connection()  # Core statements: no ORM work is wanted on them
    _hash_recorded_rows(session, connection, pending)
    if len(pending) == 1 and connection.dialect.name == "postgresql":
        _append_one_on_postgresql(connection, pending[0])
        return
    if any("row_hash" in event for event in pending):
        for event in pending:  # one INSERT for all: every row names the same columns
            event.setdefault("row_hash", None)
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


# --- the clinical rows the events record ---------------------------------------------------
# A model declares ``__audited_as__ = "<entity_type>"``: every audit event naming one of its
# rows (entity_type and entity_id) carries ``row_hash``, the SHA-256 of the row's canonical
# JSON as it stands when the event is committed, inside the event's own chained hash. The row's
# latest event thus says what the row must hold now, and `flask audit verify` checks every
# such row against it: an edit in place, a row written without its event, or a deleted row is
# a finding. ``__audit_unhashed__`` names columns outside the record (operational markers).


@dataclass(frozen=True)
class AuditedRows:
    """One audited table: its model, entity type, and its hashed columns with their kinds."""

    model: type
    entity_type: str
    columns: tuple[tuple[str, str], ...]  # (column key, json|datetime|float|int|bool|text)
    append_only: bool


def _kind(column: sa.Column) -> str:
    type_ = column.type
    if isinstance(type_, sa.TypeDecorator):  # UTCDateTime
        type_ = type_.impl
    if isinstance(type_, sa.JSON):
        return "json"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Boolean):
        return "bool"
    if isinstance(type_, sa.Float):
        return "float"
    if isinstance(type_, sa.Integer):
        return "int"
    return "text"


_audited: dict[str, AuditedRows] | None = None


@sa.event.listens_for(sa.orm.Mapper, "after_mapper_constructed")
def _forget_audited_rows(mapper, class_) -> None:
    global _audited
    _audited = None  # a model defined since: look again


def audited_rows() -> dict[str, AuditedRows]:
    """Every audited table by entity type (from the models' ``__audited_as__``)."""
    global _audited
    if _audited is None:
        found = {}
        for mapper in db.Model.registry.mappers:
            model = mapper.class_
            entity_type = model.__dict__.get("__audited_as__")
            if entity_type:
                unhashed = set(model.__dict__.get("__audit_unhashed__", ()))
                columns = tuple((column.key, _kind(column)) for column in model.__table__.c
                                if column.key not in unhashed)
                found[entity_type] = AuditedRows(model, entity_type, columns,
                                                 bool(model.__dict__.get("__append_only__")))
        _audited = found
    return _audited


def _canonical_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return value.astimezone(timezone.utc).isoformat()
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return value  # text; JSON columns come as their stored text (see _json_text)


def _json_text(value: Any) -> str | None:
    # JSON columns are stored as canonical_json text; SQL NULL and JSON null are one value here.
    return None if value is None else canonical_json(value)


def row_hash(table: AuditedRows, values: dict[str, Any], *, json_as_text: bool = False) -> str:
    """SHA-256 of a row's canonical JSON: every hashed column, JSON columns as their canonical
    text. ``json_as_text``: the JSON columns' values are already that text (read as stored)."""
    row = {}
    for key, kind in table.columns:
        value = values[key]
        if kind == "json":
            row[key] = (None if value in (None, "null") else value) if json_as_text else _json_text(value)
        else:
            row[key] = _canonical_value(kind, value)
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


_INSERTED = "audit_rows_inserted"


@sa.event.listens_for(sa.orm.Session, "pending_to_persistent")
@sa.event.listens_for(sa.orm.Session, "detached_to_persistent")
def _note_inserted_row(session, obj) -> None:
    # A row this transaction inserted (a flush, or config.db's insert_row/insert_rows, which
    # add the object detached): its object holds every column as written, so hashing it needs
    # no query. Rows it only updated are read back from the database instead.
    # Held here, not looked up in the session's identity map: that map holds its objects
    # weakly, and a view's objects are gone by the time its unit of work commits.
    if type(obj).__dict__.get("__audited_as__"):
        session.info.setdefault(_INSERTED, {})[sa.inspect(obj).identity_key] = obj


@sa.event.listens_for(sa.orm.Session, "after_transaction_end")
def _forget_inserted_rows(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_INSERTED, None)


def _hash_recorded_rows(session, connection, pending: list[dict[str, Any]]) -> None:
    """Set ``row_hash`` on each pending event that names a row of an audited table."""
    tables = audited_rows()
    wanted: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for event in pending:
        table = tables.get(event["entity_type"])
        entity_id = event["entity_id"]
        if table is not None and entity_id is not None and entity_id.isdigit():
            wanted.setdefault(event["entity_type"], {}).setdefault(int(entity_id), []).append(event)
    if not wanted:
        return
    inserted = session.info.get(_INSERTED, {})
    for entity_type, by_id in wanted.items():
        table = tables[entity_type]
        hashes: dict[int, str] = {}
        to_read = []
        for row_id in by_id:
            obj = inserted.get(sa.orm.util.identity_key(table.model, row_id))
            state = sa.inspect(obj).dict if obj is not None else None
            if state is not None and all(column in state for column, _ in table.columns):
                hashes[row_id] = row_hash(table, state)
            else:
                to_read.append(row_id)
        if to_read:
            # Read as committed, under a share lock where the app may update the row: a
            # concurrent change then commits wholly before this event or after it, never between
            # this read and this event (so the latest event holds the latest row).
            query = _row_query(table).where(table.model.__table__.c.id.in_(to_read))
            if connection.dialect.name == "postgresql" and not table.append_only:
                query = query.with_for_update(read=True)
            for row in connection.execute(query).mappings():
                hashes[row["id"]] = row_hash(table, row, json_as_text=True)
        for row_id, events in by_id.items():
            for event in events:
                event["row_hash"] = hashes.get(row_id)


def _row_query(table: AuditedRows) -> sa.Select:
    """The hashed columns of an audited table, JSON columns as their stored text."""
    columns = table.model.__table__.c
    return sa.select(*(sa.cast(columns[key], sa.Text).label(key) if kind == "json" else columns[key]
                       for key, kind in table.columns))


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
    statement = _APPEND_ONE_WITH_ROW if event.get("row_hash") else _APPEND_ONE
    appended = connection.execute(statement, {
        **event, "hash_head": head.encode(), "hash_middle": middle.encode(),
        "hash_tail": tail.encode()})
    if appended.rowcount != 1:
        raise RuntimeError(f"unit {event['unit_id']} has no audit chain head")


def _append_one(row_hash: bool) -> sa.TextClause:
    return sa.text(f"""
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
                          entity_id, resident_id, before, after, prev_hash, hash{", row_hash" if row_hash else ""})
SELECT CAST(:unit_id AS INTEGER), moved.seq, CAST(:at AS TIMESTAMP WITH TIME ZONE),
       CAST(:actor_id AS INTEGER), CAST(:actor_role AS VARCHAR), CAST(:action AS VARCHAR),
       CAST(:entity_type AS VARCHAR), CAST(:entity_id AS VARCHAR), CAST(:resident_id AS INTEGER),
       CAST(:before AS JSON), CAST(:after AS JSON), moved.prev_hash, moved.hash{", CAST(:row_hash AS VARCHAR)" if row_hash else ""}
FROM moved
""").bindparams(sa.bindparam("at", type_=AuditEvent.__table__.c.at.type),
                sa.bindparam("before", type_=AuditEvent.__table__.c.before.type),
                sa.bindparam("after", type_=AuditEvent.__table__.c.after.type))


# An event that records a clinical row writes its hash too; one that does not leaves the
# column out (so that the code also appends to a schema from before row hashes).
_APPEND_ONE = _append_one(row_hash=False)
_APPEND_ONE_WITH_ROW = _append_one(row_hash=True)


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
    if count == 0:
        # Every admission is audited: a unit with admissions and no events lost its chain.
        from unit.models import Admission

        admissions = db.session.scalar(select(sa.func.count()).select_from(Admission)
                                       .where(Admission.unit_id == unit.id))
        if admissions:
            return report(0, False, 1, f"the unit has {admissions} admissions but no audit events "
                                       "(the chain was wiped)")
    return report(count, True)


@dataclass
class RecordFinding:
    """A clinical row that does not match its audit record."""

    unit_id: int | None
    entity_type: str
    entity_id: str
    problem: str


@dataclass
class RecordsReport:
    """What verifying the clinical rows against their events found, per unit."""

    checked: dict[int, int]          # unit id -> rows that match their latest event
    unchecked: dict[int, int]        # unit id -> rows whose events predate row hashes
    findings: list[RecordFinding]


def verify_records() -> RecordsReport:
    """Check every row of every audited table against the latest audit event naming it.

    A finding: a row that no event names (written behind the application's back), a row
    whose hash differs from its latest event's (edited in place), and an event whose row is
    gone (deleted). Rows whose events were all written before row hashes existed are counted
    as unchecked.
    """
    checked: dict[int, int] = {}
    unchecked: dict[int, int] = {}
    findings: list[RecordFinding] = []
    for entity_type, table in sorted(audited_rows().items()):
        # The latest event naming each row, and the latest one that carries a row hash.
        latest: dict[str, tuple[int, int, str | None]] = {}
        stream = db.session.execute(
            select(AuditEvent.entity_id, AuditEvent.unit_id, AuditEvent.seq, AuditEvent.row_hash)
            .where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id.is_not(None))
            .order_by(AuditEvent.unit_id, AuditEvent.seq).execution_options(yield_per=5000))
        for entity_id, unit_id, seq, hash_ in stream:
            if hash_ is not None or entity_id not in latest:
                latest[entity_id] = (unit_id, seq, hash_)
        rows = db.session.execute(_row_query(table).order_by(table.model.__table__.c.id)
                                  .execution_options(yield_per=5000)).mappings()
        for row in rows:
            entity_id = str(row["id"])
            unit_id = row.get("unit_id")
            event = latest.pop(entity_id, None)
            if event is None:
                findings.append(RecordFinding(unit_id, entity_type, entity_id,
                                              "has no audit event (written behind the application's back)"))
            elif event[2] is None:
                unchecked[unit_id] = unchecked.get(unit_id, 0) + 1
            elif row_hash(table, row, json_as_text=True) != event[2]:
                findings.append(RecordFinding(unit_id, entity_type, entity_id,
                                              f"differs from its audit event {event[1]} (altered since)"))
            else:
                checked[unit_id] = checked.get(unit_id, 0) + 1
        for entity_id, (unit_id, seq, hash_) in latest.items():
            if hash_ is not None:
                findings.append(RecordFinding(unit_id, entity_type, entity_id,
                                              f"recorded by audit event {seq} no longer exists (deleted)"))
    return RecordsReport(checked, unchecked, findings)


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
