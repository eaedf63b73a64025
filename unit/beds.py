"""Beds, the waiting list and the census: who is in which bed, who is expected in and out.

A referral is accepted onto the waiting list with a planned date once the competence check
(unit.competence) says this unit can take it; the check runs again on the day of admission,
with the assessment as it is then and the care model in force then, because either may have
changed while the person waited (docs/safety/hazard-log.md HAZ-070). The census is the number
of residents on the unit; occupancy is the census over the unit's open beds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.clock import unit_zone
from config.db import unit_of_work
from config.errors import Conflict, DomainError, Forbidden, NotFound
from config.extensions import db
from unit.audit import record_event
from unit.errors import AdmissionDeclined, AlreadyAdmitted
from unit.models import Admission, Referral, Resident, Staff
from unit.services import MAX_ID, active_admission, admit_resident, check_referral

PLANNED_STATUSES = ("waiting", "admitted", "declined", "cancelled")
MAX_STAY_DAYS = 28  # a residential detox is 7-28 days
_OPEN = sa.text("released_at IS NULL")


# --- models ----------------------------------------------------------------------------------

class Bed(db.Model):
    """A bed in service from ``opened_at`` until ``closed_at``; a bed taken out of service and
    brought back is a new row (so that the census of any past day counts the beds then)."""

    __tablename__ = "beds"
    __table_args__ = (
        # Names are unique among the beds in service (a closed bed's name may be used again).
        sa.Index("uq_beds_open_name", "unit_id", "name", unique=True,
                 sqlite_where=sa.text("closed_at IS NULL"),
                 postgresql_where=sa.text("closed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(60))
    opened_at: Mapped[datetime]
    opened_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    close_reason: Mapped[str | None] = mapped_column(sa.Text)


class BedAssignment(db.Model):
    """A resident in a bed from ``assigned_at`` until ``released_at`` (a move or discharge)."""

    __tablename__ = "bed_assignments"
    __table_args__ = (
        # One resident per bed and one bed per resident at a time, kept by the database.
        sa.Index("uq_bed_assignments_bed_open", "bed_id", unique=True,
                 sqlite_where=_OPEN, postgresql_where=_OPEN),
        sa.Index("uq_bed_assignments_admission_open", "admission_id", unique=True,
                 sqlite_where=_OPEN, postgresql_where=_OPEN),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    bed_id: Mapped[int] = mapped_column(sa.ForeignKey("beds.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    assigned_at: Mapped[datetime]
    assigned_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    released_at: Mapped[datetime | None]

    bed: Mapped[Bed] = relationship()


class PlannedAdmission(db.Model):
    """A referral accepted onto the waiting list with a planned date of admission."""

    __tablename__ = "planned_admissions"
    __table_args__ = (
        sa.CheckConstraint("status IN ('waiting', 'admitted', 'declined', 'cancelled')", name="status"),
        sa.CheckConstraint("planned_stay_days BETWEEN 1 AND 28", name="stay"),
        sa.Index("ix_planned_admissions_unit_status_date", "unit_id", "status", "planned_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="waiting")
    resident: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # name, date_of_birth, nhs_number
    substances: Mapped[list[str]] = mapped_column(sa.JSON)
    assessment: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    planned_date: Mapped[date]
    planned_stay_days: Mapped[int]
    bed_id: Mapped[int | None] = mapped_column(sa.ForeignKey("beds.id"))
    referrer: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # name, organisation, address, contact
    gp: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)        # name, practice, address, contact
    note: Mapped[str | None] = mapped_column(sa.Text)
    # The competence check at acceptance: the model then, high risk and why, flags.
    acceptance: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    accepted_at: Mapped[datetime]
    accepted_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    admission_id: Mapped[int | None] = mapped_column(sa.ForeignKey("admissions.id"), unique=True)
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    close_reason: Mapped[str | None] = mapped_column(sa.Text)
    declined_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)

    bed: Mapped[Bed | None] = relationship()
    accepted_by: Mapped[Staff] = relationship(foreign_keys=[accepted_by_id])


class ExpectedDischarge(db.Model):
    """The date a resident is expected to leave (set at admission from the planned stay, and
    moved by staff as the detox goes)."""

    __tablename__ = "expected_discharges"

    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    expected_on: Mapped[date]
    reason: Mapped[str] = mapped_column(sa.Text)
    set_at: Mapped[datetime]
    set_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))


# --- errors ----------------------------------------------------------------------------------

class BedNotFound(NotFound):
    type = "bed-not-found"
    title = "No such bed on your unit"


class BedOccupied(Conflict):
    type = "bed-occupied"
    title = "The bed is taken"


class NoBedFree(Conflict):
    type = "no-bed-free"
    title = "Every bed of the unit is taken"


class BedInvalid(DomainError):
    type = "bed-invalid"
    title = "The bed cannot be added or changed"


class PlannedAdmissionNotFound(NotFound):
    type = "planned-admission-not-found"
    title = "No such entry on your unit's waiting list"


class PlannedAdmissionClosed(Conflict):
    type = "planned-admission-closed"
    title = "The waiting-list entry is no longer waiting"


class PlannedAdmissionInvalid(DomainError):
    type = "planned-admission-invalid"
    title = "The referral cannot be put on the waiting list"


# --- beds ------------------------------------------------------------------------------------

def _manager(actor: Staff, what: str) -> None:
    if actor.role != "manager":
        raise Forbidden(f"Only a manager may {what}.")


def _bed(actor: Staff, bed_id: int, *, field_name: str | None = None) -> Bed:
    bed = db.session.get(Bed, bed_id) if 0 < bed_id <= MAX_ID else None
    if bed is None or bed.unit_id != actor.unit_id:
        errors = {field_name: ["Not a bed of your unit."]} if field_name else None
        raise BedNotFound(f"There is no bed {bed_id} on your unit.", errors=errors)
    return bed


def _occupant(bed_id: int) -> BedAssignment | None:
    return db.session.scalars(select(BedAssignment).where(
        BedAssignment.bed_id == bed_id, BedAssignment.released_at.is_(None))).first()


@unit_of_work
def add_bed(actor: Staff, *, name: str, now: datetime) -> Bed:
    """A manager puts a bed into service (its name unique among the unit's open beds)."""
    _manager(actor, "add beds")
    name = " ".join(name.split())
    taken = db.session.scalar(select(Bed.id).where(Bed.unit_id == actor.unit_id, Bed.name == name,
                                                   Bed.closed_at.is_(None)))
    if taken:
        raise BedInvalid(f"The unit already has a bed called {name!r}.", errors={"name": ["Taken."]})
    bed = Bed(unit_id=actor.unit_id, name=name, opened_at=now, opened_by_id=actor.id)
    db.session.add(bed)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="bed.open", entity_type="bed",
                 entity_id=bed.id, now=now, after={"name": name})
    return bed


