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
