"""monitoring.schedules (the interval rules) against docs/clinical-rules.md section 2.

Every expected interval below is copied from the clinical rules by hand, never read from the
code under test.
"""
from __future__ import annotations

import pytest

from monitoring.scales import UnknownScale
from monitoring.schedules import (
    default_interval_minutes,
    grace_minutes,
    minimal_streak,
    news2_monitoring_minutes,
)


@pytest.mark.parametrize(("risk", "total", "minutes"), [
    ("low", 0, 720), ("low", 1, 240), ("low", 4, 240), ("low-medium", 3, 60),
    ("low-medium", 4, 60), ("medium", 5, 60), ("medium", 6, 60), ("high", 7, 15),
    ("high", 20, 15),
])
def test_news2_monitoring_minutes(risk: str, total: int, minutes: int) -> None:
    assert news2_monitoring_minutes(risk, total) == minutes


@pytest.mark.parametrize(("code", "band", "streak", "total", "minutes"), [
    ("ciwa-ar", "severe", 0, None, 60),
    ("ciwa-ar", "moderate", 0, None, 120),
    ("ciwa-ar", "moderate", 5, None, 120),
    ("ciwa-ar", "minimal", 0, None, 240),
    ("ciwa-ar", "minimal", 2, None, 240),
    ("ciwa-ar", "minimal", 3, None, 480),
    ("ciwa-ar", "minimal", 7, None, 480),
    ("cows", "severe", 0, None, 60),
    ("cows", "moderately_severe", 0, None, 60),
    ("cows", "moderate", 0, None, 120),
    ("cows", "mild", 0, None, 240),
    ("cows", "none", 3, None, 240),
    ("gmaws", "severe", 0, None, 60),
    ("gmaws", "moderate", 0, None, 120),
    ("gmaws", "mild", 0, None, 120),
    ("sows", "none", 0, None, 240),
    ("sows", "mild", 0, None, 240),
    ("sows", "moderate", 0, None, 240),
    ("sows", "severe", 0, None, 240),
    ("news2", "low", 0, 0, 720),
    ("news2", "low", 0, 3, 240),
    ("news2", "low", 0, None, 240),  # without the total, the safer 4 h
    ("news2", "low-medium", 0, 3, 60),
    ("news2", "medium", 0, 5, 60),
    ("news2", "high", 0, 9, 15),
])
def test_default_interval_minutes(code: str, band: str, streak: int, total: int | None,
                                  minutes: int) -> None:
    assert default_interval_minutes(code, band, streak, total=total) == minutes


def test_interval_refuses_unknown_scale_and_band() -> None:
    with pytest.raises(UnknownScale):
        default_interval_minutes("sadq", "mild")
    with pytest.raises(ValueError):
        default_interval_minutes("ciwa-ar", "mild")
    with pytest.raises(ValueError):
        news2_monitoring_minutes("severe", 3)


@pytest.mark.parametrize(("interval", "grace"), [
    (15, 15), (60, 15), (61, 30), (120, 30), (240, 30), (480, 30), (720, 30),
])
def test_grace_minutes(interval: int, grace: int) -> None:
    assert grace_minutes(interval) == grace


def test_grace_refuses_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        grace_minutes(0)


@pytest.mark.parametrize(("bands", "streak"), [
    ([], 0), (["minimal"], 1), (["minimal", "minimal", "minimal", "moderate", "minimal"], 3),
    (["moderate", "minimal", "minimal"], 0), (["minimal", None, "minimal"], 1),
])
def test_minimal_streak_counts_back_from_the_newest(bands: list, streak: int) -> None:
    assert minimal_streak(bands) == streak


def test_interval_rules_still_import_from_monitoring_scales() -> None:
    """They moved to monitoring.schedules; the old import path keeps working for callers."""
    from monitoring import scales, schedules
    from monitoring.scales import grace_minutes as old_grace_minutes

    assert old_grace_minutes is schedules.grace_minutes
    assert scales.default_interval_minutes is schedules.default_interval_minutes
    with pytest.raises(AttributeError):
        scales.no_such_rule  # noqa: B018
