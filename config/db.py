"""Database foundations: the declarative base, UTC timestamps, SQLite settings, unit of work."""
from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
import sqlalchemy.orm
from sqlalchemy.orm import DeclarativeBase

from config.errors import RecordedRefusal

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator):
    """A timezone-aware UTC timestamp on every engine (SQLite stores it naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is timezone.utc:  # PostgreSQL sessions are in UTC (create_app)
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base for every model, with constraint names Alembic can rely on."""

    registry = sa.orm.registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


# SQLite: durable and concurrent enough for a unit. Applied to every SQLite connection.
@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Take transaction control away from the driver so that we can emit BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed clinical record survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(connection_record.info.get('busy_timeout', 5000))}")
    cursor.close()


# Set while a unit of work runs: its SQLite transaction takes the write lock when it begins.
_writing: ContextVar[bool] = ContextVar("sqlite_writing", default=False)


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:
    # SQLite has one writer at a time. A unit of work takes the write lock up front (BEGIN
    # IMMEDIATE): a deferred read-then-write transaction fails with "database is locked" under
    # concurrent writers, while an immediate one queues on the busy timeout. Everything else
    # (sign-in checks, pages, reports) only reads: a deferred BEGIN lets those run beside a
    # writer (WAL) instead of queueing behind it.
    if conn.dialect.name == "sqlite":
        writing = _writing.get()
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
        conn.info["sqlite_writing"] = writing


def _take_write_lock(session) -> None:
    """Move a session that has only read so far into a write transaction (SQLite).

    A request reads its sign-in before its unit of work starts. The read transaction ends and
    an immediate one takes its place; what was read before is expired, so that the unit of
    work decides on what it reads under the write lock. Objects in
    ``session.info["keep_on_write"]`` (the signed-in member of staff, already checked) stay.
    """
    if not session.in_transaction() or session.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL locks rows; a session with no transaction begins immediate
    connection = session.connection()  # begins BEGIN IMMEDIATE if nothing was read yet
    if connection.info.get("sqlite_writing"):
        return
    keep = {id(obj) for obj in session.info.get("keep_on_write", ())}
    session.flush()  # nothing is pending outside a unit of work; if it were, it goes first
    connection.exec_driver_sql("COMMIT")
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    connection.info["sqlite_writing"] = True
    for obj in list(session.identity_map.values()):
        if id(obj) not in keep:
            session.expire(obj)


P = ParamSpec("P")
R = TypeVar("R")


def _session():
    from config.extensions import db

    return db.session


