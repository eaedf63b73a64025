"""Domain errors of the unit package (mapped to HTTP only in config/errors.py)."""
from __future__ import annotations

from config.errors import Conflict, DomainError, Forbidden, NotFound, RecordedRefusal


class AdmissionDeclined(RecordedRefusal):
    type = "admission-declined"
    title = "This unit cannot safely admit this referral"


class AdmissionNotFound(NotFound):
    type = "admission-not-found"
    title = "No such admission on your unit"


class AlreadyAdmitted(Conflict):
    type = "already-admitted"
    title = "The resident already has an active admission"


class AdmissionNotActive(Conflict):
    type = "admission-not-active"
    title = "The admission is not active"


class ResidentMismatch(DomainError):
    type = "resident-mismatch"
    title = "The NHS number belongs to another resident"


class CareModelChangeInvalid(DomainError):
    type = "care-model-change-invalid"
    title = "The care model change cannot be made"


class UnitNotFound(NotFound):
    type = "unit-not-found"
    title = "No such unit"


class ChecklistNotOpen(Conflict):
    type = "checklist-not-open"
    title = "There is no open harm-reduction checklist"


class ProtocolInvalid(DomainError):
    type = "protocol-invalid"
    title = "The protocol settings are not valid"


class ProtocolOutsideEnvelope(ProtocolInvalid):
    type = "protocol-outside-safety-envelope"
    title = "The protocol would cross a safety bound"


class ProtocolProposalNotFound(NotFound):
    type = "protocol-proposal-not-found"
    title = "No such protocol proposal on your unit"


class ProtocolProposalDecided(Conflict):
    type = "protocol-proposal-decided"
    title = "The protocol proposal was decided already"


class ProtocolSelfApproval(Forbidden):
    type = "protocol-self-approval"
    title = "A protocol change needs a second person's approval"


class ReReferralUnexplained(DomainError):
    type = "re-referral-changes-unexplained"
    title = "A re-referral after a decline needs a reason for each changed figure"


class OverrideNotPermitted(Forbidden):
    type = "override-not-permitted"
    title = "Only a doctor may record this override"


class ResidentNotFound(NotFound):
    type = "resident-not-found"
    title = "No such resident on your unit"


class ConsentNotFound(NotFound):
    type = "consent-not-found"
    title = "No such consent decision on your unit"


class ConsentNotActive(Conflict):
    type = "consent-not-active"
    title = "The consent decision is no longer in force"
