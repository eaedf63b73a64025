"""Models of the unit package."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import DDL, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.db import utcnow
from config.extensions import db

CARE_MODELS = ("medically_managed", "medically_monitored")
# clinical_lead: a doctor who leads the unit's clinical care and signs off protocol changes.
ROLES = ("nurse", "doctor", "gp", "manager", "inspector", "clinical_lead")
SUBSTANCES = ("alcohol", "opioids", "benzodiazepines", "other")
# What an opioid referral says the person uses now (docs/clinical-rules.md s4).
CURRENT_OPIOIDS = ("heroin", "methadone", "buprenorphine", "codeine", "dihydrocodeine", "tramadol",
                   "morphine", "oxycodone", "fentanyl", "other")
# withdrawn-by-unit: the unit ended the treatment (e.g. for a breach of its agreement);
# died: the resident died during the stay. Both are NDTMS discharge reasons of their own.
DISCHARGE_TYPES = ("completed", "self-discharged", "transferred", "withdrawn-by-unit", "died",
                   "other")
ADMISSION_STATUSES = ("active", "discharged")
SETTINGS = ("community", "residential_medically_monitored", "medically_managed", "hospital")
PROPOSAL_STATUSES = ("proposed", "approved", "rejected")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Unit(db.Model):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CareModelChange(db.Model):
    """One declaration of the unit's care model, in force from ``effective_at``."""

    __tablename__ = "care_model_changes"
    __append_only__ = True
    __table_args__ = (
        sa.CheckConstraint(f"model IN {_in(CARE_MODELS)}", name="model"),
        sa.Index("ix_care_model_changes_unit_effective", "unit_id", "effective_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    model: Mapped[str] = mapped_column(sa.String(32))
    effective_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(sa.Text)
    changed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    changed_by: Mapped[Staff | None] = relationship()


class Staff(db.Model):
    __tablename__ = "staff"
    __table_args__ = (sa.CheckConstraint(f"role IN {_in(ROLES)}", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    unit: Mapped[Unit] = relationship()


class StaffSession(db.Model):
    """A signed-in session, held server-side so that it can be revoked."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))

    staff: Mapped[Staff] = relationship()


class LoginAttempt(db.Model):
    __tablename__ = "login_attempts"
    __table_args__ = (
        sa.Index("ix_login_attempts_username_at", "username", "at"),
        sa.Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    at: Mapped[datetime]
    succeeded: Mapped[bool]


class UnitProtocol(db.Model):
    """A version of the unit's protocol settings (its own values over the defaults of
    docs/clinical-rules.md), in force from ``created_at``: proposed by a manager
    (``created_by``) and approved by a clinical lead (``approved_by``; none on versions from
    before approval was required)."""

    __tablename__ = "unit_protocols"
    __table_args__ = (sa.UniqueConstraint("unit_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    version: Mapped[int]
    settings: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    created_by: Mapped[Staff | None] = relationship(foreign_keys=[created_by_id])
    approved_by: Mapped[Staff | None] = relationship(foreign_keys=[approved_by_id])


class ProtocolProposal(db.Model):
    """A manager's proposed change to one section of the unit protocol. Nothing changes in
    force until a clinical lead approves it (a new ``UnitProtocol`` version); decided once."""

    __tablename__ = "protocol_proposals"
    __table_args__ = (
        sa.CheckConstraint(f"status IN {_in(PROPOSAL_STATUSES)}", name="status"),
        sa.Index("ix_protocol_proposals_unit_status", "unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    section: Mapped[str] = mapped_column(sa.String(40))
    values: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="proposed")
    proposed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    proposed_at: Mapped[datetime]
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(sa.Text)
    # The version an approval made.
    protocol_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit_protocols.id"), unique=True)

    proposed_by: Mapped[Staff] = relationship(foreign_keys=[proposed_by_id])
    decided_by: Mapped[Staff | None] = relationship(foreign_keys=[decided_by_id])
    protocol: Mapped[UnitProtocol | None] = relationship()


class Resident(db.Model):
    __tablename__ = "residents"
    __table_args__ = (sa.UniqueConstraint("unit_id", "nhs_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    date_of_birth: Mapped[date]
    nhs_number: Mapped[str | None] = mapped_column(sa.String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Return fields of the person (unit.codes lists): optional, listed as missing by the
    # commissioners' return check.
    sex: Mapped[str | None] = mapped_column(sa.String(16))
    gender_identity: Mapped[str | None] = mapped_column(sa.String(16))
    ethnicity: Mapped[str | None] = mapped_column(sa.String(2))


class Referral(db.Model):
    """Every referral decision, admitted or declined, kept for the audit."""

    __tablename__ = "referrals"
    __table_args__ = (
        sa.CheckConstraint("decision IN ('admitted', 'declined')", name="decision"),
        sa.Index("ix_referrals_unit_decided", "unit_id", "decided_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    resident_snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    substances: Mapped[list[str]] = mapped_column(sa.JSON)
    assessment: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    unit_model: Mapped[str] = mapped_column(sa.String(32))
    decision: Mapped[str] = mapped_column(sa.String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    flags: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    recommended_setting: Mapped[str] = mapped_column(sa.String(40))
    recommended_reasons: Mapped[list[str]] = mapped_column(sa.JSON)
    decided_at: Mapped[datetime]
    decided_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    # A referral of the same person within 30 days of a decline on this unit is linked to that
    # decline, with each figure that differs from it ({field, before, after, reason}): an
    # admission needs a reason for every one.
    previous_decline_id: Mapped[int | None] = mapped_column(sa.ForeignKey("referrals.id"), index=True)
    changed_figures: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)

    decided_by: Mapped[Staff] = relationship(foreign_keys=[decided_by_id])
    previous_decline: Mapped[Referral | None] = relationship(remote_side=[id])


class Admission(db.Model):
    __tablename__ = "admissions"
    __table_args__ = (
        sa.CheckConstraint(f"status IN {_in(ADMISSION_STATUSES)}", name="status"),
        sa.CheckConstraint(f"discharge_type IS NULL OR discharge_type IN {_in(DISCHARGE_TYPES)}",
                           name="discharge_type"),
        # One active admission per resident, enforced by the database.
        sa.Index("uq_admissions_one_active", "resident_id", unique=True,
                 sqlite_where=sa.text("status = 'active'"),
                 postgresql_where=sa.text("status = 'active'")),
        sa.Index("ix_admissions_unit_status", "unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"))
    referral_id: Mapped[int] = mapped_column(sa.ForeignKey("referrals.id"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    substances: Mapped[list[str]] = mapped_column(sa.JSON)
    high_risk: Mapped[bool] = mapped_column(default=False)
    admitted_at: Mapped[datetime]
    admitted_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    discharged_at: Mapped[datetime | None]
    discharge_type: Mapped[str | None] = mapped_column(sa.String(20))
    discharge_note: Mapped[str | None] = mapped_column(sa.Text)
    discharged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    # A referral declined on every unit (hospital recommended, under 16) admitted because a
    # doctor recorded why (docs/clinical-rules.md s4): the reason and the criteria overridden.
    # The doctor is ``admitted_by``.
    override_reason: Mapped[str | None] = mapped_column(sa.Text)
    override_criteria: Mapped[list[str] | None] = mapped_column(sa.JSON)
    # Return fields of the treatment episode (unit.codes lists): optional at admission,
    # listed as missing by the commissioners' return check.
    local_authority: Mapped[str | None] = mapped_column(sa.String(9))  # ONS code, E06000001
    postcode_district: Mapped[str | None] = mapped_column(sa.String(4))  # outward code, LS6
    accommodation_need: Mapped[str | None] = mapped_column(sa.String(32))
    parental_status: Mapped[str | None] = mapped_column(sa.String(40))
    children_living_with: Mapped[int | None]
    injecting_status: Mapped[str | None] = mapped_column(sa.String(16))
    problem_substances: Mapped[list[str] | None] = mapped_column(sa.JSON)  # up to 3, in order
    referral_source: Mapped[str | None] = mapped_column(sa.String(32))
    referral_date: Mapped[date | None]
    first_contact_date: Mapped[date | None]

    resident: Mapped[Resident] = relationship(lazy="joined")
    referral: Mapped[Referral] = relationship()
    admitted_by: Mapped[Staff] = relationship(foreign_keys=[admitted_by_id])
    harm_reduction: Mapped[HarmReductionChecklist | None] = relationship(
        back_populates="admission", uselist=False)


CONSENT_STATUSES = ("active", "withdrawn", "superseded")


class Consent(db.Model):
    """A resident's decision about sharing their record with one recipient.

    Never edited: a new decision for the same recipient supersedes the active one, and a
    withdrawal ends it (who, when, why). At most one decision per resident and recipient
    (per named family member) is active, enforced by the database. No active decision
    given: nothing is shared with that recipient.
    """

    __tablename__ = "consents"
    __table_args__ = (
        sa.CheckConstraint("recipient IN ('gp', 'community_team', 'family', 'ndtms')",
                           name="recipient"),
        sa.CheckConstraint("decision IN ('given', 'refused')", name="decision"),
        sa.CheckConstraint(f"status IN {_in(CONSENT_STATUSES)}", name="status"),
        sa.Index("uq_consents_one_active", "resident_id", "recipient", "recipient_key",
                 unique=True, sqlite_where=sa.text("status = 'active'"),
                 postgresql_where=sa.text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(16))
    # Who exactly: the family member named (required for family), the GP practice or team.
    recipient_name: Mapped[str | None] = mapped_column(sa.String(200))
    # The name, folded, for family (one decision per named person); '' for the others.
    recipient_key: Mapped[str] = mapped_column(sa.String(200), default="")
    decision: Mapped[str] = mapped_column(sa.String(8))
    decided_on: Mapped[date]  # when the resident decided (may be before it was recorded)
    note: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(12), default="active")
    recorded_at: Mapped[datetime]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    ended_at: Mapped[datetime | None]
    ended_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    end_reason: Mapped[str | None] = mapped_column(sa.Text)

    recorded_by: Mapped[Staff] = relationship(foreign_keys=[recorded_by_id])
    ended_by: Mapped[Staff | None] = relationship(foreign_keys=[ended_by_id])


HARM_REDUCTION_ITEMS = {
    "tolerance_explained": "Loss of opioid tolerance and overdose risk explained",
    "naloxone_offered": "Naloxone offered (and supplied if accepted)",
    "gp_informed": "GP informed of the self-discharge",
    "keyworker_informed": "Key worker informed of the self-discharge",
}


class HarmReductionChecklist(db.Model):
    """Opened by a self-discharge mid-detox; stays on the board until a nurse completes it."""

    __tablename__ = "harm_reduction_checklists"

    id: Mapped[int] = mapped_column(primary_key=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), unique=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    opened_at: Mapped[datetime]
    tolerance_explained: Mapped[bool] = mapped_column(default=False)
    naloxone_offered: Mapped[bool] = mapped_column(default=False)
    gp_informed: Mapped[bool] = mapped_column(default=False)
    keyworker_informed: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(sa.Text)
    completed_at: Mapped[datetime | None]
    completed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    admission: Mapped[Admission] = relationship(back_populates="harm_reduction")


class AuditChainHead(db.Model):
    """The last link of each unit's audit chain; locked to append in order."""

    __tablename__ = "audit_chain_heads"

    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), primary_key=True)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditEvent(db.Model):
    """An append-only, hash-chained record of a write: who, role, unit, what, when, before/after."""

    __tablename__ = "audit_events"
    __append_only__ = True  # the app's database role may not UPDATE or DELETE it (flask db grant)
    __table_args__ = (
        sa.UniqueConstraint("unit_id", "seq"),
        sa.Index("ix_audit_events_unit_at", "unit_id", "at"),
        sa.Index("ix_audit_events_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    seq: Mapped[int]
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    actor_role: Mapped[str | None] = mapped_column(sa.String(16))
    action: Mapped[str] = mapped_column(sa.String(64))
    entity_type: Mapped[str] = mapped_column(sa.String(40))
    entity_id: Mapped[str | None] = mapped_column(sa.String(40))
    resident_id: Mapped[int | None] = mapped_column(index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
    # SHA-256 of the clinical row the event records, as it stood when the event was written
    # (unit.audit.row_hash): `flask audit verify` checks each such row against its latest event.
    row_hash: Mapped[str | None] = mapped_column(sa.String(64))


# On PostgreSQL the audit table refuses UPDATE and DELETE outright (the migration does the same).
AUDIT_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql
"""
AUDIT_APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
"""
event.listen(AuditEvent.__table__, "after_create",
             DDL(AUDIT_APPEND_ONLY_FUNCTION.replace("%", "%%")).execute_if(dialect="postgresql"))
event.listen(AuditEvent.__table__, "after_create",
             DDL(AUDIT_APPEND_ONLY_TRIGGER).execute_if(dialect="postgresql"))


class AuditCheckpoint(db.Model):
    """The last full verification of a unit's chain: later checks start from here."""

    __tablename__ = "audit_checkpoints"

    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), primary_key=True)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(sa.String(64))
    verified_at: Mapped[datetime]
