"""Input fields shared by the newer schemas (beds, incidents, screens, leave, handover,
discharge)."""
from __future__ import annotations

from marshmallow import fields, validate


def Text(maximum: int, minimum: int = 1, **kw) -> fields.String:  # noqa: N802 - a field factory
    """Text of ``minimum`` to ``maximum`` characters once surrounding spaces are taken off
    (a reason of three spaces is no reason)."""
    return _Trimmed(validate=validate.Length(min=minimum, max=maximum), **kw)


class _Trimmed(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


def Day(**kw) -> fields.Date:  # noqa: N802 - a field factory
    """A calendar date of this century or the next (a year 1 or 9999 is a typing error, and
    arithmetic on it would overflow)."""
    from datetime import date

    return fields.Date(validate=validate.Range(date(2000, 1, 1), date(2199, 12, 31)), **kw)
