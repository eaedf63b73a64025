"""Services of the monitoring package: observations, schedules and the due sweep."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from config.db import insert_row, insert_rows, unit_of_work, update_row
from config.errors import Forbidden
from config.extensions import db
from monitoring import escalations
from monitoring.errors import (
    AlreadyStruck,
    ObservationAlreadyCorrected,
    ObservationNotFound,
    ObservationTimeInvalid,
    ScaleInputInvalid,
    ScheduleExists,
    ScheduleNotFound,
    UnknownScaleCode,
)
from monitoring.models import (
    Escalation,
    MissedObservation,
    Observation,
    ObservationSchedule,
    ScheduleChange,
)
from monitoring.scales import Scale, ScaleValidationError, ScoreResult, UnknownScale, get_scale
from monitoring.schedules import grace_minutes, minimal_streak, protocol_interval
from monitoring.settings import monitoring_settings, unit_bands
from unit.audit import record_event
from unit.auth import CLINICAL_STAFF
from unit.models import Admission, Staff
from unit.services import active_admission, age_today, get_admission

ADMISSION_SCALES = {"alcohol": "ciwa-ar", "opioids": "cows"}  # docs/clinical-rules.md s2; NEWS2 for all
MAX_SLOTS_PER_SWEEP = 500  # bound on missed slots recorded for one schedule in one sweep


def scale_or_404(code: str) -> Scale:
    """The scale with this code, or a 404 problem."""
    try:
        return get_scale(code)
    except UnknownScale:
        raise UnknownScaleCode(f"There is no scale {code!r}.") from None


def score(unit_id: int, code: str, items: dict[str, Any], *, age: int | None = None,
          pregnant: bool | None = None) -> ScoreResult:
    """Score a scale with the unit's bands; invalid items raise a 422 naming each item."""
    scale = scale_or_404(code)
    settings = monitoring_settings(unit_id)
    try:
        return scale.score(items, unit_bands(settings, code), age=age, pregnant=pregnant)
    except ScaleValidationError as invalid:
        raise ScaleInputInvalid(f"The {scale.name} items are not valid; see errors.",
                                errors={"items": invalid.errors}) from None


# --- schedules ------------------------------------------------------------------------------

def start_schedules(admission: Admission, actor: Staff, now: datetime) -> None:
    """At admission: CIWA-Ar for alcohol, COWS for opioids, NEWS2 for everyone; due now."""
    codes = [ADMISSION_SCALES[s] for s in admission.substances if s in ADMISSION_SCALES]
    for code in [*codes, "news2"]:
        _add_schedule(admission, actor, code, None, "Set at admission (protocol)", now)


def _add_schedule(admission: Admission, actor: Staff, code: str, max_interval: int | None,
                  reason: str, now: datetime) -> ObservationSchedule:
    settings = monitoring_settings(admission.unit_id)
    interval = settings["initial_interval_minutes"]
    if max_interval:
        interval = min(interval, max_interval)
    schedule = ObservationSchedule(
        unit_id=admission.unit_id, admission_id=admission.id, scale=code, active=True,
        interval_minutes=interval, max_interval_minutes=max_interval, next_due_at=now,
        updated_at=now)
    db.session.add(schedule)
    db.session.flush()
    _log_interval_change(schedule, None, interval, reason, actor, now)
    return schedule


def stop_schedules(admission: Admission, actor: Staff, now: datetime) -> None:
    """At discharge: nothing more is due."""
    db.session.execute(sa.update(ObservationSchedule)
                       .where(ObservationSchedule.admission_id == admission.id)
                       .values(active=False, updated_at=now))


def _log_interval_change(schedule: ObservationSchedule, old: int | None, new: int, reason: str,
                         actor: Staff | None, now: datetime) -> None:
    db.session.add(ScheduleChange(schedule_id=schedule.id, admission_id=schedule.admission_id,
                                  old_interval_minutes=old, new_interval_minutes=new,
                                  reason=reason, changed_at=now,
                                  changed_by_id=actor.id if actor else None))
    record_event(unit_id=schedule.unit_id, actor=actor, action="schedule.interval",
                 entity_type="observation_schedule", entity_id=schedule.id, now=now,
                 before={"interval_minutes": old},
                 after={"scale": schedule.scale, "interval_minutes": new, "reason": reason,
                        "next_due_at": schedule.next_due_at})


