"""Database foundations: SQLite settings, UTC timestamps and the unit of work."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.db import after_commit, insert_row, insert_rows, unit_of_work, update_row
from config.errors import RecordedRefusal
from config.extensions import db
from unit.models import LoginAttempt


def attempts() -> list[str]:
    return list(db.session.scalars(sa.select(LoginAttempt.username).order_by(LoginAttempt.id)))


def add_attempt(name: str, at: datetime) -> None:
    db.session.add(LoginAttempt(username=name, ip=None, at=at, succeeded=False))
    db.session.flush()


def test_sqlite_connections_are_durable_and_checked(ctx):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite settings")
    with db.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") == 5000


def test_foreign_keys_are_enforced(ctx, clock):
    from sqlalchemy.exc import IntegrityError

    from unit.models import Staff

    db.session.add(Staff(unit_id=9999, username="orphan", full_name="Orphan", role="nurse",
                         password_hash="x", created_at=clock()))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_timestamps_come_back_in_utc_and_naive_ones_are_refused(ctx):
    at = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    unit_of_work(add_attempt)("utc", at)
    db.session.expire_all()
    stored = db.session.scalars(sa.select(LoginAttempt.at)).one()
    assert stored == at and stored.tzinfo is timezone.utc
    if db.engine.dialect.name == "postgresql":  # read as UTC as they come, with no conversion
        assert db.session.scalar(sa.text("SHOW TimeZone")) == "UTC"
    with pytest.raises(sa.exc.StatementError):
        unit_of_work(add_attempt)("naive", datetime(2026, 1, 1, 12, 0))
    assert attempts() == ["utc"]


def test_the_outermost_unit_of_work_commits_and_an_error_rolls_all_back(ctx, clock):
    calls = []

    @unit_of_work
    def inner(name):
        add_attempt(name, clock())

    @unit_of_work
    def outer(fail: bool):
        inner("first")
        after_commit(lambda: calls.append("sent"))
        inner("second")
        if fail:
            raise ValueError("boom")

    with pytest.raises(ValueError):
        outer(True)
    assert attempts() == [] and calls == []  # nothing saved, nothing sent
    outer(False)
    assert attempts() == ["first", "second"] and calls == ["sent"]


def test_a_recorded_refusal_is_kept(ctx, clock):
    @unit_of_work
    def refuse():
        add_attempt("refusal", clock())
        raise RecordedRefusal("kept for the record")

    with pytest.raises(RecordedRefusal):
        refuse()
    db.session.expire_all()
    assert attempts() == ["refusal"]


def test_after_commit_outside_a_unit_of_work_is_an_error(ctx):
    with pytest.raises(RuntimeError):
        after_commit(lambda: None)


def test_insert_row_and_update_row_leave_the_session_as_a_flush_would(ctx, clock):
    # The observation write's hot path writes its rows with prebuilt statements: the object
    # comes out persistent and loaded (reading it sends no SQL), the row holds what the object
    # says, and the transaction's end keeps or drops both together.
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0])

    @unit_of_work
    def write(fail: bool):
        row = insert_row(LoginAttempt, {"username": "core", "ip": None, "at": clock(),
                                        "succeeded": False})
        update_row(row, username="core-moved", succeeded=True)
        sent = list(statements)
        statements.clear()
        seen = (row.username, row.succeeded, row.ip, row.at)
        assert sa.inspect(row).persistent and not db.session.dirty and not db.session.new
        assert statements == []  # nothing left to load or to flush
        if fail:
            raise ValueError("boom")
        return row, sent, seen

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with pytest.raises(ValueError):
            write(True)
        assert attempts() == []
        row, sent, seen = write(False)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert sent.count("INSERT") == 1 and sent.count("UPDATE") == 1
    assert seen == ("core-moved", True, None, clock())
    db.session.expire_all()
    assert db.session.get(LoginAttempt, row.id).username == "core-moved"
    with pytest.raises(sa.exc.StatementError):  # a naive time is refused as by any write
        unit_of_work(insert_row)(LoginAttempt, {"username": "naive", "ip": None, "at":
                                                datetime(2026, 1, 1), "succeeded": False})
    assert attempts() == ["core-moved"]


def test_insert_row_fills_scalar_defaults_and_refuses_to_guess_others(ctx, make_unit, clock):
    from unit.models import Staff, Unit

    unit_id = db.session.scalars(sa.select(Unit.id).where(Unit.code == make_unit())).one()
    values = {"unit_id": unit_id, "username": "core-staff", "full_name": "Core", "role": "nurse",
              "password_hash": "x"}
    with pytest.raises(ValueError, match="created_at"):  # a callable default: give the value
        unit_of_work(insert_row)(Staff, values)
    staff = unit_of_work(insert_row)(Staff, {**values, "created_at": clock()})
    assert staff.active is True and staff.email is None
    db.session.expire_all()
    assert db.session.get(Staff, staff.id).active is True


def test_insert_rows_writes_many_rows_and_leaves_them_as_a_flush_would(ctx, clock):
    # The due sweep's bulk write: the rows are inserted at once, in order, and come back as
    # persistent, loaded objects (reading them sends no SQL). PostgreSQL draws the ids from
    # the sequence first and sends one prepared INSERT per row (no INSERT ... RETURNING of
    # thousands of placeholders, and nothing flushed early and renumbered); SQLite reads the
    # ids back from one statement.
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0])

    pending = LoginAttempt(username="pending", ip=None, at=clock(), succeeded=False)
    db.session.add(pending)  # an ORM row waiting for the flush is not flushed by insert_rows

    @unit_of_work
    def write(fail: bool):
        statements.clear()  # from here: what insert_rows sends
        rows = insert_rows(LoginAttempt, [{"username": f"bulk-{i}", "at": clock(),
                                           "succeeded": False} for i in range(3)])
        sent = list(statements)
        statements.clear()
        seen = [(row.id, row.username, row.succeeded, row.ip) for row in rows]
        assert all(sa.inspect(row).persistent for row in rows) and not db.session.dirty
        assert statements == []
        if fail:
            raise ValueError("boom")
        return seen, sent

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with pytest.raises(ValueError):
            write(True)
        assert attempts() == []  # the rollback took the rows and the pending one
        db.session.add(pending)
        seen, sent = write(False)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    if db.engine.dialect.name == "postgresql":
        assert sent == ["SELECT", "INSERT"]
    else:
        assert set(sent) == {"INSERT"}  # with RETURNING, in the rows' order
    assert [username for _, username, _, _ in seen] == ["bulk-0", "bulk-1", "bulk-2"]
    assert all(succeeded is False and ip is None for _, _, succeeded, ip in seen)  # ip: NULL
    db.session.expire_all()
    stored = {row.id: row.username for row in db.session.scalars(sa.select(LoginAttempt))}
    assert {id_: username for id_, username, _, _ in seen}.items() <= stored.items()
    assert sorted(stored.values()) == ["bulk-0", "bulk-1", "bulk-2", "pending"]
    assert insert_rows(LoginAttempt, []) == []


def test_sqlite_reads_go_on_beside_a_writer_and_writes_wait_for_it(app, team, admit, database_url):
    # Only a unit of work takes SQLite's single write lock: while another connection holds it,
    # the sign-in check and a read answer at once; a write waits for the lock, then succeeds.
    import sqlite3
    import threading
    import time

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    nurse = team().client("nurse")
    admitted = admit(nurse)
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None,
                             check_same_thread=False)  # released from a timer thread
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, holder.commit)
    try:
        started = time.monotonic()
        assert nurse.get(f"/api/v1/admissions/{admitted['id']}").status_code == 200
        assert time.monotonic() - started < 0.5  # not queued behind the writer
        release.start()
        started = time.monotonic()
        response = nurse.post(f"/api/v1/admissions/{admitted['id']}/discharge",
                              json={"discharge_type": "completed"})
        assert response.status_code == 200, response.get_json()
        assert time.monotonic() - started >= 0.9  # it waited for the lock, then wrote
    finally:
        release.cancel()
        holder.close()


def test_a_connection_lost_with_the_database_is_dropped_not_raised(ctx):
    # The database went away mid-request: ending the transaction must not fail the reply.
    from config.db import end_transaction

    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: a server-side end of the connection")
    def lose_connection() -> None:
        pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        with db.engine.connect() as other:
            assert other.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()

    lose_connection()
    with pytest.raises(sa.exc.OperationalError):
        db.session.close()  # what the cleanup did before: a 500 after the reply was made
    db.session().invalidate()
    lose_connection()
    end_transaction(db.session(), close=True)
    assert db.session.scalar(sa.text("SELECT 1")) == 1  # a fresh connection next time


def test_postgresql_sessions_are_in_utc_and_keep_the_urls_own_options():
    # The URL's options (a search_path, a statement timeout) are kept beside the UTC time zone:
    # connect_args would otherwise replace them (the migration tests name their schema so).
    import os

    from config.app import create_app
    from config.settings import TestingConfig

    base = os.environ.get("TEST_DATABASE_URL") or "postgresql+psycopg://u:p@127.0.0.1:1/nothing"
    url = f"{base}?options=-c%20statement_timeout%3D4321"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS={
        "connect_args": {"options": "-c lock_timeout=1234"}})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"] == (
        "-c statement_timeout=4321 -c lock_timeout=1234 -c TimeZone=UTC")
    if not os.environ.get("TEST_DATABASE_URL"):
        return  # no server to ask
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4321ms"
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1234ms"
                assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
        finally:
            db.engine.dispose()
