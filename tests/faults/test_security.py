"""Security against the running server: nothing answers without a session (every route in the
app's url_map, every method), another unit's records do not exist for you (404, exactly as an id
that exists nowhere), a form post without its CSRF token is refused, and guessing passwords is
throttled (429 with Retry-After).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import PASSWORD
from tests.faults.conftest import (
    REQUEST_TIMEOUT,
    UNIT_A,
    UNIT_B,
    ciwa,
    make_app,
    new_key,
)

pytestmark = pytest.mark.faults

# The only views reachable without signing in. A new public view must be added here on purpose.
PUBLIC_ENDPOINTS = {"unit_pages.login", "unit_api.login", "static", "unit_pages.static",
                    "monitoring_pages.static", "medication_pages.static"}
NOWHERE = 987654  # an id that exists on no unit
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
FIXED_ORDER = {"kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": 20, "route": "oral"}


def _records(server, unit: str) -> dict:
    """An admission, observation, order, escalation, schedule and rota shift on ``unit``."""
    prefix = unit[-1].lower()
    nurse = server.session(f"{prefix}-nurse1")
    prescriber = server.session(f"{prefix}-doctor" if unit == UNIT_A else f"{prefix}-gp")
    manager = server.session(f"{prefix}-manager")
    admission = server.admit(nurse, f"Security Resident {unit}")
    observation = server.observe(nurse, admission["id"], "ciwa-ar", ciwa(20))   # an emergency
    assert observation["escalation"] is not None
    order = server.post(prescriber, f"/api/v1/admissions/{admission['id']}/orders", FIXED_ORDER)
    assert order.status_code == 201, order.text[:500]
    schedules = nurse.get(server.url(f"/api/v1/admissions/{admission['id']}/schedules"),
                          timeout=REQUEST_TIMEOUT).json()
    start = datetime.now(timezone.utc) + timedelta(days=1)
    shift = manager.post(server.url("/api/v1/rota"), json={
        "duty": "visiting_gp", "contact": "Out-of-hours GP service", "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=12)).isoformat()}, timeout=REQUEST_TIMEOUT)
    assert shift.status_code == 201, shift.text[:500]
    return {"admission_id": admission["id"], "observation_id": observation["id"],
            "order_id": order.json()["id"], "escalation_id": observation["escalation"]["id"],
            "schedule_id": schedules[0]["id"], "shift_id": shift.json()["id"],
            "drug": "chlordiazepoxide", "scale": "ciwa-ar", "code": "ciwa-ar", "filename": "app.css"}


@pytest.fixture(scope="module")
def wards(module_server) -> dict:
    return {UNIT_A: _records(module_server, UNIT_A), UNIT_B: _records(module_server, UNIT_B)}


@pytest.fixture(scope="module")
def url_map(module_server):
    app = make_app(module_server.database)
    rules = [(rule.rule, rule.endpoint, sorted(rule.methods - {"HEAD", "OPTIONS"}), list(rule.arguments),
              getattr(app.view_functions[rule.endpoint], "public", False)
              or rule.endpoint == "static" or rule.endpoint.endswith(".static"))
             for rule in app.url_map.iter_rules()]
    from config.extensions import db

    with app.app_context():
        db.engine.dispose()
    return rules


def _path(rule: str, values: dict) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1).split(":")[-1]
        assert name in values, f"no value for <{name}> in {rule}: add one to the test"
        return str(values[name])

    return re.sub(r"<([^>]+)>", fill, rule)


def _anonymous_with_csrf(server) -> tuple[requests.Session, str]:
    """A browser that has opened the sign-in page: an anonymous session and its CSRF token."""
    browser = requests.Session()
    page = browser.get(server.url("/login"), timeout=REQUEST_TIMEOUT)
    match = _CSRF.search(page.text)
    assert match, "no csrf_token in the sign-in form"
    return browser, match.group(1)


def _assert_unauthorized_problem(response, where: str) -> None:
    assert response.status_code == 401, (where, response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/problem+json"), where
    body = response.json()
    assert body["type"] == "/problems/unauthorized" and body["status"] == 401, (where, body)


def test_the_public_views_are_only_sign_in_and_static_files(url_map):
    public = {endpoint for _, endpoint, _, _, is_public in url_map if is_public}
    assert public == PUBLIC_ENDPOINTS


def test_every_route_refuses_a_request_without_a_session(module_server, wards, url_map):
    server, ids = module_server, wards[UNIT_A]
    observations = server.database.scalar("SELECT count(*) FROM observations")
    admissions = server.database.scalar("SELECT count(*) FROM admissions")
    checked = 0
    for rule, endpoint, methods, _, is_public in url_map:
        if is_public:
            continue
        path = _path(rule, ids)
        for method in methods:
            where = f"{method} {path}"
            if path.startswith("/api/"):
                # No cookie at all; a JSON body so that only authentication can refuse it.
                response = requests.request(method, server.url(path), allow_redirects=False,
                                            json={} if method != "GET" else None,
                                            headers={"Idempotency-Key": new_key()}, timeout=REQUEST_TIMEOUT)
                _assert_unauthorized_problem(response, where)
            elif method == "GET":
                response = requests.get(server.url(path), allow_redirects=False, timeout=REQUEST_TIMEOUT)
                assert response.status_code == 302, (where, response.status_code)
                location = urlsplit(response.headers["Location"])
                assert location.path == "/login", (where, response.headers["Location"])
                assert parse_qs(location.query).get("next") == [path], (where, response.headers["Location"])
            else:
                # A page form post: without a CSRF token it is refused before anything else...
                response = requests.post(server.url(path), data={"reason": "x"}, allow_redirects=False,
                                         timeout=REQUEST_TIMEOUT)
                assert response.status_code == 400, (where, response.status_code)
                # ...and with a valid token but no one signed in, it goes to the sign-in page
                # (which clears the session, token included: each post gets a fresh one).
                browser, token = _anonymous_with_csrf(server)
                response = browser.post(server.url(path), data={"csrf_token": token, "reason": "x"},
                                        allow_redirects=False, timeout=REQUEST_TIMEOUT)
                assert response.status_code == 302, (where, response.status_code, response.text[:300])
                assert urlsplit(response.headers["Location"]).path == "/login", where
            checked += 1
    assert checked >= 60, f"only {checked} route/method pairs checked"
    # Nothing above wrote anything.
    assert server.database.scalar("SELECT count(*) FROM observations") == observations
    assert server.database.scalar("SELECT count(*) FROM admissions") == admissions


def test_another_units_records_are_not_found(module_server, wards, url_map):
    server, theirs, ours = module_server, wards[UNIT_B], wards[UNIT_A]
    manager = server.session("a-manager")
    nurse = server.session("a-nurse1")
    doctor = server.session("a-doctor")

    def same_as_nowhere(method: str, client, path_of, body: dict | None = None) -> None:
        """Unit B's id answers 404 exactly as an id that exists nowhere (no existence oracle)."""
        replies = []
        for ids in (theirs, {key: NOWHERE for key in theirs}):
            path = path_of(ids)
            if method == "GET":
                response = client.get(server.url(path), timeout=REQUEST_TIMEOUT, allow_redirects=False)
            else:
                response = client.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT,
                                       headers={"Idempotency-Key": new_key()})
            assert response.status_code == 404, (method, path, response.status_code, response.text[:300])
            if path.startswith("/api/"):
                replies.append(response.json()["type"])
        assert len(set(replies)) <= 1, replies  # the same problem type for both

    # Every API read addressed by one of B's ids.
    gets = [rule for rule, _, methods, arguments, _ in url_map
            if rule.startswith("/api/") and "GET" in methods and
            any(name.endswith("_id") for name in arguments)]
    assert len(gets) >= 7, gets
    for rule in gets:
        same_as_nowhere("GET", manager, lambda ids, rule=rule: _path(rule, ids))
    # Every page addressed by one of B's ids.
    for rule in ("/admissions/<int:admission_id>", "/orders/<int:order_id>/give",
                 "/admissions/<int:admission_id>/observe/<scale>"):
        same_as_nowhere("GET", nurse, lambda ids, rule=rule: _path(rule, ids))
    # Writes addressed by B's ids, each with a body that would be valid on A's own records.
    writes = [
        (nurse, "/api/v1/admissions/{admission_id}/observations", {"scale": "ciwa-ar", "items": ciwa(3)}),
        (nurse, "/api/v1/admissions/{admission_id}/escalations", {"sign": "seizure"}),
        (nurse, "/api/v1/admissions/{admission_id}/discharge", {"discharge_type": "completed"}),
        (nurse, "/api/v1/observations/{observation_id}/strike", {"reason": "entered in error"}),
        (nurse, "/api/v1/orders/{order_id}/administrations", {"outcome": "given", "dose_mg": 20}),
        (doctor, "/api/v1/orders/{order_id}/stop", {"reason": "no longer needed"}),
        (doctor, "/api/v1/escalations/{escalation_id}/acknowledge", {}),
        (doctor, "/api/v1/escalations/{escalation_id}/resolve", {"outcome": "reviewed"}),
        (nurse, "/api/v1/schedules/{schedule_id}", {"max_interval_minutes": 60, "reason": "closer watch"}),
    ]
    for client, template, body in writes:
        same_as_nowhere("POST", client, lambda ids, template=template: template.format(**ids), body)
    # The same writes on A's own records are accepted (the 404s above are not a broken body).
    own = server.post(nurse, f"/api/v1/admissions/{ours['admission_id']}/observations",
                      {"scale": "ciwa-ar", "items": ciwa(3)})
    assert own.status_code == 201, own.text[:300]

    # Lists show only A's own.
    listed = manager.get(server.url("/api/v1/admissions"), timeout=REQUEST_TIMEOUT).json()
    assert theirs["admission_id"] not in {a["id"] for a in listed}
    escalations = manager.get(server.url("/api/v1/escalations"), timeout=REQUEST_TIMEOUT).json()
    assert theirs["escalation_id"] not in {e["id"] for e in escalations}
    # B's records are untouched.
    database = server.database
    assert database.scalar("SELECT status FROM admissions WHERE id = :i", i=theirs["admission_id"]) == "active"
    assert database.scalar("SELECT struck_at FROM observations WHERE id = :i", i=theirs["observation_id"]) is None
    assert database.scalar("SELECT count(*) FROM observations WHERE admission_id = :i",
                           i=theirs["admission_id"]) == 1
    assert database.scalar("SELECT status FROM medication_orders WHERE id = :i", i=theirs["order_id"]) == "active"
    assert database.scalar("SELECT count(*) FROM administrations WHERE order_id = :i", i=theirs["order_id"]) == 0
    assert database.scalar("SELECT status FROM escalations WHERE id = :i", i=theirs["escalation_id"]) == "open"