def list_schedules(actor: Staff, admission_id: int) -> list[ObservationSchedule]:
    """The admission's schedules."""
    get_admission(actor, admission_id)
    return list(db.session.scalars(select(ObservationSchedule)
                                   .where(ObservationSchedule.admission_id == admission_id)
                                   .order_by(ObservationSchedule.id)))


@unit_of_work
def add_schedule(actor: Staff, admission_id: int, *, scale: str, max_interval_minutes: int | None,
                 reason: str, now: datetime) -> ObservationSchedule:
    """A nurse or doctor starts observations of another scale (e.g. GMAWS, SOWS)."""
    admission = active_admission(actor, admission_id)
    scale_or_404(scale)
    existing = db.session.scalars(select(ObservationSchedule).where(
        ObservationSchedule.admission_id == admission_id, ObservationSchedule.scale == scale)).first()
    if existing is not None and existing.active:
        raise ScheduleExists(f"{scale} is already scheduled for this admission.")
    if existing is not None:  # restart a stopped schedule
        existing.active, existing.next_due_at, existing.updated_at = True, now, now
        existing.missed_through = None  # the stopped time is not missed
        existing.max_interval_minutes = max_interval_minutes
        _log_interval_change(existing, existing.interval_minutes, existing.interval_minutes,
                             f"Restarted: {reason}", actor, now)
        return existing
    return _add_schedule(admission, actor, scale, max_interval_minutes, reason, now)


@unit_of_work
def change_schedule(actor: Staff, schedule_id: int, *, max_interval_minutes: int | None,
                    active: bool | None, reason: str, now: datetime) -> ObservationSchedule:
    """Set "at least every N minutes" (the protocol may still ask sooner), or stop/restart."""
    if actor.role not in CLINICAL_STAFF:
        raise Forbidden("Only clinical staff may change observation schedules.")
    schedule = db.session.get(ObservationSchedule, schedule_id)
    if schedule is None or schedule.unit_id != actor.unit_id:
        raise ScheduleNotFound(f"There is no schedule {schedule_id} on your unit.")
    active_admission(actor, schedule.admission_id)
    old = schedule.interval_minutes
    schedule.max_interval_minutes = max_interval_minutes
    if max_interval_minutes and max_interval_minutes < schedule.interval_minutes:
        schedule.interval_minutes = max_interval_minutes
        last = schedule.last_observation
        base = last.observed_at if last is not None else now
        schedule.next_due_at = min(schedule.next_due_at, max(base + timedelta(minutes=max_interval_minutes), now))
    if active is not None and active != schedule.active:
        schedule.active = active
        if active:
            schedule.next_due_at = now
            schedule.missed_through = None  # the stopped time is not missed
    schedule.updated_at = now
    _log_interval_change(schedule, old, schedule.interval_minutes,
                         reason if schedule.active else f"Stopped: {reason}", actor, now)
    return schedule


# --- observations ---------------------------------------------------------------------------

@dataclass
class Recorded:
    """What recording an observation did: the observation, its schedule and any escalation."""

    observation: Observation
    schedule: ObservationSchedule | None
    escalation: Escalation | None = None
    interval_changed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def next_due_at(self) -> datetime | None:
        """When the schedule now asks for the next observation (None: not scheduled)."""
        return self.schedule.next_due_at if self.schedule is not None else None

    @property
    def interval_minutes(self) -> int | None:
        """The schedule's interval now (None: not scheduled)."""
        return self.schedule.interval_minutes if self.schedule is not None else None


def _check_time(admission: Admission, observed_at: datetime, now: datetime,
                settings: dict[str, Any]) -> None:
    skew = timedelta(minutes=settings["clock_skew_minutes"])
    if observed_at > now + skew:
        raise ObservationTimeInvalid(
            f"observed_at is in the future (more than {settings['clock_skew_minutes']} minutes "
            "ahead of the server clock).", errors={"observed_at": ["Must not be in the future."]})
    if observed_at < admission.admitted_at:
        raise ObservationTimeInvalid(
            "observed_at is before the admission.",
            errors={"observed_at": ["Must not be before the admission."]})


