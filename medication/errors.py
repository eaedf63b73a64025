"""Domain errors of the medication package."""
from __future__ import annotations

from config.errors import Conflict, DomainError, NotFound, RecordedRefusal


class OrderNotFound(NotFound):
    type = "order-not-found"
    title = "No such medication order on your unit"


class OrderInvalid(DomainError):
    type = "order-invalid"
    title = "The order breaks a prescribing rule"


class OrderNotActive(Conflict):
    type = "order-not-active"
    title = "The order is not active"


class DoseRefused(RecordedRefusal):
    """A safety check refused the dose (409); the refusal itself is kept for the audit."""

    type = "dose-refused"
    title = "The dose was refused by a safety check"
    kind = "conflict"


class WitnessInvalid(DomainError):
    type = "witness-invalid"
    title = "The witness could not be confirmed"


class WitnessRefused(RecordedRefusal, WitnessInvalid):
    """The witness's credentials were not accepted (422), one answer whatever the reason; the
    failed check itself (a sign-in attempt and an audit event) is kept."""


class WitnessThrottled(RecordedRefusal):
    """Too many failed checks of this witness's password lately (429)."""

    type = "witness-throttled"
    title = "Too many failed witness confirmations"
    kind = "throttled"


class AdministrationInvalid(DomainError):
    type = "administration-invalid"
    title = "The administration record is not valid"


class RegisterInvalid(DomainError):
    type = "cd-register-invalid"
    title = "The register entry is not valid"


class NoDoseDue(Conflict):
    type = "no-dose-due"
    title = "No scheduled dose of this order is due"
