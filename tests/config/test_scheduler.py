"""The scheduler: each job run writes a heartbeat; a stale due sweep turns /api/v1/health
degraded and puts a red banner on every page. Jobs run with the fake clock, never by waiting."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config import scheduler
from config.extensions import db
from config.jobs import WATCHED_JOBS, Job, SchedulerHeartbeat, run_job
from config.scheduler import jobs
from monitoring.models import MissedObservation
from tests.monitoring.helpers import ciwa, record

STALE = 'data-testid="scheduler-stale"'


def heartbeat(app, job: str) -> SchedulerHeartbeat | None:
    with app.app_context():
        row = db.session.get(SchedulerHeartbeat, job)
        if row is not None:
            db.session.expunge(row)
        return row


def due_sweep() -> Job:
    return next(job for job in jobs() if job.name == "due_sweep")


def alerting_jobs(app) -> None:
    """Run the jobs that find and send alerts (the sweep, re-escalation, delivery) once."""
    for job in jobs():
        if job.name in WATCHED_JOBS:
            assert run_job(app, job)


def test_the_jobs_are_the_due_sweep_every_minute_and_the_key_purge():
    found = {job.name: job.seconds for job in jobs()}
    assert found["due_sweep"] == 60
    assert found["purge_idempotency_keys"] == 3600


def test_run_job_writes_a_heartbeat(app, clock):
    assert heartbeat(app, "due_sweep") is None
    assert run_job(app, due_sweep()) is True
    row = heartbeat(app, "due_sweep")
    assert row.last_run_at == clock.now and row.last_ok_at == clock.now
    assert row.last_error is None and row.pid > 0 and row.host
    clock.advance(minutes=1)
    assert run_job(app, due_sweep()) is True
    assert heartbeat(app, "due_sweep").last_ok_at == clock.now
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SchedulerHeartbeat)) == 1


def test_run_job_does_the_jobs_work(app, ward, clock):
    admission = ward.admit()
    clock.advance(minutes=1)
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(20))                    # hourly
    clock.advance(hours=2)
    assert run_job(app, due_sweep()) is True
    with app.app_context():
        flagged = db.session.scalar(sa.select(sa.func.count()).select_from(MissedObservation)
                                    .where(MissedObservation.scale == "ciwa-ar"))
    assert flagged == 1  # +1 h past grace; +2 h not yet


def test_a_failing_job_is_recorded_and_its_work_rolled_back(app, clock, caplog):
    def broken(at):
        raise RuntimeError("database credentials: s3cret")

    assert run_job(app, due_sweep()) is True
    ok_at = clock.now
    clock.advance(minutes=3)
    assert run_job(app, Job("due_sweep", 60, broken)) is False
    row = heartbeat(app, "due_sweep")
    assert row.last_run_at == clock.now
    assert row.last_ok_at == ok_at  # the last success stays the last success
    assert row.last_error == "RuntimeError"  # the type only; the text is logged, not stored
    assert "s3cret" not in row.last_error
    clock.advance(minutes=1)
    assert run_job(app, due_sweep()) is True
    assert heartbeat(app, "due_sweep").last_error is None


def health(client) -> dict:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    return response.get_json()


def test_health_is_degraded_when_the_sweep_is_stale_and_ok_after_a_run(app, ward, clock):
    nurse = ward.nurse
    body = health(nurse)
    assert body["status"] == "degraded" and body["database"] == "ok"
    assert body["scheduler"]["stale"] is True and body["scheduler"]["last_heartbeat_at"] is None
    assert body["scheduler"]["stale_after_minutes"] == 5
    alerting_jobs(app)
    body = health(nurse)
    assert body["status"] == "ok" and body["scheduler"]["stale"] is False
    clock.advance(minutes=5)
    assert health(nurse)["status"] == "ok"  # exactly 5 minutes: not yet stale
    clock.advance(seconds=1)
    body = health(nurse)
    assert body["status"] == "degraded" and body["scheduler"]["stale"] is True
    run_job(app, due_sweep())
    assert health(nurse)["scheduler"]["stale_jobs"] == ["re_escalate", "deliver_notifications", "leave_overdue"]
    alerting_jobs(app)
    assert health(nurse)["status"] == "ok"


@pytest.mark.parametrize("stopped", WATCHED_JOBS)
def test_any_alerting_job_that_stops_succeeding_degrades_health(app, ward, clock, stopped):
    alerting_jobs(app)
    clock.advance(minutes=6)
    for job in jobs():
        if job.name in WATCHED_JOBS and job.name != stopped:
            assert run_job(app, job)
    failing = next(job for job in jobs() if job.name == stopped)
    assert run_job(app, Job(stopped, failing.seconds, lambda at: 1 / 0)) is False  # runs, fails
    body = health(ward.nurse)
    assert body["status"] == "degraded" and body["scheduler"]["stale_jobs"] == [stopped]
    assert body["scheduler"]["jobs"][stopped] is not None  # it ran once, then stopped succeeding
    assert STALE in ward.nurse.get("/").get_data(as_text=True)


def test_other_jobs_do_not_count_as_the_sweep(app, ward, clock):
    purge = next(job for job in jobs() if job.name == "purge_idempotency_keys")
    assert run_job(app, purge) is True
    assert heartbeat(app, "purge_idempotency_keys").last_ok_at == clock.now
    assert health(ward.nurse)["status"] == "degraded"


def test_health_needs_a_signed_in_user(client):
    assert client.get("/api/v1/health").status_code == 401


def test_every_page_shows_a_banner_while_the_sweep_is_stale(app, ward, clock):
    admission = ward.admit()
    pages = ["/", f"/admissions/{admission['id']}", f"/admissions/{admission['id']}/observe/ciwa-ar"]
    for page in pages:
        html = ward.nurse.get(page).get_data(as_text=True)
        assert STALE in html and "NOT being checked" in html, page
    alerting_jobs(app)
    for page in pages:
        assert STALE not in ward.nurse.get(page).get_data(as_text=True), page
    clock.advance(minutes=6)
    html = ward.nurse.get("/").get_data(as_text=True)
    assert STALE in html and "since" in html


def test_tick_runs_every_job_once(app, clock):
    result = app.test_cli_runner().invoke(args=["scheduler", "tick"])
    assert result.exit_code == 0, result.output
    assert "All jobs ran." in result.output
    for job in jobs():
        assert heartbeat(app, job.name).last_ok_at == clock.now


def test_tick_fails_loudly_when_a_job_fails(app, monkeypatch):
    def broken(at):
        raise RuntimeError("boom")

    monkeypatch.setattr(scheduler, "jobs", lambda: [Job("due_sweep", 60, broken)])
    result = app.test_cli_runner().invoke(args=["scheduler", "tick"])
    assert result.exit_code == 1
    assert "Failed: due_sweep" in result.output


def test_run_registers_every_job_coalesced_one_at_a_time(app, monkeypatch):
    from apscheduler.schedulers.blocking import BlockingScheduler

    seen = {}

    def start(self, *args, **kwargs):  # instead of blocking forever
        seen["jobs"] = {job.id: job for job, *_ in self._pending_jobs}  # (job, store, replace)
        seen["defaults"] = dict(self._job_defaults)

    monkeypatch.setattr(BlockingScheduler, "start", start)
    result = app.test_cli_runner().invoke(args=["scheduler", "run"])
    assert result.exit_code == 0, result.output
    assert set(seen["jobs"]) == {job.name for job in jobs()}
    assert seen["defaults"]["coalesce"] is True and seen["defaults"]["max_instances"] == 1
    sweep = seen["jobs"]["due_sweep"]
    assert sweep.trigger.interval == timedelta(seconds=60)


@pytest.fixture(autouse=True)
def _quiet_scheduler_logs(caplog):
    caplog.set_level("CRITICAL", logger="config.jobs")
