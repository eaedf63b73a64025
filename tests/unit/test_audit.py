"""The audit log: an event per write, in the write's transaction, hash-chained per unit.

On PostgreSQL the table refuses UPDATE and DELETE (a trigger); tampering is simulated there
with ``session_replication_role = replica``, which skips triggers, as a superuser could.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import audit_rows, referral
from tests.unit.helpers import ROLES, assert_problem, row_counts, unit_id_of, writes_between

UNIT_ACTIONS = {"unit.create", "staff.create", "admission.create", "referral.decline",
                "unit.model_change", "admission.discharge", "harm_reduction.update",
                "protocol.update"}


def verify(app):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code, result.output


def dialect(app) -> str:
    with app.app_context():
        return db.engine.dialect.name


def tamper(app, sql: str, **params):
    """Run raw SQL against the audit table as someone with direct database access."""
    statement = sa.text(sql)
    if "after" in params:
        statement = statement.bindparams(sa.bindparam("after", type_=sa.JSON))
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A superuser can switch triggers off for the transaction; the chain still tells.
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(statement, params)


@pytest.fixture
def busy_unit(team, admit):
    """A unit on which every kind of write has happened once."""
    staff = team("medically_monitored")
    for role in ROLES:
        staff.usernames[role]  # every member of staff first
    nurse, doctor, gp, manager = (staff.client(r) for r in ("nurse", "doctor", "gp", "manager"))
    admitted = admit(nurse, name="Audit Able")
    declined = doctor.post("/api/v1/admissions", json=referral(name="Dee Clined", sadq=40))
    assert declined.status_code == 422
    assert manager.post("/api/v1/unit/model",
                        json={"model": "medically_managed", "reason": "Doctor on site"}).status_code == 201
    assert gp.post(f"/api/v1/admissions/{admitted['id']}/discharge",
                   json={"discharge_type": "self-discharged"}).status_code == 200
    assert nurse.post(f"/api/v1/admissions/{admitted['id']}/harm-reduction",
                      json={"naloxone_offered": True}).status_code == 200
    return staff, admitted


def test_every_write_appends_an_event_with_the_actors_role(app, busy_unit):
    staff, _ = busy_unit
    rows = audit_rows(app, staff.code)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))  # no gaps
    unit_rows = [(action, role) for _, action, role in rows if action in UNIT_ACTIONS]
    assert unit_rows == [("unit.create", None)] + [("staff.create", None)] * len(ROLES) + [
        ("admission.create", "nurse"),
        ("referral.decline", "doctor"),
        ("unit.model_change", "manager"),
        ("admission.discharge", "gp"),
        ("harm_reduction.update", "nurse"),
    ]


def test_an_event_records_who_what_when_and_the_change(app, busy_unit, clock):
    from unit.models import AuditEvent, Staff

    staff, admitted = busy_unit
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.unit_id == unit_id_of(app, staff.code),
            AuditEvent.action == "admission.discharge")).one()
        gp = db.session.scalars(sa.select(Staff).where(Staff.username == staff.usernames["gp"])).one()
        assert event.actor_id == gp.id
        assert event.entity_type == "admission" and event.entity_id == str(admitted["id"])
        assert event.resident_id == admitted["resident"]["id"]
        assert event.at == clock()
        assert event.before == {"status": "active"}
        assert event.after["discharge_type"] == "self-discharged"
        assert len(event.hash) == 64 and len(event.prev_hash) == 64


@pytest.mark.parametrize("attempt", ["refused", "invalid", "conflict", "not-found"])
def test_a_failed_write_appends_nothing(app, team, admit, attempt):
    staff = team("medically_monitored")
    nurse = staff.client("nurse")
    admitted = admit(nurse, nhs_number="9434765919")
    inspector = staff.client("inspector")
    before = row_counts(app)
    if attempt == "refused":
        assert inspector.post("/api/v1/admissions", json=referral()).status_code == 403
    elif attempt == "invalid":
        assert nurse.post("/api/v1/admissions", json=referral(sadq=61)).status_code == 422
    elif attempt == "conflict":
        assert nurse.post("/api/v1/admissions", json=referral(nhs_number="9434765919")).status_code == 409
    else:
        assert nurse.post(f"/api/v1/admissions/{admitted['id'] + 99}/discharge",
                          json={"discharge_type": "completed"}).status_code == 404
    assert writes_between(before, row_counts(app)) == {}


def test_an_event_is_in_the_same_transaction_as_its_write(app, team, admit, monkeypatch):
    # If appending the event fails, the write it records is not saved either.
    from unit import services

    staff = team("medically_monitored")
    nurse = staff.client("nurse")
    admitted = admit(nurse)
    real = services.record_event

    def failing(**kw):
        real(**kw)
        raise RuntimeError("disk full while auditing")

    monkeypatch.setattr(services, "record_event", failing)
    before = row_counts(app)
    response = nurse.post(f"/api/v1/admissions/{admitted['id']}/discharge",
                          json={"discharge_type": "completed"})
    body = assert_problem(response, 500, "internal-error")
    assert "disk full" not in str(body)
    assert writes_between(before, row_counts(app)) == {}
    monkeypatch.undo()
    assert nurse.get(f"/api/v1/admissions/{admitted['id']}").get_json()["status"] == "active"


def test_verify_passes_on_an_untouched_log(app, busy_unit, team):
    staff, _ = busy_unit
    other = team("medically_managed")
    code, output = verify(app)
    assert code == 0, output
    events = len(audit_rows(app, staff.code))
    assert f"{staff.code}: OK, {events} events verified." in output
    assert f"{other.code}: OK" in output
    assert "BROKEN" not in output


def test_the_database_refuses_changes_or_the_chain_reveals_them(app, busy_unit, team):
    """Altering an event's content is refused (PostgreSQL) or detected (both engines)."""
    from unit.models import AuditEvent

    staff, _ = busy_unit
    other = team("medically_monitored")
    unit_id = unit_id_of(app, staff.code)
    seq = next(s for s, action, _ in audit_rows(app, staff.code) if action == "referral.decline")

    if dialect(app) == "postgresql":
        for statement in ("UPDATE audit_events SET action = 'x' WHERE unit_id = :u AND seq = :s",
                          "DELETE FROM audit_events WHERE unit_id = :u AND seq = :s"):
            with app.app_context():
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                    db.session.execute(sa.text(statement), {"u": unit_id, "s": seq})
                db.session.rollback()
        assert verify(app)[0] == 0  # nothing was changed

    tamper(app, 'UPDATE audit_events SET "after" = :after WHERE unit_id = :u AND seq = :s',
           after={"reasons": [], "note": "nothing to see"}, u=unit_id, s=seq)
    with app.app_context():
        assert db.session.scalars(sa.select(AuditEvent.after).where(
            AuditEvent.unit_id == unit_id, AuditEvent.seq == seq)).one() == {
                "reasons": [], "note": "nothing to see"}
    code, output = verify(app)
    assert code == 1
    assert f"{staff.code}: BROKEN at event {seq}:" in output
    assert f"{other.code}: OK" in output  # each unit's chain stands alone


