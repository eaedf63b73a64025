"""Every API error is a problem body; bad input is never a 500 and never a partial write."""
from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import referral
from tests.unit.helpers import assert_problem, row_counts, writes_between


@pytest.fixture
def nurse(make_unit, make_staff, login):
    return login(make_staff(make_unit(), "nurse"))


def with_change(path: str, value):
    """A valid referral with one value replaced (path like "assessment.sadq")."""
    body = copy.deepcopy(referral())
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    target[last] = value
    return body


# (path in the referral, wrong value, where the error is reported)
WRONG_TYPES = [
    ("assessment.sadq", "20", ("assessment", "sadq")),
    ("assessment.sadq", 20.5, ("assessment", "sadq")),
    ("assessment.sadq", True, ("assessment", "sadq")),
    ("assessment.sadq", None, ("assessment", "sadq")),
    ("assessment.sadq", -1, ("assessment", "sadq")),
    ("assessment.sadq", 61, ("assessment", "sadq")),
    ("assessment.audit", 41, ("assessment", "audit")),
    ("assessment.audit", [], ("assessment", "audit")),
    ("assessment.units_per_day", "12", ("assessment", "units_per_day")),
    ("assessment.units_per_day", True, ("assessment", "units_per_day")),
    ("assessment.units_per_day", -0.5, ("assessment", "units_per_day")),
    ("assessment.units_per_day", 1e308, ("assessment", "units_per_day")),
    ("assessment.history_of_seizures", "no", ("assessment", "history_of_seizures")),
    ("assessment.history_of_seizures", 0, ("assessment", "history_of_seizures")),
    ("assessment.pregnant", None, ("assessment", "pregnant")),
    ("assessment.significant_comorbidity", 1, ("assessment", "significant_comorbidity")),
    ("substances", "alcohol", ("substances",)),
    ("substances", [], ("substances",)),
    ("substances", ["wine"], ("substances",)),
    ("substances", ["alcohol", "alcohol"], ("substances",)),
    ("substances", [1], ("substances",)),
    ("resident.name", 42, ("resident", "name")),
    ("resident.name", "   ", ("resident", "name")),
    ("resident.date_of_birth", 19800517, ("resident", "date_of_birth")),
    ("resident", "Alex", ("resident",)),
    ("assessment", [1, 2], ("assessment",)),
]


def test_wrong_types_are_422_naming_the_field_and_write_nothing(app, nurse):
    before = row_counts(app)
    for path, value, where in WRONG_TYPES:
        response = nurse.post("/api/v1/admissions", json=with_change(path, value))
        body = assert_problem(response, 422, "validation-error")
        errors = body["errors"]
        for key in where:
            assert key in errors, (path, value, body)
            errors = errors[key]
    assert writes_between(before, row_counts(app)) == {}


@pytest.mark.parametrize("where", ["", "resident", "assessment"])
def test_unknown_fields_are_422_naming_the_field(app, nurse, where):
    body = referral()
    (body[where] if where else body)["shoe_size"] = 9
    before = row_counts(app)
    problem = assert_problem(nurse.post("/api/v1/admissions", json=body), 422, "validation-error")
    errors = problem["errors"][where] if where else problem["errors"]
    assert "shoe_size" in errors
    assert writes_between(before, row_counts(app)) == {}


@pytest.mark.parametrize("field", ["resident", "substances", "assessment"])
def test_missing_fields_are_named(nurse, field):
    body = referral()
    del body[field]
    assert field in assert_problem(nurse.post("/api/v1/admissions", json=body), 422)["errors"]


INVALID_JSON = [b"{", b'{"resident": }', b"\xff\xfe", b"[" * 100_000, b'{"a": ' * 5000,
                b"NaN-ish", b"'single'"]


def test_invalid_json_is_a_400_problem(app, nurse):
    before = row_counts(app)
    for raw in INVALID_JSON:
        response = nurse.post("/api/v1/admissions", data=raw, content_type="application/json")
        body = assert_problem(response, 400, "bad-request")
        assert body["errors"] == {"json": ["Invalid JSON body."]}, raw[:20]
    assert writes_between(before, row_counts(app)) == {}


HUGE_INTEGER = "9" * 5000  # past Python's int-digits limit (4,300): json.loads raises ValueError


@pytest.mark.parametrize("path", ["/api/v1/admissions", "/api/v1/referrals/check",
                                  "/api/v1/scales/ciwa-ar/score", "/api/v1/auth/login"])
