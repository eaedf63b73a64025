"""The domain's errors: a rule said no, with a stable ``type`` slug and words that say why.

Only exceptions live here, importing nothing of the app, so that every module may raise them;
``config.api`` alone turns them into HTTP problems.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule of the domain said no. ``type`` is a stable slug; ``detail`` says why in words."""

    type: str = "domain-error"
    title: str = "The request breaks a rule of the unit"
    kind: str = "invalid"  # invalid | not-found | conflict | forbidden | unauthorized | throttled

    def __init__(self, detail: str, *, errors: dict | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class RecordedRefusal(DomainError):
    """A refusal that is itself a record (a declined referral, a refused dose): kept on commit."""


class NotFound(DomainError):
    type = "not-found"
    title = "Not found"
    kind = "not-found"


class Forbidden(DomainError):
    type = "forbidden"
    title = "Your role may not do this"
    kind = "forbidden"


class Unauthorized(DomainError):
    type = "unauthorized"
    title = "Sign in first"
    kind = "unauthorized"


class Conflict(DomainError):
    type = "conflict"
    title = "The request conflicts with the record's current state"
    kind = "conflict"


class Throttled(DomainError):
    type = "too-many-attempts"
    title = "Too many attempts"
    kind = "throttled"


class ValidationFailed(DomainError):
    type = "validation-error"
    title = "The request is not valid"
