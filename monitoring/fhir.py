"""Monitoring's FHIR R4 resource types, registered into ``unit.fhir`` when the app is
assembled: Observation (each score; NEWS2 with its vital signs as components),
QuestionnaireResponse (each score's items), Questionnaire and CodeSystem (one per scale, the
project's own codes where no standard code exists) and Flag (escalations).

Codes: NEWS2's total is SNOMED CT 1104051000000101 and its vital signs carry their LOINC codes
(consciousness: SNOMED CT 1104441000000107, its ACVPU value in the NEWS2 code system here).
CIWA-Ar, COWS, SOWS and GMAWS have no standard codes for their totals and items: each has a
CodeSystem published at ``/fhir/R4/CodeSystem/<scale>`` (``total``, every item key, and
``band-<band>`` for the band read from the total).
"""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import aliased

from monitoring.models import Escalation, Observation
from monitoring.scales import SCALES, Item, Scale
from unit.fhir import (
    LOINC,
    SNOMED,
    Reader,
    ResourceType,
    SearchParam,
    patient_params,
    choice_filter,
    date_filter,
    instant,
    reference,
    reference_filter,
    token_filter,
)
from unit.models import Admission, Resident, Staff

NEWS2_SNOMED = "1104051000000101"
ACVPU_SNOMED = "1104441000000107"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# NEWS2 inputs with a standard code: (system, code, display, UCUM unit) by item key.
NEWS2_COMPONENTS = {
    "respiration_rate": (LOINC, "9279-1", "Respiratory rate", "/min"),
    "spo2": (LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "systolic_bp": (LOINC, "8480-6", "Systolic blood pressure", "mm[Hg]"),
    "pulse": (LOINC, "8867-4", "Heart rate", "/min"),
    "temperature": (LOINC, "8310-5", "Body temperature", "Cel"),
    "consciousness": (SNOMED, ACVPU_SNOMED,
                      "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score", None),
}
# Why an observation could not be done, as http://terminology.hl7.org/CodeSystem/data-absent-reason.
DATA_ABSENT = {"refused": ("asked-declined", "Asked But Declined"),
               "asleep": ("not-performed", "Not Performed"),
               "off_unit": ("not-performed", "Not Performed"),
               "other": ("not-performed", "Not Performed")}


def code_system_url(reader: Reader | None, scale_code: str) -> str:
    return reader.url(f"CodeSystem/{scale_code}")


def questionnaire_url(reader: Reader, scale_code: str) -> str:
    return reader.url(f"Questionnaire/{scale_code}")


def _band_labels(scale: Scale) -> dict[str, str]:
    labels = {band.code: band.label for band in scale.bands}
    if scale.single_item_rule is not None:
        labels[scale.single_item_rule.code] = scale.single_item_rule.label
    return labels


def _choice_code(item: Item, value: Any) -> str:
    return f"{item.key}-{value}"


# --- CodeSystem and Questionnaire: one per scale ---------------------------------------------

def _code_system(reader: Reader, scale: Scale) -> dict:
    concepts = [{"code": "total", "display": f"{scale.name} total score"}]
    for item in scale.items:
        concepts.append({"code": item.key, "display": f"{scale.name}: {item.label}"})
        if item.choices and isinstance(item.choices[0].value, str):
            concepts += [{"code": _choice_code(item, c.value), "display": c.label} for c in item.choices]
        if item.alternative is not None:
            concepts.append({"code": item.alternative.key,
                             "display": f"{scale.name}: {item.alternative.label}"})
    concepts += [{"code": f"band-{code}", "display": f"{scale.name} band: {label}"}
                 for code, label in _band_labels(scale).items()]
    return {"resourceType": "CodeSystem", "id": scale.code, "url": code_system_url(reader, scale.code),
            "name": re.sub(r"[^A-Za-z0-9]", "", scale.name) + "Codes",
            "title": f"{scale.name}: total, items and bands", "status": "active",
            "description": f"The {scale.name} total score, its items and the bands read from the "
                           "total, as this system records them (no standard codes exist for them).",
            "caseSensitive": True, "content": "complete", "count": len(concepts), "concept": concepts}


def _questionnaire_item(reader: Reader, scale: Scale, item: Item) -> dict:
    entry: dict[str, Any] = {"linkId": item.key, "text": item.label,
                             "code": [{"system": code_system_url(reader, scale.code), "code": item.key}],
                             "required": item.required and item.alternative is None}
    if item.kind == "boolean":
        entry["type"] = "boolean"
    elif item.kind == "number":
        entry["type"] = "decimal" if item.places else "integer"
    elif isinstance(item.choices[0].value, str):
        entry["type"] = "choice"
        entry["answerOption"] = [{"valueCoding": {"system": code_system_url(reader, scale.code),
                                                  "code": _choice_code(item, c.value), "display": c.label}}
                                 for c in item.choices]
    else:
        entry["type"] = "choice"
        entry["answerOption"] = [{"valueInteger": c.value} for c in item.choices]
    return entry


def _questionnaire(reader: Reader, scale: Scale) -> dict:
    items = []
    for item in scale.items:
        items.append(_questionnaire_item(reader, scale, item))
        if item.alternative is not None:
            alt = item.alternative
            items.append({"linkId": alt.key, "text": f"{alt.label} (instead of the score)",
                          "type": "integer", "required": False,
                          "code": [{"system": code_system_url(reader, scale.code), "code": alt.key}]})
    return {"resourceType": "Questionnaire", "id": scale.code, "url": questionnaire_url(reader, scale.code),
            "name": re.sub(r"[^A-Za-z0-9]", "", scale.name), "title": scale.name, "status": "active",
            "subjectType": ["Patient"],
            "code": [{"system": code_system_url(reader, scale.code), "code": "total",
                      "display": f"{scale.name} total score"}],
            "item": items}


def _scales(reader: Reader) -> dict[str, Scale]:
    return dict(SCALES)


def _url_match(kind: str) -> Any:
    def match(scale: Scale, raw: str, reader: Reader | None) -> bool:
        return any(url.rstrip("/").endswith(f"/{kind}/{scale.code}") for url in raw.split(","))
    return match


# --- Observation and QuestionnaireResponse: each score ---------------------------------------

def _observation_rows(reader: Reader) -> sa.Select:
    recorder = aliased(Staff)
    return (select(Observation.id.label("observation_id"), Admission.resident_id, Observation,
                   Resident.name.label("resident_name"), recorder.full_name.label("recorded_by"))
            .join(Admission, Admission.id == Observation.admission_id)
            .join(Resident, Resident.id == Admission.resident_id)
            .join(recorder, recorder.id == Observation.recorded_by_id)
            .where(*reader.resident_clauses(Admission.resident_id, Observation.unit_id)))


def _quantity(value: Any, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _news2_components(reader: Reader, items: dict[str, Any]) -> list[dict]:
    system = code_system_url(reader, "news2")
    components = []
    for key, (code_system, code, display, unit) in NEWS2_COMPONENTS.items():
        if key not in items:
            continue
        component: dict[str, Any] = {"code": {"coding": [{"system": code_system, "code": code,
                                                          "display": display}]}}
        if key == "consciousness":
            label = {c.value: c.label for c in SCALES["news2"].item(key).choices}[items[key]]
            component["valueCodeableConcept"] = {"coding": [{
                "system": system, "code": f"consciousness-{items[key]}", "display": label}], "text": label}
        else:
            component["valueQuantity"] = _quantity(items[key], unit)
        components.append(component)
    components.append({"code": {"coding": [{"system": system, "code": "supplemental_oxygen",
                                            "display": "NEWS2: Air or oxygen"}]},
                       "valueBoolean": bool(items.get("supplemental_oxygen"))})
    components.append({"code": {"coding": [{"system": system, "code": "spo2_scale",
                                            "display": "NEWS2: SpO2 scale"}]},
                       "valueInteger": int(items.get("spo2_scale", 1))})
    return components


def _observation_status(observation: Observation) -> str:
    if observation.struck_at is not None:
        return "entered-in-error"
    return "cancelled" if observation.status == "not_done" else "final"


def _observation(reader: Reader, row: Any) -> dict:
    observation: Observation = row.Observation
    scale = SCALES[observation.scale]
    system = code_system_url(reader, scale.code)
    coding = [{"system": system, "code": "total", "display": f"{scale.name} total score"}]
    if scale.code == "news2":
        coding.insert(0, {"system": SNOMED, "code": NEWS2_SNOMED,
                          "display": "Royal College of Physicians NEWS2 (National Early Warning "
                                     "Score 2) total score"})
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": str(observation.id),
        "status": _observation_status(observation),
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey",
                                  "display": "Survey"}]}],
        "code": {"coding": coding, "text": f"{scale.name} total score"},
        "subject": reference("Patient", row.resident_id, row.resident_name),
        "encounter": reference("Encounter", observation.admission_id),
        "effectiveDateTime": instant(observation.observed_at),
        "issued": instant(observation.recorded_at),
        "performer": [{"display": row.recorded_by}],
    }
    if observation.status == "not_done":
        code, display = DATA_ABSENT[observation.not_done_reason]
        resource["dataAbsentReason"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": code, "display": display}], "text": observation.not_done_reason.replace("_", " ")}
    else:
        resource["valueInteger"] = observation.total
        band = observation.risk or observation.band
        label = _band_labels(scale).get(band, band)
        resource["interpretation"] = [{"coding": [{"system": system, "code": f"band-{band}",
                                                   "display": label}], "text": label}]
        resource["derivedFrom"] = [reference("QuestionnaireResponse", observation.id)]
        if scale.code == "news2":
            resource["component"] = _news2_components(reader, observation.items or {})
    notes = [text for text in (
        observation.note,
        observation.struck_at and f"Entered in error: {observation.struck_reason}",
        observation.replaces_id and f"Replaces Observation/{observation.replaces_id}, entered in error.",
    ) if text]
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    return resource


def _answer(reader: Reader, scale: Scale, key: str, value: Any) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    item = scale.item(key)
    label = {c.value: c.label for c in item.choices}.get(value, str(value))
    return {"valueCoding": {"system": code_system_url(reader, scale.code),
                            "code": _choice_code(item, value), "display": label}}


def _questionnaire_response(reader: Reader, row: Any) -> dict:
    observation: Observation = row.Observation
    scale = SCALES[observation.scale]
    labels = {item.key: item.label for item in scale.items}
    labels.update({item.alternative.key: item.alternative.label for item in scale.items
                   if item.alternative is not None})
    return {
        "resourceType": "QuestionnaireResponse", "id": str(observation.id),
        "questionnaire": questionnaire_url(reader, scale.code),
        "status": "entered-in-error" if observation.struck_at is not None else "completed",
        "subject": reference("Patient", row.resident_id, row.resident_name),
        "encounter": reference("Encounter", observation.admission_id),
        "authored": instant(observation.observed_at),
        "author": {"display": row.recorded_by},
        "item": [{"linkId": key, "text": labels.get(key, key),
                  "answer": [_answer(reader, scale, key, value)]}
                 for key, value in (observation.items or {}).items()],
    }


def _code_match(system: str | None, code: str, reader: Reader):
    """Observation ``code``: NEWS2's SNOMED CT code, or ``total`` of a scale's code system."""
    if code == NEWS2_SNOMED and system in (None, "", SNOMED):
        return Observation.scale == "news2"
    if code != "total" or system == SNOMED:
        return sa.false()
    if not system:
        return sa.true()
    scale = system.rstrip("/").rpartition("/CodeSystem/")[2]
    return Observation.scale == scale if scale in SCALES else sa.false()


def _questionnaire_match(system: str | None, code: str, reader: Reader):
    scale = code.rstrip("/").rpartition("/")[2]
    return Observation.scale == scale if scale in SCALES else sa.false()


def _hide_entered_in_error(query: sa.Select, args: dict[str, list[str]]) -> sa.Select:
    # A score struck as entered in error is not a result: searches leave it out unless they
    # ask for it by status (read by id and $everything keep it, marked entered-in-error).
    if "status" in args:
        return query
    return query.where(Observation.struck_at.is_(None))


def _observation_status_filter(query, raw: str, reader: Reader):
    conditions = []
    for value in raw.split(","):
        code = value.strip().rpartition("|")[2]
        conditions.append({
            "final": sa.and_(Observation.status == "recorded", Observation.struck_at.is_(None)),
            "cancelled": sa.and_(Observation.status == "not_done", Observation.struck_at.is_(None)),
            "entered-in-error": Observation.struck_at.is_not(None),
        }.get(code, sa.false()))
    return query.where(sa.or_(*conditions))


def _qr_rows(reader: Reader) -> sa.Select:
    return _observation_rows(reader).where(Observation.status == "recorded")


# --- Flag: escalations -----------------------------------------------------------------------

def _flag_rows(reader: Reader) -> sa.Select:
    return (select(Escalation.id.label("escalation_id"), Admission.resident_id, Escalation,
                   Resident.name.label("resident_name"))
            .join(Admission, Admission.id == Escalation.admission_id)
            .join(Resident, Resident.id == Admission.resident_id)
            .where(*reader.resident_clauses(Admission.resident_id, Escalation.unit_id)))


def _flag(reader: Reader, row: Any) -> dict:
    escalation: Escalation = row.Escalation
    return {
        "resourceType": "Flag", "id": str(escalation.id),
        "status": "inactive" if escalation.status == "resolved" else "active",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                  "code": "clinical", "display": "Clinical"}]}],
        "code": {"text": f"{escalation.severity.capitalize()} escalation ({escalation.status}): "
                         f"{escalation.reason}"},
        "subject": reference("Patient", row.resident_id, row.resident_name),
        "period": {"start": instant(escalation.raised_at),
                   **({"end": instant(escalation.resolved_at)} if escalation.resolved_at else {})},
        "encounter": reference("Encounter", escalation.admission_id),
    }


