"""Leave and time off the unit: a leave episode (planned, with an expected return, or
unplanned) pauses the resident's observation schedules, so that nothing due while they are
away is counted as missed; it shows on the board; it escalates when the expected return
passes (an unplanned leave at once); on return the scales are due at once and a
breath-alcohol reading is asked for, and the schedules restart.

A paused schedule is an inactive one (the due sweep reads active schedules only, so it needs
no change) whose pause is recorded here, in ``leave_paused_schedules``: the return restarts
exactly the schedules the leave paused, never one a nurse or doctor had stopped.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.clock import local
from config.db import unit_of_work
from config.errors import Conflict, DomainError, NotFound
from config.extensions import db
from monitoring import screens
from monitoring.escalations import Trigger, raise_escalation
from monitoring.models import Escalation, EscalationStep, ObservationSchedule, ScheduleChange
from unit.audit import record_event
from unit.models import Admission, Staff
from unit.services import MAX_ID, active_admission

LEAVE_KINDS = {"planned": "Planned leave", "unplanned": "Unplanned (left without agreement)"}
CLOCK_SKEW = timedelta(minutes=2)
BACKDATE_LIMIT = timedelta(hours=12)  # a leave found out about later: how far back it may start
MAX_PLANNED = timedelta(days=3)       # a detox resident's leave is hours, at most a weekend


# --- models ----------------------------------------------------------------------------------

class LeaveEpisode(db.Model):
    """A resident off the unit from ``started_at`` until ``returned_at``."""

    __tablename__ = "leave_episodes"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('planned', 'unplanned')", name="kind"),
        sa.CheckConstraint("status IN ('on_leave', 'returned', 'ended')", name="status"),
        # One open leave per resident, kept by the database.
        sa.Index("uq_leave_episodes_open", "admission_id", unique=True,
                 sqlite_where=sa.text("status = 'on_leave'"), postgresql_where=sa.text("status = 'on_leave'")),
        # The overdue check reads open episodes by expected return.
        sa.Index("ix_leave_episodes_due", "status", "expected_return_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default="on_leave")
    reason: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime]
    expected_return_at: Mapped[datetime | None]
    returned_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(sa.Text)
    return_note: Mapped[str | None] = mapped_column(sa.Text)
    started_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    returned_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    escalated_at: Mapped[datetime | None]  # the overdue return (or unplanned leave) was escalated
    escalation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("escalations.id"))
    recorded_at: Mapped[datetime]

    admission: Mapped[Admission] = relationship()
    started_by: Mapped[Staff] = relationship(foreign_keys=[started_by_id])
    returned_by: Mapped[Staff | None] = relationship(foreign_keys=[returned_by_id])

    def overdue(self, now: datetime) -> bool:
        """Still away after the expected return."""
        return (self.status == "on_leave" and self.expected_return_at is not None
                and now > self.expected_return_at)


class LeavePausedSchedule(db.Model):
    """A schedule a leave paused (and restarts on return)."""

    __tablename__ = "leave_paused_schedules"

    leave_id: Mapped[int] = mapped_column(sa.ForeignKey("leave_episodes.id"), primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("observation_schedules.id"), primary_key=True)
    resumed_at: Mapped[datetime | None]


# --- errors ----------------------------------------------------------------------------------

class LeaveNotFound(NotFound):
    type = "leave-not-found"
    title = "No such leave on your unit"


class AlreadyOnLeave(Conflict):
    type = "already-on-leave"
    title = "The resident is on leave already"


class LeaveClosed(Conflict):
    type = "leave-closed"
    title = "The resident is back from this leave"


class LeaveInvalid(DomainError):
    type = "leave-invalid"
    title = "The leave cannot be recorded so"


# --- starting and ending leave ---------------------------------------------------------------

def _schedule_change(schedule: ObservationSchedule, reason: str, actor: Staff | None, now: datetime) -> None:
    db.session.add(ScheduleChange(schedule_id=schedule.id, admission_id=schedule.admission_id,
                                  old_interval_minutes=schedule.interval_minutes,
                                  new_interval_minutes=schedule.interval_minutes, reason=reason,
                                  changed_at=now, changed_by_id=actor.id if actor else None))


def _trigger(episode: LeaveEpisode, admission: Admission, now: datetime) -> Trigger:
    name = admission.resident.name
    if episode.kind == "unplanned" and episode.expected_return_at is None:
        reason = f"{name} left the unit without agreed leave at {local(episode.started_at):%H:%M}"
    else:
        late = int((now - episode.expected_return_at).total_seconds() // 60)
        reason = (f"{name} is not back from {episode.kind} leave: expected at "
                  f"{local(episode.expected_return_at):%d %b %H:%M}, {late} min late")
    # Off the unit mid-detox: lost tolerance, withdrawal, intoxication. The doctor decides.
    return Trigger("leave_overdue" if episode.kind == "planned" else "unplanned_leave", "urgent",
                   reason, f"leave:{episode.id}")


@unit_of_work
def start_leave(actor: Staff, admission_id: int, *, kind: str, reason: str,
                expected_return_at: datetime | None, started_at: datetime | None, note: str | None,
                now: datetime) -> LeaveEpisode:
    """A resident goes on leave (planned, with an expected return) or is found to have left
    (unplanned, escalated at once): their observation schedules are paused."""
    admission = active_admission(actor, admission_id)
    started_at = started_at or now
    if started_at > now + CLOCK_SKEW:
        raise LeaveInvalid("Leave cannot start in the future: record it when they go.",
                           errors={"started_at": ["Must not be in the future."]})
    if started_at < max(admission.admitted_at, now - BACKDATE_LIMIT):
        raise LeaveInvalid("The leave is dated before the admission, or more than 12 hours ago.",
                           errors={"started_at": ["Too far back."]})
    if kind == "planned" and expected_return_at is None:
        raise LeaveInvalid("Planned leave needs the expected return.",
                           errors={"expected_return_at": ["Required for planned leave."]})
    if expected_return_at is not None and not started_at < expected_return_at <= started_at + MAX_PLANNED:
        raise LeaveInvalid("The expected return is before the leave starts, or more than three days later.",
                           errors={"expected_return_at": ["After the start, within three days."]})
    open_leave = db.session.scalar(select(LeaveEpisode.id).where(
        LeaveEpisode.admission_id == admission.id, LeaveEpisode.status == "on_leave"))
    if open_leave:
        raise AlreadyOnLeave(f"{admission.resident.name} is on leave already (leave {open_leave}).")
    episode = LeaveEpisode(unit_id=admission.unit_id, admission_id=admission.id, kind=kind, status="on_leave",
                           reason=reason, started_at=started_at, expected_return_at=expected_return_at,
                           note=note, started_by_id=actor.id, recorded_at=now)
    db.session.add(episode)
    db.session.flush()
    paused = db.session.scalars(select(ObservationSchedule).where(
        ObservationSchedule.admission_id == admission.id, ObservationSchedule.active.is_(True))
        .order_by(ObservationSchedule.id).with_for_update()).all()
    for schedule in paused:
        # Inactive: the due sweep reads active schedules only, so nothing is missed while away.
        schedule.active, schedule.updated_at = False, now
        db.session.add(LeavePausedSchedule(leave_id=episode.id, schedule_id=schedule.id))
        _schedule_change(schedule, f"Paused: {LEAVE_KINDS[kind].lower()} from "
                                   f"{local(started_at):%d %b %H:%M}", actor, now)
    db.session.flush()
    record_event(unit_id=admission.unit_id, actor=actor, action="leave.start", entity_type="leave_episode",
                 entity_id=episode.id, resident_id=admission.resident_id, now=now,
                 after={"kind": kind, "reason": reason, "started_at": started_at,
                        "expected_return_at": expected_return_at, "note": note,
                        "paused": [s.scale for s in paused]})
    if kind == "unplanned" and expected_return_at is None:
        _escalate(episode, admission, actor, now)
    return episode


def _escalate(episode: LeaveEpisode, admission: Admission, actor: Staff | None, now: datetime) -> None:
    escalation = raise_escalation(admission, _trigger(episode, admission, now), source_type="leave",
                                  source_id=episode.id, actor=actor, now=now)
    episode.escalated_at, episode.escalation_id = now, escalation.id


def _episode(actor: Staff, leave_id: int, *, lock: bool = False) -> LeaveEpisode:
    episode = None
    if 0 < leave_id <= MAX_ID:
        query = select(LeaveEpisode).where(LeaveEpisode.id == leave_id)
        episode = db.session.scalars(query.with_for_update() if lock else query).first()
    if episode is None or episode.unit_id != actor.unit_id:
        raise LeaveNotFound(f"There is no leave {leave_id} on your unit.")
    return episode


def get_leave(actor: Staff, leave_id: int) -> LeaveEpisode:
    """A leave episode of the actor's unit."""
    return _episode(actor, leave_id)


