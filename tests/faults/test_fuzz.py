"""Fuzzing the API from its own OpenAPI document (schemathesis), against the running server with
a signed-in session cookie and a fresh Idempotency-Key on every request: valid and invalid
requests to every operation, with random ids and with ids of real records. No answer may be a
5xx, and every answer must match what the document says of it (status, media type, body).

Every failure is collected (not only the first), grouped by operation and check, each with the
request that caused it as a curl command; the test fails listing them all.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import requests

from tests.faults.conftest import REQUEST_TIMEOUT, ciwa, new_key, stay_records

schemathesis = pytest.importorskip("schemathesis", minversion="4.0")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import Failure, FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.faults

EXAMPLES = 30            # per operation and kind (valid, invalid, real ids): bounded in count...
BUDGET_SECONDS = 150     # ...and in time (the whole fuzz)
# flask-smorest sends X-Pagination as JSON but documents it as a plain header schema (OpenAPI's
# "simple" style would be k,v,k,v); it is read as JSON here, then checked against that schema.
JSON_HEADERS = {"X-Pagination"}


def documented_headers(ctx, response, case) -> None:
    """Every documented response header present is valid against its schema."""
    definition = case.operation.responses.find_by_status_code(response.status_code)
    for name, header in (definition.headers if definition is not None else {}).items():
        values = response.headers.get(name.lower())
        if values is None:
            assert not header.is_required, f"required header {name} is missing"
            continue
        value = json.loads(values[0]) if name in JSON_HEADERS else values[0]
        errors = [str(error) for error in header.validator.iter_errors(value)]
        assert not errors, f"header {name}: {values[0]!r}: {errors[0]}"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, documented_headers]
# Signing out would end the fuzzing session itself.
SKIPPED = {("POST", "/api/v1/auth/logout")}
PRESCRIBING = ("/api/v1/orders",)  # operations only a doctor or GP may use fully


@dataclass
class Found:
    """One kind of failure of one operation: how often, and the first request that caused it."""

    operation: str
    check: str
    title: str
    status: int | None
    count: int = 0
    example: str = ""
    detail: str = ""


@dataclass
class Run:
    found: dict = field(default_factory=dict)
    problem_json: int = 0    # errors sent as application/problem+json, documented as application/json
    requests: int = 0
    statuses: dict = field(default_factory=lambda: defaultdict(int))


def _real_ids(server) -> dict:
    """Records of unit A for the fuzzer to aim at (most random ids are on no unit)."""
    nurse = server.session("a-nurse1")
    doctor = server.session("a-doctor")
    admission = server.admit(nurse, "Fuzz Resident")
    observation = server.observe(nurse, admission["id"], "ciwa-ar", ciwa(20))
    order = server.post(doctor, f"/api/v1/admissions/{admission['id']}/orders",
                        {"kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral",
                         "min_interval_minutes": 120, "max_daily_mg": 200,
                         "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}})
    assert order.status_code == 201, order.text[:300]
    schedules = nurse.get(server.url(f"/api/v1/admissions/{admission['id']}/schedules"),
                          timeout=REQUEST_TIMEOUT).json()
    return {"admission_id": admission["id"], "observation_id": observation["id"],
            "order_id": order.json()["id"], "escalation_id": observation["escalation"]["id"],
            "schedule_id": schedules[0]["id"], "shift_id": 1, "drug": "chlordiazepoxide",
            "code": "ciwa-ar",
            **stay_records(server, "FA", nurse, server.session("a-manager"), admission["id"])}


def _fuzz_operation(operation, client: requests.Session, base: str, ids: dict, run: Run,
                    deadline: float) -> None:
    names = {parameter.name for parameter in operation.path_parameters}
    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                  operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
    if names and names <= set(ids):
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.POSITIVE,
                                                path_parameters={name: ids[name] for name in names}))
    label = f"{operation.method.upper()} {operation.path}"

    for strategy in strategies:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def send(case) -> None:
            if time.monotonic() > deadline:
                return
            headers = {"Idempotency-Key": new_key()}
            try:
                response = case.call(base_url=base, session=client, headers=headers, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as error:
                _record(run, label, "transport", type(error).__name__, None, case, headers, str(error))
                return
            run.requests += 1
            run.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    _record(run, label, _check_name(failure), failure.title, response.status_code, case,
                            headers, failure.message)
            except Failure as failure:
                _record(run, label, _check_name(failure), failure.title, response.status_code, case,
                        headers, failure.message)

        try:
            send()
        except Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters or body)


def _check_name(failure: Failure) -> str:
    return ",".join(failure.checks) or type(failure).__name__


def _record(run: Run, label: str, check: str, title: str, status: int | None, case, headers: dict,
            detail: str) -> None:
    if (check == "content_type_conformance" and status is not None and status >= 400
            and "Received: application/problem+json" in detail and "Documented: application/json" in detail):
        # RFC 9457's media type for a body that is the documented (JSON) Problem schema: the
        # body itself is still checked by response_schema_conformance. Counted, reported apart.
        run.problem_json += 1
        return
    key = (label, check, title, status)
    found = run.found.get(key)
    if found is None:
        try:
            example = case.as_curl_command(headers=headers)
        except Exception as error:  # the report must not hide the failure
            example = f"(no curl: {error}) {case!r}"
        found = run.found[key] = Found(label, check, title, status, example=example, detail=detail[:1500])
    found.count += 1


def test_the_api_answers_every_fuzzed_request_as_its_document_says(server):
    ids = _real_ids(server)
    clients = {role: server.session(name) for role, name in (("manager", "a-manager"), ("doctor", "a-doctor"))}
    document = clients["manager"].get(server.url("/api/v1/openapi.json"), timeout=REQUEST_TIMEOUT)
    assert document.status_code == 200
    schema = schemathesis.openapi.from_url(server.url("/api/v1/openapi.json"),
                                           cookies=clients["manager"].cookies.get_dict(),
                                           timeout=REQUEST_TIMEOUT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40, len(operations)
    run = Run()
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    fuzzed = 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        client = clients["doctor" if operation.path.startswith(PRESCRIBING)
                         or operation.path.endswith("/orders") else "manager"]
        _fuzz_operation(operation, client, server.base, ids, run, deadline)
        fuzzed += 1
    elapsed = time.monotonic() - started
    # The session survived the fuzzing (nothing signed it out): the answers were not all 401s.
    assert clients["manager"].get(server.url("/api/v1/auth/session"), timeout=REQUEST_TIMEOUT).status_code == 200

    summary = (f"{run.requests} requests to {fuzzed} operations in {elapsed:.0f} s; statuses "
               f"{dict(sorted(run.statuses.items()))}; {run.problem_json} error replies are "
               "application/problem+json where the document says application/json")
    print("\n" + summary)
    report = []
    for found in sorted(run.found.values(), key=lambda f: (f.check != "not_a_server_error", f.operation)):
        report.append(f"- {found.operation}: {found.check} ({found.title}), status {found.status}, "
                      f"{found.count}x\n  e.g. {found.example}\n  {found.detail}")
    assert not run.found, (f"{len(run.found)} kinds of failure; {summary}\n" + "\n".join(report)
                           + "\n\nServer tracebacks:\n" + "\n\n".join(server.tracebacks()[:5]))
    assert elapsed < BUDGET_SECONDS + 30
