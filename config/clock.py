"""The request's notion of now: real time, or a fixed clock that tests install."""
from __future__ import annotations

from datetime import datetime

from flask import current_app, has_app_context

from config.db import utcnow


def now() -> datetime:
    """Now, in UTC; ``app.config["CLOCK"]`` (a callable) replaces the wall clock in tests."""
    if has_app_context():
        clock = current_app.config.get("CLOCK")
        if clock is not None:
            return clock()
    return utcnow()
