"""Escalation notifications: written to the outbox in the escalation's own transaction, then
delivered by the scheduler over SMTP to a real server (aiosmtpd on 127.0.0.1) started here.
Nothing lost, nothing sent twice; failures back off, show on the board, survive a restart.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.app import create_app
from config.db import unit_of_work
from config.extensions import db
from monitoring.outbox import OutboxMessage, deliver_due
from config.settings import TestingConfig
from tests.monitoring.escalation_support import (
    NEWS2_HIGH_14,
    SMTPServer,
    ciwa,
    escalation_rows,
    free_port,
    observe,
    outbox_rows,
)

FAILING = 'data-testid="delivery-failing"'


@pytest.fixture
def smtp_port(app) -> int:
    """A free port on 127.0.0.1, set as the app's SMTP server (nothing listens there yet)."""
    port = free_port()
    app.config.update(MAIL_HOST="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False, MAIL_USE_SSL=False,
                      MAIL_USERNAME="", MAIL_TIMEOUT=5)
    return port


@pytest.fixture
def smtp(smtp_port):
    """smtp() -> a real SMTP server started on the app's MAIL_PORT; stopped after the test."""
    servers = []

    def start() -> SMTPServer:
        servers.append(SMTPServer(smtp_port).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def deliver(app, at) -> dict:
    with app.app_context():
        return deliver_due(at)


def board_html(ward) -> str:
    response = ward.nurse.get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- queued with the escalation ---------------------------------------------------------------

def test_escalation_queues_its_message_in_the_same_transaction(app, ward, smtp, clock):
    server = smtp()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))["escalation"]

    (message,) = outbox_rows(app, escalation["id"])
    assert message.recipient_address == ward.email("gp")   # routed to the visiting GP
    assert (message.status, message.attempts) == ("pending", 0)
    assert message.created_at == message.next_attempt_at == clock.now
    assert message.subject.startswith("[URGENT]") and "CIWA-Ar 17" in message.subject
    assert server.handler.envelopes == []   # queued, not sent: the scheduler sends


def test_rolled_back_escalation_queues_nothing(app, ward, smtp):
    from monitoring import services
    from unit.models import Staff

    server = smtp()
    admission = ward.admit()

    class Abandoned(Exception):
        pass

    @unit_of_work
    def record_then_fail(nurse, now):
        recorded = services.record_observation(nurse, admission["id"], scale="news2", items=NEWS2_HIGH_14,
                                               observed_at=None, note=None, now=now)
        assert recorded.escalation is not None   # raised and queued inside the transaction
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1
        raise Abandoned

    with app.app_context():
        nurse = db.session.scalar(sa.select(Staff).where(Staff.username == ward.usernames["nurse"]))
        with pytest.raises(Abandoned):
            record_then_fail(nurse, app.config["CLOCK"]())
    assert escalation_rows(app, admission["id"]) == []
    assert outbox_rows(app) == []
    assert deliver(app, app.config["CLOCK"]() + timedelta(minutes=1)) == {"sent": 0, "failed": 0}
    assert server.handler.envelopes == []


# --- delivered once -------------------------------------------------------------------------

def test_deliver_due_sends_each_message_exactly_once(app, ward, smtp, clock):
    server = smtp()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]

    assert deliver(app, clock.now) == {"sent": 1, "failed": 0}
    assert server.handler.recipients() == [ward.email("gp")]
    (email,) = server.handler.messages
    assert email["To"] == ward.email("gp")
    assert email["Subject"].startswith("[EMERGENCY]")
    assert "999" in email.get_payload()
    (row,) = outbox_rows(app, escalation["id"])
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, clock.now, None)

    for later in (clock.now, clock.now + timedelta(minutes=1), clock.now + timedelta(hours=2)):
        assert deliver(app, later) == {"sent": 0, "failed": 0}
    assert len(server.handler.envelopes) == 1


def test_a_resend_carries_the_same_message_id(app, ward, smtp, clock):
    """If the 'sent' commit is lost after the SMTP server took the message, the retry must be
    recognisable as the same message (the outbox promises a stable Message-ID)."""
    server = smtp()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    assert deliver(app, clock.now)["sent"] == 1
    with app.app_context():   # as if the commit after sending had never happened
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.ref_id == escalation["id"])
                           .values(status="pending", sent_at=None))
        db.session.commit()
    # The claim scheduled the next attempt (30 s) before sending: that is when it goes again.
    assert deliver(app, clock.now + timedelta(seconds=15))["sent"] == 0
    assert deliver(app, clock.now + timedelta(seconds=31))["sent"] == 1
    first, second = server.handler.messages
    assert first["Message-ID"] and first["Message-ID"] == second["Message-ID"]


