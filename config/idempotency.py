"""Idempotency keys for clinical writes: a retry with the same key and body replays the first
result and writes nothing, also when both arrive at once (the database decides)."""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Response, g, redirect, request, session
from flask_smorest import Blueprint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from config.clock import now
from config.db import unit_of_work
from config.api import domain_error_response
from config.errors import DomainError, RecordedRefusal
from config.extensions import db

KEY_LIFETIME = timedelta(days=7)  # keys live at least 7 days
HEADER = "Idempotency-Key"


class IdempotencyKey(db.Model):
    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("unit_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    key: Mapped[str] = mapped_column(sa.String(200))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int]
    response: Mapped[Any | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class MissingIdempotencyKey(DomainError):
    type = "idempotency-key-missing"
    title = "An Idempotency-Key header is required"
    kind = "bad-request"


class IdempotencyKeyReused(DomainError):
    type = "idempotency-key-reused"
    title = "This Idempotency-Key was used for a different request"


def _fingerprint() -> str:
    try:
        body = request.get_json(silent=True)  # parsed: the same body in another key order matches
    except RecursionError:  # nested too deeply: the view's parser answers 400
        body = request.get_data(as_text=True)
    return fingerprint_of(request.method, request.path, body)


def idempotent(view: Callable) -> Callable:
    """Require an Idempotency-Key on a clinical write and replay the first result on a retry."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            raise MissingIdempotencyKey(
                f"Send an {HEADER} header (a new random value per intended write, the same "
                "value on a retry) so that a retry can never record twice.")
        if len(key) > 200:
            raise MissingIdempotencyKey(f"The {HEADER} header is longer than 200 characters.")
        return run_once(key, _fingerprint(), lambda: view(*args, **kwargs))

    # In the OpenAPI document, so that clients (and the fuzzer) know to send one.
    return Blueprint.doc(parameters=[{
        "in": "header", "name": HEADER, "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": "A new random value per intended write; the same value on a retry."}])(wrapper)


def fingerprint_of(*parts: Any) -> str:
    """A stable hash of what a request asked for (to tell a retry from a different request)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _KeyTaken(Exception):
    """The key was stored by an earlier request while this one did the work again."""


def run_once(key: str, fingerprint: str, produce: Callable[[], Response]) -> Response:
    """Produce the response once per key; replay the first one for a retry.

    The key is stored with its response at the end of the write's own transaction (one row
    written once). A retry does the work again, finds the key taken, rolls its work back and
    replays the first response; on PostgreSQL a retry arriving while the first is still in
    flight waits for it at the key's unique index. A write that fails keeps no key.
    """
    unit_id = g.staff.unit_id
    flashes = list(session.get("_flashes", []))
    try:
        return _produce_once(unit_id, key, fingerprint, produce)
    except _KeyTaken:
        pass
    except RecordedRefusal:
        raise  # kept with its key: a retry replays it
    except DomainError:
        # Done again, the write may be refused (the resident was discharged since the first
        # one, say): the retry still gets the first answer.
        if db.session.scalars(select_key(unit_id, key)).first() is None:
            raise
    if flashes or "_flashes" in session:  # what the undone work said is not shown
        session["_flashes"] = flashes
    return _replay(unit_id, key, fingerprint)


@unit_of_work
def _produce_once(unit_id: int, key: str, fingerprint: str,
                  produce: Callable[[], Response]) -> Response:
    try:
        response = produce()
    except RecordedRefusal as refusal:
        # The refusal is itself a record; a retry must see the same refusal, not a second one.
        if not _keep(unit_id, key, fingerprint, domain_error_response(refusal)):
            raise _KeyTaken from None
        raise
    if not _keep(unit_id, key, fingerprint, response):
        raise _KeyTaken
    return response


def _keep(unit_id: int, key: str, fingerprint: str, response: Response) -> bool:
    """Store the key with its response; False when another request stored it first."""
    body = ({"location": response.location} if response.status_code in (302, 303)
            else response.get_json(silent=True))
    at = now()
    return db.session.execute(_keep_statement(db.engine.dialect.name), {
        "unit_id": unit_id, "key": key, "fingerprint": fingerprint,
        "status_code": response.status_code, "response": body, "created_at": at,
        "expires_at": at + KEY_LIFETIME}).scalar() is not None


@functools.cache
def _keep_statement(dialect: str) -> sa.Insert:
    # Built once per engine kind: on the write path building it costs as much as running it.
    keys = IdempotencyKey.__table__
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(keys).on_conflict_do_nothing(index_elements=["unit_id", "key"])
            .returning(keys.c.id))


def _replay(unit_id: int, key: str, fingerprint: str) -> Response:
    first = db.session.scalars(select_key(unit_id, key)).one()
    if first.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            f"The {HEADER} {key!r} was already used for a different request; use a new key "
            "for a new write.")
    if first.status_code in (302, 303):
        replay = redirect(first.response["location"], code=first.status_code)
    else:
        replay = Response(json.dumps(first.response), status=first.status_code,
                          mimetype="application/problem+json" if first.status_code >= 400
                          else "application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def select_key(unit_id: int, key: str):
    return sa.select(IdempotencyKey).where(IdempotencyKey.unit_id == unit_id,
                                           IdempotencyKey.key == key)


@unit_of_work
def purge_expired_keys(at: datetime) -> int:
    """Delete keys past their lifetime (run by the scheduler)."""
    result = db.session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.expires_at < at))
    return result.rowcount or 0