@unit_of_work
def close_bed(actor: Staff, bed_id: int, *, reason: str, now: datetime) -> Bed:
    """A manager takes a bed out of service (kept; an occupied bed cannot be closed)."""
    _manager(actor, "close beds")
    bed = _bed(actor, bed_id)
    if bed.closed_at is not None:
        raise BedInvalid(f"Bed {bed.name} is already out of service.")
    occupant = _occupant(bed.id)
    if occupant is not None:
        raise BedOccupied(f"Bed {bed.name} is occupied: move the resident to another bed first.")
    bed.closed_at, bed.closed_by_id, bed.close_reason = now, actor.id, reason
    record_event(unit_id=actor.unit_id, actor=actor, action="bed.close", entity_type="bed",
                 entity_id=bed.id, now=now, before={"open": True},
                 after={"open": False, "reason": reason})
    return bed


def open_beds(unit_id: int) -> list[Bed]:
    """The unit's beds in service, by name."""
    return list(db.session.scalars(select(Bed).where(Bed.unit_id == unit_id, Bed.closed_at.is_(None))
                                   .order_by(Bed.name, Bed.id)))


def current_assignments(unit_id: int) -> dict[int, BedAssignment]:
    """The unit's occupied beds: admission id -> its current bed assignment (one query)."""
    return {a.admission_id: a for a in db.session.scalars(
        select(BedAssignment).where(BedAssignment.unit_id == unit_id,
                                    BedAssignment.released_at.is_(None))
        .options(sa.orm.joinedload(BedAssignment.bed)))}


