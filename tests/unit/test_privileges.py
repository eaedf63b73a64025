"""PostgreSQL least privilege: the app connects as a role that owns no table (``detox_app``,
made by scripts/test.sh), granted by ``flask db grant``. It may not TRUNCATE a table, ALTER
one, switch a trigger off or skip the triggers for its session, nor UPDATE or DELETE a row of
an append-only table (the audit log, the controlled-drug register, the eMAR); and the whole app
still works as that role.

The tables here are made by the test suite's own role (a superuser, as the migrations' owner
would be in production).
"""
from __future__ import annotations

import os
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import PASSWORD, TEST_DATABASE_URL, referral

pytestmark = pytest.mark.skipif(not (TEST_DATABASE_URL or "").startswith("postgresql"),
                                reason="PostgreSQL only: SQLite has no roles")

APP_ROLE = os.environ.get("TEST_APP_ROLE", "detox_app")
APP_ROLE_PASSWORD = os.environ.get("TEST_APP_ROLE_PASSWORD", "detox_app")


@pytest.fixture
def app_role_url(app) -> str:
    """The test database's URL as the app's role, after `flask db grant` (as the owner)."""
    result = app.test_cli_runner().invoke(args=["db", "grant", APP_ROLE])
    assert result.exit_code == 0, (f"flask db grant {APP_ROLE} failed (scripts/test.sh creates "
                                   f"the role):\n{result.output}")
    assert "no TRUNCATE, no ALTER" in result.output
    url = sa.engine.make_url(TEST_DATABASE_URL).set(username=APP_ROLE, password=APP_ROLE_PASSWORD)
    return url.render_as_string(hide_password=False)


def as_app_role(url: str, sql: str) -> None:
    """Run one statement as the app's role (raises what PostgreSQL refuses)."""
    parts = sa.engine.make_url(url)
    with psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username,
                         password=parts.password, dbname=parts.database, connect_timeout=10) as conn:
        conn.execute(sql)
        conn.rollback()


@pytest.mark.parametrize("sql", [
    "TRUNCATE observations",
    "TRUNCATE audit_events CASCADE",
    "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "ALTER TABLE observations ADD COLUMN forged integer",
    "DROP TABLE cd_register_entries",
    "SET session_replication_role = replica",
    "UPDATE audit_events SET action = 'x'",
    "DELETE FROM audit_events",
    "UPDATE cd_register_entries SET amount_mg = 0",
    "DELETE FROM cd_register_entries",
    "UPDATE administrations SET dose_mg = 0",
    "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), 1)",
])
def test_the_app_role_may_not_truncate_alter_or_rewrite_the_record(app_role_url, sql):
    """HAZ-052: TRUNCATE, ALTER TABLE ... DISABLE TRIGGER and rewriting append-only rows are
    refused to the role the app connects as."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app_role(app_role_url, sql)


def test_the_app_role_reads_and_writes_what_the_app_needs(app_role_url):
    as_app_role(app_role_url, "SELECT count(*) FROM observations")
    as_app_role(app_role_url, "UPDATE observations SET note = note WHERE false")
    as_app_role(app_role_url, "DELETE FROM idempotency_keys WHERE false")
    as_app_role(app_role_url, "SELECT nextval(pg_get_serial_sequence('observations', 'id'))")


def test_grant_refuses_a_superuser_and_is_idempotent(app, app_role_url):
    runner = app.test_cli_runner()
    superuser = sa.engine.make_url(TEST_DATABASE_URL).username
    refused = runner.invoke(args=["db", "grant", superuser])
    assert refused.exit_code != 0 and "superuser" in refused.output
    assert runner.invoke(args=["db", "grant", APP_ROLE]).exit_code == 0
    assert runner.invoke(args=["db", "grant", "no_such_role_here"]).exit_code != 0


def test_the_whole_app_works_as_the_app_role(app, app_role_url, clock, make_unit, make_staff, tmp_path):
    """Admission, observations, a strike, an order, a witnessed controlled dose with its
    register entry, a stock check, an escalation acknowledged, every scheduler job, the audit
    verification and anchor: all as the app's role."""
    from config.app import create_app
    from config.jobs import run_job
    from config.scheduler import jobs
    from config.settings import TestingConfig
    from tests.items import ciwa, NEWS2_ZERO

    code = make_unit(model="medically_managed")
    names = {role: make_staff(code, role.rstrip("2"), email=f"{role}@unit.test") for role in
             ("nurse", "nurse2", "doctor", "manager")}
    limited = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=app_role_url, CLOCK=clock)
    limited.test_client_class = app.test_client_class
    clients = {}
    for role, name in names.items():
        clients[role] = limited.test_client()
        assert clients[role].post("/api/v1/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200

    def post(role, url, body, status=201):
        response = clients[role].post(url, json=body)
        assert response.status_code == status, (url, response.get_json())
        return response.get_json()

    try:
        admission = post("nurse", "/api/v1/admissions", referral(name="Least Privilege", substances=["opioids"]))
        first = post("nurse", f"/api/v1/admissions/{admission['id']}/observations", {"scale": "news2", "items": NEWS2_ZERO})
        post("nurse", f"/api/v1/observations/{first['id']}/strike",
             {"reason": "wrong resident", "replacement": {"items": NEWS2_ZERO}}, status=200)
        post("nurse", f"/api/v1/admissions/{admission['id']}/observations", {"scale": "ciwa-ar", "items": ciwa(22)})
        post("nurse", "/api/v1/cd-register/methadone/entries",
             {"kind": "receipt", "amount_mg": 500, "supplier": "Alliance Healthcare"})
        methadone = post("doctor", f"/api/v1/admissions/{admission['id']}/orders", {
            "kind": "induction", "drug": "methadone", "dose_mg": 20, "route": "oral",
            "min_interval_minutes": 1440, "trigger": {"scale": "cows", "min_total": 8}})
        cows = {"resting_pulse": 0, "sweating": 4, "restlessness": 5, "pupil_size": 5,
                "bone_joint_aches": 0, "runny_nose_tearing": 0, "gi_upset": 0, "tremor": 0,
                "yawning": 0, "anxiety_irritability": 0, "gooseflesh": 0}
        post("nurse", f"/api/v1/admissions/{admission['id']}/observations", {"scale": "cows", "items": cows})
        post("nurse", f"/api/v1/orders/{methadone['id']}/administrations",
             {"outcome": "given", "dose_mg": 20, "witness": {"username": names["nurse2"], "password": PASSWORD}})
        post("nurse", "/api/v1/cd-register/methadone/stock-checks",
             {"counted_mg": 470, "witness": {"username": names["nurse2"], "password": PASSWORD}})
        escalations = clients["doctor"].get("/api/v1/escalations?status=open").get_json()
        assert escalations
        post("doctor", f"/api/v1/escalations/{escalations[0]['id']}/acknowledge", {}, status=200)
        clock.advance(hours=6)
        for job in jobs():
            assert run_job(limited, job, clock()), job.name
        result = limited.test_cli_runner().invoke(args=["audit", "verify"])
        assert result.exit_code == 0, result.output
        result = limited.test_cli_runner().invoke(args=["audit", "anchor", "--out", str(tmp_path / "a")])
        assert result.exit_code == 0, result.output
    finally:
        with limited.app_context():
            db.session.remove()
            db.engine.dispose()
