"""marshmallow schemas at the edge of the unit package: input (…In) and output."""
from __future__ import annotations

from datetime import date, timezone

import math
import re

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates, validates_schema

from unit.codes import (
    ACCOMMODATION_NEEDS,
    CONSENT_DECISIONS,
    CONSENT_RECIPIENTS,
    ETHNIC_CATEGORIES,
    GENDER_IDENTITIES,
    INJECTING_STATUSES,
    PARENTAL_STATUSES,
    PROBLEM_SUBSTANCES,
    REFERRAL_SOURCES,
    SEXES,
)
from unit.competence import REFERRAL_FIGURES, UNITS_UNKNOWN
from unit.models import CARE_MODELS, CURRENT_OPIOIDS, DISCHARGE_TYPES, PROPOSAL_STATUSES, ROLES, SUBSTANCES


def StrictBool(**kw) -> fields.Boolean:  # noqa: N802 - a field factory
    """A boolean that accepts only JSON true/false (never "yes", 1 or "")."""
    return _StrictBoolean(truthy={True}, falsy={False}, **kw)


class _StrictBoolean(fields.Boolean):
    # truthy={True} alone lets 1 and 0 through (1 == True and hashes alike).
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


def StrictInt(**kw) -> fields.Integer:  # noqa: N802
    """An integer that refuses strings and floats."""
    return fields.Integer(strict=True, **kw)


def whole_number(text: str) -> int | None:
    """The number a query or form field holds if it is ASCII digits only, else None
    (``str.isdigit`` also accepts "²", which ``int`` refuses)."""
    return int(text) if text.isascii() and text.isdigit() else None


def StrictId(**kw) -> fields.Integer:  # noqa: N802
    """A record's id in a body: an integer of the INTEGER columns' range, as in a URL (a larger
    one is a 422 here, not an overflow in the database driver)."""
    return StrictInt(validate=validate.Range(1, 2**31 - 1), **kw)


def StrictFloat(**kw) -> fields.Float:  # noqa: N802
    """A number that refuses strings ("12") and booleans; NaN and infinity are refused too."""
    return _StrictFloat(**kw)


class _StrictFloat(fields.Float):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


def Timestamp(**kw) -> fields.AwareDateTime:  # noqa: N802
    """An ISO 8601 timestamp that must carry its timezone (a bare local time is ambiguous)."""
    return _UTCTimestamp(format="iso", **kw)


class _UTCTimestamp(fields.AwareDateTime):
    # Loaded as UTC; an offset that pushes the instant past year 9999 is invalid input, not a 500.
    def _deserialize(self, value, attr, data, **kwargs):
        loaded = super()._deserialize(value, attr, data, **kwargs)
        try:
            return loaded.astimezone(timezone.utc)
        except OverflowError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None


