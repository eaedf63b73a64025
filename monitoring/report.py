"""Monitoring's part of the inspection report: observation compliance and escalations."""
from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select

from config.db import hour_bucket, milliseconds_between
from config.extensions import db
from monitoring.escalations import rota_gaps
from monitoring.models import Escalation, EscalationStep, MissedObservation, Observation
from unit.models import Admission, Resident, Unit

SHIFTS = (("night", 23, 7), ("early", 7, 15), ("late", 15, 23))  # local hours [from, to)
PRESCRIBER_ROUTED = ("phone_order_not_countersigned",)


def shift_of(hour: int) -> str:
    """The nursing shift a local hour falls in."""
    for name, start, end in SHIFTS:
        if (start <= hour < end) if start < end else (hour >= start or hour < end):
            return name
    raise ValueError(hour)


def observations_section(unit: Unit, start: datetime, end: datetime, zone: ZoneInfo) -> dict:
    """Per scale, resident and shift: due, on time, late (how late), missed; the worst gaps."""
    dialect = db.engine.dialect.name
    late = milliseconds_between(Observation.due_at, Observation.observed_at, dialect)
    missed_slot = (select(MissedObservation.id).where(
        MissedObservation.admission_id == Observation.admission_id,
        MissedObservation.scale == Observation.scale, MissedObservation.due_at == Observation.due_at)
        .exists())
    answered = [Observation.unit_id == unit.id, Observation.due_at >= start, Observation.due_at < end,
                Observation.struck_at.is_(None), Observation.replaces_id.is_(None), ~missed_slot]
    is_late = Observation.observed_at > Observation.due_at

    def tally(*keys):
        return db.session.execute(
            select(*keys, sa.func.count(),
                   sa.func.sum(sa.case((is_late, 0), else_=1)),
                   sa.func.sum(sa.case((is_late, 1), else_=0)),
                   sa.func.sum(sa.case((Observation.status == "not_done", 1), else_=0)),
                   sa.func.sum(sa.case((is_late, late))), sa.func.max(sa.case((is_late, late))))
            .where(*answered).group_by(*keys)).all()

    def missed_by(*keys):
        return {tuple(row[:-1]): row[-1] for row in db.session.execute(
            select(*keys, sa.func.count()).where(MissedObservation.unit_id == unit.id,
                                                 MissedObservation.due_at >= start,
                                                 MissedObservation.due_at < end).group_by(*keys))}

    def figures(done, on_time, late_count, not_done, total_late, max_late, missed) -> dict:
        due = done + missed
        return {"due": due, "on_time": int(on_time or 0), "late": int(late_count or 0), "missed": missed,
                "not_done": int(not_done or 0),
                "on_time_rate": round((on_time or 0) / due, 4) if due else None,
                "late_minutes_mean": _minutes(total_late, int(late_count)) if late_count else None,
                "late_minutes_max": _minutes(max_late) if max_late is not None else None}

    by_scale = {}
    missed = missed_by(MissedObservation.scale)
    for scale, done, on_time, late_count, not_done, total_late, max_late in tally(Observation.scale):
        by_scale[scale] = figures(done, on_time, late_count, not_done, total_late, max_late,
                                  missed.pop((scale,), 0))
    for (scale,), count in missed.items():
        by_scale[scale] = figures(0, 0, 0, 0, None, None, count)

    names = dict(db.session.execute(select(Admission.id, Resident.name).join(Resident).where(Admission.unit_id == unit.id)).all())
    by_resident = {}
    missed = missed_by(MissedObservation.admission_id)
    for admission_id, done, on_time, late_count, not_done, total_late, max_late in tally(Observation.admission_id):
        by_resident[admission_id] = figures(done, on_time, late_count, not_done, total_late, max_late,
                                            missed.pop((admission_id,), 0))
    for (admission_id,), count in missed.items():
        by_resident[admission_id] = figures(0, 0, 0, 0, None, None, count)

    by_shift: dict[str, Counter] = defaultdict(Counter)
    bucket = hour_bucket(Observation.due_at, dialect)
    for hour, done, on_time, late_count, not_done, _, _ in tally(bucket):
        shift = shift_of(_local_hour(hour, zone))
        by_shift[shift].update({"done": done, "on_time": on_time or 0, "late": late_count or 0,
                                "not_done": not_done or 0})
    for (hour,), count in missed_by(hour_bucket(MissedObservation.due_at, dialect)).items():
        by_shift[shift_of(_local_hour(hour, zone))]["missed"] += count
    shifts = {}
    for name, _, _ in SHIFTS:
        c = by_shift.get(name, Counter())
        due = c["done"] + c["missed"]
        shifts[name] = {"due": due, "on_time": c["on_time"], "late": c["late"], "missed": c["missed"],
                        "not_done": c["not_done"], "on_time_rate": round(c["on_time"] / due, 4) if due else None}

    worst_late = db.session.execute(
        select(Observation.admission_id, Observation.scale, Observation.due_at, Observation.observed_at, late)
        .where(*answered, is_late).order_by(late.desc()).limit(10)).all()
    worst_missed = db.session.execute(
        select(MissedObservation.admission_id, MissedObservation.scale, sa.func.count(),
               sa.func.min(MissedObservation.due_at), sa.func.max(MissedObservation.due_at))
        .where(MissedObservation.unit_id == unit.id, MissedObservation.due_at >= start,
               MissedObservation.due_at < end)
        .group_by(MissedObservation.admission_id, MissedObservation.scale)
        .order_by(sa.func.count().desc()).limit(10)).all()
    return {
        "by_scale": dict(sorted(by_scale.items())),
        "by_resident": [{"admission_id": a, "resident": names.get(a), **f} for a, f in sorted(by_resident.items())],
        "by_shift": shifts,
        "worst_late": [{"admission_id": a, "resident": names.get(a), "scale": s, "due_at": _iso(d),
                        "observed_at": _iso(o), "late_minutes": _minutes(m)} for a, s, d, o, m in worst_late],
        "worst_missed": [{"admission_id": a, "resident": names.get(a), "scale": s, "missed": n,
                          "from": _iso(first), "to": _iso(last)} for a, s, n, first, last in worst_missed],
    }


