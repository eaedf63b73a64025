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


class ScheduleExists(Conflict):
    type = "schedule-exists"
    title = "The admission already has a schedule for this scale"