def nhs_number_is_valid(value: str) -> bool:
    """NHS number modulus-11 check: weights 10..2, check digit 11 - (sum mod 11); 10 is invalid."""
    # ASCII digits only: str.isdigit() also accepts "²" and other scripts' digits.
    if len(value) != 10 or not (value.isascii() and value.isdigit()):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(value[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(value[9])


class ResidentIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    date_of_birth = fields.Date(required=True)
    nhs_number = fields.String(load_default=None, allow_none=True)

    @pre_load
    def normalise(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("nhs_number"), str):
            digits = data["nhs_number"].replace(" ", "").replace("-", "")
            data = {**data, "nhs_number": digits or None}
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            data = {**data, "name": " ".join(data["name"].split())}
        return data

    @validates("nhs_number")
    def check_nhs_number(self, value, **kwargs):
        if value is not None and not nhs_number_is_valid(value):
            raise ValidationError("Not a valid NHS number: 10 digits whose last is the modulus-11 check digit.")

    @validates("date_of_birth")
    def check_date_of_birth(self, value: date, **kwargs):
        today = date.today()
        if value > today:
            raise ValidationError("The date of birth is in the future.")
        if value.year < today.year - 120:
            raise ValidationError("The date of birth is more than 120 years ago.")


class _UnitsPerDay(fields.Field):
    """Units of alcohol a day: a number from 0 to 200, or "unknown" (counted as over the limit)."""

    default_error_messages = {"invalid": f'A number from 0 to 200, or "{UNITS_UNKNOWN}".'}

    def _deserialize(self, value, attr, data, **kwargs):
        if value == UNITS_UNKNOWN:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 200:
            raise self.make_error("invalid")
        return float(value)


class AssessmentIn(Schema):
    # Which of these a referral needs depends on its substances (ReferralIn.needs_per_substance).
    sadq = StrictInt(load_default=None, allow_none=True, validate=validate.Range(0, 60),
                     metadata={"description": "Required unless the referral is for opioids without alcohol."})
    audit = StrictInt(load_default=None, allow_none=True, validate=validate.Range(0, 40),
                      metadata={"description": "Required unless the referral is for opioids without alcohol."})
    units_per_day = _UnitsPerDay(load_default=None, allow_none=True, metadata={
        "description": f'Required for alcohol: 0-200, or "{UNITS_UNKNOWN}" (counted as over the limit).',
        "oneOf": [{"type": "number", "minimum": 0, "maximum": 200},
                  {"type": "string", "enum": [UNITS_UNKNOWN]}]})
    history_of_seizures = StrictBool(required=True)
    history_of_delirium_tremens = StrictBool(required=True)
    significant_comorbidity = StrictBool(required=True)
    pregnant = StrictBool(required=True)
    current_opioids = fields.List(fields.String(validate=validate.OneOf(CURRENT_OPIOIDS)),
                                  load_default=None, allow_none=True,
                                  validate=validate.Length(min=1, max=len(CURRENT_OPIOIDS)),
                                  metadata={"description": "Required for opioids: what the person uses now."})
    last_cows_total = StrictInt(load_default=None, allow_none=True, validate=validate.Range(0, 48),
                                metadata={"description": "Opioids: the last COWS total recorded, if any."})

    @validates("current_opioids")
    def unique_opioids(self, value, **kwargs):
        if value is not None and len(set(value)) != len(value):
            raise ValidationError("An opioid is listed twice.")


# ONS (GSS) code of a local authority: a country letter and eight digits, e.g. E08000035.
LOCAL_AUTHORITY = re.compile(r"^[EWSN][0-9]{8}$")
# The outward code of a UK postcode (its district), e.g. LS6, M1, SW1A.
POSTCODE_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")


def _code(codes: dict[str, str], description: str | None = None) -> fields.String:
    return fields.String(allow_none=True, validate=validate.OneOf(list(codes)), metadata={
        "description": description or "One of: " + ", ".join(codes)})


def _past_date(value: date | None, what: str) -> None:
    if value is not None and value > date.today():
        raise ValidationError(f"The {what} is in the future.")


class ReturnFieldsIn(Schema):
    """The resident's and the episode's fields a commissioners' return needs; every one is
    optional (null clears it) and listed as missing by the return's check."""

    sex = _code(SEXES)
    gender_identity = _code(GENDER_IDENTITIES)
    ethnicity = _code(ETHNIC_CATEGORIES,
                      "NHS ethnic category code: " + ", ".join(ETHNIC_CATEGORIES))
    local_authority = fields.String(allow_none=True, validate=validate.Regexp(
        LOCAL_AUTHORITY, error="An ONS local authority code: a letter and 8 digits (E08000035)."),
        metadata={"description": "ONS code of the local authority of residence"})
    postcode_district = fields.String(allow_none=True, validate=validate.Regexp(
        POSTCODE_DISTRICT, error="The first half of a postcode (LS6, M1, SW1A)."),
        metadata={"description": "The postcode district (outward code) of residence"})
    accommodation_need = _code(ACCOMMODATION_NEEDS)
    parental_status = _code(PARENTAL_STATUSES)
    children_living_with = StrictInt(allow_none=True, validate=validate.Range(0, 30), metadata={
        "description": "Children under 18 living with the resident"})
    injecting_status = _code(INJECTING_STATUSES)
    problem_substances = fields.List(
        fields.String(validate=validate.OneOf(list(PROBLEM_SUBSTANCES))), allow_none=True,
        validate=validate.Length(min=1, max=3),
        metadata={"description": "Up to three, the main problem first"})
    referral_source = _code(REFERRAL_SOURCES)
    referral_date = fields.Date(allow_none=True)
    first_contact_date = fields.Date(allow_none=True)

    @pre_load
    def normalise(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
            for key in ("local_authority", "postcode_district"):
                if isinstance(data.get(key), str):
                    data[key] = "".join(data[key].split()).upper() or None
        return data

    @validates("problem_substances")
    def unique_substances(self, value, **kwargs):
        if value is not None and len(set(value)) != len(value):
            raise ValidationError("A substance is listed twice.")

    @validates("referral_date")
    def referral_not_future(self, value, **kwargs):
        _past_date(value, "referral date")

    @validates("first_contact_date")
    def contact_not_future(self, value, **kwargs):
        _past_date(value, "first contact date")

    @validates_schema
    def contact_after_referral(self, data, **kwargs):
        referral, contact = data.get("referral_date"), data.get("first_contact_date")
        if referral and contact and contact < referral:
            raise ValidationError("The first contact cannot be before the referral.",
                                  field_name="first_contact_date")


class ReferralIn(Schema):
    """A referral: the resident, the substances and the pre-admission assessment."""

    resident = fields.Nested(ResidentIn, required=True)
    substances = fields.List(fields.String(validate=validate.OneOf(SUBSTANCES)), required=True,
                             validate=validate.Length(min=1))
    assessment = fields.Nested(AssessmentIn, required=True)
    return_fields = fields.Nested(ReturnFieldsIn, load_default=None, allow_none=True, metadata={
        "description": "Optional at admission: the fields the commissioners' return needs"})
    override_reason = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=3, max=2000),
        metadata={"description": "A doctor's (doctor, GP, clinical lead) reason to admit a referral "
                  "every unit declines otherwise (hospital recommended, under 16)."})
    change_reasons = fields.Dict(
        keys=fields.String(validate=validate.OneOf(REFERRAL_FIGURES)),
        values=fields.String(validate=validate.Length(min=3, max=2000)),
        load_default=None, allow_none=True,
        metadata={"description": "A re-referral within 30 days of a decline: the reason for each "
                  "figure that changed since, by figure (sadq, units_per_day, ...)."})

    @validates_schema
    def needs_per_substance(self, data, **kwargs):
        """docs/clinical-rules.md s4: alcohol needs SADQ, AUDIT and units a day; a referral for
        opioids without alcohol needs no SADQ or AUDIT but what opioids are used now."""
        substances, assessment = data.get("substances"), data.get("assessment")
        if not substances or assessment is None:
            return  # the fields' own errors say what is wrong
        errors: dict[str, list[str]] = {}
        alcohol, opioids = "alcohol" in substances, "opioids" in substances
        if alcohol or not opioids:
            for key in ("sadq", "audit"):
                if assessment.get(key) is None:
                    errors[key] = ["Required unless the referral is for opioids without alcohol."]
        if alcohol and assessment.get("units_per_day") is None:
            errors["units_per_day"] = [f'Required for an alcohol referral: a number, or "{UNITS_UNKNOWN}".']
        if opioids and not assessment.get("current_opioids"):
            errors["current_opioids"] = ["Required for an opioid referral: the opioids used now."]
        if not opioids:
            for key in ("current_opioids", "last_cows_total"):
                if assessment.get(key) is not None:
                    errors[key] = ["Only for a referral that lists opioids."]
        if errors:
            raise ValidationError({"assessment": errors})

    @pre_load
    def accept_flat_resident(self, data, **kwargs):
        # Compatible extension: the resident's fields may also be given at the top level.
        if isinstance(data, dict) and "resident" not in data and "name" in data:
            data = dict(data)
            data["resident"] = {key: data.pop(key) for key in ("name", "date_of_birth", "nhs_number")
                                if key in data}
        return data

    @validates("substances")
    def unique_substances(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("A substance is listed twice.")


class DischargeIn(Schema):
    discharge_type = fields.String(required=True, validate=validate.OneOf(DISCHARGE_TYPES))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))

    @pre_load
    def normalise(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
            if "type" in data and "discharge_type" not in data:
                data["discharge_type"] = data.pop("type")
            if isinstance(data.get("discharge_type"), str):
                data["discharge_type"] = data["discharge_type"].replace("_", "-")
        return data


class HarmReductionIn(Schema):
    tolerance_explained = StrictBool()
    naloxone_offered = StrictBool()
    gp_informed = StrictBool()
    keyworker_informed = StrictBool()
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ModelChangeIn(Schema):
    model = fields.String(required=True, validate=validate.OneOf(CARE_MODELS))
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))
    effective_at = Timestamp(load_default=None, allow_none=True)


class ProposalQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(PROPOSAL_STATUSES))


class ProposalRejectIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class ProtocolChangeIn(Schema):
    section = fields.String(required=True, validate=validate.Length(min=1, max=40),
                            metadata={"description": "monitoring, escalation, medication or competence"})
    values = fields.Dict(keys=fields.String(), required=True,
                         metadata={"description": "The settings to change; an object setting "
                                   "(bands, intervals, targets) merges key by key, a list is replaced whole."})
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class LoginIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class ConsentIn(Schema):
    """A resident's decision about sharing their record with one recipient."""

    recipient = fields.String(required=True, validate=validate.OneOf(list(CONSENT_RECIPIENTS)))
    recipient_name = fields.String(load_default=None, allow_none=True,
                                   validate=validate.Length(min=1, max=200), metadata={
                                       "description": "The family member named (required for "
                                       "family); the GP practice or team otherwise"})
    decision = fields.String(required=True, validate=validate.OneOf(list(CONSENT_DECISIONS)))
    decided_on = fields.Date(load_default=None, allow_none=True,
                             metadata={"description": "When the resident decided (default today)"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))

    @pre_load
    def normalise(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("recipient_name"), str):
            data = {**data, "recipient_name": " ".join(data["recipient_name"].split()) or None}
        return data

    @validates("decided_on")
    def not_future(self, value, **kwargs):
        _past_date(value, "date of the decision")

    @validates_schema
    def family_is_named(self, data, **kwargs):
        if data.get("recipient") == "family" and not data.get("recipient_name"):
            raise ValidationError("Name the family member the resident agrees to share with.",
                                  field_name="recipient_name")


class ConsentWithdrawIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class AdmissionQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("active", "discharged")))


# --- output ----------------------------------------------------------------------------------

class CriterionSchema(Schema):
    code = fields.String()
    criterion = fields.String()
    detail = fields.String()


class StaffSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))


class CareModelChangeSchema(Schema):
    id = fields.Integer()
    model = fields.String()
    effective_at = fields.DateTime()
    reason = fields.String()
    recorded_at = fields.DateTime()
    changed_by = fields.Nested(StaffSchema, allow_none=True)


class UnitSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    model = fields.String()
    model_history = fields.List(fields.Nested(CareModelChangeSchema))


class ModelChangeResult(Schema):
    change = fields.Nested(CareModelChangeSchema)
    model = fields.String(metadata={"description": "The model in force now."})
    warnings = fields.List(fields.String())


class ProtocolSchema(Schema):
    version = fields.Integer(allow_none=True, metadata={"description": "None: the defaults only."})
    reason = fields.String(allow_none=True)
    created_by = fields.Nested(StaffSchema, allow_none=True,
                               metadata={"description": "Who proposed the version (as proposed_by)."})
    created_at = fields.DateTime(allow_none=True, metadata={"description": "In force from."})
    proposed_by = fields.Nested(StaffSchema, allow_none=True)
    approved_by = fields.Nested(StaffSchema, allow_none=True,
                                metadata={"description": "The clinical lead who approved it."})
    proposal_id = fields.Integer(allow_none=True)
    sections = fields.Dict(keys=fields.String(), values=fields.Dict(),
                           metadata={"description": "Each section's settings in force, defaults filled in."})
    own = fields.Dict(keys=fields.String(), values=fields.Dict(),
                      metadata={"description": "The unit's own values, by section."})