def unit_of_work(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` in one transaction: the outermost call commits, inner calls only flush.

    An exception rolls everything back, except a ``RecordedRefusal``: the refusal itself
    (and only what the service flushed before raising it) is committed for the audit.
    Callbacks queued with ``after_commit`` run once the commit has succeeded.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        session = _session()
        info = session.info
        if info.get("uow_depth"):
            info["uow_depth"] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                info["uow_depth"] -= 1
        info["uow_depth"] = 1
        info["after_commit"] = []
        writing = _writing.set(True)
        try:
            _take_write_lock(session())
            result = fn(*args, **kwargs)
            session.commit()
        except RecordedRefusal:
            session.commit()
            _run_after_commit(info)
            raise
        except BaseException:
            session.rollback()
            info["after_commit"] = []
            raise
        finally:
            info["uow_depth"] = 0
            _writing.reset(writing)
        _run_after_commit(info)
        return result

    return wrapper


def _run_after_commit(info: dict[str, Any]) -> None:
    callbacks, info["after_commit"] = info.get("after_commit", []), []
    for callback in callbacks:
        callback()


def after_commit(callback: Callable[[], None]) -> None:
    """Queue ``callback`` to run after the current unit of work commits (dropped on rollback)."""
    info = _session().info
    if not info.get("uow_depth"):
        raise RuntimeError("after_commit outside a unit of work")
    info["after_commit"].append(callback)


def end_transaction(session, *, close: bool = False) -> None:
    """Roll back (or close) a session; if its connection died with the database, drop it.

    With the database stopped mid-request, rolling back on the dead connection fails too;
    the transaction is gone with the connection anyway, and the reply must still be the 503
    (or the page already made), not a 500 from the cleanup.
    """
    try:
        session.close() if close else session.rollback()
    except sa.exc.OperationalError:
        session.invalidate()


def milliseconds_between(start, end, dialect: str):
    """SQL for the whole milliseconds from ``start`` to ``end`` (two timestamp columns) on this
    engine: an integer on both, so that sums and means of them are exact and round alike."""
    if dialect == "postgresql":
        return sa.cast(sa.func.round(sa.extract("epoch", end - start) * 1000), sa.BigInteger)
    # SQLite's date functions count whole milliseconds; round away the float's last bits.
    return sa.cast(sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86_400_000), sa.BigInteger)


def utc_hour(column, dialect: str):
    """SQL for the hour of the day (an integer, 0-23) of a UTC timestamp column on this engine."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("hour", sa.func.timezone("UTC", column)), sa.Integer)
    return sa.cast(sa.func.strftime("%H", column), sa.Integer)


# --- Core writes of single ORM rows (the observation write's hot path) ----------------------
# A flush through the ORM's unit of work costs several times the statement it sends. These two
# send one prebuilt Core statement and leave the session exactly as a flush would have: the
# object persistent, its columns loaded, nothing pending.

def insert_row(model: type[R], values: dict[str, Any]) -> R:
    """INSERT one row of ``model`` now and return it as a persistent object of the session.

    Every column not given takes its scalar Python default (or NULL), in the row and the
    object alike, so the object reads back nothing. A column left out whose default is made
    when inserting (a function, a server default) is refused: give its value.
    """
    from config.extensions import db

    table = model.__table__
    row = _with_defaults(table, values)
    session = db.session()
    row["id"] = session.execute(_insert_returning_id(table), row).scalar_one()
    obj = _loaded(model, row)
    session.add(obj)
    return obj


def insert_rows(model: type[R], rows: list[dict[str, Any]]) -> list[R]:
    """INSERT many rows of ``model`` now (``insert_row``'s rules for each) and return them as
    persistent objects of the session, in order: a job's bulk write (the due sweep's missed
    slots and escalations) without the unit of work's bookkeeping for each object.

    PostgreSQL: the ids are drawn from the table's sequence first, and the rows sent as one
    prepared statement each in a pipeline (one ``INSERT ... RETURNING`` of thousands of
    placeholders is parsed in Python by the driver). SQLite: each row's id is read back as it
    is inserted (SQLAlchemy then inserts one row at a time, which costs little in-process).
    """
    from config.extensions import db

    if not rows:
        return []
    table = model.__table__
    full = [_with_defaults(table, values) for values in rows]
    session = db.session()
    if session.get_bind().dialect.name == "postgresql":
        for values, id_ in zip(full, _next_ids(table, len(full))):
            values["id"] = id_
        session.connection().execute(_insert(table), full)
    else:
        ids = session.connection().execute(_insert_returning_ids_in_order(table), full).scalars()
        for values, id_ in zip(full, ids, strict=True):
            values["id"] = id_
    objects = [_loaded(model, values) for values in full]
    session.add_all(objects)
    return objects


def _loaded(model: type[R], row: dict[str, Any]) -> R:
    """An object of ``model`` holding ``row`` (every column) as if loaded from the database:
    made as the ORM's loading makes one, not by the constructor, whose attribute events cost
    more than the INSERT (a due sweep makes hundreds)."""
    obj = sa.orm.class_mapper(model).class_manager.new_instance()
    sa.orm.attributes.instance_dict(obj).update(row)
    sa.orm.make_transient_to_detached(obj)  # history reset, as for a row just loaded
    return obj


def update_row(obj: Any, **values: Any) -> None:
    """UPDATE the given columns of one persistent object's row now, and the object with it."""
    from config.extensions import db

    db.session.execute(_update_by_id(type(obj).__table__), {"row_id": obj.id, **values})
    for key, value in values.items():
        sa.orm.attributes.set_committed_value(obj, key, value)


def _with_defaults(table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every column not given at its scalar default (or NULL); a column left
    out whose default is made on insert is refused."""
    filled, made_on_insert = _column_defaults(table)
    if missing := sorted(made_on_insert - values.keys()):
        raise ValueError(f"{table.name}: {', '.join(missing)} have defaults made on insert; "
                         "give their values")
    return {**filled, **values}


@functools.cache
def _column_defaults(table: sa.Table) -> tuple[dict[str, Any], frozenset[str]]:
    """The value each non-key column takes when not given (its scalar default, else NULL),
    and the columns whose default is made on insert (a function, a server default)."""
    filled, made_on_insert = {}, set()
    for column in table.c:
        if column.primary_key:
            continue
        default = column.default
        if column.server_default is not None or (default is not None and not default.is_scalar):
            made_on_insert.add(column.key)
        else:
            filled[column.key] = default.arg if default is not None else None
    return filled, frozenset(made_on_insert)


@functools.cache
def _insert_returning_id(table: sa.Table) -> sa.Insert:
    return sa.insert(table).returning(table.c.id)


@functools.cache
def _insert(table: sa.Table) -> sa.Insert:
    return sa.insert(table)


@functools.cache
def _insert_returning_ids_in_order(table: sa.Table) -> sa.Insert:
    return sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)


def _next_ids(table: sa.Table, count: int) -> list[int]:
    """``count`` new ids from the table's sequence (PostgreSQL), in one query."""
    from config.extensions import db

    with db.session.no_autoflush:  # rows may be in the session already: not inserted yet
        return list(db.session.scalars(
            sa.select(sa.func.nextval(sa.func.pg_get_serial_sequence(table.name, "id")))
            .select_from(sa.func.generate_series(1, count))))


@functools.cache
def _update_by_id(table: sa.Table) -> sa.Update:
    # No SET clause here: it is made from the names each execution passes.
    return sa.update(table).where(table.c.id == sa.bindparam("row_id"))
