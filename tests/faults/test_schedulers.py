"""Scheduler faults. Two scheduler processes by mistake (two threads, each with its own app and
database session, running every job as ``flask --app wsgi scheduler tick`` does) must still
record each missed slot once and re-escalate each escalation once; and after the scheduler was
down for two hours, one sweep finds every slot missed meanwhile.

What is due is worked out here from the rules (docs/clinical-rules.md s2: missed after a grace of 15 min
for intervals up to an hour, 30 min for longer ones; s3: unacknowledged escalations go one level
up, at most to level 3, and are due again one target later), never read from the code under test.
"""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, referral
from tests.faults.conftest import NEWS2_ZERO, TEST_DATABASE_URL, ciwa, make_app, new_key

pytestmark = pytest.mark.faults

TARGETS = {"emergency": 5, "urgent": 30, "soon": 120}  # docs/clinical-rules.md s3, minutes to acknowledge
TOP_LEVEL = 3                                           # the routed duty, second on call, lead


def grace(interval_minutes: int) -> int:
    return 15 if interval_minutes <= 60 else 30


@dataclass(frozen=True)
class Schedule:
    id: int
    interval: int
    next_due_at: datetime
    missed_through: datetime | None
    active: bool


@dataclass(frozen=True)
class Open:
    id: int
    level: int
    severity: str
    escalate_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def schedules(app) -> list[Schedule]:
    from config.extensions import db
    from monitoring.models import ObservationSchedule

    with app.app_context():
        rows = db.session.scalars(sa.select(ObservationSchedule).order_by(ObservationSchedule.id)).all()
        found = [Schedule(s.id, s.interval_minutes, _utc(s.next_due_at), _utc(s.missed_through), s.active)
                 for s in rows]
        db.session.remove()
    return found


def expected_missed(found: list[Schedule], at: datetime) -> set[tuple[int, datetime]]:
    """Every (schedule, due time) past its grace at ``at`` with nothing recorded, by the rules."""
    missed = set()
    for schedule in found:
        if not schedule.active:
            continue
        step = timedelta(minutes=schedule.interval)
        slot = schedule.next_due_at if schedule.missed_through is None else schedule.missed_through + step
        for _ in range(1000):  # bounded: two hours of hourly slots is two
            if slot + timedelta(minutes=grace(schedule.interval)) >= at:
                break
            missed.add((schedule.id, slot))
            slot += step
    return missed


def missed_rows(app) -> list[tuple[int, datetime]]:
    from config.extensions import db
    from monitoring.models import MissedObservation

    with app.app_context():
        rows = [(m.schedule_id, _utc(m.due_at)) for m in db.session.scalars(sa.select(MissedObservation))]
        db.session.remove()
    return rows


def open_escalations(app) -> list[Open]:
    from config.extensions import db
    from monitoring.models import Escalation

    with app.app_context():
        rows = [Open(e.id, e.level, e.severity, _utc(e.escalate_at)) for e in db.session.scalars(
            sa.select(Escalation).where(Escalation.status == "open").order_by(Escalation.id))]
        db.session.remove()
    return rows


def step_counts(app, kind: str) -> Counter:
    from config.extensions import db
    from monitoring.models import EscalationStep

    with app.app_context():
        counts = Counter(db.session.scalars(sa.select(EscalationStep.escalation_id)
                                            .where(EscalationStep.kind == kind)))
        db.session.remove()
    return counts


def audit_count(app, action: str) -> int:
    from config.extensions import db
    from unit.models import AuditEvent

    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action == action))
        db.session.remove()
    return count


class Ward:
    """Residents admitted and observed through the API of an app built in this process."""

    def __init__(self, app) -> None:
        self.app = app
        self.clients: dict[str, object] = {}

    def client(self, username: str):
        if username not in self.clients:
            client = self.app.test_client()
            response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
            assert response.status_code == 200, response.get_json()
            self.clients[username] = client
        return self.clients[username]

    def admit(self, username: str, name: str, **kw) -> int:
        response = self.client(username).post("/api/v1/admissions", json=referral(name=name, **kw),
                                              headers={"Idempotency-Key": str(uuid.uuid4())})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    def observe(self, username: str, admission_id: int, scale: str, items: dict) -> dict:
        response = self.client(username).post(f"/api/v1/admissions/{admission_id}/observations",
                                              json={"scale": scale, "items": items},
                                              headers={"Idempotency-Key": new_key()})
        assert response.status_code == 201, response.get_json()
        return response.get_json()


def populate(app) -> dict:
    """Two units' residents with schedules of different intervals; some already scored."""
    ward = Ward(app)
    plain = [ward.admit("a-nurse1", f"Sweep Resident {i}") for i in range(4)]     # CIWA-Ar + NEWS2, hourly
    severe = ward.admit("a-nurse1", "Sweep Severe")
    ward.observe("a-nurse1", severe, "ciwa-ar", ciwa(20))     # severe: hourly; an emergency escalation
    moderate = ward.admit("a-nurse1", "Sweep Moderate")
    ward.observe("a-nurse1", moderate, "ciwa-ar", ciwa(12))   # moderate: every 2 h, grace 30
    ward.observe("a-nurse1", moderate, "news2", NEWS2_ZERO)   # NEWS2 0: every 12 h
    opioid = [ward.admit("b-nurse1", f"Sweep Opioid {i}", substances=("opioids",)) for i in range(2)]
    return {"plain": plain, "severe": severe, "moderate": moderate, "opioid": opioid}


