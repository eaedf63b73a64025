"""The scheduler process (``flask --app wsgi scheduler run``) and its heartbeat.

Never started by create_app: every web worker would run every job. Jobs read what is due from
the domain tables, so a restart loses nothing; each run writes a heartbeat row, and a stale
heartbeat turns every page red and /api/v1/health degraded.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.orm import Mapped, mapped_column

from config.db import unit_of_work, utcnow
from config.extensions import db

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=5)


class SchedulerHeartbeat(db.Model):
    __tablename__ = "scheduler_heartbeats"

    job: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    last_run_at: Mapped[datetime]
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    host: Mapped[str] = mapped_column(sa.String(120))
    pid: Mapped[int]


@dataclass(frozen=True)
class Job:
    name: str
    seconds: int
    run: Callable[[datetime], object]


def jobs() -> list[Job]:
    """Every scheduled job, from the packages (assembled here, the composition root)."""
    from config.idempotency import purge_expired_keys
    from config.outbox import deliver_due
    from unit.audit import verify_all_chains
    from medication.jobs import JOBS as medication_jobs
    from monitoring.jobs import JOBS as monitoring_jobs

    return [*monitoring_jobs, *medication_jobs, Job("deliver_notifications", 15, deliver_due),
            Job("purge_idempotency_keys", 3600, purge_expired_keys),
            Job("audit_verify", 6 * 3600, verify_all_chains)]


@unit_of_work
def _beat(job: str, at: datetime, error: str | None) -> None:
    row = db.session.get(SchedulerHeartbeat, job)
    if row is None:
        row = SchedulerHeartbeat(job=job, last_run_at=at, host=socket.gethostname()[:120], pid=os.getpid())
        db.session.add(row)
    row.last_run_at, row.host, row.pid = at, socket.gethostname()[:120], os.getpid()
    if error is None:
        row.last_ok_at, row.last_error = at, None
    else:
        row.last_error = error[:2000]


def run_job(app: Flask, job: Job, at: datetime | None = None) -> bool:
    """Run one job in an app context and record its heartbeat; True when it succeeded.

    On PostgreSQL a session advisory lock per job decides which of two schedulers (a
    failover pair) runs it; the other skips this round. Row locks (SKIP LOCKED) and unique
    constraints in the jobs themselves keep every item handled once even without it.
    """
    with app.app_context():
        at = at or _now()
        with _job_lock(job.name) as acquired:
            if not acquired:
                log.info("job %s is running in another scheduler; skipped", job.name)
                return True
            return _run_locked(job, at)


@contextlib.contextmanager
def _job_lock(name: str):
    if db.engine.dialect.name != "postgresql":
        yield True  # SQLite: one writer at a time already (BEGIN IMMEDIATE)
        return
    key = int.from_bytes(hashlib.sha256(f"detox-job:{name}".encode()).digest()[:8], "big", signed=True)
    with db.engine.connect() as connection:
        acquired = connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        connection.commit()
        try:
            yield bool(acquired)
        finally:
            if acquired:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


def _run_locked(job: Job, at: datetime) -> bool:
    try:
        job.run(at)
    except Exception as error:  # a failing job must be seen, not kill the scheduler
        log.exception("job %s failed", job.name)
        db.session.rollback()
        _beat(job.name, at, f"{type(error).__name__}")
        return False
    _beat(job.name, at, None)
    return True


def _now() -> datetime:
    from config.clock import now

    return now()


# The jobs that find and send alerts: if any of them stops succeeding, nobody is being told.
WATCHED_JOBS = ("due_sweep", "re_escalate", "deliver_notifications", "leave_overdue")


def heartbeat_status(now: datetime) -> dict:
    """When each alerting job last succeeded, and whether any of them is stale.

    ``last_heartbeat_at`` is the oldest of those (None until every one has run once).
    """
    # Every render_template runs the banner's context processor, and a page renders one
    # partial per resident: read the heartbeats once per request, not once per partial.
    if has_request_context() and "_heartbeats" in g:
        last_ok = g._heartbeats
    else:
        last_ok = dict(db.session.execute(sa.select(SchedulerHeartbeat.job, SchedulerHeartbeat.last_ok_at)
                                          .where(SchedulerHeartbeat.job.in_(WATCHED_JOBS))).all())
        if has_request_context():
            g._heartbeats = last_ok
    stale_after = current_app.config.get("SCHEDULER_STALE_AFTER", STALE_AFTER)
    stale_jobs = [job for job in WATCHED_JOBS
                  if last_ok.get(job) is None or now - last_ok[job] > stale_after]
    times = [last_ok.get(job) for job in WATCHED_JOBS]
    return {"last_heartbeat_at": None if None in times else min(times),
            "stale": bool(stale_jobs), "stale_jobs": stale_jobs,
            "jobs": {job: last_ok.get(job) for job in WATCHED_JOBS},
            "stale_after_minutes": int(stale_after.total_seconds() // 60)}


scheduler_cli = AppGroup("scheduler", help="The job scheduler (one process, beside the web server).")


@scheduler_cli.command("run")
@with_appcontext
def run_command() -> None:
    """Run the scheduler in the foreground until stopped."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    app = current_app._get_current_object()
    scheduler = BlockingScheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
    for job in jobs():
        scheduler.add_job(run_job, "interval", seconds=job.seconds, args=[app, job], id=job.name,
                          next_run_time=utcnow())
    click.echo(f"Scheduler running: {', '.join(j.name for j in jobs())}.")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


@scheduler_cli.command("tick")
@with_appcontext
def tick_command() -> None:
    """Run every job once now (for cron, or to catch up by hand)."""
    app = current_app._get_current_object()
    failed = [job.name for job in jobs() if not run_job(app, job)]
    click.echo("All jobs ran." if not failed else f"Failed: {', '.join(failed)}")
    raise SystemExit(1 if failed else 0)
