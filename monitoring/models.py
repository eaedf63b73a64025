"""Models of the monitoring package: observations, schedules, missed observations."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.extensions import db

NOT_DONE_REASONS = ("asleep", "refused", "off_unit", "other")


class Observation(db.Model):
    """One scored observation (or one that could not be done), never overwritten."""

    __tablename__ = "observations"
    __audited_as__ = "observation"  # its audit events carry the row's hash (unit.audit)
    __table_args__ = (
        sa.CheckConstraint("status IN ('recorded', 'not_done')", name="status"),
        sa.Index("ix_observations_admission_scale_at", "admission_id", "scale", "observed_at"),
        sa.Index("ix_observations_unit_at", "unit_id", "observed_at"),
        # The report's compliance figures over a period read every column they need from this
        # index, never the (wide) rows: a year is a quarter of a million observations.
        sa.Index("ix_observations_unit_due_covering", "unit_id", "due_at", "admission_id", "scale",
                 "observed_at", "status", "struck_at", "replaces_id"),
        # A struck observation is corrected once: the service refuses a second correction, and
        # this index refuses one that races past it.
        sa.Index("uq_observations_one_correction", "replaces_id", unique=True,
                 sqlite_where=sa.text("replaces_id IS NOT NULL"),
                 postgresql_where=sa.text("replaces_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    scale: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default="recorded")
    not_done_reason: Mapped[str | None] = mapped_column(sa.String(16))
    items: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    item_scores: Mapped[dict[str, int] | None] = mapped_column(sa.JSON)
    total: Mapped[int | None]
    band: Mapped[str | None] = mapped_column(sa.String(24))
    risk: Mapped[str | None] = mapped_column(sa.String(16))
    warnings: Mapped[list[str] | None] = mapped_column(sa.JSON)
    note: Mapped[str | None] = mapped_column(sa.Text)
    observed_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    # The due time this observation answered (for on-time compliance), if it was scheduled.
    due_at: Mapped[datetime | None]
    # Corrections: an entered-in-error observation is struck through, never changed.
    struck_at: Mapped[datetime | None]
    struck_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    struck_reason: Mapped[str | None] = mapped_column(sa.Text)
    replaces_id: Mapped[int | None] = mapped_column(sa.ForeignKey("observations.id"))

    recorded_by = relationship("Staff", foreign_keys=[recorded_by_id])


class ObservationSchedule(db.Model):
    """How often one scale is due for one admission; ``next_due_at`` is the truth of what is due."""

    __tablename__ = "observation_schedules"
    __table_args__ = (
        sa.UniqueConstraint("admission_id", "scale"),
        # The due sweep reads only active schedules by due time: its cost follows what is due.
        sa.Index("ix_observation_schedules_due", "active", "next_due_at"),
        sa.Index("ix_observation_schedules_unit", "unit_id", "active"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    scale: Mapped[str] = mapped_column(sa.String(16))
    active: Mapped[bool] = mapped_column(default=True)
    interval_minutes: Mapped[int]
    # A nurse's or doctor's "at least every N minutes": the protocol may ask more often.
    max_interval_minutes: Mapped[int | None]
    next_due_at: Mapped[datetime]
    # Slots up to this due time have been recorded as missed (the sweep is idempotent).
    missed_through: Mapped[datetime | None]
    consecutive_minimal: Mapped[int] = mapped_column(default=0)
    refusals_in_row: Mapped[int] = mapped_column(default=0)
    last_observation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("observations.id"))
    updated_at: Mapped[datetime]

    last_observation: Mapped[Observation | None] = relationship(foreign_keys=[last_observation_id])


class ScheduleChange(db.Model):
    """A change of a schedule's interval, with its reason (shown to nurses, audited)."""

    __tablename__ = "schedule_changes"
    __append_only__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("observation_schedules.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    old_interval_minutes: Mapped[int | None]
    new_interval_minutes: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.Text)
    changed_at: Mapped[datetime]
    changed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))


class MissedObservation(db.Model):
    """A due slot that passed its grace with no observation; found by the due sweep."""

    __tablename__ = "missed_observations"
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "due_at"),
        sa.Index("ix_missed_observations_unit_due", "unit_id", "due_at"),
        sa.Index("ix_missed_observations_slot", "admission_id", "scale", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("observation_schedules.id"))
    scale: Mapped[str] = mapped_column(sa.String(16))
    due_at: Mapped[datetime]
    grace_minutes: Mapped[int]
    detected_at: Mapped[datetime]


# --- escalation -----------------------------------------------------------------------------

SEVERITIES = ("emergency", "urgent", "soon")
ESCALATION_STATUSES = ("open", "acknowledged", "resolved")
ROUTES = ("on_site_doctor", "visiting_gp", "nurse_in_charge")
DUTIES = ("nurse_in_charge", "on_site_doctor", "visiting_gp", "second_on_call", "clinical_lead")


class RotaShift(db.Model):
    """Who holds a duty (nurse in charge, on-site doctor, on-call GP, ...) for a period."""

    __tablename__ = "rota_shifts"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="period"),
        sa.Index("ix_rota_shifts_unit_duty_period", "unit_id", "duty", "starts_at", "ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    duty: Mapped[str] = mapped_column(sa.String(24))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    contact: Mapped[str | None] = mapped_column(sa.String(200))  # e.g. the out-of-hours service
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    created_at: Mapped[datetime]

    staff = relationship("Staff", foreign_keys=[staff_id])


class Escalation(db.Model):
    """An alert to a doctor (or the nurse in charge), open until acknowledged and resolved."""

    __tablename__ = "escalations"
    __audited_as__ = "escalation"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status"),
        sa.CheckConstraint("severity IN ('emergency', 'urgent', 'soon')", name="severity"),
        # One live escalation per admission and cause: a worsening updates it (never a duplicate).
        sa.Index("uq_escalations_live_per_cause", "admission_id", "dedup_key", unique=True,
                 sqlite_where=sa.text("status != 'resolved'"),
                 postgresql_where=sa.text("status != 'resolved'")),
        sa.Index("ix_escalations_unit_status", "unit_id", "status"),
        sa.Index("ix_escalations_due", "status", "escalate_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(60))
    trigger: Mapped[str] = mapped_column(sa.String(40))
    severity: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    source_type: Mapped[str] = mapped_column(sa.String(40))
    source_id: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    route: Mapped[str] = mapped_column(sa.String(24))
    unit_model: Mapped[str] = mapped_column(sa.String(32))
    call_999: Mapped[bool] = mapped_column(default=False)
    level: Mapped[int] = mapped_column(default=1)
    target_minutes: Mapped[int]
    raised_at: Mapped[datetime]
    # When it goes to the next level if still unacknowledged (None once acknowledged).
    escalate_at: Mapped[datetime | None]
    raised_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    outcome: Mapped[str | None] = mapped_column(sa.String(200))
    note: Mapped[str | None] = mapped_column(sa.Text)
    overridden: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime]

    admission = relationship("Admission")
    acknowledged_by = relationship("Staff", foreign_keys=[acknowledged_by_id])
    resolved_by = relationship("Staff", foreign_keys=[resolved_by_id])
    steps: Mapped[list[EscalationStep]] = relationship(
        back_populates="escalation", order_by="EscalationStep.id")


class EscalationStep(db.Model):
    """One step of an escalation's life, with its time: raised, notified, re-escalated, ..."""

    __tablename__ = "escalation_steps"
    __append_only__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(sa.ForeignKey("escalations.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(24))
    level: Mapped[int]
    detail: Mapped[str] = mapped_column(sa.Text)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    escalation: Mapped[Escalation] = relationship(back_populates="steps")
