"""Medication's FHIR R4 resource types, registered into ``unit.fhir`` when the app is
assembled: MedicationRequest (each version of an order) and MedicationAdministration (each
eMAR entry, given or not given with its reason).

Medicines are named in text (drug, form, strength): the dm+d codes of the unit's stock are
not recorded here. TODO (issue 13): AllergyIntolerance, once allergies are recorded.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import aliased

from medication.drugs import DRUGS
from medication.models import Administration, MedicationOrder
from unit.fhir import (
    Reader,
    ResourceType,
    SearchParam,
    patient_params,
    choice_filter,
    date_filter,
    instant,
    reference,
    reference_filter,
)
from unit.models import Admission, Resident, Staff

UCUM = "http://unitsofmeasure.org"
# MedicationRequest.status from the order's status (a superseded version was replaced by a
# change: its successor names it in priorPrescription).
_REQUEST_STATUS = {"active": "active", "stopped": "stopped", "superseded": "stopped",
                   "completed": "completed"}
_KIND_TEXT = {"fixed": "Fixed reducing regimen", "prn": "When required (PRN)",
              "induction": "Induction"}


def _mg(value: float | None) -> dict | None:
    return None if value is None else {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _medication(drug: str, form: str | None = None, strength: str | None = None) -> dict:
    name = DRUGS[drug].name if drug in DRUGS else drug
    return {"text": " ".join(part for part in (name, strength, form) if part)}


def _request_rows(reader: Reader) -> sa.Select:
    prescriber = aliased(Staff)
    return (select(MedicationOrder.id.label("order_id"), Admission.resident_id, MedicationOrder,
                   Resident.name.label("resident_name"), prescriber.full_name.label("prescriber"))
            .join(Admission, Admission.id == MedicationOrder.admission_id)
            .join(Resident, Resident.id == Admission.resident_id)
            .join(prescriber, prescriber.id == MedicationOrder.prescriber_id)
            .where(*reader.resident_clauses(Admission.resident_id, MedicationOrder.unit_id)))


def _dosage(order: MedicationOrder) -> dict:
    dose = order.dose_mg if order.dose_mg is not None else order.start_dose_mg
    text = _KIND_TEXT[order.kind]
    if order.kind == "fixed":
        text += f" from {order.start_dose_mg:g} mg"
    elif dose is not None:
        text += f", {dose:g} mg"
    if order.min_interval_minutes:
        text += f", at least {order.min_interval_minutes} minutes apart"
    if order.max_daily_mg:
        text += f", at most {order.max_daily_mg:g} mg in 24 hours"
    if order.trigger:
        scale, band = order.trigger.get("scale"), order.trigger.get("min_band")
        text += (f", when {scale} is {band} or above" if band
                 else f", when {scale} is {order.trigger.get('min_total')} or more")
    dosage: dict[str, Any] = {"text": text, "route": {"text": order.route}}
    if order.kind in ("prn", "induction"):
        dosage["asNeededBoolean"] = True
    quantity = _mg(dose)
    if quantity:
        dosage["doseAndRate"] = [{"doseQuantity": quantity}]
    if order.max_daily_mg:
        dosage["maxDosePerPeriod"] = {"numerator": _mg(order.max_daily_mg),
                                      "denominator": {"value": 1, "unit": "day", "system": UCUM,
                                                      "code": "d"}}
    return dosage


def _medication_request(reader: Reader, row: Any) -> dict:
    order: MedicationOrder = row.MedicationOrder
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": str(order.id),
        "status": _REQUEST_STATUS[order.status], "intent": "order",
        "category": [{"text": _KIND_TEXT[order.kind]}],
        "medicationCodeableConcept": _medication(order.drug, order.form, order.strength),
        "subject": reference("Patient", row.resident_id, row.resident_name),
        "encounter": reference("Encounter", order.admission_id),
        "authoredOn": instant(order.created_at),
        "requester": {"display": row.prescriber},
        "dosageInstruction": [_dosage(order)],
        "dispenseRequest": {"validityPeriod": {
            "start": instant(order.starts_at), **({"end": instant(order.ends_at)} if order.ends_at else {})}},
    }
    if order.status == "superseded":
        resource["statusReason"] = {"text": "Changed: replaced by a new version"}
    elif order.status == "stopped" and order.stop_reason:
        resource["statusReason"] = {"text": order.stop_reason}
    if order.supersedes_id:
        resource["priorPrescription"] = reference("MedicationRequest", order.supersedes_id)
    notes = [text for text in (
        order.phone_order and ("Phone order" + (f", countersigned {instant(order.countersigned_at)}"
                                                if order.countersigned_at else ", not yet countersigned")),
        order.note) if text]
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    return resource


def _administration_rows(reader: Reader) -> sa.Select:
    giver = aliased(Staff)
    witness = aliased(Staff)
    return (select(Administration.id.label("administration_id"), Admission.resident_id,
                   Administration, MedicationOrder.route, MedicationOrder.form,
                   MedicationOrder.strength, Resident.name.label("resident_name"),
                   giver.full_name.label("given_by"), witness.full_name.label("witness"))
            .join(Admission, Admission.id == Administration.admission_id)
            .join(Resident, Resident.id == Admission.resident_id)
            .join(MedicationOrder, MedicationOrder.id == Administration.order_id)
            .join(giver, giver.id == Administration.given_by_id)
            .outerjoin(witness, witness.id == Administration.witness_id)
            .where(*reader.resident_clauses(Admission.resident_id, Administration.unit_id)))


def _medication_administration(reader: Reader, row: Any) -> dict:
    dose: Administration = row.Administration
    performers = [{"function": {"text": "performer"}, "actor": {"display": row.given_by}}]
    if row.witness:
        performers.append({"function": {"text": "witness"}, "actor": {"display": row.witness}})
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration", "id": str(dose.id),
        "status": "completed" if dose.outcome == "given" else "not-done",
        "medicationCodeableConcept": _medication(dose.drug, row.form, row.strength),
        "subject": reference("Patient", row.resident_id, row.resident_name),
        "context": reference("Encounter", dose.admission_id),
        "effectiveDateTime": instant(dose.given_at),
        "performer": performers,
        "request": reference("MedicationRequest", dose.order_id),
        "dosage": {"route": {"text": row.route}, "dose": _mg(dose.dose_mg)},
    }
    if dose.outcome != "given":
        reason = (dose.reason_code or "").replace("_", " ")
        resource["statusReason"] = [{"text": f"{dose.outcome}: {reason}" if reason else dose.outcome}]
    if dose.note:
        resource["note"] = [{"text": dose.note}]
    return resource


RESOURCE_TYPES = (
    ResourceType(
        "MedicationRequest", _medication_request, rows=_request_rows, id_column=MedicationOrder.id,
        patient_column=Admission.resident_id,
        default_order=(MedicationOrder.created_at.desc(), MedicationOrder.id.desc()),
        params={**patient_params(Admission.resident_id),
                "encounter": SearchParam("reference", reference_filter(
                    MedicationOrder.admission_id, "Encounter", "encounter")),
                "status": SearchParam("token", choice_filter(MedicationOrder.status, {
                    "active": "active", "stopped": ("stopped", "superseded"),
                    "completed": "completed"}, "status")),
                "authoredon": SearchParam("date", date_filter(MedicationOrder.created_at, "authoredon")),
                "_id": SearchParam("token", reference_filter(MedicationOrder.id, "MedicationRequest", "_id"))},
        sorts={"authoredon": MedicationOrder.created_at},
        documentation="Each version of a prescription (a change is a new version naming the one "
                      "it replaced in priorPrescription)."),
    ResourceType(
        "MedicationAdministration", _medication_administration, rows=_administration_rows,
        id_column=Administration.id, patient_column=Admission.resident_id,
        default_order=(Administration.given_at.desc(), Administration.id.desc()),
        params={**patient_params(Admission.resident_id),
                "context": SearchParam("reference", reference_filter(
                    Administration.admission_id, "Encounter", "context")),
                "request": SearchParam("reference", reference_filter(
                    Administration.order_id, "MedicationRequest", "request")),
                "status": SearchParam("token", choice_filter(Administration.outcome, {
                    "completed": "given", "not-done": ("refused", "withheld", "omitted")}, "status")),
                "effective-time": SearchParam("date", date_filter(Administration.given_at, "effective-time")),
                "_id": SearchParam("token", reference_filter(Administration.id, "MedicationAdministration", "_id"))},
        sorts={"effective-time": Administration.given_at},
        documentation="The eMAR: each dose given, or refused, withheld or omitted with its reason."),
)
