"""``flask --app wsgi db grant ROLE``: the database role the app connects as, with only the
privileges it needs (PostgreSQL).

Migrations run as the role that owns the tables; the app connects as another role that owns
nothing. A table's owner (or a superuser) may TRUNCATE it, ALTER it, and DISABLE its
triggers (the one that keeps audit_events append-only among them); the app's role may do none
of these. It may read and write rows, except that tables declared append-only by their model
(``__append_only__ = True``: the audit log, the controlled-drug register, the eMAR, ...) take
no UPDATE and no DELETE from it at all. Run it after every ``db upgrade`` (a new table needs
its grant); it is idempotent: the role's table privileges are reset, then granted.
"""
from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from config.extensions import db

ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY_PRIVILEGES = "SELECT, INSERT"


def append_only_tables() -> set[str]:
    """The tables whose models declare them append-only."""
    return {mapper.class_.__table__.name for mapper in db.Model.registry.mappers
            if mapper.class_.__dict__.get("__append_only__")}


def grant_app_role(connection: sa.Connection, role: str) -> dict[str, str]:
    """Reset and grant the app role's privileges on every table and sequence of the current
    schema; returns each table's privileges. Refuses a superuser or a role owning a table."""
    found = connection.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"),
                               {"role": role}).first()
    if found is None:
        raise click.ClickException(f"There is no database role {role!r}: create it first "
                                   f"(CREATE ROLE {role} LOGIN PASSWORD '...').")
    if found.rolsuper:
        raise click.ClickException(f"{role} is a superuser: the app's role must not be one.")
    schema = connection.scalar(sa.text("SELECT current_schema()"))
    tables = list(connection.scalars(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = :schema ORDER BY tablename"), {"schema": schema}))
    owned = list(connection.scalars(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = :schema AND tableowner = :role"),
        {"schema": schema, "role": role}))
    if owned:
        raise click.ClickException(f"{role} owns {', '.join(owned)}: the tables must belong to the "
                                   "role that runs the migrations, not to the app's.")
    quoted_role = connection.dialect.identifier_preparer.quote(role)
    quoted_schema = connection.dialect.identifier_preparer.quote(schema)
    database = connection.dialect.identifier_preparer.quote(connection.scalar(sa.text("SELECT current_database()")))
    connection.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {quoted_role}")
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quoted_schema} TO {quoted_role}")
    connection.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quoted_schema} FROM {quoted_role}")
    connection.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {quoted_schema} FROM {quoted_role}")
    append_only = append_only_tables()
    granted = {}
    for table in tables:
        if table == "alembic_version":
            privileges = "SELECT"  # which revision is in force; changed by migrations only
        else:
            privileges = APPEND_ONLY_PRIVILEGES if table in append_only else ROW_PRIVILEGES
        quoted = connection.dialect.identifier_preparer.quote(table)
        connection.exec_driver_sql(f"GRANT {privileges} ON {quoted_schema}.{quoted} TO {quoted_role}")
        granted[table] = privileges
    # nextval() for the ids (insert_rows draws them first); never setval or ALTER.
    connection.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted_schema} TO {quoted_role}")
    return granted


@click.command("grant")
@click.argument("role")
@with_appcontext
def grant_command(role: str) -> None:
    """Grant the app's database ROLE what it needs, and nothing more (PostgreSQL; run as the
    tables' owner, after every upgrade)."""
    if db.engine.dialect.name != "postgresql":
        click.echo("SQLite has no roles: nothing to grant.")
        return
    with db.engine.begin() as connection:
        granted = grant_app_role(connection, role)
    append_only = sorted(table for table, privileges in granted.items() if privileges == APPEND_ONLY_PRIVILEGES)
    click.echo(f"{role}: {ROW_PRIVILEGES} on {len(granted) - len(append_only) - ('alembic_version' in granted)} "
               f"tables; {APPEND_ONLY_PRIVILEGES} only on the append-only {', '.join(append_only)}; "
               "no TRUNCATE, no ALTER, no trigger changes.")
    sys.stdout.flush()