def test_form_posts_without_their_csrf_token_are_refused(module_server, wards):
    server = module_server
    # The sign-in form, with good credentials but no token: 400, and no one is signed in.
    browser, token = _anonymous_with_csrf(server)
    for data in ({"username": "a-nurse2", "password": PASSWORD},
                 {"username": "a-nurse2", "password": PASSWORD, "csrf_token": "forged"}):
        response = browser.post(server.url("/login"), data=data, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 400, (data.keys(), response.status_code)
        assert browser.get(server.url("/api/v1/auth/session"), timeout=REQUEST_TIMEOUT).status_code == 401
    # With its token the same post signs in (so the 400s above were the missing token).
    response = browser.post(server.url("/login"), data={"username": "a-nurse2", "password": PASSWORD,
                                                        "csrf_token": token},
                            allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 302, response.status_code
    assert browser.get(server.url("/api/v1/auth/session"), timeout=REQUEST_TIMEOUT).status_code == 200

    # Signed in, the admission form without its token: 400 and nothing admitted.
    form = {"name": "Forged Admission", "date_of_birth": "1980-05-17", "substances": "alcohol",
            "sadq": "20", "audit": "25", "units_per_day": "12"}
    before = server.database.scalar("SELECT count(*) FROM admissions")
    for data in (form, {**form, "csrf_token": "forged"}):
        response = browser.post(server.url("/admissions/new"), data=data, allow_redirects=False,
                                timeout=REQUEST_TIMEOUT)
        assert response.status_code == 400, response.status_code
    # A session's token does not work for another session.
    other, other_token = _anonymous_with_csrf(server)
    response = browser.post(server.url("/admissions/new"), data={**form, "csrf_token": other_token},
                            allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 400, response.status_code
    assert server.database.scalar("SELECT count(*) FROM admissions") == before
    page = browser.get(server.url("/admissions/new"), timeout=REQUEST_TIMEOUT)
    signed_token = _CSRF.search(page.text).group(1)
    response = browser.post(server.url("/admissions/new"), data={**form, "csrf_token": signed_token},
                            allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 302, (response.status_code, response.text[:300])
    assert server.database.scalar("SELECT count(*) FROM admissions") == before + 1

    # The JSON API takes the session cookie, so it refuses cross-site and non-JSON posts.
    nurse = server.session("a-nurse1")
    path = f"/api/v1/admissions/{wards[UNIT_A]['admission_id']}/observations"
    body = {"scale": "ciwa-ar", "items": ciwa(2)}
    count = "SELECT count(*) FROM observations WHERE admission_id = :a"
    before = server.database.scalar(count, a=wards[UNIT_A]["admission_id"])
    response = nurse.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT,
                          headers={"Idempotency-Key": new_key(), "Origin": "https://evil.example"})
    assert response.status_code == 403, response.status_code
    response = nurse.post(server.url(path), data="scale=ciwa-ar", timeout=REQUEST_TIMEOUT,
                          headers={"Idempotency-Key": new_key(), "Content-Type": "text/plain"})
    assert response.status_code == 415, response.status_code
    assert server.database.scalar(count, a=wards[UNIT_A]["admission_id"]) == before


def test_repeated_failed_sign_ins_are_throttled(server):
    # The defaults: 5 failures for one username in 15 minutes lock that username; 200 from one
    # address lock that address (X-Forwarded-For is not believed: TRUSTED_PROXIES=0).
    def api_login(username: str, password: str) -> requests.Response:
        return requests.post(server.url("/api/v1/auth/login"), json={"username": username, "password": password},
                             timeout=REQUEST_TIMEOUT)

    for attempt in range(5):
        response = api_login("a-nurse2", "wrong-password-123")
        _assert_unauthorized_problem(response, f"failure {attempt + 1}")
    for password in ("wrong-password-123", PASSWORD):  # now even the right password is refused
        response = api_login("a-nurse2", password)
        assert response.status_code == 429, response.status_code
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["type"] == "/problems/too-many-attempts"
        retry_after = response.headers.get("Retry-After", "")
        assert retry_after.isdigit() and 0 < int(retry_after) <= 15 * 60, retry_after
    assert api_login("a-nurse3", PASSWORD).status_code == 200  # one account's lock is not everyone's

    # The sign-in page counts the same failures and refuses the right password once locked.
    browser, token = _anonymous_with_csrf(server)
    for attempt in range(5):
        response = browser.post(server.url("/login"), data={"username": "a-nurse4", "password": "nope-nope-nope",
                                                            "csrf_token": token},
                                allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 401, (attempt, response.status_code)
    response = browser.post(server.url("/login"), data={"username": "a-nurse4", "password": PASSWORD,
                                                        "csrf_token": token},
                            allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert response.status_code in (401, 429), response.status_code
    assert "Too many failed sign-ins" in response.text
    assert browser.get(server.url("/api/v1/auth/session"), timeout=REQUEST_TIMEOUT).status_code == 401

    # The shared-address probe: the unit's tablets sit behind one NAT. 10 failures so far from
    # this address; 20 more with made-up names do not lock out a real user there ...
    import secrets

    for n in range(20):
        _assert_unauthorized_problem(api_login(f"ghost-{secrets.token_hex(4)}", "whatever-123"), f"ghost {n}")
    assert api_login("a-manager", PASSWORD).status_code == 200
    # ... and the per-address bound (200 failures in 15 minutes) still applies.
    for n in range(170):
        response = api_login(f"ghost-{secrets.token_hex(4)}", "whatever-123")
        assert response.status_code == 401, (n, response.status_code)
    response = api_login("a-manager", PASSWORD)
    assert response.status_code == 429, response.status_code
    assert response.headers.get("Retry-After", "").isdigit()
