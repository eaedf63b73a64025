"""The on-call rota: who holds each duty when, the gaps in cover, and the manager's edits.

Escalation pages whoever the rota puts on the routed duty (``monitoring.escalations``); a unit
must always have a nurse in charge and the doctor its care model needs (docs/clinical-rules.md
section 3).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from monitoring.errors import RotaShiftInvalid, RotaShiftNotFound, RotaStaffNotFound
from monitoring.models import RotaShift
from unit.audit import record_event
from unit.models import Staff
from unit.services import model_history

DUTY_LABELS = {"nurse_in_charge": "nurse in charge", "on_site_doctor": "on-site doctor",
               "visiting_gp": "visiting GP on call", "second_on_call": "second on call",
               "clinical_lead": "clinical lead"}


def on_duty(unit_ids: Iterable[int], duty: str, at: datetime) -> list[RotaShift]:
    """Rota shifts covering ``at`` for a duty on these units (with their staff), in one query."""
    return list(db.session.scalars(
        select(RotaShift).options(joinedload(RotaShift.staff))
        .where(RotaShift.unit_id.in_(unit_ids), RotaShift.duty == duty,
               RotaShift.starts_at <= at, RotaShift.ends_at > at,
               RotaShift.cancelled_at.is_(None)).order_by(RotaShift.id)))


def _required_duties(unit_id: int, start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    # The doctor duty follows the care model in force at each moment (a declared change moves
    # it from its effective time); nothing is required before the unit existed.
    changes = model_history(unit_id)
    required = []
    for i, change in enumerate(changes):
        period_start = max(start, change.effective_at)
        period_end = min(end, changes[i + 1].effective_at) if i + 1 < len(changes) else end
        if period_start < period_end:
            required += [("nurse_in_charge", period_start, period_end),
                         (_DOCTOR_DUTY[change.model], period_start, period_end)]
    return required


_DOCTOR_DUTY = {"medically_managed": "on_site_doctor", "medically_monitored": "visiting_gp"}


def rota_gaps(unit_id: int, start: datetime, end: datetime) -> list[dict]:
    """Periods in [start, end) when a required duty has nobody on the rota (one query for the
    shifts of every duty)."""
    required = _required_duties(unit_id, start, end)
    if not required:
        return []
    shifts = db.session.execute(
        select(RotaShift.duty, RotaShift.starts_at, RotaShift.ends_at)
        .where(RotaShift.unit_id == unit_id, RotaShift.cancelled_at.is_(None),
               RotaShift.ends_at > start, RotaShift.starts_at < end)
        .order_by(RotaShift.starts_at)).all()
    found: dict[str, list[dict]] = {}
    for duty, period_start, period_end in required:
        covering = [(starts_at, ends_at) for shift_duty, starts_at, ends_at in shifts
                    if shift_duty == duty and ends_at > period_start and starts_at < period_end]
        gaps = found.setdefault(duty, [])
        cursor = period_start
        for shift in [*covering, None]:
            gap_end = period_end if shift is None else min(shift[0], period_end)
            if gap_end > cursor:
                if gaps and gaps[-1]["to"] == cursor:
                    gaps[-1]["to"] = gap_end  # one gap across two periods of the same duty
                else:
                    gaps.append({"duty": duty, "from": cursor, "to": gap_end})
            if shift is not None:
                cursor = max(cursor, shift[1])
    return [gap for gaps in found.values() for gap in gaps]


@unit_of_work
def add_shift(actor: Staff, *, duty: str, staff_id: int | None, contact: str | None,
              starts_at: datetime, ends_at: datetime, now: datetime) -> RotaShift:
    """A manager puts someone (or an external service) on the rota for a period."""
    if actor.role != "manager":
        raise Forbidden("Only a manager may edit the rota.")
    if ends_at <= starts_at:
        raise RotaShiftInvalid("The shift must end after it starts.", errors={"ends_at": ["Must be after starts_at."]})
    if staff_id is None and not contact:
        raise RotaShiftInvalid("Name a member of staff or a contact (e.g. the out-of-hours service).",
                          errors={"staff_id": ["Give staff_id or contact."]})
    if staff_id is not None:
        staff = db.session.get(Staff, staff_id)
        if staff is None or staff.unit_id != actor.unit_id:
            raise RotaStaffNotFound(f"There is no member of staff {staff_id} on your unit.",
                           errors={"staff_id": ["Not on your unit."]})
    shift = RotaShift(unit_id=actor.unit_id, duty=duty, staff_id=staff_id, contact=contact,
                      starts_at=starts_at, ends_at=ends_at, created_by_id=actor.id, created_at=now)
    db.session.add(shift)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="rota.add", entity_type="rota_shift",
                 entity_id=shift.id, now=now,
                 after={"duty": duty, "staff_id": staff_id, "contact": contact,
                        "starts_at": starts_at, "ends_at": ends_at})
    return shift


@unit_of_work
def cancel_shift(actor: Staff, shift_id: int, *, now: datetime) -> RotaShift:
    """A manager takes a shift off the rota (kept, marked cancelled)."""
    if actor.role != "manager":
        raise Forbidden("Only a manager may edit the rota.")
    shift = db.session.get(RotaShift, shift_id)
    if shift is None or shift.unit_id != actor.unit_id:
        raise RotaShiftNotFound(f"There is no rota shift {shift_id} on your unit.")
    if shift.cancelled_at is None:
        shift.cancelled_at = now
        record_event(unit_id=actor.unit_id, actor=actor, action="rota.cancel",
                     entity_type="rota_shift", entity_id=shift.id, now=now,
                     before={"cancelled": False}, after={"cancelled": True})
    return shift


def list_shifts(actor: Staff, start: datetime, end: datetime) -> list[RotaShift]:
    """The unit's rota shifts overlapping [start, end)."""
    return list(db.session.scalars(
        select(RotaShift).where(RotaShift.unit_id == actor.unit_id, RotaShift.ends_at > start,
                                RotaShift.starts_at < end).order_by(RotaShift.starts_at, RotaShift.duty)))


def rota_staff(actor: Staff) -> list[Staff]:
    """Who may be put on the rota: the unit's active staff, by name."""
    return list(db.session.scalars(select(Staff).where(Staff.unit_id == actor.unit_id,
                                                       Staff.active.is_(True)).order_by(Staff.full_name)))