def free_beds(unit_id: int) -> list[Bed]:
    """The unit's open beds nobody is in, by name."""
    taken = select(BedAssignment.bed_id).where(BedAssignment.unit_id == unit_id,
                                               BedAssignment.released_at.is_(None))
    return list(db.session.scalars(select(Bed).where(
        Bed.unit_id == unit_id, Bed.closed_at.is_(None), Bed.id.not_in(taken)).order_by(Bed.name, Bed.id)))


def _put_in_bed(actor: Staff, admission: Admission, bed: Bed, now: datetime) -> BedAssignment:
    if bed.closed_at is not None:
        raise BedInvalid(f"Bed {bed.name} is out of service.", errors={"bed_id": ["Out of service."]})
    occupant = _occupant(bed.id)
    if occupant is not None and occupant.admission_id != admission.id:
        raise BedOccupied(f"Bed {bed.name} is taken by another resident.",
                          errors={"bed_id": ["Occupied."]})
    current = db.session.scalars(select(BedAssignment).where(
        BedAssignment.admission_id == admission.id, BedAssignment.released_at.is_(None))).first()
    if current is not None and current.bed_id == bed.id:
        return current  # already there
    before = None
    if current is not None:
        current.released_at = now
        before = {"bed": current.bed.name}
        db.session.flush()  # the old bed is free before the new assignment is written
    assignment = BedAssignment(unit_id=admission.unit_id, bed_id=bed.id, admission_id=admission.id,
                               assigned_at=now, assigned_by_id=actor.id)
    db.session.add(assignment)
    db.session.flush()
    record_event(unit_id=admission.unit_id, actor=actor, action="bed.assign",
                 entity_type="bed_assignment", entity_id=assignment.id,
                 resident_id=admission.resident_id, now=now, before=before,
                 after={"bed": bed.name, "admission_id": admission.id})
    return assignment


@unit_of_work
def assign_bed(actor: Staff, admission_id: int, *, bed_id: int, now: datetime) -> BedAssignment:
    """Put a resident in a free bed (moving them from their bed, if they had one)."""
    admission = active_admission(actor, admission_id)
    return _put_in_bed(actor, admission, _bed(actor, bed_id, field_name="bed_id"), now)


def release_bed(admission: Admission, actor: Staff, now: datetime) -> None:
    """At discharge: the resident's bed is free again (a hook of ``discharge_admission``)."""
    for assignment in db.session.scalars(select(BedAssignment).where(
            BedAssignment.admission_id == admission.id, BedAssignment.released_at.is_(None))):
        assignment.released_at = now


# --- expected discharges ---------------------------------------------------------------------

@unit_of_work
def set_expected_discharge(actor: Staff, admission_id: int, *, expected_on: date, reason: str,
                           now: datetime) -> ExpectedDischarge:
    """Set (or move) the date a resident is expected to leave."""
    admission = active_admission(actor, admission_id)
    return _expect_discharge(actor, admission, expected_on, reason, now)


def _expect_discharge(actor: Staff, admission: Admission, expected_on: date, reason: str,
                      now: datetime) -> ExpectedDischarge:
    admitted_on = admission.admitted_at.astimezone(unit_zone()).date()
    if expected_on < admitted_on:
        raise PlannedAdmissionInvalid("The expected discharge is before the admission.",
                                      errors={"expected_on": ["Before the admission."]})
    if expected_on > admitted_on + timedelta(days=MAX_STAY_DAYS * 2):
        raise PlannedAdmissionInvalid(
            f"A detox stay is at most {MAX_STAY_DAYS} days; the date is too far off.",
            errors={"expected_on": [f"At most {MAX_STAY_DAYS * 2} days after the admission."]})
    row = db.session.get(ExpectedDischarge, admission.id)
    before = {"expected_on": row.expected_on} if row else None
    if row is None:
        row = ExpectedDischarge(admission_id=admission.id, unit_id=admission.unit_id,
                                expected_on=expected_on, reason=reason, set_at=now, set_by_id=actor.id)
        db.session.add(row)
    else:
        row.expected_on, row.reason, row.set_at, row.set_by_id = expected_on, reason, now, actor.id
    db.session.flush()
    record_event(unit_id=admission.unit_id, actor=actor, action="discharge.expect",
                 entity_type="admission", entity_id=admission.id, resident_id=admission.resident_id,
                 now=now, before=before, after={"expected_on": expected_on, "reason": reason})
    return row


