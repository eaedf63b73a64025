"""Helpers of the FHIR tests: every resource the server returns is parsed with the
``fhir.resources`` R4B models, and a validation error fails the test."""
from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
# Valid NHS numbers (modulus 11), written out by hand.
NHS_NUMBERS = ("9434765919", "9434765870", "9434765862", "9434765854", "9434765846")


def validate(resource: dict) -> dict:
    """Parse a resource (and each resource of a Bundle) with its R4B model; raises on error."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        validate(entry["resource"])
    return resource


def fhir_get(client, path: str, *, scope: str | None = None, status: int = 200) -> dict:
    """GET a FHIR path; asserts the status and the FHIR JSON type; returns the parsed body."""
    headers = {"Accept": FHIR_JSON, **({"X-Consent-Scope": scope} if scope else {})}
    response = client.get(path if path.startswith("http") else f"/fhir/R4/{path}", headers=headers)
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:600])
    assert response.mimetype == FHIR_JSON, response.mimetype
    return validate(response.get_json())


def outcome(client, path: str, status: int, *, scope: str | None = None) -> dict:
    """An OperationOutcome with this status; returns it."""
    body = fhir_get(client, path, scope=scope, status=status)
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["severity"] == "error"
    return body


def ids(bundle: dict, resource_type: str | None = None) -> list[str]:
    """The ids of a Bundle's resources (of one type), in order."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if resource_type is None or e["resource"]["resourceType"] == resource_type]


def link(bundle: dict, relation: str) -> str | None:
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


def consent(client, resident_id: int, recipient: str, decision: str = "given", **kw) -> dict:
    response = client.post(f"/api/v1/residents/{resident_id}/consents",
                           json={"recipient": recipient, "decision": decision, **kw})
    assert response.status_code == 201, response.get_json()
    return response.get_json()
