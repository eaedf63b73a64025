"""Domain errors of the monitoring package."""
from __future__ import annotations

from config.errors import Conflict, DomainError, NotFound


class ObservationTimeInvalid(DomainError):
    type = "observation-time-invalid"
    title = "The observation time cannot be accepted"


class ScaleInputInvalid(DomainError):
    type = "scale-input-invalid"
    title = "The scale's items are not valid"


class UnknownScaleCode(NotFound):
    type = "unknown-scale"
    title = "No such scale"


class ObservationNotFound(NotFound):
    type = "observation-not-found"
    title = "No such observation on your unit"


class ScheduleNotFound(NotFound):
    type = "schedule-not-found"
    title = "No such observation schedule on your unit"


class AlreadyStruck(Conflict):
    type = "observation-already-struck"
    title = "The observation was already struck through"


class ObservationAlreadyCorrected(Conflict):
    type = "observation-already-corrected"
    title = "The struck observation was corrected already"


class ScheduleExists(Conflict):
    type = "schedule-exists"
    title = "The admission already has a schedule for this scale"


class EscalationNotFound(NotFound):
    type = "escalation-not-found"
    title = "No such escalation on your unit"


class EscalationClosed(Conflict):
    type = "escalation-resolved"  # the slug clients have always seen for a closed escalation
    title = "The escalation is already resolved"


class OverrideRefused(Conflict):
    type = "override-refused"
    title = "This escalation cannot be overridden"


class RotaShiftInvalid(DomainError):
    type = "rota-shift-invalid"
    title = "The rota shift cannot be accepted"


class RotaStaffNotFound(NotFound):
    type = "rota-staff-not-found"
    title = "No such member of staff on your unit"


class RotaShiftNotFound(NotFound):
    type = "rota-shift-not-found"
    title = "No such rota shift on your unit"
