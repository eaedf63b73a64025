"""FHIR R4 at /fhir/R4: the CapabilityStatement, Patient, Encounter and Consent, searches and
paging, OperationOutcome errors, who may read what, and consent scopes."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import referral
from tests.fhir.helpers import NHS, NHS_NUMBERS, consent, fhir_get, ids, link, outcome
from unit.models import AuditEvent

FIELDS = {"sex": "female", "ethnicity": "N", "local_authority": "E08000035", "postcode_district": "LS6"}


def admit(ward, name: str, nhs: str | None = None, **fields) -> dict:
    body = referral(name=name, nhs_number=nhs)
    if fields:
        body["return_fields"] = fields
    response = ward.nurse.post("/api/v1/admissions", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# --- the CapabilityStatement -----------------------------------------------------------------

def test_metadata_lists_every_type_with_its_search_parameters(ward):
    statement = fhir_get(ward.nurse, "metadata")
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Encounter", "Consent"} <= set(resources)
    assert {p["name"] for p in resources["Patient"]["searchParam"]} >= {"identifier", "_id"}
    assert resources["Patient"]["operation"][0]["name"] == "everything"


def test_without_a_session_fhir_answers_401_as_an_operation_outcome(client):
    body = outcome(client, "metadata", 401)
    assert body["issue"][0]["code"] == "login"
    outcome(client, "Patient/1", 401)


# --- Patient ---------------------------------------------------------------------------------

def test_a_patient_carries_the_nhs_number_name_sex_ethnicity_and_district(ward):
    admission = admit(ward, "Alex Jo Morgan", NHS_NUMBERS[0], **FIELDS)
    patient = fhir_get(ward.doctor, f"Patient/{admission['resident']['id']}")
    assert patient["identifier"] == [{"system": NHS, "value": NHS_NUMBERS[0]}]
    assert patient["name"][0] == {"use": "official", "text": "Alex Jo Morgan", "family": "Morgan",
                                  "given": ["Alex", "Jo"]}
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1980-05-17"
    ethnicity = patient["extension"][0]
    assert ethnicity["url"] == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
    assert ethnicity["valueCodeableConcept"]["coding"][0]["code"] == "N"
    assert patient["address"] == [{"use": "home", "district": "E08000035", "postalCode": "LS6"}]


def test_a_patient_without_return_fields_leaves_them_out(ward):
    admission = admit(ward, "Sam")
    patient = fhir_get(ward.nurse, f"Patient/{admission['resident']['id']}")
    assert not {"identifier", "gender", "extension", "address"} & set(patient)


def test_patient_search_by_nhs_number_identifier(ward):
    first = admit(ward, "First", NHS_NUMBERS[0])
    admit(ward, "Second", NHS_NUMBERS[1])
    assert ids(fhir_get(ward.nurse, f"Patient?identifier={NHS}|{NHS_NUMBERS[0]}")) == \
        [str(first["resident"]["id"])]
    assert ids(fhir_get(ward.nurse, f"Patient?identifier={NHS_NUMBERS[0]}")) == \
        [str(first["resident"]["id"])]
    assert ids(fhir_get(ward.nurse, f"Patient?identifier=http://other.example/id|{NHS_NUMBERS[0]}")) == []
    assert fhir_get(ward.nurse, "Patient?identifier=9999999999")["total"] == 0


def test_patient_search_by_id(ward):
    first = admit(ward, "First")
    second = admit(ward, "Second")
    found = fhir_get(ward.nurse, f"Patient?_id={first['resident']['id']},{second['resident']['id']}")
    assert sorted(ids(found)) == sorted([str(first["resident"]["id"]), str(second["resident"]["id"])])


def test_another_units_patient_is_not_found_and_the_inspector_reads_every_unit(ward, make_ward):
    admission = admit(ward, "Ours")
    other = make_ward("medically_monitored")
    theirs = other.admit(name="Theirs")
    path = f"Patient/{admission['resident']['id']}"
    assert outcome(other.nurse, path, 404)["issue"][0]["code"] == "not-found"
    assert ids(fhir_get(other.nurse, "Patient")) == [str(theirs["resident"]["id"])]
    assert fhir_get(other.inspector, path)["id"] == str(admission["resident"]["id"])
    assert {str(admission["resident"]["id"]), str(theirs["resident"]["id"])} <= \
        set(ids(fhir_get(other.inspector, "Patient")))


# --- Encounter -------------------------------------------------------------------------------

def test_an_encounter_is_the_stay_with_its_period_and_how_it_ended(ward, clock):
    admission = admit(ward, "Alex")
    started = clock()
    encounter = fhir_get(ward.nurse, f"Encounter/{admission['id']}")
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == f"Patient/{admission['resident']['id']}"
    assert encounter["period"] == {"start": started.isoformat()}
    clock.advance(days=7)
    ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge", json={"discharge_type": "self-discharged"})
    encounter = fhir_get(ward.nurse, f"Encounter/{admission['id']}")
    assert encounter["status"] == "finished"
    assert encounter["period"]["end"] == clock().isoformat()
    disposition = encounter["hospitalization"]["dischargeDisposition"]
    assert (disposition["coding"][0]["code"], disposition["text"]) == ("aadvice", "self-discharged")


def test_encounter_search_by_patient(ward):
    first, second = admit(ward, "First"), admit(ward, "Second")
    found = fhir_get(ward.nurse, f"Encounter?patient=Patient/{first['resident']['id']}")
    assert ids(found) == [str(first["id"])]
    found = fhir_get(ward.nurse, f"Encounter?subject={second['resident']['id']}")
    assert ids(found) == [str(second["id"])]


def test_encounter_search_by_status(ward):
    first, second = admit(ward, "First"), admit(ward, "Second")
    ward.nurse.post(f"/api/v1/admissions/{first['id']}/discharge", json={"discharge_type": "completed"})
    assert ids(fhir_get(ward.nurse, "Encounter?status=finished")) == [str(first["id"])]
    assert ids(fhir_get(ward.nurse, "Encounter?status=in-progress")) == [str(second["id"])]
    outcome(ward.nurse, "Encounter?status=planned", 400)


def test_encounter_search_by_date_and_sort(ward, clock):
    first = admit(ward, "First")
    clock.advance(days=2)
    second = admit(ward, "Second")
    day = (clock() - timedelta(days=1)).date().isoformat()
    assert ids(fhir_get(ward.nurse, f"Encounter?date=ge{day}")) == [str(second["id"])]
    assert ids(fhir_get(ward.nurse, f"Encounter?date=lt{day}")) == [str(first["id"])]
    assert ids(fhir_get(ward.nurse, "Encounter?_sort=date")) == [str(first["id"]), str(second["id"])]
    assert ids(fhir_get(ward.nurse, "Encounter?_sort=-date")) == [str(second["id"]), str(first["id"])]


def test_a_search_pages_with_next_links_that_follow(ward):
    admitted = [admit(ward, f"Resident {n}") for n in range(5)]
    page = fhir_get(ward.nurse, "Encounter?_count=2&_sort=date")
    seen = []
    while True:
        assert page["total"] == 5
        seen += ids(page)
        following = link(page, "next")
        if following is None:
            break
        assert "_count=2" in following
        page = fhir_get(ward.nurse, following)
    assert seen == [str(a["id"]) for a in admitted]


# --- Consent ---------------------------------------------------------------------------------

def test_a_consent_reads_as_a_fhir_consent(ward):
    admission = admit(ward, "Alex")
    resident = admission["resident"]["id"]
    given = consent(ward.nurse, resident, "gp", recipient_name="Dr Shah")
    refused = consent(ward.nurse, resident, "ndtms", "refused")
    found = fhir_get(ward.nurse, f"Consent?patient={resident}")
    by_id = {e["resource"]["id"]: e["resource"] for e in found["entry"]}
    assert by_id[str(given["id"])]["provision"]["type"] == "permit"
    assert by_id[str(given["id"])]["provision"]["actor"][0]["reference"]["display"].endswith("Dr Shah")
    assert by_id[str(refused["id"])]["provision"]["type"] == "deny"
    assert by_id[str(given["id"])]["status"] == "active"
    ward.nurse.post(f"/api/v1/consents/{given['id']}/withdraw", json={"reason": "Changed mind"})
    assert fhir_get(ward.nurse, f"Consent/{given['id']}")["status"] == "inactive"


def test_consent_search_by_status(ward):
    resident = admit(ward, "Alex")["resident"]["id"]
    first = consent(ward.nurse, resident, "gp")
    second = consent(ward.nurse, resident, "gp", "refused")  # supersedes the first
    assert ids(fhir_get(ward.nurse, "Consent?status=active")) == [str(second["id"])]
    assert ids(fhir_get(ward.nurse, "Consent?status=inactive")) == [str(first["id"])]


# --- consent scopes --------------------------------------------------------------------------

def test_a_read_for_the_gp_finds_only_residents_who_consented_to_share_with_the_gp(ward, app):
    """HAZ-005: a read for a recipient sees only residents whose consent to share with it is
    in force; refusals, withdrawals and no decision are not found."""
    shared = admit(ward, "Shared", NHS_NUMBERS[0])
    refused = admit(ward, "Refused", NHS_NUMBERS[1])
    withdrawn = admit(ward, "Withdrawn", NHS_NUMBERS[2])
    silent = admit(ward, "Silent", NHS_NUMBERS[3])
    other_recipient = admit(ward, "Ndtms only", NHS_NUMBERS[4])
    consent(ward.nurse, shared["resident"]["id"], "gp")
    consent(ward.nurse, refused["resident"]["id"], "gp", "refused")
    gone = consent(ward.nurse, withdrawn["resident"]["id"], "gp")
    ward.nurse.post(f"/api/v1/consents/{gone['id']}/withdraw", json={"reason": "Withdrawn today"})
    consent(ward.nurse, other_recipient["resident"]["id"], "ndtms")
    assert ids(fhir_get(ward.doctor, "Patient", scope="gp")) == [str(shared["resident"]["id"])]
    assert ids(fhir_get(ward.doctor, "Encounter", scope="gp")) == [str(shared["id"])]
    for hidden in (refused, withdrawn, silent, other_recipient):
        outcome(ward.doctor, f"Patient/{hidden['resident']['id']}", 404, scope="gp")
        outcome(ward.doctor, f"Encounter/{hidden['id']}", 404, scope="gp")
        outcome(ward.doctor, f"Patient/{hidden['resident']['id']}/$everything", 404, scope="gp")
        assert fhir_get(ward.doctor, f"Patient?identifier={NHS_NUMBERS[1]}", scope="gp")["total"] == 0
    # For the unit's own care, every resident of the unit is read.
    assert len(ids(fhir_get(ward.doctor, "Patient"))) == 5
    assert ids(fhir_get(ward.doctor, "Patient", scope="ndtms")) == [str(other_recipient["resident"]["id"])]


def test_a_read_for_a_recipient_is_audited_as_a_disclosure(ward, app):
    admission = admit(ward, "Shared")
    consent(ward.nurse, admission["resident"]["id"], "community_team")
    fhir_get(ward.doctor, f"Patient/{admission['resident']['id']}", scope="community_team")
    fhir_get(ward.doctor, f"Patient/{admission['resident']['id']}")  # care: not a disclosure
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "fhir.disclose")).all()
        assert len(events) == 1
        assert events[0].after["recipient"] == "community_team"
        assert events[0].after["residents"] == [admission["resident"]["id"]]
        assert events[0].resident_id == admission["resident"]["id"]


@pytest.mark.parametrize("scope", ["family", "police", "GP"])
def test_an_unknown_or_family_scope_is_refused(ward, scope):
    body = outcome(ward.nurse, "Patient", 400, scope=scope)
    assert "X-Consent-Scope" in body["issue"][0]["diagnostics"]


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, status, code", [
    ("Nonsense", 404, "not-found"),
    ("Nonsense/1", 404, "not-found"),
    ("Patient/999999", 404, "not-found"),
    ("Patient/99999999999", 404, "not-found"),
    ("Patient/abc", 404, "not-found"),
    ("Patient/a$b", 400, "invalid"),
    ("Patient?colour=blue", 400, "invalid"),
    ("Patient?_count=-1", 400, "invalid"),
    ("Patient?_count=1000", 400, "invalid"),
    ("Patient?_page=0", 400, "invalid"),
    ("Encounter?_sort=name", 400, "invalid"),
    ("Encounter?date=yesterday", 400, "invalid"),
    ("Encounter?patient=Observation/1", 400, "invalid"),
    ("Patient?_format=xml", 406, "not-supported"),
    ("Patient/1/extra/more", 404, "not-found"),
])
def test_errors_are_operation_outcomes(ward, path, status, code):
    admit(ward, "Alex")
    body = outcome(ward.nurse, path, status)
    assert body["issue"][0]["code"] == code


def test_writes_are_refused_as_operation_outcomes(ward):
    response = ward.nurse.post("/fhir/R4/Patient", json={"resourceType": "Patient"})
    assert response.status_code == 405 and response.mimetype == "application/fhir+json"
    assert response.get_json()["resourceType"] == "OperationOutcome"
