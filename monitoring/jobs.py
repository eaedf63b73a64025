"""Scheduled jobs of the monitoring package; each calls a service with ``now``."""
from __future__ import annotations

from config.jobs import Job
from monitoring.audit_anchor import mail_audit_anchors
from monitoring.escalations import re_escalate_due
from monitoring.leave import escalate_overdue_returns
from monitoring.outbox import deliver_due
from monitoring.services import flag_missed_observations

JOBS = [Job("due_sweep", 60, flag_missed_observations), Job("re_escalate", 30, re_escalate_due),
        Job("audit_anchor_mail", 24 * 3600, mail_audit_anchors),
        Job("leave_overdue", 60, escalate_overdue_returns)]
# The notification outbox (medication queues messages in it too): the scheduler runs it after
# every package's jobs, so that what a round queued goes out in the same round.
OUTBOX_JOBS = [Job("deliver_notifications", 15, deliver_due)]
