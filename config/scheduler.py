"""The scheduler process (``flask --app wsgi scheduler run``): which jobs run, and its CLI.

Never started by create_app: every web worker would run every job. The job layer (``Job``,
``run_job``, the heartbeat) is ``config.jobs``; the packages' own jobs are in their ``jobs.py``.
"""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from config.db import utcnow
from config.jobs import Job, run_job


def jobs() -> list[Job]:
    """Every scheduled job, from the packages (assembled here, the composition root)."""
    from config.idempotency import purge_expired_keys
    from medication.jobs import JOBS as medication_jobs
    from monitoring.jobs import JOBS as monitoring_jobs
    from monitoring.jobs import OUTBOX_JOBS
    from unit.audit import verify_all_chains

    # The outbox after every job that may queue a message: a tick sends what it queued.
    return [*monitoring_jobs, *medication_jobs, *OUTBOX_JOBS,
            Job("purge_idempotency_keys", 3600, purge_expired_keys),
            Job("audit_verify", 6 * 3600, verify_all_chains)]


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