# Built once: on the write path building a statement costs as much as running it.
_ACTIVE_SCHEDULE = (
    select(ObservationSchedule, Observation.observed_at)
    .outerjoin(Observation, Observation.id == ObservationSchedule.last_observation_id)
    .where(ObservationSchedule.admission_id == sa.bindparam("admission_id"),
           ObservationSchedule.scale == sa.bindparam("scale"), ObservationSchedule.active.is_(True))
    .with_for_update(of=ObservationSchedule))


def _schedule_for(admission_id: int, code: str) -> tuple[ObservationSchedule | None, datetime | None]:
    """The active schedule, locked, and when its last observation was made (one query)."""
    row = db.session.execute(_ACTIVE_SCHEDULE, {"admission_id": admission_id, "scale": code}).first()
    return (None, None) if row is None else (row[0], row[1])


def _is_latest(last_observed_at: datetime | None, observed_at: datetime) -> bool:
    return last_observed_at is None or observed_at >= last_observed_at


@unit_of_work
def record_observation(actor: Staff, admission_id: int, *, scale: str, items: dict[str, Any],
                       observed_at: datetime | None, note: str | None, now: datetime,
                       replaces: Observation | None = None) -> Recorded:
    """Score and keep an observation, move its schedule on, and let escalation look at it.

    With ``replaces``, it is the correction of that struck observation (one per struck entry).
    """
    admission = active_admission(actor, admission_id)
    if replaces is not None:
        _correctable(replaces.id, admission_id, scale, lock=True)
    settings = monitoring_settings(admission.unit_id)
    observed_at = observed_at or now
    _check_time(admission, observed_at, now, settings)
    # Only a scale not validated in pregnancy (NEWS2) needs the referral's pregnancy answer.
    pregnant = (None if scale_or_404(scale).valid_in_pregnancy
                else admission.referral.assessment.get("pregnant"))
    result = score(admission.unit_id, scale, items,
                   age=age_today(admission.resident.date_of_birth, observed_at), pregnant=pregnant)
    schedule, last_observed_at = _schedule_for(admission_id, scale)
    # The busiest write of the system: its two rows go by prebuilt statements (insert_row,
    # update_row), not by a flush of the unit of work, which costs several times as much.
    observation = insert_row(Observation, {
        "unit_id": admission.unit_id, "admission_id": admission.id, "scale": scale,
        "status": "recorded", "items": result.items, "item_scores": result.item_scores,
        "total": result.total, "band": result.band, "risk": result.risk,
        "warnings": list(result.warnings) or None, "note": note, "observed_at": observed_at,
        "recorded_at": now, "recorded_by_id": actor.id,
        "due_at": schedule.next_due_at if schedule is not None else None,
        "replaces_id": replaces.id if replaces else None})
    recorded = Recorded(observation, schedule)
    if schedule is not None and _is_latest(last_observed_at, observed_at):
        minimal = schedule.consecutive_minimal + 1 if result.band == "minimal" else 0
        interval = protocol_interval(settings, schedule, result, minimal)
        old = schedule.interval_minutes
        update_row(schedule, consecutive_minimal=minimal, refusals_in_row=0,
                   last_observation_id=observation.id,
                   next_due_at=observed_at + timedelta(minutes=interval), missed_through=None,
                   interval_minutes=interval, updated_at=now)
        if interval != old:
            recorded.interval_changed = True
            _log_interval_change(schedule, old, interval,
                                 f"{get_scale(scale).name} {result.band.replace('_', ' ')} "
                                 f"(total {result.total}): every {_minutes_text(interval)}",
                                 actor, now)
    record_event(unit_id=admission.unit_id, actor=actor, action="observation.record",
                 entity_type="observation", entity_id=observation.id,
                 resident_id=admission.resident_id, now=now,
                 after={"scale": scale, "items": result.items, "total": result.total,
                        "band": result.band, "observed_at": observed_at, "note": note,
                        "replaces": observation.replaces_id})
    recorded.escalation = escalations.escalate_observation(observation, admission, actor, now)
    return recorded


