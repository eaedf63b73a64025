"""Scheduled jobs of the monitoring package; each calls a service with ``now``."""
from __future__ import annotations

from config.scheduler import Job
from monitoring.escalations import re_escalate_due
from monitoring.leave import escalate_overdue_returns
from monitoring.services import flag_missed_observations

JOBS = [Job("due_sweep", 60, flag_missed_observations), Job("re_escalate", 30, re_escalate_due),
        Job("leave_overdue", 60, escalate_overdue_returns)]
