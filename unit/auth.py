"""Sign-in, server-side sessions, login throttling and role checks."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, has_app_context
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from config.db import unit_of_work
from config.errors import RecordedRefusal, Throttled, Unauthorized
from config.extensions import db
from unit.models import LoginAttempt, Staff, StaffSession

ALL_ROLES = frozenset({"nurse", "doctor", "gp", "manager", "inspector"})
CLINICAL_STAFF = frozenset({"nurse", "doctor", "gp", "manager"})
PRESCRIBERS = frozenset({"doctor", "gp"})
MANAGERS = frozenset({"manager"})
AUDITORS = frozenset({"manager", "inspector"})  # the report and the audit log

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile by default
# Cheap parameters for the test suite only (TestingConfig.ARGON2_CHEAP); verify() reads the
# parameters from each stored hash, so only hashing needs to know.
_cheap_hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
# Verified against when the username is unknown, so that timing does not reveal usernames.
# Each profile has its own, so that the dummy costs what a real hash of that profile costs.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_CHEAP_DUMMY_HASH = _cheap_hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    cheap = has_app_context() and current_app.config.get("ARGON2_CHEAP", False)
    return (_cheap_hasher if cheap else _hasher).hash(password)


def check_password(password_hash: str, password: str) -> bool:
    """True when the password matches the stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CredentialsRefused(RecordedRefusal, Unauthorized):
    """A password check failed: unknown username, wrong password, disabled account, or a
    member of staff the check does not accept (another unit, a role it does not take).

    One answer for every such failure, so that the reply does not tell which it was. A
    ``RecordedRefusal``: the failure (a ``login_attempts`` row, and an audit event when the
    check names a unit) is committed with the caller's unit of work.
    """


class CredentialsThrottled(RecordedRefusal, Throttled):
    """Too many failed password checks for this username (or from this address) lately."""


def _failures(window_start: datetime, *where) -> int:
    return db.session.scalar(
        select(func.count()).select_from(LoginAttempt)
        .where(LoginAttempt.at >= window_start, LoginAttempt.succeeded.is_(False), *where))