RESOURCE_TYPES = (
    ResourceType(
        "Observation", _observation, rows=_observation_rows, id_column=Observation.id,
        patient_column=Admission.resident_id,
        default_order=(Observation.observed_at.desc(), Observation.id.desc()),
        params={**patient_params(Admission.resident_id),
                "encounter": SearchParam("reference", reference_filter(
                    Observation.admission_id, "Encounter", "encounter")),
                "code": SearchParam("token", token_filter(_code_match, "code"),
                                    f"{SNOMED}|{NEWS2_SNOMED} (NEWS2) or <base>/CodeSystem/<scale>|total"),
                "date": SearchParam("date", date_filter(Observation.observed_at, "date")),
                "status": SearchParam("token", _observation_status_filter,
                                      "final, cancelled (not done) or entered-in-error"),
                "_id": SearchParam("token", reference_filter(Observation.id, "Observation", "_id"))},
        sorts={"date": Observation.observed_at}, search_default=_hide_entered_in_error,
        documentation="Each score (CIWA-Ar, COWS, SOWS, GMAWS, NEWS2 with its vital signs), or "
                      "an observation that could not be done (cancelled, with the reason)."),
    ResourceType(
        "QuestionnaireResponse", _questionnaire_response, rows=_qr_rows, id_column=Observation.id,
        patient_column=Admission.resident_id,
        default_order=(Observation.observed_at.desc(), Observation.id.desc()),
        params={**patient_params(Admission.resident_id),
                "encounter": SearchParam("reference", reference_filter(
                    Observation.admission_id, "Encounter", "encounter")),
                "questionnaire": SearchParam("reference", token_filter(_questionnaire_match, "questionnaire")),
                "authored": SearchParam("date", date_filter(Observation.observed_at, "authored")),
                "_id": SearchParam("token", reference_filter(Observation.id, "QuestionnaireResponse", "_id"))},
        sorts={"authored": Observation.observed_at},
        search_default=lambda query, args: query.where(Observation.struck_at.is_(None)),
        documentation="The items of each score, answering its scale's Questionnaire."),
    ResourceType(
        "Questionnaire", lambda reader, scale: _questionnaire(reader, scale), static=_scales,
        params={"url": SearchParam("uri", _url_match("Questionnaire"))},
        documentation="One per scale: its items and their allowed answers."),
    ResourceType(
        "CodeSystem", lambda reader, scale: _code_system(reader, scale), static=_scales,
        params={"url": SearchParam("uri", _url_match("CodeSystem"))},
        documentation="One per scale: the codes of its total, items and bands."),
    ResourceType(
        "Flag", _flag, rows=_flag_rows, id_column=Escalation.id, patient_column=Admission.resident_id,
        default_order=(Escalation.raised_at.desc(), Escalation.id.desc()),
        params={**patient_params(Admission.resident_id),
                "status": SearchParam("token", choice_filter(
                    Escalation.status, {"active": ("open", "acknowledged"), "inactive": "resolved"},
                    "status")),
                "_id": SearchParam("token", reference_filter(Escalation.id, "Flag", "_id"))},
        documentation="Escalations: active while open or acknowledged, inactive once resolved."),
)