def tick_at_once(apps: list, at: datetime) -> list[tuple[list[str], BaseException | None]]:
    """Every job once in each app, all apps starting together; per app (failed jobs, error)."""
    from config.jobs import run_job
    from config.scheduler import jobs

    barrier = threading.Barrier(len(apps))
    results: list = [None] * len(apps)

    def scheduler(index: int) -> None:
        failed: list[str] = []
        try:
            barrier.wait(timeout=60)
            for job in jobs():
                if not run_job(apps[index], job, at):
                    failed.append(job.name)
            results[index] = (failed, None)
        except BaseException as error:  # reported by the test, with the job that raised
            results[index] = (failed, error)

    threads = [threading.Thread(target=scheduler, args=(i,), daemon=True) for i in range(len(apps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a scheduler is stuck"
    return results


def dispose(*apps) -> None:
    from config.extensions import db

    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _check_round(app, results, before, at) -> dict:
    before_schedules, before_open, steps_before, rows_before = before
    for failed, error in results:
        assert error is None, f"a scheduler raised {type(error).__name__}: {error}"
        assert not failed, f"jobs failed: {failed}"
    # Each missed slot once: exactly the slots the rules say, no duplicate.
    rows = missed_rows(app)
    assert len(rows) == len(set(rows)), Counter(rows).most_common(3)
    new = expected_missed(before_schedules, at)
    assert set(rows) == set(rows_before) | new, (len(rows), len(rows_before), len(new))
    assert len(rows) == len(rows_before) + len(new)
    # Each due escalation re-escalated once: one step, one level up (at most the top), due again
    # one target later.
    due = [e for e in before_open if e.escalate_at is not None and e.escalate_at <= at]
    steps = step_counts(app, "re_escalated")
    after = {e.id: e for e in open_escalations(app)}
    for escalation in due:
        assert steps[escalation.id] - steps_before[escalation.id] == 1, escalation
        now_ = after[escalation.id]
        assert now_.level == min(escalation.level + 1, TOP_LEVEL), (escalation, now_)
        assert now_.escalate_at == at + timedelta(minutes=TARGETS[escalation.severity]), (escalation, now_)
    not_due = [e for e in before_open if e not in due]
    for escalation in not_due:
        assert steps[escalation.id] == steps_before[escalation.id], escalation
    return {"missed": len(rows), "re_escalated": len(due)}


@pytest.mark.skipif(not TEST_DATABASE_URL, reason=(
    "PostgreSQL only: two schedulers share out the due rows with SELECT ... FOR UPDATE SKIP LOCKED; "
    "SQLite has a single writer, so there is no concurrent sweep to test (TEST_DATABASE_URL unset)"))
def test_two_schedulers_at_once_record_each_missed_slot_and_re_escalation_once(fault_db):
    setup = make_app(fault_db)
    first, second = make_app(fault_db), make_app(fault_db)
    try:
        populate(setup)
        start = datetime.now(timezone.utc)
        report = []
        for at in (start + timedelta(hours=2), start + timedelta(hours=2, minutes=121),
                   start + timedelta(hours=4, minutes=7)):
            before = (schedules(setup), open_escalations(setup), step_counts(setup, "re_escalated"),
                      missed_rows(setup))
            results = tick_at_once([first, second], at)
            report.append(_check_round(setup, results, before, at))
        # Across the rounds: each missed slot told once in the audit log; re-escalations happened.
        assert audit_count(setup, "observation.missed") == report[-1]["missed"]
        assert all(r["missed"] > 0 and r["re_escalated"] > 0 for r in report), report
    finally:
        dispose(setup, first, second)
    verified = fault_db.flask("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    print(f"\nrounds: {report}; {verified.stdout.strip()}")


def test_one_sweep_after_two_hours_down_flags_every_missed_observation(fault_db):
    from config.jobs import run_job
    from config.scheduler import jobs

    app = make_app(fault_db)
    try:
        residents = populate(app)
        found = schedules(app)
        at = datetime.now(timezone.utc) + timedelta(hours=2)   # the scheduler was down 2 hours
        expected = expected_missed(found, at)
        due_sweep = next(job for job in jobs() if job.name == "due_sweep")
        assert run_job(app, due_sweep, at) is True
        rows = missed_rows(app)
        assert len(rows) == len(set(rows)) == len(expected)
        assert set(rows) == expected

        # By hand: an hourly schedule due at admission has missed its slots at +0 and +1 h
        # (+2 h is still within its 15 minutes' grace): the 4 plain residents x 2 scales x 2,
        # the 2 opioid residents x (COWS, NEWS2) x 2, and the severe CIWA-Ar's NEWS2 x 2;
        # the severe CIWA-Ar (hourly from its score) missed 1; the moderate one (every 2 h,
        # grace 30) and its NEWS2 (every 12 h) missed none.
        assert len(rows) == 4 * 2 * 2 + 2 * 2 * 2 + 2 + 1, len(rows)
        per_admission = Counter(admission for admission, in _admissions_of(app, rows))
        assert per_admission[residents["moderate"]] == 0
        assert per_admission[residents["severe"]] == 3

        # A second sweep at the same time (or a minute on) flags nothing more.
        assert run_job(app, due_sweep, at) is True
        assert run_job(app, due_sweep, at + timedelta(minutes=1)) is True
        assert sorted(missed_rows(app)) == sorted(rows)
        assert audit_count(app, "observation.missed") == len(rows)
    finally:
        dispose(app)


def _admissions_of(app, rows) -> list[tuple[int]]:
    from config.extensions import db
    from monitoring.models import ObservationSchedule

    with app.app_context():
        admission_of = dict(db.session.execute(sa.select(ObservationSchedule.id, ObservationSchedule.admission_id)).all())
        db.session.remove()
    return [(admission_of[schedule_id],) for schedule_id, _ in rows]