# --- the waiting list ------------------------------------------------------------------------

def _today(now: datetime) -> date:
    return now.astimezone(unit_zone()).date()


@unit_of_work
def accept_referral(actor: Staff, *, resident: dict, substances: list[str], assessment: dict,
                    planned_date: date, planned_stay_days: int, bed_id: int | None,
                    referrer: dict | None, gp: dict | None, note: str | None,
                    now: datetime) -> PlannedAdmission:
    """Accept a referral onto the waiting list with a planned date, if the competence check
    says this unit can take it; a referral it cannot take is declined (kept) as at admission."""
    if planned_date < _today(now):
        raise PlannedAdmissionInvalid("The planned date is in the past.",
                                      errors={"planned_date": ["Today or later."]})
    check = check_referral(actor, resident=resident, substances=substances,
                           assessment=assessment, now=now)
    snapshot = {"name": resident["name"], "date_of_birth": resident["date_of_birth"].isoformat(),
                "nhs_number": resident.get("nhs_number")}
    if check["decision"] == "declined":
        _decline(actor, snapshot, substances, assessment, check, now, stage="acceptance")
    nhs = resident.get("nhs_number")
    if nhs:
        _check_not_waiting_or_in(actor.unit_id, nhs)
    bed = _bed(actor, bed_id, field_name="bed_id") if bed_id is not None else None
    if bed is not None and bed.closed_at is not None:
        raise BedInvalid(f"Bed {bed.name} is out of service.", errors={"bed_id": ["Out of service."]})
    planned = PlannedAdmission(
        unit_id=actor.unit_id, status="waiting", resident=snapshot, substances=substances,
        assessment=assessment, planned_date=planned_date, planned_stay_days=planned_stay_days,
        bed_id=bed.id if bed else None, referrer=referrer, gp=gp, note=note,
        acceptance={key: check[key] for key in ("unit_model", "high_risk", "risk_reasons", "flags",
                                                "recommended_setting", "recommended_reasons")},
        accepted_at=now, accepted_by_id=actor.id)
    db.session.add(planned)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="waiting_list.accept",
                 entity_type="planned_admission", entity_id=planned.id, now=now,
                 after={"resident": snapshot, "substances": substances, "assessment": assessment,
                        "planned_date": planned_date, "planned_stay_days": planned_stay_days,
                        "bed": bed.name if bed else None, "model": check["unit_model"],
                        "high_risk": check["high_risk"]})
    return planned


def _check_not_waiting_or_in(unit_id: int, nhs_number: str) -> None:
    waiting = db.session.scalars(select(PlannedAdmission).where(
        PlannedAdmission.unit_id == unit_id, PlannedAdmission.status == "waiting")).all()
    if any(p.resident.get("nhs_number") == nhs_number for p in waiting):
        raise PlannedAdmissionInvalid("This NHS number is already on the waiting list.",
                                      errors={"resident": {"nhs_number": ["Already waiting."]}})
    admitted = db.session.scalar(select(Admission.id).join(Resident, Resident.id == Admission.resident_id)
                                 .where(Admission.unit_id == unit_id, Admission.status == "active",
                                        Resident.nhs_number == nhs_number))
    if admitted:
        raise AlreadyAdmitted("This resident is on the unit now.")


def _decline(actor: Staff, snapshot: dict, substances: list[str], assessment: dict, check: dict,
             now: datetime, *, stage: str, planned: PlannedAdmission | None = None) -> None:
    """Keep the declined referral for the audit and the report, then refuse (committed)."""
    referral = Referral(
        unit_id=actor.unit_id, resident_snapshot=snapshot, substances=substances,
        assessment=assessment, unit_model=check["unit_model"], decision="declined",
        reasons=check["risk_reasons"], flags=check["flags"],
        recommended_setting=check["recommended_setting"],
        recommended_reasons=check["recommended_reasons"], decided_at=now, decided_by_id=actor.id)
    db.session.add(referral)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="referral.decline",
                 entity_type="referral", entity_id=referral.id, now=now,
                 after={"resident": snapshot, "reasons": check["reasons"], "stage": stage,
                        "model": check["unit_model"],
                        "planned_admission_id": planned.id if planned else None})
    when = "on the waiting list" if stage == "acceptance" else "on the day of admission"
    raise AdmissionDeclined(
        f"Declined {when}: a medically monitored unit must decline this referral: "
        + "; ".join(r["criterion"] for r in check["reasons"]) + ".",
        reasons=check["reasons"], referral_id=referral.id,
        recommended_setting=check["recommended_setting"],
        recommended_reasons=check["recommended_reasons"])