@unit_of_work
def record_not_done(actor: Staff, admission_id: int, *, scale: str, reason: str,
                    observed_at: datetime | None, note: str | None, now: datetime) -> Recorded:
    """Record that an observation could not be done; ask again sooner; a repeat refusal escalates."""
    admission = active_admission(actor, admission_id)
    scale_or_404(scale)
    settings = monitoring_settings(admission.unit_id)
    observed_at = observed_at or now
    _check_time(admission, observed_at, now, settings)
    schedule, last_observed_at = _schedule_for(admission_id, scale)
    observation = Observation(
        unit_id=admission.unit_id, admission_id=admission.id, scale=scale, status="not_done",
        not_done_reason=reason, note=note, observed_at=observed_at, recorded_at=now,
        recorded_by_id=actor.id, due_at=schedule.next_due_at if schedule is not None else None)
    db.session.add(observation)
    db.session.flush()
    recorded = Recorded(observation, schedule)
    # Like a late-entered score, a not-done written up after a later observation moves nothing.
    current = schedule is not None and _is_latest(last_observed_at, observed_at)
    if current:
        retry = min(settings["not_done_retry_minutes"], schedule.interval_minutes)
        schedule.next_due_at = observed_at + timedelta(minutes=retry)
        schedule.missed_through = None
        schedule.refusals_in_row = schedule.refusals_in_row + 1 if reason == "refused" else 0
        schedule.updated_at = now
        recorded.extra["refusals_in_row"] = schedule.refusals_in_row
    record_event(unit_id=admission.unit_id, actor=actor, action="observation.not_done",
                 entity_type="observation", entity_id=observation.id,
                 resident_id=admission.resident_id, now=now,
                 after={"scale": scale, "reason": reason, "observed_at": observed_at, "note": note})
    if current and reason == "refused" and \
            schedule.refusals_in_row >= settings["refusals_to_escalate"]:
        recorded.escalation = escalations.escalate_repeated_refusal(observation, admission, actor, now)
    return recorded


@unit_of_work
def strike_observation(actor: Staff, observation_id: int, *, reason: str,
                       replacement: dict[str, Any] | None, now: datetime) -> tuple[Observation, Recorded | None]:
    """Strike an entered-in-error observation through (kept), optionally with its replacement."""
    observation = db.session.scalars(
        select(Observation).where(Observation.id == observation_id).with_for_update()).first()
    if observation is None or observation.unit_id != actor.unit_id:
        raise ObservationNotFound(f"There is no observation {observation_id} on your unit.")
    if observation.struck_at is not None:
        raise AlreadyStruck(f"Observation {observation_id} was struck through already.")
    observation.struck_at, observation.struck_by_id = now, actor.id
    observation.struck_reason = reason
    db.session.flush()
    admission = db.session.get(Admission, observation.admission_id)
    record_event(unit_id=observation.unit_id, actor=actor, action="observation.strike",
                 entity_type="observation", entity_id=observation.id,
                 resident_id=admission.resident_id, now=now,
                 before={"total": observation.total, "band": observation.band},
                 after={"struck": True, "reason": reason})
    recorded = None
    if admission.status == "active":
        # First forget the struck entry (its band, its place in a minimal streak), so that a
        # replacement is scored against the valid history only.
        _recompute_after_strike(observation, actor, now)
    if replacement is not None:
        recorded = record_observation(
            actor, observation.admission_id, scale=observation.scale, items=replacement["items"],
            observed_at=replacement.get("observed_at") or observation.observed_at,
            note=replacement.get("note"), now=now, replaces=observation)
    return observation, recorded


STREAK_LOOKBACK = 50  # valid observations read to count a minimal streak (3 are needed)


def _recompute_after_strike(struck: Observation, actor: Staff, now: datetime) -> None:
    # If the struck observation drove the schedule, the previous valid one drives it again:
    # its band sets the interval and the minimal streak is counted over valid entries only.
    schedule = db.session.scalars(select(ObservationSchedule).where(
        ObservationSchedule.admission_id == struck.admission_id,
        ObservationSchedule.scale == struck.scale).with_for_update()).first()
    if schedule is None or schedule.last_observation_id != struck.id:
        return
    valid = list(db.session.scalars(
        select(Observation).where(Observation.admission_id == struck.admission_id,
                                  Observation.scale == struck.scale,
                                  Observation.status == "recorded",
                                  Observation.struck_at.is_(None))
        .order_by(Observation.observed_at.desc(), Observation.id.desc()).limit(STREAK_LOOKBACK)))
    previous = valid[0] if valid else None
    streak = minimal_streak(row.band for row in valid)
    schedule.last_observation_id = previous.id if previous else None
    schedule.consecutive_minimal = streak
    old = schedule.interval_minutes
    if previous is None:
        schedule.next_due_at = now  # no valid score: due now
    else:
        schedule.interval_minutes = protocol_interval(monitoring_settings(schedule.unit_id), schedule,
                                                      previous, streak)
        # Never later than already asked: a strike must not quietly push a due time away.
        schedule.next_due_at = min(schedule.next_due_at,
                                   previous.observed_at + timedelta(minutes=schedule.interval_minutes))
    schedule.updated_at = now
    if schedule.interval_minutes != old:
        _log_interval_change(schedule, old, schedule.interval_minutes,
                             f"{get_scale(struck.scale).name} entry struck through; the previous "
                             f"valid score sets every {_minutes_text(schedule.interval_minutes)}",
                             actor, now)