def _throttle_check(username: str, address: str | None, now: datetime) -> None:
    config = current_app.config
    window: timedelta = config["LOGIN_FAILURE_WINDOW"]
    window_start = now - window
    # Per username (someone guessing one account's password) at a low bound; per address
    # (someone trying many accounts) only at a much higher one: a unit's tablets share one
    # address behind its NAT, and a few mistyped or made-up names there must not lock every
    # nurse out.
    if _failures(window_start, LoginAttempt.username == username) >= config["LOGIN_MAX_FAILURES"] or (
            address and _failures(window_start, LoginAttempt.ip == address)
            >= config["LOGIN_MAX_FAILURES_PER_ADDRESS"]):
        minutes = int(window.total_seconds() // 60)
        raise CredentialsThrottled(
            f"Too many failed sign-ins. Wait {minutes} minutes or ask a manager to reset the password.",
            retry_after=minutes * 60)


def check_password_throttled(username: str, password: str, *, address: str | None,
                             now: datetime, purpose: str, unit_id: int | None = None,
                             roles: Iterable[str] | None = None,
                             actor: Staff | None = None) -> Staff:
    """The active member of staff whose password this is, through the sign-in throttle.

    Every password check goes through here (sign-in, a witness's signature): failures count
    per username (and per address, at the higher bound) in ``login_attempts`` whatever the
    purpose, so a password cannot be guessed faster through another form. Every failure gets
    the same answer, ``CredentialsRefused`` (unknown username, wrong password, disabled
    account, or, when ``unit_id`` / ``roles`` are given, staff of another unit or role), or
    ``CredentialsThrottled`` once the bound is reached. With ``unit_id`` each failure is
    also an audit event of that unit (``<purpose>.refused``, by ``actor``). Both exceptions
    are ``RecordedRefusal``s: raise them (or another RecordedRefusal) from a unit of work
    that has written nothing else yet, so that the failure, and only it, is committed.
    """
    username = username.strip().lower()
    staff = None
    try:
        _throttle_check(username, address, now)
        staff = db.session.scalars(select(Staff).where(Staff.username == username)).first()
        dummy = _CHEAP_DUMMY_HASH if current_app.config.get("ARGON2_CHEAP", False) else _DUMMY_HASH
        # The hash is checked even for an unknown username, so that timing does not tell.
        valid = check_password(staff.password_hash if staff else dummy, password)
        accepted = (staff is not None and valid and staff.active
                    and (unit_id is None or staff.unit_id == unit_id)
                    and (roles is None or staff.role in roles))
        if not accepted:
            db.session.add(LoginAttempt(username=username[:64], ip=address, at=now, succeeded=False))
            raise CredentialsRefused("The username or password is not correct.")
    except (CredentialsRefused, CredentialsThrottled) as refusal:
        if unit_id is not None:
            from unit.audit import record_event

            record_event(unit_id=unit_id, actor=actor, action=f"{purpose}.refused",
                         entity_type="staff", entity_id=staff.id if staff else None,
                         now=now, after={"username": username[:64], "address": address,
                                         "throttled": isinstance(refusal, CredentialsThrottled)})
        raise
    db.session.add(LoginAttempt(username=username[:64], ip=address, at=now, succeeded=True))
    return staff


def sign_in(username: str, password: str, *, ip: str | None, user_agent: str | None,
            now: datetime) -> tuple[Staff, str]:
    """Check the credentials and open a server-side session; returns the staff and the token."""
    return _open_session(username, password, ip=ip, user_agent=user_agent, now=now)


@unit_of_work
def _open_session(username: str, password: str, *, ip: str | None, user_agent: str | None,
                  now: datetime) -> tuple[Staff, str]:
    staff = check_password_throttled(username, password, address=ip, now=now, purpose="sign_in")
    token = secrets.token_urlsafe(32)
    db.session.add(StaffSession(token_hash=_token_hash(token), staff_id=staff.id, created_at=now,
                                last_seen_at=now, ip=ip, user_agent=(user_agent or "")[:300]))
    return staff, token


@unit_of_work
def sign_out(token: str, now: datetime) -> None:
    """Revoke the session behind this token."""
    session = db.session.get(StaffSession, _token_hash(token))
    if session is not None and session.revoked_at is None:
        session.revoked_at = now


@unit_of_work
def revoke_sessions(staff: Staff, now: datetime) -> int:
    """Revoke every open session of a member of staff (e.g. when they leave)."""
    sessions = db.session.scalars(
        select(StaffSession).where(StaffSession.staff_id == staff.id,
                                   StaffSession.revoked_at.is_(None))
    ).all()
    for session in sessions:
        session.revoked_at = now
    return len(sessions)


def resolve_session(token: str | None, now: datetime, *, activity: bool = True) -> Staff:
    """The member of staff behind a session token, or Unauthorized (expired, revoked, unknown).

    ``activity=False`` (a page refreshing itself) does not count as use of the session.
    """
    if not token:
        raise Unauthorized("Sign in first.")
    session = db.session.get(StaffSession, _token_hash(token), options=[joinedload(StaffSession.staff)])
    if session is None or session.revoked_at is not None:
        raise Unauthorized("Your session has ended. Sign in again.")
    idle: timedelta = current_app.config["SESSION_IDLE_TIMEOUT"]
    absolute: timedelta = current_app.config["SESSION_ABSOLUTE_TIMEOUT"]
    if now - session.last_seen_at > idle:
        raise Unauthorized(f"Your session expired after {int(idle.total_seconds() // 60)} minutes idle. "
                           "Sign in again.")
    if now - session.created_at > absolute:
        raise Unauthorized(f"Your session reached its {int(absolute.total_seconds() // 3600)}-hour "
                           "limit. Sign in again.")
    staff = session.staff
    if not staff.active:
        raise Unauthorized("Your account is disabled.")
    if activity and now - session.last_seen_at > timedelta(seconds=60):
        _touch(session.token_hash, now)  # at most once a minute, to keep reads cheap
    # Checked just now: a unit of work of this request takes it as it is (see config.db).
    db.session.info["keep_on_write"] = (staff,)
    return staff


@unit_of_work
def _touch(token_hash: str, now: datetime) -> None:
    session = db.session.get(StaffSession, token_hash)
    if session is not None:
        session.last_seen_at = now


def roles_required(roles: Iterable[str]) -> Callable:
    """Declare which roles may call a view; views without a declaration are refused."""
    allowed = frozenset(roles)
    unknown = allowed - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def decorate(view: Callable) -> Callable:
        view.allowed_roles = allowed  # type: ignore[attr-defined]
        return view

    return decorate


def public(view: Callable) -> Callable:
    """Mark a view as reachable without signing in (sign-in itself, static files)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def current_staff() -> Staff:
    """The signed-in member of staff of this request."""
    return g.staff