def get_planned(actor: Staff, planned_id: int) -> PlannedAdmission:
    """A waiting-list entry of the actor's unit."""
    planned = db.session.get(PlannedAdmission, planned_id) if 0 < planned_id <= MAX_ID else None
    if planned is None or planned.unit_id != actor.unit_id:
        raise PlannedAdmissionNotFound(f"There is no waiting-list entry {planned_id} on your unit.")
    return planned


def list_planned(actor: Staff, *, status: str | None) -> list[PlannedAdmission]:
    """The unit's waiting list, soonest planned date first."""
    query = select(PlannedAdmission).where(PlannedAdmission.unit_id == actor.unit_id)
    if status:
        query = query.where(PlannedAdmission.status == status)
    return list(db.session.scalars(query.order_by(PlannedAdmission.planned_date, PlannedAdmission.id)))


def _locked_waiting(actor: Staff, planned_id: int) -> PlannedAdmission:
    planned = db.session.scalars(select(PlannedAdmission).where(
        PlannedAdmission.id == planned_id).with_for_update()).first() if 0 < planned_id <= MAX_ID else None
    if planned is None or planned.unit_id != actor.unit_id:
        raise PlannedAdmissionNotFound(f"There is no waiting-list entry {planned_id} on your unit.")
    if planned.status != "waiting":
        raise PlannedAdmissionClosed(f"Waiting-list entry {planned_id} is {planned.status}, not waiting.")
    return planned


@unit_of_work
def admit_planned(actor: Staff, planned_id: int, *, assessment: dict | None, bed_id: int | None,
                  now: datetime) -> Admission:
    """Admit someone from the waiting list: the competence check runs again (today's model,
    today's assessment), a bed is taken (the one asked for, else the planned one, else the
    first free one) and the expected discharge is set from the planned stay."""
    planned = _locked_waiting(actor, planned_id)
    assessment = assessment if assessment is not None else planned.assessment
    person = {**planned.resident, "date_of_birth": date.fromisoformat(planned.resident["date_of_birth"])}
    check = check_referral(actor, resident=person, substances=planned.substances,
                           assessment=assessment, now=now)
    if check["decision"] == "declined":
        planned.status, planned.closed_at, planned.closed_by_id = "declined", now, actor.id
        planned.declined_reasons = check["reasons"]
        planned.close_reason = "Declined on the day of admission: the competence check failed."
        db.session.flush()
        _decline(actor, planned.resident, planned.substances, assessment, check, now,
                 stage="admission", planned=planned)
    bed = _bed_for(actor, planned, bed_id)
    admission = admit_resident(actor, resident=person, substances=planned.substances,
                               assessment=assessment, now=now)
    if bed is not None:
        _put_in_bed(actor, admission, bed, now)
    _expect_discharge(actor, admission, _today(now) + timedelta(days=planned.planned_stay_days),
                      f"Planned stay of {planned.planned_stay_days} days", now)
    planned.status, planned.admission_id = "admitted", admission.id
    planned.closed_at, planned.closed_by_id = now, actor.id
    record_event(unit_id=actor.unit_id, actor=actor, action="waiting_list.admit",
                 entity_type="planned_admission", entity_id=planned.id,
                 resident_id=admission.resident_id, now=now,
                 after={"admission_id": admission.id, "bed": bed.name if bed else None,
                        "assessment_changed": assessment != planned.assessment})
    return admission