# --- SMTP down, then back -------------------------------------------------------------------

def test_smtp_down_backs_off_shows_on_the_board_and_recovers(app, ward, smtp, clock):
    t0 = clock.now
    first, second = ward.admit(), ward.admit()
    emergency = observe(ward.nurse, first["id"], "news2", NEWS2_HIGH_14)["escalation"]
    urgent = observe(ward.nurse, second["id"], "ciwa-ar", ciwa(18))["escalation"]
    queued = outbox_rows(app)
    assert len(queued) == 2 and {m.ref_id for m in queued} == {emergency["id"], urgent["id"]}

    # Attempt 1 at t0: refused (nothing listens). Retried after 30 s, then 1 min, then 2 min.
    assert deliver(app, t0) == {"sent": 0, "failed": 2}
    for row in outbox_rows(app):
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at == t0 + timedelta(seconds=30)
        assert row.last_error
    assert deliver(app, t0 + timedelta(seconds=29)) == {"sent": 0, "failed": 0}   # not due yet
    assert FAILING not in board_html(ward)

    assert deliver(app, t0 + timedelta(seconds=30)) == {"sent": 0, "failed": 2}
    assert {(r.attempts, r.next_attempt_at) for r in outbox_rows(app)} == {(2, t0 + timedelta(seconds=90))}
    assert FAILING not in board_html(ward)   # two failures: not yet an alarm

    clock.set(t0 + timedelta(seconds=90))
    assert deliver(app, clock.now) == {"sent": 0, "failed": 2}
    assert {(r.attempts, r.next_attempt_at) for r in outbox_rows(app)} == {(3, t0 + timedelta(seconds=210))}
    assert FAILING in board_html(ward)       # three failures: the board says so
    assert {r.status for r in outbox_rows(app)} == {"pending"}

    # The server comes back: each message goes out once, none lost, none twice.
    server = smtp()
    assert deliver(app, t0 + timedelta(seconds=200)) == {"sent": 0, "failed": 0}   # backing off
    clock.set(t0 + timedelta(seconds=210))
    assert deliver(app, clock.now) == {"sent": 2, "failed": 0}
    assert deliver(app, clock.now + timedelta(minutes=30)) == {"sent": 0, "failed": 0}
    assert sorted(server.handler.recipients()) == [ward.email("gp")] * 2
    subjects = sorted(m["Subject"] for m in server.handler.messages)
    assert subjects == sorted(m.subject for m in queued)
    assert len({m["Message-ID"] for m in server.handler.messages}) == 2
    assert {(r.status, r.attempts) for r in outbox_rows(app)} == {("sent", 4)}
    assert FAILING not in board_html(ward)


def test_backoff_is_capped(app, ward, smtp_port, clock):
    admission = ward.admit()
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))
    at = clock.now
    waits = []
    for _ in range(8):
        assert deliver(app, at)["failed"] == 1
        (row,) = outbox_rows(app)
        waits.append(row.next_attempt_at - at)
        at = row.next_attempt_at
    assert waits[:5] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
    assert waits[5:] == [timedelta(minutes=15)] * 3
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts) == ("pending", 8)


def test_restart_between_failure_and_delivery_loses_nothing(app, ward, smtp, smtp_port, clock,
                                                           database_url):
    from config.jobs import SchedulerHeartbeat, run_job
    from config.scheduler import jobs

    t0 = clock.now
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "news2", NEWS2_HIGH_14)["escalation"]
    assert deliver(app, t0) == {"sent": 0, "failed": 1}

    # The process dies: its connections go; a new app object starts on the same database.
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    clock.set(t0 + timedelta(minutes=1))
    restarted = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, CLOCK=clock,
                           MAIL_HOST="127.0.0.1", MAIL_PORT=smtp_port, MAIL_TIMEOUT=5)
    try:
        server = smtp()
        (job,) = [j for j in jobs() if j.name == "deliver_notifications"]
        assert run_job(restarted, job) is True
        assert run_job(restarted, job, at=clock.now + timedelta(minutes=5)) is True
        with restarted.app_context():
            rows = list(db.session.scalars(sa.select(OutboxMessage)))
            assert [(r.ref_id, r.status, r.attempts) for r in rows] == [(escalation["id"], "sent", 2)]
            beat = db.session.get(SchedulerHeartbeat, "deliver_notifications")
            assert beat is not None and beat.last_error is None
    finally:
        with restarted.app_context():
            db.session.remove()
            db.engine.dispose()
    assert server.handler.recipients() == [ward.email("gp")]