def test_an_integer_literal_too_long_to_parse_is_a_400_problem(app, nurse, path):
    before = row_counts(app)
    for raw in ('{"sadq": %s}' % HUGE_INTEGER, '[%s]' % HUGE_INTEGER, HUGE_INTEGER,
                '{"items": {"nausea": -%s}}' % HUGE_INTEGER):
        response = nurse.post(path, data=raw, content_type="application/json")
        body = assert_problem(response, 400, "bad-request")
        assert body["errors"] == {"json": ["Invalid JSON body."]}
    assert writes_between(before, row_counts(app)) == {}


def test_an_integer_literal_too_long_to_parse_is_never_a_500_on_any_api_route(app, unit_staff):
    """Every POST route of the API, each called by a role it allows, with such a body."""
    code, clients = unit_staff()
    seen = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or "POST" not in rule.methods:
            continue
        view = app.view_functions[rule.endpoint]
        roles = getattr(view, "allowed_roles", None) or {"nurse"}
        role = next(role for role in ("nurse", "doctor", "gp", "manager", "inspector") if role in roles)
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<int:{argument}>", "1").replace(f"<{argument}>", "ciwa-ar")
        response = clients[role].post(path, data='{"x": %s}' % HUGE_INTEGER,
                                      content_type="application/json")
        assert response.status_code < 500, (path, response.get_data(as_text=True)[:300])
        seen += 1
    assert seen > 20


def test_json_that_is_not_an_object_is_a_422(nurse):
    for raw in (b"null", b"[]", b'"text"', b"42"):
        response = nurse.post("/api/v1/admissions", data=raw, content_type="application/json")
        assert_problem(response, 422, "validation-error")


HUGE = [("resident.name", "x" * 201), ("resident.name", "x" * 500_000),
        ("resident.nhs_number", "9" * 100_000), ("substances", ["alcohol"] * 50_000)]


def test_huge_values_are_refused_without_a_write(app, nurse):
    before = row_counts(app)
    for path, value in HUGE:
        response = nurse.post("/api/v1/admissions", json=with_change(path, value))
        assert_problem(response, 422, "validation-error")
    assert writes_between(before, row_counts(app)) == {}


def test_a_body_over_the_size_limit_is_refused_unread(app, nurse):
    before = row_counts(app)
    body = with_change("resident.name", "x" * (2 * 1024 * 1024))
    assert_problem(nurse.post("/api/v1/admissions", json=body), 413, "too-large")
    assert writes_between(before, row_counts(app)) == {}


def test_sign_in_input_is_validated(app, client):
    before = row_counts(app)
    for payload in ({"username": "x" * 65, "password": "p"}, {"username": "nurse", "password": "p" * 1001},
                    {"username": ["nurse"], "password": "p"}, {"username": "nurse"}):
        assert_problem(client.post("/api/v1/auth/login", json=payload), 422, "validation-error")
    assert writes_between(before, row_counts(app)) == {}


def test_a_page_form_with_bad_numbers_shows_errors_not_a_500(app, nurse):
    from tests.unit.helpers import csrf_token

    before = row_counts(app)
    response = nurse.post("/admissions/new", data={
        "csrf_token": csrf_token(nurse), "name": "Form Person", "date_of_birth": "1970-01-01",
        "substances": "alcohol", "sadq": "lots", "audit": "1e999", "units_per_day": "12.x"})
    assert response.status_code == 422
    assert writes_between(before, row_counts(app)) == {}


def test_routing_errors_are_problems(nurse):
    for method, path, status, slug in (
        ("get", "/api/v1/no-such-thing", 404, "not-found"),
        ("put", "/api/v1/unit", 405, "method-not-allowed"),
        ("delete", "/api/v1/admissions", 405, "method-not-allowed"),
        ("get", "/api/v1/admissions/not-a-number", 404, "not-found"),
    ):
        assert_problem(getattr(nurse, method)(path), status, slug)


def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(app, nurse, monkeypatch):
    from unit import services

    def broken(*args, **kwargs):
        raise RuntimeError("psycopg: password authentication failed for user detox at 10.0.0.5")

    monkeypatch.setattr(services, "list_admissions", broken)
    response = nurse.get("/api/v1/admissions")
    body = assert_problem(response, 500, "internal-error")
    text = json.dumps(body)
    assert "psycopg" not in text and "10.0.0.5" not in text and "Traceback" not in text
    assert "nothing was saved" in body["detail"]