class ProposalSchema(Schema):
    id = fields.Integer()
    status = fields.String(validate=validate.OneOf(PROPOSAL_STATUSES))
    section = fields.String()
    values = fields.Dict()
    reason = fields.String()
    proposed_by = fields.Nested(StaffSchema)
    proposed_at = fields.DateTime()
    decided_by = fields.Nested(StaffSchema, allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decision_reason = fields.String(allow_none=True, metadata={"description": "Why it was rejected."})
    version = fields.Function(lambda proposal: proposal.protocol.version if proposal.protocol else None,
                              allow_none=True, metadata={"type": "integer", "description":
                                                         "The protocol version its approval made."})


class ProposalResult(Schema):
    proposal = fields.Nested(ProposalSchema)


class ResidentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    date_of_birth = fields.Date()
    age = fields.Integer()
    nhs_number = fields.String(allow_none=True)


class ReturnFieldsSchema(Schema):
    sex = fields.String(allow_none=True)
    gender_identity = fields.String(allow_none=True)
    ethnicity = fields.String(allow_none=True)
    local_authority = fields.String(allow_none=True)
    postcode_district = fields.String(allow_none=True)
    accommodation_need = fields.String(allow_none=True)
    parental_status = fields.String(allow_none=True)
    children_living_with = fields.Integer(allow_none=True)
    injecting_status = fields.String(allow_none=True)
    problem_substances = fields.List(fields.String(), allow_none=True)
    referral_source = fields.String(allow_none=True)
    referral_date = fields.Date(allow_none=True)
    first_contact_date = fields.Date(allow_none=True)


class ConsentSchema(Schema):
    id = fields.Integer()
    resident_id = fields.Integer()
    recipient = fields.String()
    recipient_name = fields.String(allow_none=True)
    decision = fields.String()
    decided_on = fields.Date()
    note = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "active, withdrawn or superseded"})
    recorded_at = fields.DateTime()
    recorded_by = fields.Nested(StaffSchema)
    ended_at = fields.DateTime(allow_none=True)
    ended_by = fields.Nested(StaffSchema, allow_none=True)
    end_reason = fields.String(allow_none=True)


class HarmReductionSchema(Schema):
    opened_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    tolerance_explained = fields.Boolean()
    naloxone_offered = fields.Boolean()
    gp_informed = fields.Boolean()
    keyworker_informed = fields.Boolean()
    note = fields.String(allow_none=True)


class OverrideSchema(Schema):
    reason = fields.String()
    criteria = fields.List(fields.String(), metadata={"description": "The criteria overridden."})
    by = fields.Nested(StaffSchema)


class ChangedFigureSchema(Schema):
    field = fields.String()
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
    reason = fields.String(allow_none=True)


class PreviousDeclineSchema(Schema):
    referral_id = fields.Integer()
    decided_at = fields.DateTime()
    reasons = fields.List(fields.Nested(CriterionSchema))
    changes = fields.List(fields.Nested(ChangedFigureSchema),
                          metadata={"description": "Each figure that differs from the declined referral."})


class AdmissionSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    resident = fields.Nested(ResidentSchema)
    substances = fields.List(fields.String())
    assessment = fields.Dict()
    high_risk = fields.Boolean()
    risk_reasons = fields.List(fields.Nested(CriterionSchema))
    flags = fields.List(fields.Nested(CriterionSchema))
    unit_model = fields.String()
    recommended_setting = fields.String()
    recommended_reasons = fields.List(fields.String())
    admitted_at = fields.DateTime()
    discharged_at = fields.DateTime(allow_none=True)
    discharge_type = fields.String(allow_none=True)
    discharge_note = fields.String(allow_none=True)
    harm_reduction = fields.Nested(HarmReductionSchema, allow_none=True)
    override = fields.Nested(OverrideSchema, allow_none=True,
                             metadata={"description": "A doctor's reason to admit what every unit declines otherwise."})
    previous_decline_id = fields.Integer(allow_none=True)
    changes = fields.List(fields.Nested(ChangedFigureSchema), allow_none=True)
    return_fields = fields.Nested(ReturnFieldsSchema)