def test_staff_without_an_address_are_not_reported_as_failing(app, make_ward, smtp, clock):
    ward = make_ward("medically_monitored", emails=False)
    server = smtp()
    admission = ward.admit()
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))
    assert deliver(app, clock.now) == {"sent": 1, "failed": 0}   # shown in the app only
    assert server.handler.envelopes == []
    assert FAILING not in board_html(ward)


def test_one_undeliverable_message_does_not_hold_up_the_others(app, ward, smtp, clock):
    """A rota contact is free text: a message to it may not even be a valid e-mail header. It
    must fail (and show) on its own, never stop the messages queued behind it."""
    from monitoring.services import flag_missed_observations

    server = smtp()
    assert ward.manager.post("/api/v1/rota", json={
        "duty": "visiting_gp", "contact": "Out-of-hours GP\nBcc: everyone@example.org",
        "starts_at": (clock.now - timedelta(hours=1)).isoformat(),
        "ends_at": (clock.now + timedelta(hours=12)).isoformat()}).status_code == 201
    admission = ward.admit()
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))        # to the contact, queued first
    clock.advance(minutes=20)
    with app.app_context():
        flag_missed_observations(clock.now)                           # to the nurse, queued after
    assert len(outbox_rows(app)) == 2

    counts = deliver(app, clock.now)
    assert counts == {"sent": 1, "failed": 1}
    assert server.handler.recipients() == [ward.email("nurse")]
    # It cannot be built as an e-mail: failed for good at the first attempt and on the board at
    # once (issue 15), never retried in silence.
    (bad,) = [r for r in outbox_rows(app) if r.status != "sent"]
    assert (bad.status, bad.attempts) == ("failed", 1)
    assert bad.last_error.startswith("cannot be built as an e-mail")
    assert FAILING in board_html(ward)
    for seconds in (30, 90, 210, 3600):
        assert deliver(app, clock.now + timedelta(seconds=seconds)) == {"sent": 0, "failed": 0}
    assert [(r.status, r.attempts) for r in outbox_rows(app) if r.id == bad.id] == [("failed", 1)]
    assert server.handler.recipients() == [ward.email("nurse")]


def test_an_emergency_with_a_multi_line_note_reaches_the_smtp_server(app, ward, smtp, clock):
    """Issue 15: a nurse's note with line breaks is part of the escalation's reason; the
    e-mail's Subject holds it on one line (the body keeps it whole) and the message goes out."""
    server = smtp()
    admission = ward.admit()
    note = "Tonic-clonic, 2 minutes.\r\nBuccal midazolam given.\n\nNow drowsy;\u2028recovery position"
    response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/escalations",
                               json={"sign": "seizure", "note": note})
    assert response.status_code == 201, response.get_json()
    (queued,) = outbox_rows(app, response.get_json()["id"])
    assert "\n" not in queued.subject and "\r" not in queued.subject
    assert deliver(app, clock.now) == {"sent": 1, "failed": 0}
    (message,) = server.handler.messages
    subject = message["Subject"].replace("\r\n", "")  # unfolded (RFC 5322 folds a long header)
    assert subject.startswith("[EMERGENCY]")
    assert "Tonic-clonic, 2 minutes. Buccal midazolam given. Now drowsy; recovery position" in subject
    assert "Buccal midazolam given." in message.get_payload(decode=True).decode()
    assert server.handler.recipients() == [ward.email("gp")]
    assert FAILING not in board_html(ward)


def test_a_message_queued_with_a_multi_line_subject_still_goes_out(app, ward, smtp, clock):
    """A message queued before subjects were made single-line (or by any other path) is sent
    with its subject on one line, not refused for ever."""
    server = smtp()
    admission = ward.admit()
    escalation = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(16))["escalation"]
    with app.app_context():
        db.session.execute(sa.update(OutboxMessage).values(subject="[URGENT] line one\nline two"))
        db.session.commit()
    assert deliver(app, clock.now) == {"sent": 1, "failed": 0}
    assert [m["Subject"] for m in server.handler.messages] == ["[URGENT] line one line two"]
    assert outbox_rows(app, escalation["id"])[0].status == "sent"


def test_subjects_are_one_line_and_cut_at_a_word():
    from monitoring.outbox import SUBJECT_LENGTH, one_line

    assert one_line("a\r\nb\tc\x00d\u2028e   f") == "a b c d e f"
    long = one_line("word " * 100)
    assert len(long) <= SUBJECT_LENGTH and long.endswith("word\u2026")