def _open(actor: Staff, leave_id: int) -> LeaveEpisode:
    episode = _episode(actor, leave_id, lock=True)
    if episode.status != "on_leave":
        raise LeaveClosed(f"Leave {leave_id} is over ({episode.status.replace('_', ' ')}).")
    return episode


@unit_of_work
def extend_leave(actor: Staff, leave_id: int, *, expected_return_at: datetime, reason: str,
                 now: datetime) -> LeaveEpisode:
    """The resident phoned: a new expected return (the overdue check starts again from it)."""
    episode = _open(actor, leave_id)
    if not now < expected_return_at <= episode.started_at + MAX_PLANNED:
        raise LeaveInvalid("The new expected return must be later than now and within three days "
                           "of the start of the leave.", errors={"expected_return_at": ["Later than now."]})
    before = {"expected_return_at": episode.expected_return_at}
    episode.expected_return_at, episode.escalated_at = expected_return_at, None
    record_event(unit_id=episode.unit_id, actor=actor, action="leave.extend", entity_type="leave_episode",
                 entity_id=episode.id, resident_id=episode.admission.resident_id, now=now, before=before,
                 after={"expected_return_at": expected_return_at, "reason": reason})
    return episode


@unit_of_work
def return_from_leave(actor: Staff, leave_id: int, *, returned_at: datetime | None,
                      mg_per_l: float | None, note: str | None, now: datetime) -> LeaveEpisode:
    """Back on the unit: the paused schedules restart, due at once; a breath-alcohol reading
    is recorded now if given (else it is due: shown until one is recorded); the escalation of
    an overdue or unplanned leave is closed, its cause gone."""
    episode = _open(actor, leave_id)
    admission = active_admission(actor, episode.admission_id)
    returned_at = returned_at or now
    if not episode.started_at <= returned_at <= now + CLOCK_SKEW:
        raise LeaveInvalid("The return must be after the leave started, and not in the future.",
                           errors={"returned_at": ["Between the start of the leave and now."]})
    episode.status, episode.returned_at, episode.returned_by_id = "returned", returned_at, actor.id
    episode.return_note = note
    restarted = []
    for paused, schedule in db.session.execute(
            select(LeavePausedSchedule, ObservationSchedule)
            .join(ObservationSchedule, ObservationSchedule.id == LeavePausedSchedule.schedule_id)
            .where(LeavePausedSchedule.leave_id == episode.id).with_for_update(of=ObservationSchedule)):
        paused.resumed_at = now
        if schedule.active:
            continue  # restarted by hand while away
        # Due at once on return (docs/safety/hazard-log.md HAZ-079); the time away is not missed.
        schedule.active, schedule.next_due_at, schedule.missed_through = True, now, None
        schedule.updated_at = now
        _schedule_change(schedule, f"Restarted on return from leave at {local(returned_at):%H:%M}: due now",
                         actor, now)
        restarted.append(schedule.scale)
    _close_leave_escalation(episode, actor, now)
    db.session.flush()
    record_event(unit_id=episode.unit_id, actor=actor, action="leave.return", entity_type="leave_episode",
                 entity_id=episode.id, resident_id=admission.resident_id, now=now,
                 after={"returned_at": returned_at, "restarted": restarted, "note": note,
                        "late_minutes": _late(episode)})
    if mg_per_l is not None:
        screens.record_screen(actor, admission.id, kind="breath", sample_at=None, results=None,
                              mg_per_l=mg_per_l, taken_by_id=None, reason="return_from_leave",
                              note="On return from leave", now=now)
    return episode


