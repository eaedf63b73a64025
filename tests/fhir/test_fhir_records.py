"""FHIR R4: the scores (Observation, QuestionnaireResponse, Questionnaire, CodeSystem), the
escalations (Flag), the orders and the eMAR (MedicationRequest, MedicationAdministration), and
a resident's ``$everything`` kept whole through the FHIR models.

Codes and values here are written out by hand from the scales and the standards, never read
from the code under test.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.fhir.helpers import consent, fhir_get, ids, outcome
from tests.medication.helpers import (
    NEWS2_CALM,
    ciwa,
    cows,
    give,
    iso,
    observe,
    order,
    post,
    prn_chlordiazepoxide,
)

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
NEWS2_HIGH = {"respiration_rate": 8, "spo2": 90, "spo2_scale": 1, "supplemental_oxygen": True,
              "systolic_bp": 98, "pulse": 52, "consciousness": "V", "temperature": 35.8}  # 14 high
GMAWS_FIVE = {"tremor": 1, "sweating": 1, "hallucinations": 1, "orientation": 1, "agitation": 1}
SOWS_KEYS = ("anxious", "yawning", "perspiring", "tearing", "runny_nose", "goose_flesh", "shaking",
             "hot_flushes", "cold_flushes", "aches", "restless", "nauseous", "vomiting", "twitching",
             "stomach_cramps", "craving")


@pytest.fixture
def stay(ward, clock):
    """One resident's stay: every scale scored, a not-done and a struck observation, an
    escalation, a PRN order changed once, doses given and refused."""
    admission = ward.admit(name="Alex Morgan", substances=("alcohol", "opioids"))
    aid = admission["id"]
    scores = {"news2": observe(ward.nurse, aid, "news2", NEWS2_CALM)}
    scores["ciwa-ar"] = observe(ward.nurse, aid, "ciwa-ar", ciwa(12))
    scores["cows"] = observe(ward.nurse, aid, "cows", {**cows(5), "resting_pulse": 0})
    scores["sows"] = observe(ward.nurse, aid, "sows", {key: 1 for key in SOWS_KEYS})
    scores["gmaws"] = observe(ward.nurse, aid, "gmaws", GMAWS_FIVE)
    prn = order(ward.doctor, aid, prn_chlordiazepoxide())
    doses = [give(ward.nurse, prn["id"], 20).get_json()]
    clock.advance(minutes=30)
    wrong = observe(ward.nurse, aid, "ciwa-ar", ciwa(30))
    struck = post(ward.nurse, f"/api/v1/observations/{wrong['id']}/strike",
                  {"reason": "Wrong resident", "replacement": {"items": ciwa(11)}})
    assert struck.status_code in (200, 201), struck.get_json()
    not_done = post(ward.nurse, f"/api/v1/admissions/{aid}/observations",
                    {"scale": "gmaws", "not_done_reason": "refused"}).get_json()
    high = observe(ward.nurse, aid, "news2", NEWS2_HIGH)
    clock.advance(hours=2)
    observe(ward.nurse, aid, "ciwa-ar", ciwa(12))
    refused = give(ward.nurse, prn["id"], 20, outcome="refused", reason="resident_refused")
    assert refused.status_code == 201, refused.get_json()
    doses.append(refused.get_json())
    changed = post(ward.doctor, f"/api/v1/orders/{prn['id']}/change",
                   {**prn_chlordiazepoxide(dose_mg=10), "reason": "Less needed"})
    assert changed.status_code in (200, 201), changed.get_json()
    return {"admission": admission, "resident": admission["resident"]["id"], "scores": scores,
            "struck": wrong, "not_done": not_done, "high": high, "orders": [prn, changed.get_json()],
            "doses": doses}


# --- Observation -----------------------------------------------------------------------------

def test_news2_is_its_snomed_code_with_each_vital_sign_a_coded_component(ward, stay):
    observation = fhir_get(ward.doctor, f"Observation/{stay['high']['id']}")
    assert observation["status"] == "final"
    assert {"system": SNOMED, "code": "1104051000000101"} in [
        {k: c[k] for k in ("system", "code")} for c in observation["code"]["coding"]]
    assert observation["valueInteger"] == 14
    assert observation["interpretation"][0]["coding"][0]["code"] == "band-high"
    components = {c["code"]["coding"][0]["code"]: c for c in observation["component"]}
    assert components["9279-1"]["valueQuantity"]["value"] == 8
    assert components["59408-5"]["valueQuantity"] == {"value": 90, "unit": "%",
                                                      "system": "http://unitsofmeasure.org", "code": "%"}
    assert components["8480-6"]["valueQuantity"]["value"] == 98
    assert components["8867-4"]["valueQuantity"]["value"] == 52
    assert components["8310-5"]["valueQuantity"]["value"] == 35.8
    assert components["1104441000000107"]["valueCodeableConcept"]["coding"][0]["code"] == "consciousness-V"
    assert components["supplemental_oxygen"]["valueBoolean"] is True
    assert observation["subject"]["reference"] == f"Patient/{stay['resident']}"
    assert observation["encounter"]["reference"] == f"Encounter/{stay['admission']['id']}"


@pytest.mark.parametrize("scale, total", [("ciwa-ar", 12), ("cows", 5), ("sows", 16), ("gmaws", 5)])
def test_a_withdrawal_score_is_its_total_under_the_scales_code_system(ward, stay, scale, total):
    observation = fhir_get(ward.nurse, f"Observation/{stay['scores'][scale]['id']}")
    coding = observation["code"]["coding"]
    assert [(c["system"].rsplit("/", 2)[-2:], c["code"]) for c in coding] == [(["CodeSystem", scale], "total")]
    assert observation["valueInteger"] == total
    assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{stay['scores'][scale]['id']}"}]
    system = coding[0]["system"]
    assert system.endswith(f"/fhir/R4/CodeSystem/{scale}")
    code_system = fhir_get(ward.nurse, system.split("/fhir/R4/")[1])
    codes = {c["code"] for c in code_system["concept"]}
    assert "total" in codes and observation["interpretation"][0]["coding"][0]["code"] in codes


def test_an_observation_not_done_is_cancelled_with_the_reason(ward, stay):
    observation = fhir_get(ward.nurse, f"Observation/{stay['not_done']['id']}")
    assert observation["status"] == "cancelled"
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "asked-declined"
    assert "valueInteger" not in observation
    outcome(ward.nurse, f"QuestionnaireResponse/{stay['not_done']['id']}", 404)


def test_a_struck_observation_reads_as_entered_in_error_and_searches_leave_it_out(ward, stay):
    """HAZ-004: a score struck as entered in error is never read as a result by another
    system: status entered-in-error on read, and left out of searches unless asked for."""
    struck = fhir_get(ward.nurse, f"Observation/{stay['struck']['id']}")
    assert struck["status"] == "entered-in-error"
    assert "Wrong resident" in struck["note"][0]["text"]
    found = ids(fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_count=200"))
    assert str(stay["struck"]["id"]) not in found
    asked = ids(fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&status=entered-in-error"))
    assert asked == [str(stay["struck"]["id"])]
    assert fhir_get(ward.nurse, f"QuestionnaireResponse/{stay['struck']['id']}")["status"] == "entered-in-error"
    assert str(stay["struck"]["id"]) not in ids(fhir_get(
        ward.nurse, f"QuestionnaireResponse?patient={stay['resident']}"))


def test_observation_search_by_patient(ward, stay, make_ward):
    other = ward.admit(name="Other")
    observe(ward.nurse, other["id"], "news2", NEWS2_CALM)
    found = fhir_get(ward.nurse, f"Observation?patient=Patient/{stay['resident']}&_count=200")
    assert found["total"] == 9  # 8 scores (the struck one left out) and one not done
    assert {e["resource"]["subject"]["reference"] for e in found["entry"]} == {f"Patient/{stay['resident']}"}
    assert fhir_get(ward.nurse, f"Observation?subject={stay['resident']}")["total"] == 9


def test_observation_search_by_encounter(ward, stay):
    other = ward.admit(name="Other")
    observe(ward.nurse, other["id"], "news2", NEWS2_CALM)
    found = fhir_get(ward.nurse, f"Observation?encounter=Encounter/{other['id']}")
    assert found["total"] == 1


def test_observation_search_by_code(ward, stay):
    news2 = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&code={SNOMED}|1104051000000101")
    assert sorted(ids(news2)) == sorted([str(stay["scores"]["news2"]["id"]), str(stay["high"]["id"])])
    system = fhir_get(ward.nurse, f"Observation/{stay['scores']['cows']['id']}")["code"]["coding"][0]["system"]
    assert ids(fhir_get(ward.nurse, f"Observation?code={system}|total")) == [str(stay["scores"]["cows"]["id"])]
    both = fhir_get(ward.nurse, f"Observation?code={system}|total,1104051000000101")
    assert both["total"] == 3
    assert fhir_get(ward.nurse, f"Observation?code={LOINC}|9279-1")["total"] == 0


def test_observation_search_by_date_with_prefixes(ward, stay, clock):
    start = clock() - timedelta(hours=2, minutes=30)  # the stay's first scores
    later = iso(start + timedelta(minutes=10)).replace("+00:00", "Z")
    after = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&date=gt{later}&_count=200")
    assert sorted(ids(after)) == sorted(str(o) for o in (
        stay["not_done"]["id"], stay["high"]["id"], after_struck(ward, stay), latest_ciwa(ward, stay)))
    before = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&date=lt{later}&_count=200")
    assert before["total"] == 5
    today = start.date().isoformat()
    assert fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&date=ge{today}")["total"] == 9
    assert fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&date=lt{today}")["total"] == 0


def after_struck(ward, stay) -> int:
    found = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_count=200")
    return next(int(e["resource"]["id"]) for e in found["entry"]
                if any(f"Replaces Observation/{stay['struck']['id']}" in n["text"]
                       for n in e["resource"].get("note", [])))


def latest_ciwa(ward, stay) -> int:
    found = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_sort=-date&_count=1")
    return int(ids(found)[0])


def test_observation_search_count_and_sort(ward, stay):
    newest_first = ids(fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_sort=-date&_count=200"))
    oldest_first = ids(fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_sort=date&_count=200"))
    assert newest_first == list(reversed(oldest_first))
    page = fhir_get(ward.nurse, f"Observation?patient={stay['resident']}&_sort=-date&_count=3")
    assert ids(page) == newest_first[:3] and page["total"] == 9
    assert fhir_get(ward.nurse, page["link"][1]["url"])["entry"][0]["resource"]["id"] == newest_first[3]


def test_observation_search_by_status_and_id(ward, stay):
    assert ids(fhir_get(ward.nurse, "Observation?status=cancelled")) == [str(stay["not_done"]["id"])]
    assert ids(fhir_get(ward.nurse, f"Observation?_id={stay['high']['id']}")) == [str(stay["high"]["id"])]


# --- QuestionnaireResponse and Questionnaire --------------------------------------------------

def test_a_scores_items_answer_its_scales_questionnaire(ward, stay):
    response = fhir_get(ward.nurse, f"QuestionnaireResponse/{stay['scores']['ciwa-ar']['id']}")
    assert response["status"] == "completed"
    assert response["questionnaire"].endswith("/fhir/R4/Questionnaire/ciwa-ar")
    answers = {item["linkId"]: item["answer"][0] for item in response["item"]}
    assert answers == {key: {"valueInteger": value} for key, value in ciwa(12).items()}
    questionnaire = fhir_get(ward.nurse, "Questionnaire/ciwa-ar")
    assert [item["linkId"] for item in questionnaire["item"]] == list(ciwa(12))
    assert {"valueInteger": 7} in questionnaire["item"][0]["answerOption"]


def test_news2_items_answer_with_their_types(ward, stay):
    response = fhir_get(ward.nurse, f"QuestionnaireResponse/{stay['high']['id']}")
    answers = {item["linkId"]: item["answer"][0] for item in response["item"]}
    assert answers["temperature"] == {"valueDecimal": 35.8}
    assert answers["supplemental_oxygen"] == {"valueBoolean": True}
    assert answers["consciousness"]["valueCoding"]["code"] == "consciousness-V"
    questionnaire = fhir_get(ward.nurse, "Questionnaire/news2")
    types = {item["linkId"]: item["type"] for item in questionnaire["item"]}
    assert (types["temperature"], types["pulse"], types["supplemental_oxygen"]) == ("decimal", "integer", "boolean")


def test_questionnaire_response_search_by_patient_and_questionnaire(ward, stay):
    everything = fhir_get(ward.nurse, f"QuestionnaireResponse?patient={stay['resident']}&_count=200")
    assert everything["total"] == 8  # every score but the struck one; none for the one not done
    cows_only = fhir_get(ward.nurse, "QuestionnaireResponse?questionnaire=Questionnaire/cows")
    assert ids(cows_only) == [str(stay["scores"]["cows"]["id"])]
    by_encounter = fhir_get(ward.nurse, f"QuestionnaireResponse?encounter={stay['admission']['id']}&_count=200")
    assert by_encounter["total"] == 8


def test_questionnaires_and_code_systems_are_one_per_scale_and_searchable_by_url(ward):
    assert sorted(ids(fhir_get(ward.inspector, "Questionnaire"))) == ["ciwa-ar", "cows", "gmaws", "news2", "sows"]
    assert sorted(ids(fhir_get(ward.inspector, "CodeSystem"))) == ["ciwa-ar", "cows", "gmaws", "news2", "sows"]
    url = fhir_get(ward.nurse, "CodeSystem/gmaws")["url"]
    assert ids(fhir_get(ward.nurse, f"CodeSystem?url={url}")) == ["gmaws"]
    assert ids(fhir_get(ward.nurse, "Questionnaire?url=http://elsewhere/Questionnaire/nothing")) == []
    outcome(ward.nurse, "Questionnaire/audit-c", 404)


# --- Flag ------------------------------------------------------------------------------------

def test_a_live_escalation_is_an_active_flag_and_a_resolved_one_inactive(ward, stay):
    flags = fhir_get(ward.nurse, f"Flag?patient={stay['resident']}&status=active")
    assert flags["total"] >= 1
    flag = flags["entry"][0]["resource"]
    assert flag["status"] == "active" and "Emergency" in flag["code"]["text"]
    escalation_id = flag["id"]
    resolved = post(ward.doctor, f"/api/v1/escalations/{escalation_id}/acknowledge", {})
    assert resolved.status_code == 200, resolved.get_json()
    post(ward.doctor, f"/api/v1/escalations/{escalation_id}/resolve", {"outcome": "Reviewed", "note": "ok"})
    assert fhir_get(ward.nurse, f"Flag/{escalation_id}")["status"] == "inactive"
    assert escalation_id in ids(fhir_get(ward.nurse, "Flag?status=inactive"))
    assert escalation_id not in ids(fhir_get(ward.nurse, "Flag?status=active"))


# --- MedicationRequest and MedicationAdministration ------------------------------------------

def test_an_order_is_a_medication_request_and_a_change_names_the_one_it_replaced(ward, stay):
    first, second = stay["orders"]
    old = fhir_get(ward.doctor, f"MedicationRequest/{first['id']}")
    assert (old["status"], old["intent"]) == ("stopped", "order")
    assert old["medicationCodeableConcept"]["text"].startswith("Chlordiazepoxide")
    dosage = old["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 200
    assert dosage["asNeededBoolean"] is True
    new = fhir_get(ward.doctor, f"MedicationRequest/{second['id']}")
    assert new["status"] == "active"
    assert new["priorPrescription"] == {"reference": f"MedicationRequest/{first['id']}"}


def test_medication_request_search_by_patient_status_and_encounter(ward, stay):
    first, second = stay["orders"]
    assert sorted(ids(fhir_get(ward.nurse, f"MedicationRequest?patient={stay['resident']}"))) == \
        sorted([str(first["id"]), str(second["id"])])
    assert ids(fhir_get(ward.nurse, "MedicationRequest?status=active")) == [str(second["id"])]
    assert ids(fhir_get(ward.nurse, "MedicationRequest?status=stopped")) == [str(first["id"])]
    assert fhir_get(ward.nurse, f"MedicationRequest?encounter={stay['admission']['id']}")["total"] == 2


def test_a_dose_given_and_a_dose_refused_are_medication_administrations(ward, stay):
    given, refused = stay["doses"]
    done = fhir_get(ward.nurse, f"MedicationAdministration/{given['id']}")
    assert done["status"] == "completed"
    assert done["dosage"]["dose"]["value"] == 20
    assert done["request"] == {"reference": f"MedicationRequest/{stay['orders'][0]['id']}"}
    not_done = fhir_get(ward.nurse, f"MedicationAdministration/{refused['id']}")
    assert not_done["status"] == "not-done"
    assert not_done["statusReason"][0]["text"] == "refused: resident refused"


def test_medication_administration_search_by_patient_status_and_request(ward, stay):
    given, refused = stay["doses"]
    assert fhir_get(ward.nurse, f"MedicationAdministration?patient={stay['resident']}")["total"] == 2
    assert ids(fhir_get(ward.nurse, "MedicationAdministration?status=not-done")) == [str(refused["id"])]
    assert fhir_get(ward.nurse, f"MedicationAdministration?request={stay['orders'][0]['id']}")["total"] == 2
    assert fhir_get(ward.nurse, f"MedicationAdministration?context={stay['admission']['id']}")["total"] == 2


# --- $everything -----------------------------------------------------------------------------

def test_everything_round_trips_through_the_fhir_models_keeping_every_observation_and_dose(ward, stay, app):
    """A resident's $everything parsed into the R4B Bundle model and written out again keeps
    every observation (struck ones marked), every QuestionnaireResponse and every dose."""
    body = fhir_get(ward.doctor, f"Patient/{stay['resident']}/$everything")
    parsed = Bundle.model_validate(body)
    again = parsed.model_dump(mode="json")
    kept = {}
    for entry in again["entry"]:
        kept.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    observations = {o["id"]: o for o in kept["Observation"]}
    # Every observation of the stay, read through the API, is there with its total.
    recorded = ward.nurse.get(f"/api/v1/admissions/{stay['admission']['id']}/observations?page_size=100").get_json()
    assert sorted(observations) == sorted(str(o["id"]) for o in recorded)
    for api_row in recorded:
        resource = observations[str(api_row["id"])]
        if api_row.get("total") is not None:
            assert resource["valueInteger"] == api_row["total"]
        if api_row.get("struck_at"):
            assert resource["status"] == "entered-in-error"
    emar = ward.nurse.get(f"/api/v1/admissions/{stay['admission']['id']}/administrations").get_json()
    doses = {d["id"]: d for d in kept["MedicationAdministration"]}
    assert sorted(doses) == sorted(str(d["id"]) for d in emar)
    for api_row in emar:
        assert doses[str(api_row["id"])]["dosage"]["dose"]["value"] == api_row["dose_mg"]
    assert len(kept["QuestionnaireResponse"]) == len([o for o in recorded if o.get("total") is not None])
    assert [p["id"] for p in kept["Patient"]] == [str(stay["resident"])]
    assert [e["id"] for e in kept["Encounter"]] == [str(stay["admission"]["id"])]
    assert len(kept["MedicationRequest"]) == 2 and kept["Flag"]
    assert again["total"] == len(again["entry"])


def test_everything_for_a_recipient_needs_the_residents_consent(ward, stay):
    outcome(ward.doctor, f"Patient/{stay['resident']}/$everything", 404, scope="gp")
    consent(ward.nurse, stay["resident"], "gp")
    body = fhir_get(ward.doctor, f"Patient/{stay['resident']}/$everything", scope="gp")
    assert body["entry"][0]["resource"]["resourceType"] == "Patient"
    assert len(body["entry"]) > 20
    refusal = consent(ward.nurse, stay["resident"], "gp", "refused")
    assert refusal["status"] == "active"
    outcome(ward.doctor, f"Patient/{stay['resident']}/$everything", 404, scope="gp")
    outcome(ward.doctor, f"Observation/{stay['high']['id']}", 404, scope="gp")
    assert fhir_get(ward.doctor, "Observation", scope="gp")["total"] == 0
    assert fhir_get(ward.doctor, "MedicationAdministration", scope="gp")["total"] == 0


def test_another_unit_reads_none_of_it_and_the_inspector_all_of_it(ward, stay, make_ward):
    other = make_ward("medically_monitored")
    outcome(other.nurse, f"Observation/{stay['high']['id']}", 404)
    outcome(other.nurse, f"Patient/{stay['resident']}/$everything", 404)
    assert fhir_get(other.nurse, "MedicationRequest")["total"] == 0
    assert fhir_get(other.inspector, f"Observation/{stay['high']['id']}")["valueInteger"] == 14
