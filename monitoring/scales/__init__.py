"""Observation scales: one declarative definition each, from which validation, scoring,
the API description and the tablet form all derive.

The machinery is ``base``; each scale is its own module (docs/clinical-rules.md section 1).
Item keys, allowed values, band codes and thresholds are a public API contract. The interval
rules (how often a band is observed) are ``monitoring.schedules``.
Pure Python and marshmallow only: no Flask, no SQLAlchemy.
"""
from __future__ import annotations

from typing import Any

from monitoring.scales.base import (
    Alternative,
    Band,
    Choice,
    Item,
    PointsTable,
    Scale,
    ScaleValidationError,
    ScoreResult,
    SingleItemRule,
    UnknownScale,
    check_bands,
)
from monitoring.scales.ciwa_ar import CIWA_AR, CIWA_EMERGENCY_TOTAL
from monitoring.scales.cows import COWS
from monitoring.scales.gmaws import GMAWS, GMAWS_URGENT_REVIEW_TOTAL
from monitoring.scales.news2 import NEWS2
from monitoring.scales.sows import SOWS

__all__ = [
    "Alternative",
    "Band",
    "CIWA_AR",
    "CIWA_EMERGENCY_TOTAL",
    "COWS",
    "Choice",
    "GMAWS",
    "GMAWS_URGENT_REVIEW_TOTAL",
    "Item",
    "NEWS2",
    "PointsTable",
    "SCALES",
    "SOWS",
    "Scale",
    "ScaleValidationError",
    "ScoreResult",
    "SingleItemRule",
    "UnknownScale",
    "check_bands",
    "get_scale",
]

SCALES: dict[str, Scale] = {scale.code: scale for scale in (CIWA_AR, COWS, SOWS, GMAWS, NEWS2)}


def get_scale(code: str) -> Scale:
    """The scale with this code, or UnknownScale."""
    try:
        return SCALES[code]
    except (KeyError, TypeError):
        raise UnknownScale(code) from None


# The interval rules lived here until they moved to monitoring.schedules (which imports this
# package): read on first use, so that ``from monitoring.scales import grace_minutes`` still works.
_IN_SCHEDULES = frozenset({"NEWS2_RISKS", "default_interval_minutes", "grace_minutes",
                           "news2_monitoring_minutes"})


def __getattr__(name: str) -> Any:
    if name in _IN_SCHEDULES:
        from monitoring import schedules

        return getattr(schedules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
