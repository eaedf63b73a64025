"""The migrations build the models' schema from nothing, on SQLite and on PostgreSQL, and
come down again."""
from __future__ import annotations

import logging
import os
import uuid

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