class ReferralCheckSchema(Schema):
    unit_model = fields.String()
    decision = fields.String()
    reasons = fields.List(fields.Nested(CriterionSchema))
    high_risk = fields.Boolean()
    risk_reasons = fields.List(fields.Nested(CriterionSchema))
    flags = fields.List(fields.Nested(CriterionSchema))
    recommended_setting = fields.String()
    recommended_reasons = fields.List(fields.String())
    doctor_may_override = fields.Boolean(metadata={
        "description": "Declined only by what every unit declines: a doctor may admit with a reason."})
    previous_decline = fields.Nested(PreviousDeclineSchema, allow_none=True, metadata={
        "description": "A decline of the same person on this unit in the last 30 days."})
    unexplained_changes = fields.List(fields.String(), metadata={
        "description": "Changed figures without a reason in change_reasons (admitting needs one each)."})


class SessionSchema(Schema):
    staff = fields.Nested(StaffSchema)
    unit = fields.String()
    expires_idle_minutes = fields.Integer()


# --- the inspector's report and the audit log --------------------------------------------

class ReportQuery(Schema):
    start = fields.String(data_key="from", load_default=None, metadata={"description": "YYYY-MM-DD or ISO timestamp"})
    end = fields.String(data_key="to", load_default=None, metadata={"description": "YYYY-MM-DD (inclusive) or ISO timestamp"})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "pdf")))
    table = fields.String(load_default=None, metadata={"description": "With format=csv: one table; without: a ZIP of all"})


class AuditQuery(Schema):
    resident = fields.String(load_default=None, metadata={"description": "Resident id or part of the name"})
    user = fields.String(load_default=None)
    action = fields.String(load_default=None, metadata={"description": "Action or its prefix, e.g. dose."})
    start = fields.String(data_key="from", load_default=None)
    end = fields.String(data_key="to", load_default=None)


class AuditEventSchema(Schema):
    seq = fields.Integer()
    at = fields.DateTime()
    user = fields.String(allow_none=True)
    role = fields.String(attribute="actor_role", allow_none=True)
    action = fields.String()
    entity_type = fields.String()
    entity_id = fields.String(allow_none=True)
    resident_id = fields.Integer(allow_none=True)
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
    hash = fields.String()


def admission_view(admission, now) -> dict:
    """The admission as the API shows it (resident age computed at ``now``)."""
    from unit.services import age_today

    referral = admission.referral
    resident = admission.resident
    return {
        "id": admission.id, "status": admission.status,
        "resident": {"id": resident.id, "name": resident.name,
                     "date_of_birth": resident.date_of_birth,
                     "age": age_today(resident.date_of_birth, now),
                     "nhs_number": resident.nhs_number},
        "substances": admission.substances, "assessment": referral.assessment,
        "high_risk": admission.high_risk,
        "risk_reasons": referral.reasons, "flags": referral.flags,
        "unit_model": referral.unit_model,
        "recommended_setting": referral.recommended_setting,
        "recommended_reasons": referral.recommended_reasons,
        "admitted_at": admission.admitted_at, "discharged_at": admission.discharged_at,
        "discharge_type": admission.discharge_type, "discharge_note": admission.discharge_note,
        "harm_reduction": admission.harm_reduction,
        "override": {"reason": admission.override_reason, "criteria": admission.override_criteria,
                     "by": admission.admitted_by} if admission.override_reason else None,
        "previous_decline_id": referral.previous_decline_id,
        "changes": referral.changed_figures,
        "return_fields": return_fields_of(admission),
    }


RESIDENT_RETURN_FIELDS = ("sex", "gender_identity", "ethnicity")
EPISODE_RETURN_FIELDS = ("local_authority", "postcode_district", "accommodation_need",
                         "parental_status", "children_living_with", "injecting_status",
                         "problem_substances", "referral_source", "referral_date",
                         "first_contact_date")


def return_fields_of(admission) -> dict:
    """The return fields of an admission: the resident's and the episode's."""
    return {**{key: getattr(admission.resident, key) for key in RESIDENT_RETURN_FIELDS},
            **{key: getattr(admission, key) for key in EPISODE_RETURN_FIELDS}}