def _minutes(milliseconds, count: int = 1) -> float:
    """Milliseconds (a total over ``count``) as minutes to one decimal, from exact arithmetic:
    a mean on a half rounds the same way on every engine."""
    return float(round(Fraction(int(milliseconds), count * 60_000), 1))


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregates come back as text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _local_hour(bucket: str, zone: ZoneInfo) -> int:
    utc = datetime.strptime(bucket, "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    return utc.astimezone(zone).hour


def escalations_section(unit: Unit, start: datetime, end: datetime, model_history: list[dict],
                        now: datetime) -> dict:
    """Counts by trigger and severity; routing against the model then; response times; breaches."""
    rows = db.session.execute(select(
        Escalation.id, Escalation.admission_id, Escalation.trigger, Escalation.severity, Escalation.route,
        Escalation.unit_model, Escalation.raised_at, Escalation.acknowledged_at, Escalation.target_minutes,
        Escalation.overridden, Escalation.status, Escalation.reason, Escalation.resolved_at)
        .where(Escalation.unit_id == unit.id, Escalation.raised_at >= start, Escalation.raised_at < end)
        .order_by(Escalation.raised_at)).all()
    re_escalated = dict(db.session.execute(
        select(EscalationStep.escalation_id, sa.func.count()).join(Escalation)
        .where(Escalation.unit_id == unit.id, Escalation.raised_at >= start, Escalation.raised_at < end,
               EscalationStep.kind == "re_escalated").group_by(EscalationStep.escalation_id)).all())
    changes = [(datetime.fromisoformat(c["effective_at"]), c["model"]) for c in model_history]
    times = [t for t, _ in changes]

    def model_then(at: datetime) -> str | None:
        index = bisect.bisect_right(times, at) - 1
        return changes[index][1] if index >= 0 else None

    minutes, breaches, mismatched = [], [], []
    for row in rows:
        ack = (row.acknowledged_at - row.raised_at).total_seconds() / 60 if row.acknowledged_at else None
        if ack is not None:
            minutes.append(ack)
        # The clock stops at the acknowledgement, or at the close of one never acknowledged (a
        # nurse's override); one still open has waited until now (or the end of the period).
        closed = row.resolved_at if row.resolved_at is not None and row.resolved_at < end else None
        waited = ack if ack is not None else (
            ((closed or min(now, end)) - row.raised_at).total_seconds() / 60)
        if waited > row.target_minutes:
            breaches.append({"id": row.id, "admission_id": row.admission_id, "severity": row.severity,
                             "reason": row.reason, "raised_at": row.raised_at.isoformat(),
                             "target_minutes": row.target_minutes,
                             "minutes_to_acknowledge": round(ack, 1) if ack is not None else None})
        # Missed observations go to the nurse in charge and late countersignatures to the
        # prescriber; every other escalation follows the care model in force when raised.
        if row.route != "nurse_in_charge" and row.trigger not in PRESCRIBER_ROUTED:
            expected = "on_site_doctor" if model_then(row.raised_at) == "medically_managed" else "visiting_gp"
            if row.route != expected:
                mismatched.append({"id": row.id, "route": row.route, "expected": expected,
                                   "raised_at": row.raised_at.isoformat()})
    quantiles = statistics.quantiles(minutes, n=10, method="inclusive") if len(minutes) >= 2 else None
    return {
        "total": len(rows),
        "by_trigger": dict(sorted(Counter(r.trigger for r in rows).items())),
        "by_severity": dict(sorted(Counter(r.severity for r in rows).items())),
        "by_route": dict(sorted(Counter(r.route for r in rows).items())),
        "routing_matched_model": len(mismatched) == 0,
        "routing_mismatches": mismatched,
        "acknowledge_minutes_median": round(statistics.median(minutes), 1) if minutes else None,
        "acknowledge_minutes_p90": round(quantiles[8], 1) if quantiles else (round(minutes[0], 1) if minutes else None),
        "breaches": breaches,
        "re_escalations": sum(re_escalated.values()),
        "re_escalated_escalations": len(re_escalated),
        "overridden": sum(1 for r in rows if r.overridden),
        "rota_gaps": [{"duty": g["duty"], "from": g["from"].isoformat(), "to": g["to"].isoformat()}
                      for g in rota_gaps(unit.id, start, min(end, now))] if start < now else [],
    }