def _bed_for(actor: Staff, planned: PlannedAdmission, bed_id: int | None) -> Bed | None:
    """The bed the person goes to; None on a unit that keeps no beds. A unit with beds and
    none free cannot admit: nobody is admitted to a corridor."""
    if bed_id is not None:
        bed = _bed(actor, bed_id, field_name="bed_id")
        if bed.closed_at is not None:
            raise BedInvalid(f"Bed {bed.name} is out of service.", errors={"bed_id": ["Out of service."]})
        if _occupant(bed.id) is not None:
            raise BedOccupied(f"Bed {bed.name} is taken by another resident.", errors={"bed_id": ["Occupied."]})
        return bed
    free = free_beds(actor.unit_id)
    if planned.bed_id is not None:
        for bed in free:
            if bed.id == planned.bed_id:
                return bed
    if free:
        return free[0]
    if open_beds(actor.unit_id):
        raise NoBedFree("Every bed is taken: nobody can be admitted until a bed is free. "
                        "Discharge or move someone first, or open a bed.")
    return None


@unit_of_work
def cancel_planned(actor: Staff, planned_id: int, *, reason: str, now: datetime) -> PlannedAdmission:
    """Take someone off the waiting list (did not attend, went elsewhere), with the reason."""
    planned = _locked_waiting(actor, planned_id)
    planned.status, planned.closed_at, planned.closed_by_id = "cancelled", now, actor.id
    planned.close_reason = reason
    record_event(unit_id=actor.unit_id, actor=actor, action="waiting_list.cancel",
                 entity_type="planned_admission", entity_id=planned.id, now=now,
                 before={"status": "waiting"}, after={"status": "cancelled", "reason": reason})
    return planned


def planned_for_admission(admission_id: int) -> PlannedAdmission | None:
    """The waiting-list entry an admission came from, if any (its referrer and GP)."""
    return db.session.scalars(select(PlannedAdmission).where(
        PlannedAdmission.admission_id == admission_id)).first()


# --- the census ------------------------------------------------------------------------------

@dataclass
class Census:
    """The unit on one day: beds, who is in them, who is expected in and out."""

    day: date
    at: datetime
    beds: list[Bed]
    occupied: dict[int, Admission]  # bed id -> the admission in it
    residents: list[Admission]      # everyone on the unit (in a bed or not)
    without_bed: list[Admission]
    expected_admissions: list[PlannedAdmission]
    expected_discharges: list[tuple[Admission, ExpectedDischarge]]
    overdue_admissions: list[PlannedAdmission] = field(default_factory=list)

    @property
    def census(self) -> int:
        return len(self.residents)

    @property
    def occupancy(self) -> float | None:
        """Residents over open beds (None on a unit that keeps no beds)."""
        return round(self.census / len(self.beds), 3) if self.beds else None

    @property
    def over_capacity(self) -> bool:
        return bool(self.beds) and self.census > len(self.beds)

    @property
    def free_beds(self) -> list[Bed]:
        return [bed for bed in self.beds if bed.id not in self.occupied]


def census(unit_id: int, *, day: date | None, now: datetime) -> Census:
    """Today's census (or another day's expected admissions and discharges): beds in service,
    residents now, the waiting list planned for the day and the discharges expected on it."""
    day = day or _today(now)
    residents = list(db.session.scalars(
        select(Admission).where(Admission.unit_id == unit_id, Admission.status == "active")
        .order_by(Admission.admitted_at, Admission.id)))
    by_id = {a.id: a for a in residents}
    assignments = current_assignments(unit_id)
    occupied = {a.bed_id: by_id[a.admission_id] for a in assignments.values() if a.admission_id in by_id}
    waiting = list(db.session.scalars(select(PlannedAdmission).where(
        PlannedAdmission.unit_id == unit_id, PlannedAdmission.status == "waiting",
        PlannedAdmission.planned_date <= day).order_by(PlannedAdmission.planned_date, PlannedAdmission.id)))
    expected = db.session.scalars(select(ExpectedDischarge).where(
        ExpectedDischarge.unit_id == unit_id, ExpectedDischarge.expected_on <= day,
        ExpectedDischarge.admission_id.in_(list(by_id) or [0]))).all()
    return Census(
        day=day, at=now, beds=open_beds(unit_id), occupied=occupied, residents=residents,
        without_bed=[a for a in residents if a.id not in assignments],
        expected_admissions=[p for p in waiting if p.planned_date == day],
        overdue_admissions=[p for p in waiting if p.planned_date < day],
        expected_discharges=sorted(((by_id[e.admission_id], e) for e in expected),
                                   key=lambda pair: (pair[1].expected_on, pair[0].id)))


