"""Models of the medication package: orders, scheduled doses, administrations, CD register."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.extensions import db

ORDER_KINDS = ("fixed", "prn", "induction")
ORDER_STATUSES = ("active", "stopped", "superseded", "completed")
OUTCOMES = ("given", "refused", "withheld", "omitted")
# eMAR reason codes for every outcome but "given" (docs/clinical-rules.md s5).
REASON_CODES = {
    "refused": ("resident_refused",),
    "withheld": ("sedated", "low_blood_pressure", "slow_pulse", "clinical_decision", "other"),
    "omitted": ("unavailable", "absent", "asleep", "vomited", "nil_by_mouth", "other"),
}
CD_ENTRY_KINDS = ("receipt", "administration", "return", "destruction", "correction", "stock_check")


class MedicationOrder(db.Model):
    """One version of a prescription. Orders are never edited: a change is a new version."""

    __tablename__ = "medication_orders"
    __audited_as__ = "medication_order"  # its audit events carry the row's hash (unit.audit)
    # When the countersign reminder went out: the escalation it opened is audited, not the order.
    __audit_unhashed__ = ("countersign_escalated_at",)
    __table_args__ = (
        sa.CheckConstraint("kind IN ('fixed', 'prn', 'induction')", name="kind"),
        sa.CheckConstraint("status IN ('active', 'stopped', 'superseded', 'completed')", name="status"),
        sa.Index("ix_medication_orders_admission_status", "admission_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    drug: Mapped[str] = mapped_column(sa.String(40))
    form: Mapped[str] = mapped_column(sa.String(40))
    strength: Mapped[str | None] = mapped_column(sa.String(40))  # None only on orders made before
    route: Mapped[str] = mapped_column(sa.String(24))
    dose_mg: Mapped[float | None]              # per dose (prn, induction); fixed: per slot
    start_dose_mg: Mapped[float | None]        # fixed regimens
    min_interval_minutes: Mapped[int | None]
    max_daily_mg: Mapped[float | None]
    trigger: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    controlled: Mapped[bool]
    cd_schedule: Mapped[int | None]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    version: Mapped[int] = mapped_column(default=1)
    supersedes_id: Mapped[int | None] = mapped_column(sa.ForeignKey("medication_orders.id"))
    prescriber_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    entered_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    phone_order: Mapped[bool] = mapped_column(default=False)
    read_back_confirmed: Mapped[bool] = mapped_column(default=False)
    countersign_due_at: Mapped[datetime | None]
    countersigned_at: Mapped[datetime | None]
    countersign_escalated_at: Mapped[datetime | None]
    last_opioid_at: Mapped[datetime | None]    # buprenorphine induction
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    stopped_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    stop_reason: Mapped[str | None] = mapped_column(sa.Text)

    prescriber = relationship("Staff", foreign_keys=[prescriber_id])
    scheduled: Mapped[list[ScheduledDose]] = relationship(back_populates="order", order_by="ScheduledDose.due_at")


class ScheduledDose(db.Model):
    """One due dose of a fixed regimen."""

    __tablename__ = "scheduled_doses"
    __table_args__ = (sa.UniqueConstraint("order_id", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("medication_orders.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    due_at: Mapped[datetime] = mapped_column(index=True)
    dose_mg: Mapped[float]
    label: Mapped[str] = mapped_column(sa.String(40))

    order: Mapped[MedicationOrder] = relationship(back_populates="scheduled")


class Administration(db.Model):
    """An eMAR entry: a dose given, refused, withheld or omitted. Never changed."""

    __tablename__ = "administrations"
    __audited_as__ = "administration"
    __append_only__ = True  # the app's database role may not UPDATE or DELETE it (flask db grant)
    __table_args__ = (
        sa.CheckConstraint("outcome IN ('given', 'refused', 'withheld', 'omitted')", name="outcome"),
        # One outcome per scheduled dose, enforced by the database.
        sa.UniqueConstraint("scheduled_dose_id"),
        # Given doses of a drug for an admission are numbered 1, 2, 3...: two nurses giving
        # "the next dose" at the same moment both claim the same number, and one is refused.
        sa.UniqueConstraint("admission_id", "drug", "given_seq"),
        sa.Index("ix_administrations_window", "admission_id", "drug", "given_at"),
        sa.Index("ix_administrations_unit_at", "unit_id", "given_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("medication_orders.id"), index=True)
    scheduled_dose_id: Mapped[int | None] = mapped_column(sa.ForeignKey("scheduled_doses.id"))
    drug: Mapped[str] = mapped_column(sa.String(40))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    dose_mg: Mapped[float]
    reason_code: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.Text)
    given_seq: Mapped[int | None]
    given_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    given_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    witness_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    trigger_observation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("observations.id"))

    given_by = relationship("Staff", foreign_keys=[given_by_id])
    witness = relationship("Staff", foreign_keys=[witness_id])


class SafetyRefusal(db.Model):
    """A dose the system refused, and why (kept for the audit and the inspector)."""

    __tablename__ = "safety_refusals"
    __append_only__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("medication_orders.id"))
    drug: Mapped[str] = mapped_column(sa.String(40))
    check: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime]
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))


class CDRegisterEntry(db.Model):
    """A line of the controlled-drug register. Never altered: corrections are new entries."""

    __tablename__ = "cd_register_entries"
    __audited_as__ = "cd_register_entry"
    __append_only__ = True
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('receipt', 'administration', 'return', 'destruction', 'correction', 'stock_check')",
            name="kind"),
        # Entries of one drug on one unit are numbered; concurrent appends cannot both win.
        sa.UniqueConstraint("unit_id", "drug", "seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    drug: Mapped[str] = mapped_column(sa.String(40))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(16))
    amount_mg: Mapped[float]            # signed: receipts add, administrations take away
    balance_mg: Mapped[float]           # the running balance after this entry
    counted_mg: Mapped[float | None]    # stock checks: what two staff counted
    supplier: Mapped[str | None] = mapped_column(sa.String(200))
    reference: Mapped[str | None] = mapped_column(sa.String(200))
    admission_id: Mapped[int | None] = mapped_column(sa.ForeignKey("admissions.id"))
    administration_id: Mapped[int | None] = mapped_column(sa.ForeignKey("administrations.id"))
    corrects_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cd_register_entries.id"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    at: Mapped[datetime]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    witness_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    recorded_by = relationship("Staff", foreign_keys=[recorded_by_id])
    witness = relationship("Staff", foreign_keys=[witness_id])
    admission = relationship("Admission")  # the person supplied (MDR 2001 reg 19)