def test_a_declined_admission_problem_carries_its_reasons(nurse):
    body = assert_problem(nurse.post("/api/v1/admissions", json=referral(sadq=45)), 422,
                          "admission-declined")
    assert body["title"] and body["detail"]
    assert body["reasons"][0]["code"] == "sadq_over_limit"
    assert isinstance(body["referral_id"], int)


def test_the_openapi_document_describes_every_api_route_and_the_problem_body(app, nurse):
    response = nurse.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, operations in spec["paths"].items()
                  for method in operations if method != "parameters"}
    import re

    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in ("/api/v1/openapi.json", "/api/v1/docs"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, path) in documented, (method, path)
    assert {"type", "title", "status", "detail", "errors"} <= set(
        spec["components"]["schemas"]["Problem"]["properties"])


# Found by schemathesis (tests/faults/test_fuzz.py): ids past the INTEGER range reached the
# database (PostgreSQL: "integer out of range"; SQLite: OverflowError) and answered 500.
@pytest.mark.parametrize("path", [
    "/api/v1/admissions/{id}", "/api/v1/admissions/{id}/observations", "/api/v1/orders/{id}",
    "/api/v1/escalations/{id}", "/admissions/{id}"])
@pytest.mark.parametrize("record_id", [0, 2**31 - 1, 2**31, 10**22])
def test_an_id_of_any_size_that_is_not_on_the_unit_is_a_404(nurse, path, record_id):
    response = nurse.get(path.format(id=record_id), headers={"Accept": "application/json"})
    assert response.status_code == 404, (record_id, response.get_data(as_text=True)[:300])


def test_a_page_past_the_end_is_empty_whatever_its_number(nurse, admit):
    admission = admit(nurse)
    for page in (2, 10**20):
        response = nurse.get(f"/api/v1/admissions/{admission['id']}/observations?page={page}")
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.get_json() == []


# Ids in a body have the same range as in a URL: a larger one is a 422 naming the field, not
# an overflow in the database driver (a 500 on SQLite, "integer out of range" on PostgreSQL).
@pytest.mark.parametrize("schema, field", [
    ("monitoring.schemas:RotaShiftIn", "staff_id"),
    ("medication.schemas:AdministrationIn", "scheduled_dose_id"),
    ("medication.schemas:RegisterEntryIn", "corrects_id")])
def test_an_id_in_a_body_outside_the_integer_range_is_refused(schema, field):
    import importlib

    from marshmallow import ValidationError

    module, name = schema.split(":")
    fields = getattr(importlib.import_module(module), name)().fields
    assert fields[field].deserialize(2**31 - 1) == 2**31 - 1
    for too_large in (0, 2**31, 10**22):
        with pytest.raises(ValidationError):
            fields[field].deserialize(too_large)


def test_a_rota_shift_for_staff_id_too_large_is_a_422(app, make_unit, make_staff, login):
    manager = login(make_staff(make_unit(), "manager"))
    before = row_counts(app)
    response = manager.post("/api/v1/rota", json={
        "duty": "nurse_in_charge", "staff_id": 10**22, "starts_at": "2026-12-01T08:00:00Z",
        "ends_at": "2026-12-01T20:00:00Z"}, headers={"Idempotency-Key": "rota-too-large"})
    assert "staff_id" in assert_problem(response, 422, "validation-error")["errors"]
    assert writes_between(before, row_counts(app)) == {}


# PostgreSQL cannot store NUL in text and no driver can encode an unpaired surrogate.
@pytest.mark.parametrize("name", ["Alex\u0000Example", "Alex \ud800"])
def test_text_no_database_can_store_is_a_422_naming_the_field(app, nurse, name):
    before = row_counts(app)
    raw = json.dumps(with_change("resident.name", name))  # ensure_ascii: "\u0000", "\ud800"
    response = nurse.post("/api/v1/admissions", data=raw, content_type="application/json")
    body = assert_problem(response, 422, "validation-error")
    assert "resident.name" in body["errors"], body
    assert writes_between(before, row_counts(app)) == {}


def test_nul_in_a_query_or_a_sign_in_is_a_422(app, client, nurse):
    assert "scale" in assert_problem(
        nurse.get("/api/v1/escalations?scale=ci%00wa"), 422, "validation-error")["errors"]
    assert "username" in assert_problem(client.post(
        "/api/v1/auth/login", json={"username": "nurse\u0000", "password": "p"}), 422)["errors"]
