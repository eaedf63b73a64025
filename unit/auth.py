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
from config.errors import Throttled, Unauthorized
from config.extensions import db
from unit.models import LoginAttempt, Staff, StaffSession

ALL_ROLES = frozenset({"nurse", "doctor", "gp", "manager", "inspector", "clinical_lead"})
# The clinical lead is a doctor: wherever a doctor or GP may act, so may they (prescribe,
# answer any clinical escalation, record a doctor's override of an admission decision); and
# they alone approve a change of the unit protocol.
CLINICAL_LEADS = frozenset({"clinical_lead"})
CLINICAL_STAFF = frozenset({"nurse", "doctor", "gp", "manager", "clinical_lead"})
PRESCRIBERS = frozenset({"doctor", "gp", "clinical_lead"})
# Who may record a doctor's decision (an admission declined everywhere, admitted with a reason).
DOCTORS = PRESCRIBERS
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


def _throttle_check(username: str, ip: str | None, now: datetime) -> None:
    window_start = now - current_app.config["LOGIN_FAILURE_WINDOW"]
    limit = current_app.config["LOGIN_MAX_FAILURES"]

    def failures(*where) -> int:
        return db.session.scalar(
            select(func.count()).select_from(LoginAttempt)
            .where(LoginAttempt.at >= window_start, LoginAttempt.succeeded.is_(False), *where)
        )

    # Per username (guessing one account) and per address (trying many accounts).
    if failures(LoginAttempt.username == username) >= limit or (
        ip and failures(LoginAttempt.ip == ip) >= limit * 4
    ):
        minutes = int(current_app.config["LOGIN_FAILURE_WINDOW"].total_seconds() // 60)
        raise Throttled(
            f"Too many failed sign-ins. Wait {minutes} minutes or ask a manager to reset the password.",
            retry_after=minutes * 60,
        )


@unit_of_work
def _record_attempt(username: str, ip: str | None, now: datetime, succeeded: bool) -> None:
    db.session.add(LoginAttempt(username=username, ip=ip, at=now, succeeded=succeeded))


def sign_in(username: str, password: str, *, ip: str | None, user_agent: str | None,
            now: datetime) -> tuple[Staff, str]:
    """Check the credentials and open a server-side session; returns the staff and the token."""
    username = username.strip().lower()
    try:
        return _open_session(username, password, ip=ip, user_agent=user_agent, now=now)
    except Unauthorized:
        _record_attempt(username, ip, now, False)  # kept, in its own transaction
        raise


@unit_of_work
def _open_session(username: str, password: str, *, ip: str | None, user_agent: str | None,
                  now: datetime) -> tuple[Staff, str]:
    _throttle_check(username, ip, now)
    staff = db.session.scalars(select(Staff).where(Staff.username == username)).first()
    dummy = _CHEAP_DUMMY_HASH if current_app.config.get("ARGON2_CHEAP", False) else _DUMMY_HASH
    valid = check_password(staff.password_hash if staff else dummy, password)
    if not (staff and valid and staff.active):
        raise Unauthorized("The username or password is not correct.")
    db.session.add(LoginAttempt(username=username, ip=ip, at=now, succeeded=True))
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