def test_a_changed_actor_or_time_is_detected(app, busy_unit):
    staff, _ = busy_unit
    unit_id = unit_id_of(app, staff.code)
    seq = next(s for s, action, _ in audit_rows(app, staff.code) if action == "admission.discharge")
    tamper(app, "UPDATE audit_events SET actor_role = 'manager' WHERE unit_id = :u AND seq = :s",
           u=unit_id, s=seq)
    code, output = verify(app)
    assert code == 1 and f"BROKEN at event {seq}:" in output


def test_a_rehashed_event_breaks_the_next_link(app, busy_unit):
    from unit.audit import event_hash
    from unit.models import AuditEvent

    staff, _ = busy_unit
    unit_id = unit_id_of(app, staff.code)
    seq = 3
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.unit_id == unit_id, AuditEvent.seq == seq)).one()
        event.after = {**event.after, "role": "manager"}
        forged = event_hash(event)
        db.session.rollback()
    tamper(app, 'UPDATE audit_events SET "after" = :after, hash = :h WHERE unit_id = :u AND seq = :s',
           after={**_after(app, unit_id, seq), "role": "manager"}, h=forged, u=unit_id, s=seq)
    code, output = verify(app)
    assert code == 1 and f"BROKEN at event {seq + 1}:" in output


def _after(app, unit_id, seq):
    from unit.models import AuditEvent

    with app.app_context():
        return db.session.scalars(sa.select(AuditEvent.after).where(
            AuditEvent.unit_id == unit_id, AuditEvent.seq == seq)).one()


def test_a_deleted_last_event_is_detected(app, busy_unit):
    staff, _ = busy_unit
    unit_id = unit_id_of(app, staff.code)
    last = audit_rows(app, staff.code)[-1][0]
    tamper(app, "DELETE FROM audit_events WHERE unit_id = :u AND seq = :s", u=unit_id, s=last)
    code, output = verify(app)
    assert code == 1
    assert f"{staff.code}: BROKEN at event {last}:" in output
    assert "removed from the end" in output


def test_a_deleted_middle_event_is_detected(app, busy_unit):
    staff, _ = busy_unit
    unit_id = unit_id_of(app, staff.code)
    tamper(app, "DELETE FROM audit_events WHERE unit_id = :u AND seq = 4", u=unit_id)
    code, output = verify(app)
    assert code == 1
    assert f"{staff.code}: BROKEN at event 4: event 4 is missing" in output


