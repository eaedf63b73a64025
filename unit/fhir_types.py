"""The unit's FHIR R4 resource types: Patient (a resident), Encounter (an admission) and
Consent (a sharing decision), registered with the others by ``unit.fhir.install``."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import select

from unit.codes import CONSENT_RECIPIENTS, ETHNIC_CATEGORIES
from unit.fhir import (
    LOINC,
    NHS_NUMBER_SYSTEM,
    UKCORE_ETHNIC_CATEGORY,
    UKCORE_ETHNIC_CATEGORY_ENGLAND,
    Reader,
    ResourceType,
    SearchParam,
    choice_filter,
    date_filter,
    instant,
    reference,
    reference_filter,
    token_filter,
)
from unit.models import Admission, Consent, Referral, Resident, Unit

# FHIR administrative gender from the recorded sex.
_GENDER = {"male": "male", "female": "female", "indeterminate": "other", "not_known": "unknown"}
# http://terminology.hl7.org/CodeSystem/discharge-disposition, from the discharge type.
_DISCHARGE_DISPOSITION = {
    "completed": ("home", "Home"), "self-discharged": ("aadvice", "Left against advice"),
    "transferred": ("other-hcf", "Other healthcare facility"), "died": ("exp", "Expired"),
    "withdrawn-by-unit": ("oth", "Other"), "other": ("oth", "Other")}
MODEL_LABELS = {"medically_managed": "Medically managed residential withdrawal (inpatient detoxification)",
                "medically_monitored": "Medically monitored residential withdrawal"}

_latest_admission = (select(Admission.id).where(Admission.resident_id == Resident.id)
                     .order_by(Admission.admitted_at.desc(), Admission.id.desc()).limit(1)
                     .correlate(Resident).scalar_subquery())


def _patient_rows(reader: Reader) -> sa.Select:
    latest = sa.orm.aliased(Admission)
    return (select(Resident.id.label("resident_id"), Resident, Unit.name.label("unit_name"),
                   latest.local_authority, latest.postcode_district)
            .join(Unit, Unit.id == Resident.unit_id)
            .outerjoin(latest, latest.id == _latest_admission)
            .where(*reader.resident_clauses(Resident.id, Resident.unit_id)))


def _patient(reader: Reader, row: Any) -> dict:
    resident: Resident = row.Resident
    words = resident.name.split()
    resource: dict[str, Any] = {"resourceType": "Patient", "id": str(resident.id)}
    if resident.ethnicity:
        resource["extension"] = [{"url": UKCORE_ETHNIC_CATEGORY, "valueCodeableConcept": {
            "coding": [{"system": UKCORE_ETHNIC_CATEGORY_ENGLAND, "code": resident.ethnicity,
                        "display": ETHNIC_CATEGORIES[resident.ethnicity]}]}}]
    if resident.nhs_number:
        resource["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": resident.nhs_number}]
    resource["name"] = [{"use": "official", "text": resident.name, "family": words[-1],
                         **({"given": words[:-1]} if len(words) > 1 else {})}]
    if resident.sex:
        resource["gender"] = _GENDER[resident.sex]
    resource["birthDate"] = resident.date_of_birth.isoformat()
    if row.postcode_district or row.local_authority:
        # Where the resident lives, as far as the record goes: the district of the postcode
        # and the ONS code of the local authority, never the street.
        resource["address"] = [{"use": "home", **({"district": row.local_authority}
                                                  if row.local_authority else {}),
                                **({"postalCode": row.postcode_district}
                                   if row.postcode_district else {})}]
    resource["managingOrganization"] = {"display": row.unit_name}
    return resource


def _nhs_number_match(system: str | None, code: str, reader: Reader):
    if system not in (None, "", NHS_NUMBER_SYSTEM):
        return sa.false()
    return Resident.nhs_number == "".join(code.split())


def _encounter_rows(reader: Reader) -> sa.Select:
    return (select(Admission.id.label("admission_id"), Admission.resident_id, Admission,
                   Resident.name.label("resident_name"), Referral.unit_model,
                   Unit.name.label("unit_name"))
            .join(Resident, Resident.id == Admission.resident_id)
            .join(Referral, Referral.id == Admission.referral_id)
            .join(Unit, Unit.id == Admission.unit_id)
            .where(*reader.resident_clauses(Admission.resident_id, Admission.unit_id)))


def _encounter(reader: Reader, row: Any) -> dict:
    admission: Admission = row.Admission
    resource: dict[str, Any] = {
        "resourceType": "Encounter", "id": str(admission.id),
        "status": "in-progress" if admission.status == "active" else "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                  "display": "inpatient encounter"},
        "type": [{"text": MODEL_LABELS.get(row.unit_model, row.unit_model)}],
        "subject": reference("Patient", admission.resident_id, row.resident_name),
        "period": {"start": instant(admission.admitted_at),
                   **({"end": instant(admission.discharged_at)} if admission.discharged_at else {})},
        "reasonCode": [{"text": f"Withdrawal from {substance}"} for substance in admission.substances],
        "serviceProvider": {"display": row.unit_name},
    }
    if admission.discharge_type:
        code, display = _DISCHARGE_DISPOSITION[admission.discharge_type]
        resource["hospitalization"] = {"dischargeDisposition": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        "code": code, "display": display}],
            "text": admission.discharge_type}}
    return resource


def _consent_rows(reader: Reader) -> sa.Select:
    return (select(Consent.id.label("consent_id"), Consent.resident_id, Consent,
                   Unit.name.label("unit_name"))
            .join(Unit, Unit.id == Consent.unit_id)
            .where(*reader.resident_clauses(Consent.resident_id, Consent.unit_id)))


def _consent(reader: Reader, row: Any) -> dict:
    consent: Consent = row.Consent
    recipient = CONSENT_RECIPIENTS[consent.recipient]
    if consent.recipient_name:
        recipient += f": {consent.recipient_name}"
    given = consent.decision == "given"
    return {
        "resourceType": "Consent", "id": str(consent.id),
        "status": "active" if consent.status == "active" else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}],
                      "text": f"Sharing with {consent.recipient}"}],
        "patient": reference("Patient", consent.resident_id),
        "dateTime": instant(consent.recorded_at),
        "performer": [reference("Patient", consent.resident_id)],
        "organization": [{"display": row.unit_name}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN" if given else "OPTOUT"}]},
        "provision": {
            "type": "permit" if given else "deny",
            "period": {"start": consent.decided_on.isoformat(),
                       **({"end": instant(consent.ended_at)} if consent.ended_at else {})},
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP", "display": "information recipient"}]},
                "reference": {"display": recipient}}]},
    }


UNIT_TYPES = (
    ResourceType(
        "Patient", _patient, rows=_patient_rows, id_column=Resident.id,
        patient_column=Resident.id, default_order=(Resident.id,),
        params={"identifier": SearchParam("token", token_filter(_nhs_number_match, "identifier"),
                                          f"The NHS number ({NHS_NUMBER_SYSTEM}|9434765919)"),
                "_id": SearchParam("token", reference_filter(Resident.id, "Patient", "_id"))},
        documentation="A resident (one per person per unit)."),
    ResourceType(
        "Encounter", _encounter, rows=_encounter_rows, id_column=Admission.id,
        patient_column=Admission.resident_id,
        default_order=(Admission.admitted_at.desc(), Admission.id.desc()),
        params={"patient": SearchParam("reference", reference_filter(Admission.resident_id, "Patient", "patient")),
                "subject": SearchParam("reference", reference_filter(Admission.resident_id, "Patient", "subject")),
                "status": SearchParam("token", choice_filter(
                    Admission.status, {"in-progress": "active", "finished": "discharged"}, "status")),
                "date": SearchParam("date", date_filter(Admission.admitted_at, "date"),
                                    "When the stay began"),
                "_id": SearchParam("token", reference_filter(Admission.id, "Encounter", "_id"))},
        sorts={"date": Admission.admitted_at},
        documentation="An admission: the stay's period, its care model and how it ended."),
    ResourceType(
        "Consent", _consent, rows=_consent_rows, id_column=Consent.id,
        patient_column=Consent.resident_id, default_order=(Consent.recorded_at.desc(), Consent.id.desc()),
        params={"patient": SearchParam("reference", reference_filter(Consent.resident_id, "Patient", "patient")),
                "status": SearchParam("token", choice_filter(
                    Consent.status, {"active": "active", "inactive": ("withdrawn", "superseded")},
                    "status"))},
        documentation="A resident's decision to share (or not) with one recipient."),
)
