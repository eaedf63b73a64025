"""The interval rules of observation schedules: how soon a result asks for the next one,
the CIWA-Ar minimal streak, the grace before a slot is missed, and a schedule's due state.

Defaults are docs/clinical-rules.md section 2; a unit's protocol may set its own intervals
(``protocol_interval``). Pure functions: no database.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitoring.scales import get_scale


NEWS2_RISKS = ("low", "low-medium", "medium", "high")


def news2_monitoring_minutes(risk: str, total: int) -> int:
    """Minimum NEWS2 interval: total 0 12 h, low 4 h, low-medium/medium 1 h, high 15 min."""
    # RCP NEWS2 chart 2 (clinical response); "continuous" for high is asked every 15 minutes here.
    if risk == "high":
        return 15
    if risk in ("medium", "low-medium"):
        return 60
    if risk == "low":
        return 720 if total == 0 else 240
    raise ValueError(f"Unknown NEWS2 risk: {risk!r}")


CIWA_MINIMAL_STREAK = 3  # docs/clinical-rules.md s2: after 3 minimal in a row, every 8 h
CIWA_EXTENDED_MINUTES = 480

_DEFAULT_INTERVALS: dict[str, dict[str, int]] = {
    "ciwa-ar": {"severe": 60, "moderate": 120, "minimal": 240},
    "cows": {"severe": 60, "moderately_severe": 60, "moderate": 120, "mild": 240, "none": 240},
    "gmaws": {"severe": 60, "moderate": 120, "mild": 120},
    # Local default: docs/clinical-rules.md s2 gives no SOWS schedule; every 4 h like COWS "otherwise".
    "sows": {"none": 240, "mild": 240, "moderate": 240, "severe": 240},
}


def default_interval_minutes(scale_code: str, band: str, consecutive_minimal: int = 0, *,
                             total: int | None = None) -> int:
    """Default minutes to the next observation after a result in ``band``.

    ``consecutive_minimal``: CIWA-Ar minimal results in a row ending with this one (this one
    included). ``total``: the NEWS2 total, which tells 0 (12 h) from 1-4 (4 h) in the low
    risk; without it a low NEWS2 gets the safer 4 h.
    """
    get_scale(scale_code)
    if scale_code == "news2":
        return news2_monitoring_minutes(band, 1 if total is None else total)
    try:
        minutes = _DEFAULT_INTERVALS[scale_code][band]
    except KeyError:
        raise ValueError(f"No default interval for {scale_code} band {band!r}") from None
    if scale_code == "ciwa-ar" and band == "minimal" and consecutive_minimal >= CIWA_MINIMAL_STREAK:
        return CIWA_EXTENDED_MINUTES
    return minutes


def grace_minutes(interval_minutes: int) -> int:
    """Minutes after due before an observation is missed: 15 for intervals up to 1 h, else 30."""
    if interval_minutes <= 0:
        raise ValueError("interval must be positive")
    return 15 if interval_minutes <= 60 else 30


def minimal_streak(bands_newest_first: Iterable[str | None]) -> int:
    """CIWA-Ar minimal results in a row, counted back from the newest (the streak rule)."""
    streak = 0
    for band in bands_newest_first:
        if band != "minimal":
            break
        streak += 1
    return streak


class _Scheduled(Protocol):
    scale: str
    max_interval_minutes: int | None


class _Result(Protocol):
    band: str
    total: int


def protocol_interval(settings: dict[str, Any], schedule: _Scheduled, result: _Result,
                      consecutive_minimal: int) -> int:
    """Minutes to the next observation after this result, as the unit's protocol says: its own
    interval for the band, else the default; never longer than the schedule's "at least every"."""
    own = settings["intervals"].get(schedule.scale, {})
    minutes = own.get(result.band) or default_interval_minutes(
        schedule.scale, result.band, consecutive_minimal, total=result.total)
    if schedule.max_interval_minutes:
        minutes = min(minutes, schedule.max_interval_minutes)
    return minutes


class _Due(Protocol):
    next_due_at: datetime
    interval_minutes: int


def due_state(schedule: _Due, now: datetime) -> str:
    """``due_soon`` (within 15 min), ``late`` (past due, in grace), ``overdue`` (past grace), ``ok``."""
    past_due = now - schedule.next_due_at  # the board asks this of every schedule: one subtraction
    if past_due > _grace(schedule.interval_minutes):
        return "overdue"
    if past_due > _ZERO:
        return "late"
    if past_due >= _DUE_SOON:
        return "due_soon"
    return "ok"


_ZERO, _DUE_SOON = timedelta(0), timedelta(minutes=-15)


@functools.cache
def _grace(interval_minutes: int) -> timedelta:
    return timedelta(minutes=grace_minutes(interval_minutes))
