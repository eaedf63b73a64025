"""Sign-in: argon2 passwords, throttling, server-side sessions (idle and absolute expiry,
revocation), CSRF on forms and the same-origin/JSON-only rules of the API."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import PASSWORD, referral
from tests.unit.helpers import assert_problem, csrf_token, row_counts, writes_between

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def nurse_name(make_unit, make_staff):
    return make_staff(make_unit(), "nurse")


def sign_in(client, username, password=PASSWORD, **kw):
    return client.post(LOGIN, json={"username": username, "password": password}, **kw)


def signed_in(client) -> bool:
    status = client.get("/api/v1/auth/session").status_code
    assert status in (200, 401), status
    return status == 200


def set_active(app, username, active: bool):
    from unit.models import Staff

    with app.app_context():
        staff = db.session.scalars(sa.select(Staff).where(Staff.username == username)).one()
        staff.active = active
        db.session.commit()


# --- passwords and sign-in ----------------------------------------------------------------------

def test_sign_in_opens_a_session(client, nurse_name):
    response = sign_in(client, nurse_name)
    assert response.status_code == 200
    body = response.get_json()
    assert body["staff"]["username"] == nurse_name and body["staff"]["role"] == "nurse"
    assert body["expires_idle_minutes"] == 30
    assert "password" not in str(body) and "hash" not in str(body)
    assert client.get("/api/v1/auth/session").get_json()["staff"]["username"] == nurse_name


def test_the_username_is_not_case_sensitive(client, nurse_name):
    assert sign_in(client, f"  {nurse_name.upper()} ").status_code == 200


def test_passwords_are_stored_as_argon2id_hashes(app, nurse_name):
    from unit.models import Staff

    with app.app_context():
        stored = db.session.scalars(sa.select(Staff.password_hash).where(Staff.username == nurse_name)).one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_the_session_cookie_carries_only_an_opaque_token(client, nurse_name):
    response = sign_in(client, nurse_name)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert nurse_name not in cookie and "nurse" not in cookie.lower().split("session=")[1].split(";")[0]


def test_wrong_credentials_are_refused(client, nurse_name):
    unknown = assert_problem(sign_in(client, "nurse-that-is-not"), 401, "unauthorized")
    wrong = assert_problem(sign_in(client, nurse_name, "wrong-password"), 401, "unauthorized")
    # The same answer for both: the reply does not tell which usernames exist.
    assert unknown["detail"] == wrong["detail"] == "The username or password is not correct."
    assert_problem(sign_in(client, nurse_name, ""), 422, "validation-error")
    assert not signed_in(client)


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(app, client, login, nurse_name):
    session = login(nurse_name)
    set_active(app, nurse_name, False)
    assert_problem(sign_in(client, nurse_name), 401, "unauthorized")
    assert_problem(session.get("/api/v1/unit"), 401, "unauthorized")
    set_active(app, nurse_name, True)
    assert sign_in(client, nurse_name).status_code == 200


# --- throttling -------------------------------------------------------------------------------

def test_five_failures_throttle_even_the_right_password_until_the_window_passes(app, client, nurse_name, clock):
    for _ in range(5):
        assert_problem(sign_in(client, nurse_name, "wrong-password"), 401)
        clock.advance(seconds=30)
    response = sign_in(client, nurse_name)
    assert_problem(response, 429, "too-many-attempts")
    retry_after = int(response.headers["Retry-After"])
    assert retry_after > 0
    assert not signed_in(client)
    # Still refused just inside the window of the first failure ...
    clock.advance(minutes=12)
    assert sign_in(client, nurse_name).status_code == 429
    # ... and allowed once the failures have aged out of it.
    clock.advance(minutes=3)
    assert sign_in(client, nurse_name).status_code == 200
    assert signed_in(client)


def test_four_failures_do_not_throttle(client, nurse_name):
    for _ in range(4):
        sign_in(client, nurse_name, "wrong-password")
    assert sign_in(client, nurse_name).status_code == 200


def test_throttling_is_per_username(client, make_unit, make_staff):
    code = make_unit()
    victim, colleague = make_staff(code, "nurse"), make_staff(code, "nurse")
    for _ in range(5):
        sign_in(client, victim, "wrong-password")
    assert sign_in(client, victim).status_code == 429
    assert sign_in(client, colleague).status_code == 200


def test_failed_sign_ins_with_many_names_from_one_address_do_not_lock_out_a_real_user(app, nurse_name):
    """A unit's tablets share one address behind its NAT: made-up names typed there (20 in a
    few minutes) must not refuse every nurse behind it."""
    import secrets

    tablets = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    guesser, nurse = app.test_client(), app.test_client()
    for _ in range(20):
        name = f"guess-{secrets.token_hex(4)}"
        assert_problem(sign_in(guesser, name, "wrong-password", **tablets), 401, "unauthorized")
    assert sign_in(nurse, nurse_name, **tablets).status_code == 200


def test_the_per_address_bound_still_applies(app, nurse_name):
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 30
    guesser, other = app.test_client(), app.test_client()
    address = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    for n in range(30):
        assert sign_in(guesser, f"guess{n}", "wrong-password", **address).status_code == 401
    response = assert_problem(sign_in(guesser, nurse_name, **address), 429, "too-many-attempts")
    assert int(response["status"]) == 429
    # Another address is not affected.
    assert sign_in(other, nurse_name, environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200


def test_the_per_address_bound_is_200_failures_in_15_minutes_by_default(app):
    assert app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] == 200
    assert app.config["LOGIN_MAX_FAILURES"] == 5
    assert app.config["TRUSTED_PROXIES"] == 0


def _recorded_addresses(app) -> list[str]:
    from unit.models import LoginAttempt

    with app.app_context():
        return list(db.session.scalars(sa.select(LoginAttempt.ip).order_by(LoginAttempt.id)))


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app, nurse_name):
    """TRUSTED_PROXIES=0 (the default): a client naming other addresses in X-Forwarded-For is
    still counted at its own address, so it cannot step around the per-address bound."""
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 10
    client = app.test_client()
    peer = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    for n in range(10):
        sign_in(client, f"guess{n}", "wrong-password", headers={"X-Forwarded-For": f"192.0.2.{n}"}, **peer)
    assert set(_recorded_addresses(app)) == {"203.0.113.9"}
    assert sign_in(client, nurse_name, headers={"X-Forwarded-For": "192.0.2.200"}, **peer).status_code == 429


def test_x_forwarded_for_is_honoured_from_one_trusted_proxy(app, database_url, clock, nurse_name):
    """TRUSTED_PROXIES=1: the address the proxy appended is the client's (and the throttle's);
    what the client itself put in front of it is not believed."""
    from config.app import create_app
    from config.settings import TestingConfig

    proxied = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, CLOCK=clock,
                         TRUSTED_PROXIES=1, LOGIN_MAX_FAILURES_PER_ADDRESS=10)
    proxy = {"environ_base": {"REMOTE_ADDR": "10.0.0.2"}}
    client = proxied.test_client()
    for n in range(10):
        # A client forging its own X-Forwarded-For: the proxy appends the real address last.
        sign_in(client, f"guess{n}", "wrong-password",
                headers={"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.7"}, **proxy)
    assert set(_recorded_addresses(app)) == {"198.51.100.7"}
    assert sign_in(client, nurse_name, headers={"X-Forwarded-For": "198.51.100.7"}, **proxy).status_code == 429
    # Another client behind the same proxy is not affected.
    assert sign_in(client, nurse_name, headers={"X-Forwarded-For": "198.51.100.8"}, **proxy).status_code == 200
    with proxied.app_context():
        db.engine.dispose()


def test_failed_attempts_are_recorded(app, client, nurse_name):
    from unit.models import LoginAttempt

    sign_in(client, nurse_name, "wrong-password")
    sign_in(client, nurse_name)
    with app.app_context():
        attempts = db.session.execute(sa.select(LoginAttempt.username, LoginAttempt.succeeded)
                                      .order_by(LoginAttempt.id)).all()
    assert [tuple(a) for a in attempts] == [(nurse_name, False), (nurse_name, True)]


# --- sessions: idle and absolute expiry, revocation ---------------------------------------------

def test_a_session_expires_after_30_minutes_idle(login, nurse_name, clock):
    client = login(nurse_name)
    clock.advance(minutes=30)
    assert signed_in(client)  # exactly 30 minutes idle: still open
    clock.advance(minutes=30, seconds=1)
    body = assert_problem(client.get("/api/v1/unit"), 401, "unauthorized")
    assert "idle" in body["detail"]


def test_idle_expiry_counts_from_the_last_request(login, nurse_name, clock):
    client = login(nurse_name)
    clock.advance(minutes=31)
    assert not signed_in(client)

    client = login(nurse_name)
    for _ in range(4):  # 4 x 25 minutes = 100 minutes, never 30 idle
        clock.advance(minutes=25)
        assert signed_in(client)
    clock.advance(minutes=31)
    assert not signed_in(client)


def test_a_session_ends_after_12_hours_however_busy(login, nurse_name, clock):
    client = login(nurse_name)
    for _ in range(28):  # 28 x 25 minutes = 11 h 40 min
        clock.advance(minutes=25)
        assert signed_in(client)
    clock.advance(minutes=19)  # 11 h 59 min
    assert signed_in(client)
    clock.advance(minutes=2)   # 12 h 01 min
    body = assert_problem(client.get("/api/v1/unit"), 401, "unauthorized")
    assert "12-hour" in body["detail"]


def test_an_expired_page_session_redirects_to_sign_in(login, nurse_name, clock):
    client = login(nurse_name)
    assert client.get("/").status_code == 200
    clock.advance(minutes=45)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def _cookie(client) -> str:
    return client.get_cookie("session").value


def _with_cookie(app, value):
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def test_api_logout_revokes_the_session_server_side(app, login, nurse_name):
    client = login(nurse_name)
    stolen = _cookie(client)
    assert signed_in(_with_cookie(app, stolen))
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert not signed_in(client)
    # The old cookie (kept by someone else) no longer opens anything.
    assert_problem(_with_cookie(app, stolen).get("/api/v1/admissions"), 401, "unauthorized")


def test_page_logout_revokes_the_session_server_side(app, login, nurse_name):
    client = login(nurse_name)
    stolen = _cookie(client)
    response = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not signed_in(_with_cookie(app, stolen))


def test_logging_out_one_session_leaves_the_others(login, nurse_name):
    ward, office = login(nurse_name), login(nurse_name)
    ward.post("/api/v1/auth/logout")
    assert not signed_in(ward) and signed_in(office)


def test_revoke_sessions_ends_every_session_of_a_member_of_staff(app, login, nurse_name, clock):
    from unit.auth import revoke_sessions
    from unit.models import Staff

    ward, office = login(nurse_name), login(nurse_name)
    with app.app_context():
        staff = db.session.scalars(sa.select(Staff).where(Staff.username == nurse_name)).one()
        assert revoke_sessions(staff, clock()) == 2
    assert not signed_in(ward) and not signed_in(office)


def test_a_forged_or_unknown_token_is_refused(app, client, nurse_name):
    with app.test_request_context():
        from flask import session

        session["token"] = "not-a-real-token"
        forged = app.session_interface.get_signing_serializer(app).dumps(dict(session))
    assert_problem(_with_cookie(app, forged).get("/api/v1/unit"), 401, "unauthorized")


def test_signing_in_again_replaces_the_session(app, client, make_unit, make_staff):
    code = make_unit()
    first, second = make_staff(code, "nurse"), make_staff(code, "doctor")
    sign_in(client, first)
    old = _cookie(client)
    sign_in(client, second)
    assert client.get("/api/v1/auth/session").get_json()["staff"]["username"] == second
    assert _cookie(client) != old


# --- CSRF, same origin and JSON bodies ----------------------------------------------------------

def test_the_sign_in_form_needs_its_csrf_token(app, nurse_name):
    client = app.test_client()
    response = client.post("/login", data={"username": nurse_name, "password": PASSWORD})
    assert response.status_code == 400
    assert not signed_in(client)
    response = client.post("/login", data={"username": nurse_name, "password": PASSWORD,
                                           "csrf_token": "forged"})
    assert response.status_code == 400
    response = client.post("/login", data={"username": nurse_name, "password": PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert signed_in(client)


def test_a_wrong_password_on_the_form_says_so(app, nurse_name):
    client = app.test_client()
    response = client.post("/login", data={"username": nurse_name, "password": "wrong-password",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "not correct" in response.get_data(as_text=True)


def test_the_form_returns_only_to_a_path_on_this_site(app, nurse_name):
    for target, expected in (("/admissions/new", "/admissions/new"),
                             ("https://evil.example/", "/"), ("//evil.example/", "/")):
        client = app.test_client()
        response = client.post("/login", query_string={"next": target},
                               data={"username": nurse_name, "password": PASSWORD,
                                     "csrf_token": csrf_token(client)})
        assert response.status_code == 302
        assert response.headers["Location"] == expected, target


# Issue 15: values of ?next= that a browser would follow off-site, or that cannot go into a
# Location header. Every one goes to the board.
EVIL_NEXT = (
    "https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example", "/%09/evil.example",
    "/\t/evil.example", "/%0a/evil.example", "/%0d/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: x=1",
    "/%0d%0aSet-Cookie:%20x=1", "/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example",
    "/%252F%252Fevil.example", "/%25252F/evil.example", "/%00/evil.example", "/\x00", "/\x7f/x",
    "/\u2028/evil.example", "/\u200b/evil.example", "javascript:alert(1)", "evil.example",
    " /admissions/new", "http:/evil.example", "/" + "a" * 2100, "")


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_sign_in_never_redirects_off_site(app, nurse_name, target):
    client = app.test_client()
    response = client.post("/login", query_string={"next": target},
                           data={"username": nurse_name, "password": PASSWORD,
                                 "csrf_token": csrf_token(client)})
    if response.status_code == 422:  # a NUL anywhere in a request is refused before the view
        assert "\x00" in target and "Location" not in response.headers
        return
    assert response.status_code == 302, target
    assert response.headers["Location"] == "/", target


@pytest.mark.parametrize("target", ["/admissions/new", "/residents/3?tab=doses", "/report?from=2026-12-01&to=2026-12-04",
                                    "/audit?q=a%20b"])
def test_safe_next_keeps_a_path_of_this_site(app, target):
    from unit.pages import safe_next

    assert safe_next(target, "/") == target
    for evil in EVIL_NEXT:
        assert safe_next(evil, "/") == "/", evil


def test_page_forms_need_the_csrf_token(app, login, nurse_name):
    client = login(nurse_name)
    before = row_counts(app)
    response = client.post("/admissions/new", data={"name": "No Token", "date_of_birth": "1970-01-01",
                                                    "substances": "alcohol", "sadq": "10", "audit": "10"})
    assert response.status_code == 400
    assert client.post("/logout").status_code == 400
    assert writes_between(before, row_counts(app)) == {}
    assert signed_in(client)


def test_a_cross_origin_api_post_is_refused(app, login, nurse_name):
    client = login(nurse_name)
    before = row_counts(app)
    for origin in ("https://evil.example", "http://localhost:8080", "null"):
        response = client.post("/api/v1/admissions", json=referral(), headers={"Origin": origin})
        assert_problem(response, 403, "forbidden")
    assert writes_between(before, row_counts(app)) == {}
    same = client.post("/api/v1/admissions", json=referral(), headers={"Origin": "http://localhost"})
    assert same.status_code == 201


def test_an_api_post_takes_only_json(app, login, nurse_name):
    client = login(nurse_name)
    before = row_counts(app)
    for content_type, data in (("application/x-www-form-urlencoded", "name=Alex"),
                               ("text/plain", '{"resident": {}}'),
                               ("multipart/form-data; boundary=x", "--x--")):
        response = client.post("/api/v1/admissions", data=data, content_type=content_type)
        assert_problem(response, 415, "unsupported-media-type")
    assert writes_between(before, row_counts(app)) == {}


def test_the_sign_in_endpoint_is_same_origin_and_json_only_too(app, nurse_name):
    client = app.test_client()
    cross = sign_in(client, nurse_name, headers={"Origin": "https://evil.example"})
    form = client.post(LOGIN, data={"username": nurse_name, "password": PASSWORD})
    assert (cross.status_code, form.status_code) == (403, 415)


def test_security_headers(login, nurse_name):
    response = login(nurse_name).get("/api/v1/unit")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]



def test_strict_transport_security_only_where_cookies_are_https_only(app, database_url):
    """Production (HTTPS-only cookies) sends HSTS for a year with subdomains, its max-age set
    by HSTS_MAX_AGE; the test and development settings (plain HTTP) do not send it."""
    from config.app import create_app
    from config.settings import ProductionConfig

    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers
    production = create_app(ProductionConfig, SQLALCHEMY_DATABASE_URI=database_url,
                            SECRET_KEY="hsts-test", SESSION_COOKIE_SECURE=True)
    for path in ("/login", "/api/v1/auth/session", "/static/app.css"):
        response = production.test_client().get(path)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains", path
    shorter = create_app(ProductionConfig, SQLALCHEMY_DATABASE_URI=database_url,
                         SECRET_KEY="hsts-test", SESSION_COOKIE_SECURE=True, HSTS_MAX_AGE=600)
    assert shorter.test_client().get("/login").headers["Strict-Transport-Security"] == \
        "max-age=600; includeSubDomains"
    for made in (production, shorter):
        with made.app_context():
            db.engine.dispose()

# --- the password check other forms reuse (a witness's signature) -------------------------------

def test_a_password_check_for_another_purpose_shares_the_throttle_and_audits_each_failure(app, clock, make_unit, make_staff):
    """check_password_throttled: one answer for every failure (wrong password, unknown name,
    another unit, a role not taken), each failure an audit event of the checking unit, and
    the same per-username throttle as sign-in."""
    from config.db import unit_of_work
    from unit.auth import (CLINICAL_STAFF, CredentialsRefused, CredentialsThrottled,
                           check_password_throttled)
    from unit.models import AuditEvent, Staff, Unit

    code, other = make_unit(), make_unit()
    nurse, witness = make_staff(code, "nurse"), make_staff(code, "nurse")
    inspector, stranger = make_staff(code, "inspector"), make_staff(other, "manager")

    def check(username, password=PASSWORD):
        actor = db.session.scalars(sa.select(Staff).where(Staff.username == nurse)).one()
        return unit_of_work(lambda: check_password_throttled(
            username, password, address=None, now=clock(), purpose="witness",
            unit_id=actor.unit_id, roles=CLINICAL_STAFF, actor=actor))()

    with app.app_context():
        assert check(witness).username == witness
        answers = []
        for username, password in ((witness, "wrong-password"), ("nobody-here", PASSWORD),
                                   (inspector, PASSWORD), (stranger, PASSWORD)):
            with pytest.raises(CredentialsRefused) as refused:
                check(username, password)
            answers.append(refused.value.detail)
        assert len(set(answers)) == 1
        unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == code))
        refusals = db.session.scalars(sa.select(AuditEvent.after).where(
            AuditEvent.unit_id == unit_id, AuditEvent.action == "witness.refused")
            .order_by(AuditEvent.seq)).all()
        assert [event["username"] for event in refusals] == [witness, "nobody-here", inspector, stranger]
        for _ in range(4):
            with pytest.raises(CredentialsRefused):
                check(witness, "wrong-password")
        with pytest.raises(CredentialsThrottled):  # 5 failures: even the right password
            check(witness)
    # The same throttle as sign-in.
    assert_problem(sign_in(app.test_client(), witness), 429, "too-many-attempts")
