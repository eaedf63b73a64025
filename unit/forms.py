"""Page forms that write: each carries its own idempotency key (a double tap or a resent form
writes once), a refusal is flashed in words and nothing is half-saved."""
from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import Response, flash, redirect, request
from marshmallow import ValidationError

from config.errors import DomainError
from config.idempotency import fingerprint_of, run_once


def new_key() -> str:
    """A fresh idempotency key for a form (a hidden ``idempotency_key`` field)."""
    return str(uuid.uuid4())


def _words(messages) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{key.replace('_', ' ')}: {_words(value)}" for key, value in messages.items())
    if isinstance(messages, (list, tuple)):
        return " ".join(_words(message) for message in messages)
    return str(messages)


def form_write(save: Callable[[], Response], *, back: str, failed: str = "Not saved") -> Response:
    """Run ``save`` once per the form's ``idempotency_key``; on a refusal (invalid input or a
    rule), flash why and go ``back``. ``save`` loads the form through its schema, calls one
    service, flashes what was done and returns the redirect."""
    key = request.form.get("idempotency_key", "").strip()
    if not key or len(key) > 200:
        flash(f"{failed}: the form expired. Reload the page and try again.")
        return redirect(back, code=303)
    fingerprint = fingerprint_of(request.method, request.path, sorted(
        (name, value) for name, value in request.form.items(multi=True)
        if name not in ("csrf_token", "witness_password")))
    try:
        response = run_once(key, fingerprint, save)
    except ValidationError as invalid:
        flash(f"{failed}: {_words(invalid.messages)}")
    except DomainError as refusal:
        detail = refusal.detail
        if refusal.errors and not detail.endswith("see errors."):
            detail += f" ({_words(refusal.errors)})"
        flash(f"{failed}: {detail}")
    else:
        if response.status_code < 400:
            return response
        # The same form sent again after a kept refusal: say it in words, not JSON.
        flash(f"{failed}: {(response.get_json(silent=True) or {}).get('detail', 'refused.')}")
    return redirect(back, code=303)


def text(name: str) -> str | None:
    """A form field's text, stripped; None when empty."""
    value = (request.form.get(name) or "").strip()
    return value or None


def number(name: str):
    """A form field as a number when it is one (else the text, for the schema to name)."""
    value = (request.form.get(name) or "").strip()
    if value == "":
        return None
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value


def local_time(name: str) -> str | None:
    """A ``datetime-local`` field (the unit's wall-clock time, no zone) as an ISO timestamp in
    UTC for the schema; None when empty; text that is no time is passed on for the schema to
    name."""
    from datetime import datetime, timezone

    from config.clock import unit_zone

    value = (request.form.get(name) or "").strip()
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return value
    if naive.tzinfo is not None:
        return value
    return naive.replace(tzinfo=unit_zone()).astimezone(timezone.utc).isoformat()