def test_the_chain_holds_whatever_offset_the_callers_clock_has(app, ctx):
    # Services take `now` from their caller; an aware time in another offset is the same instant.
    from unit import services
    from unit.audit import verify_chain

    plus_one = timezone(timedelta(hours=1))
    unit = services.create_unit("TZ", "Offset unit", "medically_monitored",
                                now=datetime(2026, 6, 1, 12, 0, tzinfo=plus_one))
    services.create_staff(unit_code="TZ", username="tz-nurse", role="nurse", password="long-enough-pw",
                          full_name="Tz", email=None, min_password_length=8,
                          now=datetime(2026, 6, 1, 6, 0, tzinfo=timezone(timedelta(hours=-7))))
    db.session.expire_all()
    report = verify_chain(unit)
    assert report.verified, report
    assert report.events == 2


def test_the_chain_head_advances_with_each_event(app, busy_unit):
    from unit.models import AuditChainHead, AuditEvent

    staff, _ = busy_unit
    unit_id = unit_id_of(app, staff.code)
    with app.app_context():
        head = db.session.get(AuditChainHead, unit_id)
        last = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.unit_id == unit_id)
                                  .order_by(AuditEvent.seq.desc()).limit(1)).one()
        assert (head.seq, head.hash) == (last.seq, last.hash)
        first = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.unit_id == unit_id, AuditEvent.seq == 1)).one()
        assert first.prev_hash == "0" * 64


def test_events_are_chained_at_commit_per_unit_in_the_order_recorded(app, ctx):
    # One transaction recording on two units, interleaved: each unit's chain takes its own
    # events, in order, after what was there; a rolled-back transaction leaves no trace.
    from config.db import unit_of_work
    from unit import services
    from unit.audit import record_event, verify_chain
    from unit.models import AuditChainHead, AuditEvent

    at = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    first = services.create_unit("CA", "Chain A", "medically_monitored", now=at)
    second = services.create_unit("CB", "Chain B", "medically_managed", now=at)
    ids = (first.id, second.id)

    @unit_of_work
    def interleaved(fail: bool) -> None:
        for n in range(3):
            for unit_id in reversed(ids):
                record_event(unit_id=unit_id, actor=None, action=f"test.step{n}",
                             entity_type="test", entity_id=n, now=at)
        if fail:
            raise RuntimeError("rolled back")

    interleaved(False)
    heads_before = {h.unit_id: (h.seq, h.hash) for h in db.session.scalars(sa.select(AuditChainHead))}
    with pytest.raises(RuntimeError):
        interleaved(True)
    db.session.expire_all()
    assert {h.unit_id: (h.seq, h.hash) for h in db.session.scalars(sa.select(AuditChainHead))} == heads_before
    for unit, unit_id in zip((first, second), ids):
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.unit_id == unit_id)
                                    .order_by(AuditEvent.seq)).all()
        assert [e.action for e in events] == ["unit.create", "test.step0", "test.step1", "test.step2"]
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:]))
        assert heads_before[unit_id] == (4, events[-1].hash)
        assert verify_chain(unit).verified


def test_single_event_transactions_hash_as_python_does(app, ctx):
    # On PostgreSQL a transaction with one event is appended in one statement, its hash made by
    # the database: it must hash exactly the bytes that verification hashes in Python, also for
    # text beyond ASCII, quotes, escapes, nulls and other offsets, and move the head with it.
    from config.db import unit_of_work
    from unit import services
    from unit.audit import event_hash, record_event, verify_chain
    from unit.models import AuditChainHead, AuditEvent

    at = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    unit = services.create_unit("CS", "Chain single", "medically_monitored", now=at)
    contents = [
        {"note": "café, naïve, Łódź, 日本語, emoji 🙂", "n": 1},
        {"quote": 'say "hi"', "slash": "a\\b", "tab": "x\ty", "newline": "l1\nl2"},
        None,
        {"nested": {"b": [1, 2.5, None, True], "a": "ß"}},
    ]
    for index, after in enumerate(contents):
        unit_of_work(record_event)(
            unit_id=unit.id, actor=None, action="test.single", entity_type="test",
            entity_id=f"é{index}", resident_id=None, after=after, before={"i": index},
            now=at.astimezone(timezone(timedelta(hours=-5))) + timedelta(seconds=index))
    db.session.expire_all()
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.unit_id == unit.id)
                                .order_by(AuditEvent.seq)).all()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(event_hash(e) == e.hash for e in events)
    assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:]))
    assert [e.after for e in events[1:]] == contents
    head = db.session.get(AuditChainHead, unit.id)
    assert (head.seq, head.hash) == (5, events[-1].hash)
    assert verify_chain(unit).verified

    # A unit without a chain head loses no event silently: the write fails.
    db.session.execute(sa.delete(AuditChainHead).where(AuditChainHead.unit_id == unit.id))
    db.session.commit()
    with pytest.raises((RuntimeError, KeyError)):
        unit_of_work(record_event)(unit_id=unit.id, actor=None, action="test.lost",
                                   entity_type="test", entity_id=1, now=at)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.unit_id == unit.id)) == 5