def list_observations(actor: Staff, admission_id: int, *, scale: str | None, page: int,
                      per_page: int) -> tuple[list[Observation], int]:
    """The admission's observations, newest first, one page at a time, with the total count."""
    get_admission(actor, admission_id)
    where = [Observation.admission_id == admission_id]
    if scale:
        where.append(Observation.scale == scale)
    total = db.session.scalar(select(sa.func.count()).select_from(Observation).where(*where))
    if (page - 1) * per_page >= total:
        return [], total  # past the last page (also a page number too large for an OFFSET)
    rows = db.session.scalars(select(Observation).where(*where)
                              .order_by(Observation.observed_at.desc(), Observation.id.desc())
                              .limit(per_page).offset((page - 1) * per_page))
    return list(rows), total


def get_observation(actor: Staff, observation_id: int) -> Observation:
    """One observation of the actor's unit."""
    observation = db.session.get(Observation, observation_id)
    if observation is None or observation.unit_id != actor.unit_id:
        raise ObservationNotFound(f"There is no observation {observation_id} on your unit.")
    return observation


def correction_target(actor: Staff, admission_id: int, scale: str, observation_id: int) -> Observation:
    """The struck observation a new entry of this resident and scale may correct: struck
    through and not corrected yet (404 for any other, 409 once corrected)."""
    get_admission(actor, admission_id)
    return _correctable(observation_id, admission_id, scale, lock=False)


def _correctable(observation_id: int, admission_id: int, scale: str, *, lock: bool) -> Observation:
    # Locked when writing the correction, so that of two corrections saved at once the second
    # waits and is refused here; the unique index on replaces_id refuses any that gets past.
    query = select(Observation).where(Observation.id == observation_id)
    struck = db.session.scalars(query.with_for_update() if lock else query).first()
    if (struck is None or struck.admission_id != admission_id or struck.scale != scale
            or struck.struck_at is None):
        raise ObservationNotFound(
            f"There is no struck {scale} observation {observation_id} of this resident to correct.")
    corrected_by = db.session.scalar(select(Observation.id).where(Observation.replaces_id == struck.id))
    if corrected_by is not None:
        raise ObservationAlreadyCorrected(
            f"Observation {struck.id} was corrected already (by observation {corrected_by}). If that "
            "correction is wrong too, strike it through and correct it instead.")
    return struck


def recent_observations(admission_id: int, limit: int = 200) -> list[Observation]:
    """The admission's latest observations (struck ones too), newest first, with who recorded them."""
    return list(db.session.scalars(
        select(Observation).where(Observation.admission_id == admission_id)
        .options(joinedload(Observation.recorded_by))
        .order_by(Observation.observed_at.desc(), Observation.id.desc()).limit(limit)))


def active_schedules(admission_ids: list[int]) -> dict[int, list[ObservationSchedule]]:
    """Each admission's active schedules with their last observation (one query)."""
    found: dict[int, list[ObservationSchedule]] = {i: [] for i in admission_ids}
    if not admission_ids:
        return found
    rows = db.session.scalars(
        select(ObservationSchedule)
        .where(ObservationSchedule.admission_id.in_(admission_ids),
               ObservationSchedule.active.is_(True))
        .options(joinedload(ObservationSchedule.last_observation))
        .order_by(ObservationSchedule.admission_id, ObservationSchedule.id))
    for schedule in rows:
        found[schedule.admission_id].append(schedule)
    return found


