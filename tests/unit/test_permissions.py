"""Who may call what: one literal table over every route, checked for every role.

A route that is not in the table fails ``test_every_route_is_in_the_table``: add its row (and
decide who may call it) when adding the route.
"""
from __future__ import annotations

import itertools
import re

import pytest

from tests.conftest import PASSWORD, referral
from tests.unit.helpers import ROLES, assert_problem, csrf_token, row_counts

EVERYONE = frozenset(ROLES)
CLINICAL = frozenset({"nurse", "doctor", "gp", "manager", "clinical_lead"})
MANAGER = frozenset({"manager"})
CLINICAL_LEAD = frozenset({"clinical_lead"})
PRESCRIBERS = frozenset({"doctor", "gp", "clinical_lead"})
AUDITORS = frozenset({"manager", "inspector"})
NURSES = frozenset({"nurse", "manager"})
PUBLIC = "public"  # reachable without signing in (sign-in itself)

# (method, rule) -> who may call it. The inspector reads, and writes nothing.
PERMISSIONS: dict[tuple[str, str], frozenset | str] = {
    # sign-in and the session (JSON API)
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): EVERYONE,
    ("GET", "/api/v1/auth/session"): EVERYONE,
    # the unit and its care model
    ("GET", "/api/v1/unit"): EVERYONE,
    ("POST", "/api/v1/unit/model"): MANAGER,
    ("GET", "/api/v1/unit/protocol"): EVERYONE,
    ("POST", "/api/v1/unit/protocol"): MANAGER,
    ("GET", "/api/v1/unit/protocol/proposals"): EVERYONE,
    ("GET", "/api/v1/unit/protocol/proposals/<int:proposal_id>"): EVERYONE,
    ("POST", "/api/v1/unit/protocol/proposals/<int:proposal_id>/approve"): CLINICAL_LEAD,
    ("POST", "/api/v1/unit/protocol/proposals/<int:proposal_id>/reject"): CLINICAL_LEAD,
    # referrals and admissions
    ("POST", "/api/v1/referrals/check"): CLINICAL,
    ("POST", "/api/v1/admissions"): CLINICAL,
    ("GET", "/api/v1/admissions"): EVERYONE,
    ("GET", "/api/v1/admissions/<int:admission_id>"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/discharge"): CLINICAL,
    ("POST", "/api/v1/admissions/<int:admission_id>/harm-reduction"): CLINICAL,
    ("POST", "/api/v1/admissions/<int:admission_id>/return-fields"): CLINICAL,
    # consent and information sharing
    ("GET", "/api/v1/residents/<int:resident_id>/consents"): EVERYONE,
    ("POST", "/api/v1/residents/<int:resident_id>/consents"): CLINICAL,
    ("POST", "/api/v1/consents/<int:consent_id>/withdraw"): CLINICAL,
    # the commissioners' return
    ("GET", "/api/v1/returns/ndtms"): MANAGER,
    ("GET", "/api/v1/returns/ndtms/check"): MANAGER,
    # documentation and health
    ("GET", "/api/v1/openapi.json"): EVERYONE,
    ("GET", "/api/v1/health"): EVERYONE,
    ("GET", "/api/v1/docs"): EVERYONE,
    # pages
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/"): EVERYONE,
    ("GET", "/admissions/new"): CLINICAL,
    ("POST", "/admissions/new"): CLINICAL,
    ("GET", "/admissions/<int:admission_id>"): EVERYONE,
    ("POST", "/admissions/<int:admission_id>/discharge"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/harm-reduction"): CLINICAL,
    # --- other packages: these rows restate each package's declared policy, as it stood when
    # --- the table was written; the package's owner keeps them true.
    # monitoring: scales, observations, schedules
    ("GET", "/api/v1/scales"): EVERYONE,
    ("POST", "/api/v1/scales/<code>/score"): EVERYONE,  # a calculation: saves nothing
    ("GET", "/api/v1/admissions/<int:admission_id>/observations"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/observations"): CLINICAL,
    ("POST", "/api/v1/observations/<int:observation_id>/strike"): CLINICAL,
    ("GET", "/api/v1/admissions/<int:admission_id>/schedules"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/schedules"): CLINICAL,
    ("POST", "/api/v1/schedules/<int:schedule_id>"): CLINICAL,
    ("GET", "/admissions/<int:admission_id>/observe/<scale>"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/observe/<scale>"): CLINICAL,
    ("POST", "/observations/<int:observation_id>/strike"): CLINICAL,
    # monitoring: escalations and the on-call rota
    ("GET", "/api/v1/escalations"): EVERYONE,
    ("GET", "/api/v1/escalations/<int:escalation_id>"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/escalations"): CLINICAL,
    ("POST", "/api/v1/escalations/<int:escalation_id>/acknowledge"): CLINICAL,
    ("POST", "/api/v1/escalations/<int:escalation_id>/override"): CLINICAL,
    ("POST", "/api/v1/escalations/<int:escalation_id>/resolve"): CLINICAL,
    ("GET", "/api/v1/rota"): EVERYONE,
    ("POST", "/api/v1/rota"): MANAGER,
    ("POST", "/api/v1/rota/<int:shift_id>/cancel"): MANAGER,
    ("GET", "/escalations"): EVERYONE,
    ("POST", "/escalations/<int:escalation_id>/acknowledge"): CLINICAL,
    ("POST", "/escalations/<int:escalation_id>/override"): CLINICAL,
    ("POST", "/escalations/<int:escalation_id>/resolve"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/sign"): CLINICAL,
    ("GET", "/rota"): EVERYONE,
    ("POST", "/rota"): MANAGER,
    ("POST", "/rota/<int:shift_id>/cancel"): MANAGER,
    # medication: orders, administrations, the controlled-drugs register
    ("GET", "/api/v1/admissions/<int:admission_id>/orders"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/orders"): CLINICAL,
    ("GET", "/api/v1/orders/<int:order_id>"): EVERYONE,
    ("POST", "/api/v1/orders/<int:order_id>/change"): PRESCRIBERS,
    ("POST", "/api/v1/orders/<int:order_id>/countersign"): PRESCRIBERS,
    ("POST", "/api/v1/orders/<int:order_id>/stop"): PRESCRIBERS,
    ("GET", "/api/v1/admissions/<int:admission_id>/administrations"): EVERYONE,
    ("POST", "/api/v1/orders/<int:order_id>/administrations"): CLINICAL,
    ("GET", "/api/v1/due-doses"): EVERYONE,
    ("GET", "/api/v1/cd-register/<drug>"): EVERYONE,
    ("POST", "/api/v1/cd-register/<drug>/entries"): CLINICAL,
    ("POST", "/api/v1/cd-register/<drug>/stock-checks"): CLINICAL,
    ("GET", "/doses"): EVERYONE,
    ("GET", "/cd-register/<drug>"): EVERYONE,
    ("GET", "/orders/<int:order_id>/give"): CLINICAL,
    ("POST", "/orders/<int:order_id>/give"): CLINICAL,
    # FHIR R4 (read-only; everyone reads, the inspector every unit; consent scopes narrow)
    ("GET", "/fhir/R4/metadata"): EVERYONE,
    ("GET", "/fhir/R4/<name>"): EVERYONE,
    ("GET", "/fhir/R4/<name>/<ident>"): EVERYONE,
    ("GET", "/fhir/R4/Patient/<ident>/$everything"): EVERYONE,
    # beds, the waiting list and the census
    ("GET", "/api/v1/beds"): EVERYONE,
    ("POST", "/api/v1/beds"): MANAGER,
    ("POST", "/api/v1/beds/<int:bed_id>/close"): MANAGER,
    ("POST", "/api/v1/admissions/<int:admission_id>/bed"): CLINICAL,
    ("POST", "/api/v1/admissions/<int:admission_id>/expected-discharge"): CLINICAL,
    ("GET", "/api/v1/waiting-list"): EVERYONE,
    ("POST", "/api/v1/waiting-list"): CLINICAL,
    ("GET", "/api/v1/waiting-list/<int:planned_id>"): EVERYONE,
    ("POST", "/api/v1/waiting-list/<int:planned_id>/admit"): CLINICAL,
    ("POST", "/api/v1/waiting-list/<int:planned_id>/cancel"): CLINICAL,
    ("GET", "/api/v1/census"): EVERYONE,
    ("GET", "/api/v1/census/daily"): EVERYONE,
    ("GET", "/beds"): EVERYONE,
    ("POST", "/beds/new"): MANAGER,
    ("POST", "/beds/<int:bed_id>/close"): MANAGER,
    ("GET", "/waiting-list/new"): CLINICAL,
    ("POST", "/waiting-list/new"): CLINICAL,
    ("POST", "/waiting-list/<int:planned_id>/admit"): CLINICAL,
    ("POST", "/waiting-list/<int:planned_id>/cancel"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/bed"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/expected-discharge"): CLINICAL,
    # incidents
    ("POST", "/api/v1/incidents"): CLINICAL,
    ("GET", "/api/v1/incidents"): EVERYONE,
    ("GET", "/api/v1/incidents/<int:incident_id>"): EVERYONE,
    ("POST", "/api/v1/incidents/<int:incident_id>/links"): CLINICAL,
    ("POST", "/api/v1/incidents/<int:incident_id>/review"): MANAGER,
    ("POST", "/api/v1/incidents/<int:incident_id>/notification"): MANAGER,
    ("GET", "/incidents"): EVERYONE,
    ("GET", "/incidents/new"): CLINICAL,
    ("POST", "/incidents/new"): CLINICAL,
    ("GET", "/incidents/<int:incident_id>"): EVERYONE,
    ("POST", "/incidents/<int:incident_id>/review"): MANAGER,
    ("POST", "/incidents/<int:incident_id>/notification"): MANAGER,
    ("POST", "/incidents/<int:incident_id>/links"): CLINICAL,
    # drug and breath screens
    ("POST", "/api/v1/admissions/<int:admission_id>/screens"): CLINICAL,
    ("GET", "/api/v1/admissions/<int:admission_id>/screens"): EVERYONE,
    ("GET", "/api/v1/screens/<int:screen_id>"): EVERYONE,
    ("POST", "/admissions/<int:admission_id>/screens"): CLINICAL,
    # the discharge summary, its letter and the follow-ups
    ("GET", "/api/v1/admissions/<int:admission_id>/discharge-summary"): EVERYONE,
    ("POST", "/api/v1/admissions/<int:admission_id>/discharge-summary"): CLINICAL,
    ("POST", "/api/v1/admissions/<int:admission_id>/discharge-summary/finalise"): CLINICAL,
    ("GET", "/api/v1/admissions/<int:admission_id>/discharge-summary/letter"): EVERYONE,
    ("GET", "/api/v1/follow-ups"): EVERYONE,
    ("POST", "/api/v1/follow-ups/<int:task_id>/done"): CLINICAL,
    ("GET", "/admissions/<int:admission_id>/discharge-summary"): EVERYONE,
    ("POST", "/admissions/<int:admission_id>/discharge-summary"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/discharge-summary/finalise"): CLINICAL,
    ("POST", "/follow-ups/<int:task_id>/done"): CLINICAL,
    # the shift handover
    ("POST", "/api/v1/handovers"): CLINICAL,
    ("GET", "/api/v1/handovers"): EVERYONE,
    ("GET", "/api/v1/handovers/<int:handover_id>"): EVERYONE,
    ("POST", "/api/v1/handovers/<int:handover_id>/entries/<int:entry_id>"): CLINICAL,
    ("GET", "/api/v1/handovers/<int:handover_id>/entries/<int:entry_id>/revisions"): EVERYONE,
    ("POST", "/api/v1/handovers/<int:handover_id>/refresh"): CLINICAL,
    ("POST", "/api/v1/handovers/<int:handover_id>/sign"): NURSES,
    ("POST", "/api/v1/handovers/<int:handover_id>/acknowledge"): NURSES,
    ("GET", "/handovers"): EVERYONE,
    ("POST", "/handovers/new"): CLINICAL,
    ("GET", "/handovers/<int:handover_id>"): EVERYONE,
    ("GET", "/handovers/<int:handover_id>/print"): EVERYONE,
    ("POST", "/handovers/<int:handover_id>/entries/<int:entry_id>"): CLINICAL,
    ("POST", "/handovers/<int:handover_id>/refresh"): CLINICAL,
    ("POST", "/handovers/<int:handover_id>/sign"): NURSES,
    ("POST", "/handovers/<int:handover_id>/acknowledge"): NURSES,
    # leave
    ("POST", "/api/v1/admissions/<int:admission_id>/leave"): CLINICAL,
    ("GET", "/api/v1/admissions/<int:admission_id>/leave"): EVERYONE,
    ("GET", "/api/v1/leave/<int:leave_id>"): EVERYONE,
    ("POST", "/api/v1/leave/<int:leave_id>/return"): CLINICAL,
    ("POST", "/api/v1/leave/<int:leave_id>/extend"): CLINICAL,
    ("POST", "/admissions/<int:admission_id>/leave"): CLINICAL,
    ("POST", "/leave/<int:leave_id>/return"): CLINICAL,
    ("POST", "/leave/<int:leave_id>/extend"): CLINICAL,
    # the inspection report and the audit log
    ("GET", "/api/v1/audit/events"): AUDITORS,
    ("GET", "/api/v1/audit/report"): AUDITORS,
    ("GET", "/audit/log"): AUDITORS,
    ("GET", "/audit/report"): AUDITORS,
}

# What an allowed role gets back when the request is well-formed (unit package routes).
SUCCESS = {
    ("POST", "/api/v1/auth/login"): 200,
    ("POST", "/api/v1/auth/logout"): 204,
    ("GET", "/api/v1/auth/session"): 200,
    ("GET", "/api/v1/unit"): 200,
    ("POST", "/api/v1/unit/model"): 201,
    ("GET", "/api/v1/unit/protocol"): 200,
    ("POST", "/api/v1/unit/protocol"): 202,
    ("GET", "/api/v1/unit/protocol/proposals"): 200,
    ("GET", "/api/v1/unit/protocol/proposals/<int:proposal_id>"): 200,
    ("POST", "/api/v1/unit/protocol/proposals/<int:proposal_id>/approve"): 201,
    ("POST", "/api/v1/unit/protocol/proposals/<int:proposal_id>/reject"): 200,
    ("POST", "/api/v1/referrals/check"): 200,
    ("POST", "/api/v1/admissions"): 201,
    ("GET", "/api/v1/admissions"): 200,
    ("GET", "/api/v1/admissions/<int:admission_id>"): 200,
    ("POST", "/api/v1/admissions/<int:admission_id>/discharge"): 200,
    ("POST", "/api/v1/admissions/<int:admission_id>/harm-reduction"): 200,
    ("GET", "/api/v1/openapi.json"): 200,
    ("GET", "/api/v1/docs"): 200,
    ("GET", "/login"): 200,
    ("POST", "/login"): 302,
    ("POST", "/logout"): 302,
    ("GET", "/"): 200,
    ("GET", "/admissions/new"): 200,
    ("POST", "/admissions/new"): 302,
    ("GET", "/admissions/<int:admission_id>"): 200,
    ("POST", "/admissions/<int:admission_id>/discharge"): 302,
    ("POST", "/admissions/<int:admission_id>/harm-reduction"): 302,
}

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app) -> set[tuple[str, str]]:
    return {(method, rule.rule)
            for rule in app.url_map.iter_rules()
            if rule.endpoint != "static" and not rule.endpoint.endswith(".static")  # static files
            for method in rule.methods - IGNORED_METHODS}


def test_every_route_is_in_the_table(app):
    missing = routes(app) - set(PERMISSIONS)
    assert not missing, f"routes without a row in PERMISSIONS: {sorted(missing)}"


def test_every_row_of_the_table_is_a_route(app):
    stale = set(PERMISSIONS) - routes(app)
    assert not stale, f"rows of PERMISSIONS that are no route: {sorted(stale)}"


def test_the_inspector_writes_nothing():
    # Sign-in, sign-out and the scoring calculator are the only POSTs an inspector may make.
    reads_only = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout"),
                  ("POST", "/login"), ("POST", "/logout"), ("POST", "/api/v1/scales/<code>/score")}
    writes = [key for key, roles in PERMISSIONS.items()
              if key[0] != "GET" and key not in reads_only]
    assert writes
    assert [key for key in writes if "inspector" in PERMISSIONS[key]] == []


# --- every (route, role) pair over HTTP ----------------------------------------------------------

class Scene:
    """A unit with a member of staff per role and admissions to act on."""

    def __init__(self, app, team, admit):
        self.app = app
        self.staff = team("medically_monitored")
        self.clients = self.staff.clients()
        self.nurse = self.clients["nurse"]
        self._admit = admit
        self._names = itertools.count(1)
        self.any_admission = self.admission()

    def admission(self, *, self_discharged: bool = False) -> int:
        admission = self._admit(self.nurse, name=f"Resident {next(self._names)}")
        if self_discharged:
            response = self.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                                       json={"discharge_type": "self-discharged"})
            assert response.status_code == 200
        return admission["id"]

    def proposal(self) -> int:
        """A new protocol proposal of the unit (awaiting the clinical lead)."""
        response = self.clients["manager"].post("/api/v1/unit/protocol", json={
            "section": "monitoring", "values": {"not_done_retry_minutes": 25}, "reason": "Local"})
        assert response.status_code == 202, response.get_json()
        return response.get_json()["proposal"]["id"]

    def path_for(self, method: str, rule: str) -> str:
        admission_id = self.any_admission
        if rule.endswith("/discharge"):
            admission_id = self.admission()
        elif rule.endswith("/harm-reduction"):
            admission_id = self.admission(self_discharged=True)
        values = {"admission_id": admission_id, "code": "ciwa-ar", "scale": "ciwa-ar", "drug": "diazepam",
                  "name": "Patient"}
        if "<int:proposal_id>" in rule:
            values["proposal_id"] = self.proposal()

        def fill(match):
            name = match.group(2)
            return str(values.get(name, 1))

        return re.sub(r"<(?:(\w+):)?(\w+)>", fill, rule)


def prepare(scene: Scene, method: str, rule: str, role: str | None):
    """A well-formed request to the route as ``role`` (None: without a session), ready to send.

    Whatever the request needs (an admission, a session, a CSRF token) is made here, so that
    sending it is the only thing that can write.
    """
    app = scene.app
    if role is None:
        client = app.test_client()
    elif rule in ("/api/v1/auth/logout", "/logout"):
        client = scene.staff.client(role)  # a session of its own: this call ends it
    else:
        client = scene.clients[role]
    path = scene.path_for(method, rule)
    username = scene.staff.usernames[role or "nurse"]
    is_api = rule.startswith("/api/")
    if method == "GET":
        return lambda: client.get(path)
    if not is_api:
        form = {"csrf_token": csrf_token(client)}
        if rule == "/login":
            form.update(username=username, password=PASSWORD)
        elif rule == "/admissions/new":
            form.update(name=f"Form {role}", date_of_birth="1975-03-02", substances="alcohol",
                        sadq="12", audit="20", units_per_day="10")
        elif rule.endswith("/discharge"):
            form.update(discharge_type="completed", confirm="yes")
        elif rule.endswith("/harm-reduction"):
            form.update(tolerance_explained="yes")
        return lambda: client.post(path, data=form)
    body: dict = {}
    if rule == "/api/v1/auth/login":
        body = {"username": username, "password": PASSWORD}
    elif rule == "/api/v1/unit/model":
        body = {"model": "medically_managed", "reason": "Doctor on site"}
    elif rule == "/api/v1/unit/protocol":
        body = {"section": "monitoring", "values": {"not_done_retry_minutes": 20},
                "reason": "Local protocol"}
    elif rule in ("/api/v1/referrals/check", "/api/v1/admissions"):
        body = referral(name=f"Api {role}")
    elif rule.endswith("/reject"):
        body = {"reason": "Not yet: discuss at the governance meeting"}
    elif rule.endswith("/discharge"):
        body = {"discharge_type": "completed"}
    elif rule.endswith("/harm-reduction"):
        body = {"naloxone_offered": True}
    headers = {"Idempotency-Key": f"permissions-{role}-{path}"}
    if rule in ("/api/v1/auth/logout",) or rule.endswith("/approve"):
        return lambda: client.post(path, headers=headers)
    return lambda: client.post(path, json=body, headers=headers)


@pytest.fixture
def scene(app, team, admit):
    return Scene(app, team, admit)


def test_each_role_is_allowed_or_refused_as_the_table_says(app, scene):
    """Every (route, role): an allowed role is not refused, any other gets 403 and writes nothing."""
    wrong = []
    for (method, rule), allowed in sorted(PERMISSIONS.items()):
        for role in ROLES:
            send = prepare(scene, method, rule, role)
            before = row_counts(app)["audit_events"]
            response = send()
            status = response.status_code
            if allowed == PUBLIC or role in allowed:
                expected = SUCCESS.get((method, rule))
                if status in (401, 403) or status >= 500 or (expected and status != expected):
                    wrong.append((method, rule, role, "allowed", status,
                                  response.get_data(as_text=True)[:150]))
                continue
            if status != 403:
                wrong.append((method, rule, role, "refused", status, response.get_data(as_text=True)[:150]))
            elif rule.startswith("/api/") and response.mimetype != "application/problem+json":
                wrong.append((method, rule, role, "403 is not a problem body", status, ""))
            if row_counts(app)["audit_events"] != before:
                wrong.append((method, rule, role, "refused but wrote", status, ""))
    assert wrong == []


def test_without_a_session_the_api_says_401_and_pages_redirect_to_sign_in(app, scene):
    for method, rule in sorted(key for key, allowed in PERMISSIONS.items() if allowed != PUBLIC):
        send = prepare(scene, method, rule, None)
        before = row_counts(app)
        response = send()
        if rule.startswith("/api/"):
            assert_problem(response, 401, "unauthorized")
        elif rule.startswith("/fhir/"):
            assert response.status_code == 401, (method, rule, response.status_code)
            assert response.get_json()["resourceType"] == "OperationOutcome", (method, rule)
        else:
            assert response.status_code == 302, (method, rule, response.status_code)
            assert response.headers["Location"].startswith("/login"), (method, rule)
        assert row_counts(app) == before, (method, rule)


def test_the_sign_in_pages_are_reachable_without_a_session(client):
    assert client.get("/login").status_code == 200
    assert_problem(client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"}),
                   401, "unauthorized")


def test_a_page_redirect_remembers_where_the_user_was_going(client):
    response = client.get("/admissions/new")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admissions/new"


def test_a_client_that_asks_for_json_gets_a_problem_from_a_page(client):
    response = client.get("/", headers={"Accept": "application/json"})
    assert_problem(response, 401, "unauthorized")