def bed_of(admission_id: int) -> BedAssignment | None:
    """The admission's current bed, if it has one."""
    return db.session.scalars(select(BedAssignment).where(
        BedAssignment.admission_id == admission_id, BedAssignment.released_at.is_(None))
        .options(sa.orm.joinedload(BedAssignment.bed))).first()


def daily_census(unit_id: int, start: datetime, end: datetime, zone: ZoneInfo,
                 now: datetime) -> list[dict[str, Any]]:
    """One row per local day of [start, end): the midnight census (residents on the unit at
    the end of the day, or now for today), beds in service then, occupancy, admissions and
    discharges that day. A few queries, whatever the period."""
    admissions = db.session.execute(select(Admission.admitted_at, Admission.discharged_at).where(
        Admission.unit_id == unit_id, Admission.admitted_at < end,
        sa.or_(Admission.discharged_at.is_(None), Admission.discharged_at >= start))).all()
    beds = db.session.execute(select(Bed.opened_at, Bed.closed_at).where(
        Bed.unit_id == unit_id, Bed.opened_at < end,
        sa.or_(Bed.closed_at.is_(None), Bed.closed_at >= start))).all()
    rows = []
    day = start.astimezone(zone).date()
    while True:
        day_start = datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)
        day_end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc)
        if day_start >= end or day_start > now:
            break
        # The census instant: the last moment of the day (midnight), or now for today.
        at = min(day_end - timedelta(microseconds=1), now, end)

        def present(opened: datetime, closed: datetime | None) -> bool:
            return opened <= at and (closed is None or closed > at)

        on_unit = sum(1 for admitted, discharged in admissions if present(admitted, discharged))
        in_service = sum(1 for opened, closed in beds if present(opened, closed))
        rows.append({
            "date": day.isoformat(), "census": on_unit, "beds": in_service,
            "occupancy": round(on_unit / in_service, 3) if in_service else None,
            "admitted": sum(1 for admitted, _ in admissions if day_start <= admitted < day_end),
            "discharged": sum(1 for _, discharged in admissions
                              if discharged is not None and day_start <= discharged < day_end),
            "complete": day_end <= now,
        })
        day += timedelta(days=1)
    return rows


def census_section(unit, start: datetime, end: datetime, zone: ZoneInfo, now: datetime) -> dict:
    """The inspector report's census: a figure per day, and the period's means and peaks."""
    days = daily_census(unit.id, start, end, zone, now)
    occupancies = [d["occupancy"] for d in days if d["occupancy"] is not None]
    return {"days": days,
            "mean_census": round(sum(d["census"] for d in days) / len(days), 2) if days else None,
            "max_census": max((d["census"] for d in days), default=None),
            "mean_occupancy": round(sum(occupancies) / len(occupancies), 3) if occupancies else None,
            "days_over_capacity": sum(1 for d in days if d["beds"] and d["census"] > d["beds"])}


def expected_discharge(admission_id: int) -> ExpectedDischarge | None:
    """The date the resident is expected to leave, if one is set."""
    return db.session.get(ExpectedDischarge, admission_id)


def census_tables(section: dict) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The census section as the report's CSV and PDF tables: a row per day."""
    return {"census_by_day": (["date", "census", "beds", "occupancy", "admitted", "discharged", "complete"],
                              [[d["date"], d["census"], d["beds"], d["occupancy"], d["admitted"],
                                d["discharged"], d["complete"]] for d in section["days"]])}



_CENSUS_SECTION = []


def report_section():
    """The report's census section, a figure per day; made once (registered in create_app)."""
    if not _CENSUS_SECTION:
        from unit.report import ReportSection

        _CENSUS_SECTION.append(ReportSection(
            "census", lambda p: census_section(p.unit, p.start, p.end, p.zone, p.now), census_tables,
            titles={"census_by_day": "Census per day (midnight)"}))
    return _CENSUS_SECTION[0]
