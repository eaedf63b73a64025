"""The production app plus one bench-only route: the floor of a write through the same stack.

``gunicorn bench.floor_app:app`` serves everything ``wsgi:app`` serves, and POST /bench/floor:
the same sign-in check (session lookup, role), the same engine and SQLite pragmas (BEGIN
IMMEDIATE, synchronous=FULL) or PostgreSQL pool, one row inserted in one transaction through
``config.db.unit_of_work``. Nothing else: no schema, no idempotency key, no audit event. The
observation write divided by this floor says how much the observation's own work costs.

The table lives in its own MetaData, so the app's tables and migrations never see it; the
benchmark creates it (``FLOOR_METADATA.create_all``) before gunicorn starts.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import sqlalchemy as sa  # noqa: E402
from flask import jsonify  # noqa: E402

from config.app import create_app  # noqa: E402
from config.clock import now  # noqa: E402
from config.db import UTCDateTime, unit_of_work  # noqa: E402
from config.extensions import csrf, db  # noqa: E402
from unit.auth import ALL_ROLES, current_staff, roles_required  # noqa: E402

FLOOR_METADATA = sa.MetaData()
floor_rows = sa.Table(
    "bench_floor_rows", FLOOR_METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("staff_id", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)


@unit_of_work
def insert_floor_row(staff_id: int, at) -> int:
    """One bare row in one transaction."""
    return db.session.execute(
        sa.insert(floor_rows).values(staff_id=staff_id, at=at).returning(floor_rows.c.id)).scalar_one()


def add_floor_route(app) -> None:
    """Register POST /bench/floor (signed in, any role; JSON like the API, so no CSRF form)."""

    @roles_required(ALL_ROLES)
    def bench_floor():
        row_id = insert_floor_row(current_staff().id, now())
        return jsonify({"id": row_id}), 201

    app.add_url_rule("/bench/floor", "bench_floor", bench_floor, methods=["POST"])
    csrf.exempt(bench_floor)


def build_app():
    """The app as ``wsgi:app`` builds it (settings from the environment), plus the floor route."""
    built = create_app()
    add_floor_route(built)
    return built


def __getattr__(name: str):
    # ``app`` is built on first access (gunicorn's getattr), so that the bench process can
    # import FLOOR_METADATA without building an app from its own environment.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)
