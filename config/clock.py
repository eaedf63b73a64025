"""The request's notion of now: real time, or a fixed clock that tests install."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

from config.db import utcnow


def now() -> datetime:
    """Now, in UTC; ``app.config["CLOCK"]`` (a callable) replaces the wall clock in tests."""
    if has_app_context():
        clock = current_app.config.get("CLOCK")
        if clock is not None:
            return clock()
    return utcnow()


def unit_zone() -> ZoneInfo:
    """The unit's own time zone (``UNIT_TIMEZONE``, UK local time by default): every time a
    person reads, on a page or in a message, is shown in it; everything stored is UTC."""
    return ZoneInfo(current_app.config.get("UNIT_TIMEZONE", "Europe/London"))


def local(at: datetime) -> datetime:
    """``at`` in the unit's time zone."""
    return at.astimezone(unit_zone())