def _late(episode: LeaveEpisode) -> int | None:
    if episode.expected_return_at is None or episode.returned_at is None:
        return None
    return max(int((episode.returned_at - episode.expected_return_at).total_seconds() // 60), 0)


def _close_leave_escalation(episode: LeaveEpisode, actor: Staff | None, now: datetime) -> None:
    live = db.session.scalars(select(Escalation).where(
        Escalation.admission_id == episode.admission_id, Escalation.dedup_key == f"leave:{episode.id}",
        Escalation.status != "resolved").with_for_update()).all()
    for escalation in live:
        before = escalation.status
        escalation.status, escalation.escalate_at = "resolved", None
        escalation.resolved_at, escalation.resolved_by_id = now, actor.id if actor else None
        escalation.outcome = "resident back on the unit"
        escalation.updated_at = now
        db.session.add(EscalationStep(escalation_id=escalation.id, at=now, kind="resolved",
                                      level=escalation.level, staff_id=actor.id if actor else None,
                                      detail="closed: the resident returned from leave"))
        record_event(unit_id=escalation.unit_id, actor=actor, action="escalation.resolve",
                     entity_type="escalation", entity_id=escalation.id, now=now,
                     before={"status": before}, after={"status": "resolved", "outcome": escalation.outcome})


def end_at_discharge(admission: Admission, actor: Staff, now: datetime) -> None:
    """At discharge (a hook): an open leave ends with the stay (the schedules are stopped)."""
    for episode in db.session.scalars(select(LeaveEpisode).where(
            LeaveEpisode.admission_id == admission.id, LeaveEpisode.status == "on_leave")):
        episode.status = "ended"
        record_event(unit_id=episode.unit_id, actor=actor, action="leave.end", entity_type="leave_episode",
                     entity_id=episode.id, resident_id=admission.resident_id, now=now,
                     after={"status": "ended", "discharge_type": admission.discharge_type})


# --- the overdue check (the scheduler) -------------------------------------------------------

@unit_of_work
def escalate_overdue_returns(now: datetime) -> list[LeaveEpisode]:
    """Every leave whose expected return has passed, not yet escalated, is escalated (urgent,
    routed to the doctor as the care model says); once per expected return."""
    query = (select(LeaveEpisode).where(LeaveEpisode.status == "on_leave",
                                        LeaveEpisode.expected_return_at < now,
                                        LeaveEpisode.escalated_at.is_(None))
             .order_by(LeaveEpisode.expected_return_at))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # a second scheduler takes the others
    found = db.session.scalars(query).all()
    for episode in found:
        _escalate(episode, episode.admission, None, now)
        record_event(unit_id=episode.unit_id, actor=None, action="leave.overdue", entity_type="leave_episode",
                     entity_id=episode.id, resident_id=episode.admission.resident_id, now=now,
                     after={"expected_return_at": episode.expected_return_at,
                            "escalation_id": episode.escalation_id})
    return found


# --- reading ---------------------------------------------------------------------------------

def list_leave(actor: Staff, admission_id: int) -> list[LeaveEpisode]:
    """A resident's leave episodes, newest first."""
    active_or_not = db.session.get(Admission, admission_id) if 0 < admission_id <= MAX_ID else None
    if active_or_not is None or active_or_not.unit_id != actor.unit_id:
        from unit.errors import AdmissionNotFound

        raise AdmissionNotFound(f"There is no admission {admission_id} on your unit.")
    return leave_of(admission_id)


def leave_of(admission_id: int) -> list[LeaveEpisode]:
    """An admission's leave episodes, newest first."""
    return list(db.session.scalars(select(LeaveEpisode).where(LeaveEpisode.admission_id == admission_id)
                                   .order_by(LeaveEpisode.started_at.desc(), LeaveEpisode.id.desc())))


def on_leave(unit_id: int) -> list[LeaveEpisode]:
    """The unit's residents away now, soonest expected back first."""
    return list(db.session.scalars(select(LeaveEpisode).where(
        LeaveEpisode.unit_id == unit_id, LeaveEpisode.status == "on_leave")
        .options(sa.orm.joinedload(LeaveEpisode.admission))
        .order_by(LeaveEpisode.expected_return_at.is_(None).desc(), LeaveEpisode.expected_return_at)))


def breath_due(unit_id: int) -> list[LeaveEpisode]:
    """Residents back from their latest leave with no breath-alcohol reading since the return:
    the reading stays due until one is recorded (or the stay ends)."""
    latest: dict[int, LeaveEpisode] = {}
    for episode in db.session.scalars(select(LeaveEpisode).join(
            Admission, Admission.id == LeaveEpisode.admission_id).where(
            LeaveEpisode.unit_id == unit_id, Admission.status == "active")
            .options(sa.orm.joinedload(LeaveEpisode.admission))
            .order_by(LeaveEpisode.started_at, LeaveEpisode.id)):
        latest[episode.admission_id] = episode
    returned = [e for e in latest.values() if e.status == "returned"]
    if not returned:
        return []
    # One query for every returned resident's breath readings (the board asks every 30 s).
    readings = db.session.execute(select(screens.Screen.admission_id, screens.Screen.sample_at).where(
        screens.Screen.admission_id.in_([e.admission_id for e in returned]), screens.Screen.kind == "breath",
        screens.Screen.sample_at >= min(e.returned_at for e in returned))).all()
    return [e for e in returned
            if not any(a == e.admission_id and at >= e.returned_at for a, at in readings)]


def breath_after(episode: LeaveEpisode):
    """The breath-alcohol reading taken since the return, if any."""
    if episode.returned_at is None:
        return None
    return screens.latest_breath(episode.admission_id, episode.returned_at)


def leave_facts(episode: LeaveEpisode, now: datetime) -> dict[str, Any]:
    """An episode as the board and the handover say it."""
    name = episode.admission.resident.name
    if episode.status == "on_leave":
        if episode.overdue(now):
            text = f"{name}: NOT BACK from leave, expected {local(episode.expected_return_at):%H:%M}"
        elif episode.expected_return_at is None:
            text = f"{name}: left the unit without agreed leave at {local(episode.started_at):%H:%M}"
        else:
            text = f"{name}: on leave, back by {local(episode.expected_return_at):%d %b %H:%M}"
    else:
        text = f"{name}: back from leave at {local(episode.returned_at):%H:%M}"
    return {"id": episode.id, "admission_id": episode.admission_id, "text": text}
