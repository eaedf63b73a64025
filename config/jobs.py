"""The job layer every package builds on: the ``Job`` type, running one job (locked, in an
app context) and its heartbeat.

Jobs read what is due from the domain tables, so a restart loses nothing; each run writes a
heartbeat row, and a stale heartbeat turns every page red and /api/v1/health degraded. Which
jobs run, and the scheduler process, are ``config.scheduler``'s.
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

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context
from sqlalchemy.orm import Mapped, mapped_column

from config.clock import now as _now
from config.db import unit_of_work
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
    """A scheduled job: its name (the heartbeat's key), how often, and the service it calls
    with ``now``."""

    name: str
    seconds: int
    run: Callable[[datetime], object]


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