# Built once: the board runs it on every refresh of every tablet.
_UNIT_SCHEDULE_SUMMARIES = (
    select(ObservationSchedule.admission_id, ObservationSchedule.scale, Observation.status,
           Observation.total, Observation.band, Observation.observed_at,
           ObservationSchedule.next_due_at, ObservationSchedule.interval_minutes)
    .outerjoin(Observation, Observation.id == ObservationSchedule.last_observation_id)
    .where(ObservationSchedule.unit_id == sa.bindparam("unit_id"), ObservationSchedule.active.is_(True))
    .order_by(ObservationSchedule.admission_id, ObservationSchedule.id))


def unit_schedule_summaries(unit_id: int) -> sa.Result:
    """Every active schedule of the unit with its last observation's status, total, band and
    time, its next due time and interval, by admission (one query, plain rows).

    Selected by unit, not by a list of 300 admission ids (binding and planning those cost more
    than the query on PostgreSQL).
    """
    return db.session.execute(_UNIT_SCHEDULE_SUMMARIES, {"unit_id": unit_id})


def schedule_changes(admission_id: int, limit: int = 20) -> list[ScheduleChange]:
    """The latest interval changes of an admission's schedules."""
    return list(db.session.scalars(select(ScheduleChange)
                                   .where(ScheduleChange.admission_id == admission_id)
                                   .order_by(ScheduleChange.changed_at.desc(), ScheduleChange.id.desc())
                                   .limit(limit)))


# --- the due sweep --------------------------------------------------------------------------

@unit_of_work
def flag_missed_observations(now: datetime) -> list[MissedObservation]:
    """Record every due slot past its grace with no observation, on every unit, once each.

    Reads only active schedules whose due time has passed by the shortest grace (an index
    range), so its cost follows what is due, not the history; after any downtime one sweep
    finds every slot missed meanwhile.
    """
    query = (select(ObservationSchedule)
             .where(ObservationSchedule.active.is_(True),
                    ObservationSchedule.next_due_at < now - timedelta(minutes=grace_minutes(1)))
             .order_by(ObservationSchedule.next_due_at))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # a second scheduler takes the others
    slots: list[dict[str, Any]] = []  # the missed slots' rows, inserted together
    # Schedules with a slot past its grace that this sweep has not flagged yet (most overdue
    # schedules were flagged by an earlier sweep and wait for an observation).
    pending = []
    for schedule in db.session.scalars(query).all():
        interval = timedelta(minutes=schedule.interval_minutes)
        grace = grace_minutes(schedule.interval_minutes)
        slot = schedule.next_due_at if schedule.missed_through is None else schedule.missed_through + interval
        if slot + timedelta(minutes=grace) < now:
            pending.append((schedule, interval, grace, slot))
    # A due time can move back onto a slot flagged before (a strike restores an earlier
    # score's due time): each slot is recorded once, and one such slot must not stop the sweep
    # for every unit. Read what is flagged already in one query per 500 schedules.
    flagged: set[tuple[int, datetime]] = set()
    for start in range(0, len(pending), 500):
        chunk = pending[start:start + 500]
        flagged.update((schedule_id, due_at) for schedule_id, due_at in db.session.execute(
            select(MissedObservation.schedule_id, MissedObservation.due_at).where(
                MissedObservation.schedule_id.in_([schedule.id for schedule, *_ in chunk]),
                MissedObservation.due_at >= min(slot for *_, slot in chunk))))
    for schedule, interval, grace, slot in pending:
        for _ in range(MAX_SLOTS_PER_SWEEP):
            if slot + timedelta(minutes=grace) >= now:
                break
            if (schedule.id, slot) not in flagged:
                slots.append({"unit_id": schedule.unit_id, "admission_id": schedule.admission_id,
                              "schedule_id": schedule.id, "scale": schedule.scale, "due_at": slot,
                              "grace_minutes": grace, "detected_at": now})
            schedule.missed_through = slot
            slot += interval
    missed = insert_rows(MissedObservation, slots)
    for row in missed:
        record_event(unit_id=row.unit_id, actor=None, action="observation.missed",
                     entity_type="missed_observation", entity_id=row.id, now=now,
                     after={"admission_id": row.admission_id, "scale": row.scale,
                            "due_at": row.due_at, "grace_minutes": row.grace_minutes})
    escalations.escalate_missed(missed, now)
    return missed


def _minutes_text(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"
