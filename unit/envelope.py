"""The safety envelope of the unit protocol: bounds no unit's own values may cross
(docs/clinical-rules.md, the "safety bound" beside each default).

A package declares the bounds of its protocol section (``ProtocolSection.bounds``) with the
helpers here, and any rule that spans several keys (intervals that never lengthen as severity
rises) as ``ProtocolSection.envelope``. Both are checked on the section as it would be in force
(the defaults, the unit's values and the proposed change together), when a change is proposed
and again when it is approved. Nothing here imports a package.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Errors = dict[str, list[str]]
_MISSING = object()


@dataclass(frozen=True)
class Bound:
    """A safety bound on one setting of a section: ``key`` is its dotted path in the section
    (``targets.emergency``, ``intervals.news2.high``), ``keeps(value)`` is true within the
    bound, ``says`` states the bound in words for the refusal."""

    key: str
    keeps: Callable[[Any], bool]
    says: str


def setting_at(settings: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at a dotted path of a section's settings (``default`` when it is not set)."""
    value: Any = settings
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def at_most(key: str, limit: int | float, unit: str = "") -> Bound:
    """The setting may not be above ``limit`` (an interval or a target, in minutes)."""
    return Bound(key, lambda value: value <= limit, f"at most {limit:g}{' ' + unit if unit else ''}")


def at_least(key: str, limit: int | float, unit: str = "") -> Bound:
    """The setting may not be below ``limit``."""
    return Bound(key, lambda value: value >= limit, f"at least {limit:g}{' ' + unit if unit else ''}")


def no_looser_than_default(key: str, defaults: Mapping[str, Any], *, tighter: str,
                           unit: str = "") -> Bound:
    """A threshold a unit may tighten, never loosen, than its default in ``defaults``.

    ``tighter`` says which way is tighter: ``"higher"`` (a hold at a respiration rate of 10 or
    less holds sooner than one at 8), ``"lower"``, or ``"more"`` for a list of levels (holding
    for C, V, P and U is tighter than for V, P and U: every default level must stay listed).
    """
    default = setting_at(defaults, key, _MISSING)
    if default is _MISSING:
        raise ValueError(f"{key!r} has no default to be bounded by")
    if tighter == "higher":
        return Bound(key, lambda value: value >= default,
                     f"no looser than the default: at least {default}{' ' + unit if unit else ''}")
    if tighter == "lower":
        return Bound(key, lambda value: value <= default,
                     f"no looser than the default: at most {default}{' ' + unit if unit else ''}")
    if tighter == "more":
        return Bound(key, lambda value: set(default) <= set(value),
                     f"no looser than the default: must include {', '.join(map(str, default))}")
    raise ValueError(f"tighter must be 'higher', 'lower' or 'more', not {tighter!r}")


def bound_errors(settings: Mapping[str, Any], bounds: tuple[Bound, ...]) -> Errors:
    """Each setting outside its bound, with the bound and the value, by key."""
    errors: Errors = {}
    for bound in bounds:
        value = setting_at(settings, bound.key, _MISSING)
        if value is _MISSING or value is None or bound.keeps(value):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        errors.setdefault(bound.key, []).append(
            f"Safety bound: {bound.says} (docs/clinical-rules.md); {shown} would be in force.")
    return errors
