"""Scheduled jobs of the medication package."""
from __future__ import annotations

from config.jobs import Job
from medication.orders import escalate_uncountersigned

JOBS = [Job("phone_order_countersign", 300, escalate_uncountersigned)]
