"""The migrations build the models' schema from nothing, on SQLite and on PostgreSQL, and
come down again."""
from __future__ import annotations

import logging
import os
import uuid
from datetime import date

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from config.app import create_app
from config.db import utcnow
from config.extensions import db
from config.settings import TestingConfig

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

# migrations/env.py is Flask-Migrate's template, which still tries db.get_engine() first.
pytestmark = pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")


@pytest.fixture
def keep_logging():
    # alembic.ini's fileConfig() reconfigures logging and disables existing loggers; put the
    # test process's logging back as it was for the tests that follow.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {name: logger.disabled for name, logger in logging.root.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.disabled = disabled.get(name, False)


@pytest.fixture
def empty_database(tmp_path):
    """A URL of an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    schema = f"mig_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(TEST_DATABASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{TEST_DATABASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _differences(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                           "compare_server_default": True})
    return compare_metadata(context, db.metadata)


def _user_tables(connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_to_head_matches_the_models_and_downgrades(empty_database, keep_logging):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                assert _user_tables(conn) == set()
            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert _user_tables(conn) == {t.name for t in db.metadata.sorted_tables}
                assert _differences(conn) == []
                if conn.dialect.name == "postgresql":
                    triggers = conn.exec_driver_sql(
                        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass "
                        "AND NOT tgisinternal").scalars().all()
                    assert triggers == ["audit_events_append_only"]

            flask_migrate.downgrade(revision="base")
            with db.engine.connect() as conn:
                assert _user_tables(conn) == set()
                if conn.dialect.name == "postgresql":
                    functions = conn.exec_driver_sql(
                        "SELECT proname FROM pg_proc JOIN pg_namespace n ON n.oid = pronamespace "
                        "WHERE nspname = current_schema()").scalars().all()
                    assert functions == []

            # And up again: a downgrade leaves nothing behind that blocks the next upgrade.
            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert _differences(conn) == []
        finally:
            db.session.remove()
            db.engine.dispose()


def test_the_migrated_audit_table_is_append_only_on_postgresql(empty_database, keep_logging):
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL only: SQLite has no such trigger (the hash chain covers it)")
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            flask_migrate.upgrade()
            from unit import services

            services.create_unit("MIG", "Migrated", "medically_monitored", now=utcnow())
            for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                    db.session.execute(sa.text(statement))
                db.session.rollback()
        finally:
            db.session.remove()
            db.engine.dispose()


def test_revision_files_are_date_prefixed_and_form_one_line():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    directory = os.path.join(os.path.dirname(__file__), "..", "..", "migrations")
    config = Config(os.path.join(directory, "alembic.ini"))
    config.set_main_option("script_location", directory)
    scripts = ScriptDirectory.from_config(config)
    assert len(scripts.get_heads()) == 1
    for name in os.listdir(os.path.join(directory, "versions")):
        if name.endswith(".py"):
            assert name[:8].isdigit() and name[8] == "_", name


def test_status_code_is_not_null_and_a_legacy_key_without_a_reply_keeps_the_key_taken(
        empty_database, keep_logging):
    """3a9662c5d950: a key stored without a reply (status_code NULL, from before replies were
    stored with the key) is given a 409 "outcome unknown" reply rather than deleted, so that a
    retry with it still writes nothing; the column is NOT NULL afterwards."""
    from config.idempotency import KEY_LIFETIME, fingerprint_of
    from tests.conftest import PASSWORD, referral
    from tests.unit.helpers import assert_problem
    from unit import services
    from unit.models import Admission, Unit

    keys = sa.table("idempotency_keys", *(sa.column(name) for name in (
        "unit_id", "key", "fingerprint", "status_code", "created_at", "expires_at")),
        sa.column("response", sa.JSON()))
    body = referral(name="Legacy Retry")
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            flask_migrate.upgrade(revision="02179ee8484e")
            at = utcnow()
            services.create_unit("MIG", "Migrated", "medically_monitored", now=at)
            services.create_staff(unit_code="MIG", username="nurse1", role="nurse",
                                  password=PASSWORD, full_name="Nurse One", email=None, now=at,
                                  min_password_length=8)
            db.session.commit()
            unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == "MIG"))
            timestamps = {"created_at": at, "expires_at": at + KEY_LIFETIME}
            db.session.execute(keys.insert(), [
                # Legacy: claimed for this very admission request, no reply kept.
                {"unit_id": unit_id, "key": "legacy",
                 "fingerprint": fingerprint_of("POST", "/api/v1/admissions", body),
                 "status_code": None, "response": None, **timestamps},
                {"unit_id": unit_id, "key": "stored", "fingerprint": "f" * 64,
                 "status_code": 201, "response": {"id": 7}, **timestamps},
            ])
            db.session.commit()
            db.session.remove()

            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                columns = {c["name"]: c for c in sa.inspect(conn).get_columns("idempotency_keys")}
                assert columns["status_code"]["nullable"] is False
                rows = {row.key: row for row in conn.execute(
                    sa.select(keys.c.key, keys.c.status_code, keys.c.response))}
            assert set(rows) == {"legacy", "stored"}  # nothing deleted
            assert (rows["stored"].status_code, rows["stored"].response) == (201, {"id": 7})
            assert rows["legacy"].status_code == 409
            assert rows["legacy"].response["status"] == 409
            assert rows["legacy"].response["type"] == "/problems/idempotency-outcome-unknown"

            # A NULL status_code is refused by the database from now on.
            with pytest.raises(sa.exc.IntegrityError):
                with db.engine.begin() as conn:
                    conn.execute(keys.insert(), {"unit_id": unit_id, "key": "new",
                                                 "fingerprint": "0" * 64, "status_code": None,
                                                 **timestamps})

            # The retry the legacy key was for replays the 409 and admits no one (the key is
            # still taken); the same key with another body is still refused as reused.
            client = app.test_client()
            assert client.post("/api/v1/auth/login", json={
                "username": "nurse1", "password": PASSWORD}).status_code == 200
            replay = client.post("/api/v1/admissions", json=body,
                                 headers={"Idempotency-Key": "legacy"})
            assert_problem(replay, 409, "idempotency-outcome-unknown")
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert_problem(client.post("/api/v1/admissions", json=referral(name="Someone Else"),
                                       headers={"Idempotency-Key": "legacy"}),
                           422, "idempotency-key-reused")
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Admission)) == 0
            db.session.remove()

            # Down again: the column takes NULL; the reply given above stays.
            flask_migrate.downgrade(revision="02179ee8484e")
            with db.engine.connect() as conn:
                columns = {c["name"]: c for c in sa.inspect(conn).get_columns("idempotency_keys")}
                assert columns["status_code"]["nullable"] is True
                assert conn.scalar(sa.select(keys.c.status_code)
                                   .where(keys.c.key == "legacy")) == 409
        finally:
            db.session.remove()
            db.engine.dispose()


def test_protocol_proposals_migration_keeps_every_row_and_allows_the_clinical_lead(
        empty_database, keep_logging):
    """59f9ec9e2443: staff, a protocol version, a referral and its admission made before are
    kept (SQLite copies the staff and referrals tables to change them, foreign keys off and
    checked); the old version has no approver; a clinical lead can be created afterwards."""
    from tests.conftest import PASSWORD
    from unit import services
    from unit.models import Unit

    protocols = sa.table("unit_protocols", *(sa.column(name) for name in (
        "unit_id", "version", "reason", "created_by_id", "created_at")), sa.column("settings", sa.JSON()))
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            flask_migrate.upgrade(revision="3a9662c5d950")
            at = utcnow()
            services.create_unit("MIG", "Migrated", "medically_monitored", now=at)
            manager = services.create_staff(unit_code="MIG", username="boss", role="manager",
                                            password=PASSWORD, full_name="Boss", email=None, now=at,
                                            min_password_length=8)
            db.session.commit()
            unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == "MIG"))
            manager_id = db.session.scalar(sa.text("SELECT id FROM staff WHERE username = 'boss'"))
            db.session.execute(protocols.insert(), {
                "unit_id": unit_id, "version": 1, "reason": "Before sign-off", "created_by_id": manager_id,
                "created_at": at, "settings": {"monitoring": {"not_done_retry_minutes": 20}}})
            db.session.execute(sa.text(
                "INSERT INTO residents (unit_id, name, date_of_birth, created_at) "
                "VALUES (:unit, 'Kept Person', :dob, :at)"), {"unit": unit_id, "dob": date(1970, 1, 1), "at": at})
            resident_id = db.session.scalar(sa.text("SELECT id FROM residents"))
            referral = sa.table("referrals", *(sa.column(name) for name in (
                "unit_id", "unit_model", "decision", "recommended_setting", "decided_at", "decided_by_id")),
                *(sa.column(name, sa.JSON()) for name in (
                    "resident_snapshot", "substances", "assessment", "reasons", "flags", "recommended_reasons")))
            db.session.execute(referral.insert(), {
                "unit_id": unit_id, "unit_model": "medically_monitored", "decision": "admitted",
                "recommended_setting": "community", "decided_at": at, "decided_by_id": manager_id,
                "resident_snapshot": {"name": "Kept Person"}, "substances": ["alcohol"], "assessment": {},
                "reasons": [], "flags": [], "recommended_reasons": []})
            referral_id = db.session.scalar(sa.text("SELECT id FROM referrals"))
            admissions = sa.table("admissions", *(sa.column(name) for name in (
                "unit_id", "resident_id", "referral_id", "status", "high_risk", "admitted_at",
                "admitted_by_id")), sa.column("substances", sa.JSON()))
            db.session.execute(admissions.insert(), {
                "unit_id": unit_id, "resident_id": resident_id, "referral_id": referral_id, "status": "active",
                "high_risk": False, "admitted_at": at, "admitted_by_id": manager_id, "substances": ["alcohol"]})
            db.session.commit()
            db.session.remove()
            del manager

            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert conn.scalar(sa.text("SELECT count(*) FROM staff")) == 1
                assert tuple(conn.execute(sa.text(
                    "SELECT a.referral_id, r.previous_decline_id, a.override_reason FROM admissions a "
                    "JOIN referrals r ON r.id = a.referral_id")).one()) == (referral_id, None, None)
                row = conn.execute(sa.text("SELECT version, approved_by_id FROM unit_protocols")).one()
                assert tuple(row) == (1, None)
                if conn.dialect.name == "sqlite":
                    assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                    assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            services.create_staff(unit_code="MIG", username="lead", role="clinical_lead",
                                  password=PASSWORD, full_name="Dr Lead", email=None, now=utcnow(),
                                  min_password_length=8)
            db.session.commit()
            assert db.session.scalar(sa.text("SELECT role FROM staff WHERE username = 'lead'")) == "clinical_lead"
        finally:
            db.session.remove()
            db.engine.dispose()


def test_the_migrated_outbox_takes_a_failed_message(empty_database, keep_logging):
    """Issue 15: migration 7e3f1a2b9c60 lets an outbox message be 'failed' (cannot be built as
    an e-mail), still refuses any other status, and its downgrade returns failed to pending."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            flask_migrate.upgrade()
            from unit import services

            unit = services.create_unit("MIG", "Migrated", "medically_monitored", now=utcnow())
            insert = sa.text("INSERT INTO outbox_messages (unit_id, dedup_key, subject, body, status, attempts, "
                             "next_attempt_at, created_at) VALUES (:u, :k, 's', 'b', :s, 1, :t, :t)")
            db.session.execute(insert, {"u": unit.id, "k": "a", "s": "failed", "t": utcnow()})
            db.session.commit()
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(insert, {"u": unit.id, "k": "b", "s": "lost", "t": utcnow()})
                db.session.commit()
            db.session.rollback()
            db.session.remove()
            flask_migrate.downgrade(revision="5c1e2d7a9b40")
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT status FROM outbox_messages").scalars().all() == ["pending"]
            flask_migrate.upgrade()
        finally:
            db.session.remove()
            db.engine.dispose()
