"""Monitoring's part of the inspection report: observation compliance and escalations."""
from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select

from config.db import milliseconds_between, utc_hour
from config.extensions import db
from monitoring.rota import rota_gaps
from monitoring.models import Escalation, EscalationStep, MissedObservation, Observation
from unit.models import Admission, Resident, Unit
from unit.report import ReportSection, Table

SHIFTS = (("night", 23, 7), ("early", 7, 15), ("late", 15, 23))  # local hours [from, to)
PRESCRIBER_ROUTED = ("phone_order_not_countersigned",)


def shift_of(hour: int) -> str:
    """The nursing shift a local hour falls in."""
    for name, start, end in SHIFTS:
        if (start <= hour < end) if start < end else (hour >= start or hour < end):
            return name
    raise ValueError(hour)


def observations_section(unit: Unit, start: datetime, end: datetime, zone: ZoneInfo) -> dict:
    """Per scale, resident and shift: due, on time, late (how late), missed; the worst gaps.

    One grouped pass over the period's observations (by resident, scale and shift, each shift
    worked out in SQL) gives all three tables: a year is a quarter of a million rows.
    """
    dialect = db.engine.dialect.name
    late = milliseconds_between(Observation.due_at, Observation.observed_at, dialect)
    missed_slot = (select(MissedObservation.id).where(
        MissedObservation.admission_id == Observation.admission_id,
        MissedObservation.scale == Observation.scale, MissedObservation.due_at == Observation.due_at)
        .exists())
    answered = [Observation.unit_id == unit.id, Observation.due_at >= start, Observation.due_at < end,
                Observation.struck_at.is_(None), Observation.replaces_id.is_(None), ~missed_slot]
    missed_in_period = [MissedObservation.unit_id == unit.id, MissedObservation.due_at >= start,
                        MissedObservation.due_at < end]
    is_late = Observation.observed_at > Observation.due_at
    offsets = _offset_changes(start, end, zone)
    shift = _shift_sql(Observation.due_at, offsets, dialect)
    missed_shift = _shift_sql(MissedObservation.due_at, offsets, dialect)

    by_scale: dict[str, _Tally] = defaultdict(_Tally)
    by_resident: dict[int, _Tally] = defaultdict(_Tally)
    by_shift: dict[str, _Tally] = defaultdict(_Tally)
    answered_groups = db.session.execute(
        select(Observation.admission_id, Observation.scale, shift, sa.func.count(),
               sa.func.sum(sa.case((is_late, 0), else_=1)),
               sa.func.sum(sa.case((is_late, 1), else_=0)),
               sa.func.sum(sa.case((Observation.status == "not_done", 1), else_=0)),
               sa.func.sum(sa.case((is_late, late))), sa.func.max(sa.case((is_late, late))))
        .where(*answered).group_by(Observation.admission_id, Observation.scale, shift))
    for admission_id, scale, shift_name, *counts in answered_groups:
        for tally in (by_scale[scale], by_resident[admission_id], by_shift[shift_name]):
            tally.add_answered(*counts)
    missed_groups = db.session.execute(
        select(MissedObservation.admission_id, MissedObservation.scale, missed_shift, sa.func.count())
        .where(*missed_in_period)
        .group_by(MissedObservation.admission_id, MissedObservation.scale, missed_shift))
    for admission_id, scale, shift_name, count in missed_groups:
        for tally in (by_scale[scale], by_resident[admission_id], by_shift[shift_name]):
            tally.missed += count

    names = dict(db.session.execute(select(Admission.id, Resident.name).join(Resident).where(Admission.unit_id == unit.id)).all())
    # Ties are broken by time and resident, so that the same history always lists the same rows.
    worst_late = db.session.execute(
        select(Observation.admission_id, Observation.scale, Observation.due_at, Observation.observed_at, late)
        .where(*answered, is_late)
        .order_by(late.desc(), Observation.due_at, Observation.admission_id, Observation.scale).limit(10)).all()
    worst_missed = db.session.execute(
        select(MissedObservation.admission_id, MissedObservation.scale, sa.func.count(),
               sa.func.min(MissedObservation.due_at), sa.func.max(MissedObservation.due_at))
        .where(*missed_in_period)
        .group_by(MissedObservation.admission_id, MissedObservation.scale)
        .order_by(sa.func.count().desc(), MissedObservation.admission_id, MissedObservation.scale)
        .limit(10)).all()
    shift_keys = ("due", "on_time", "late", "missed", "not_done", "on_time_rate")
    return {
        "by_scale": {scale: tally.figures() for scale, tally in sorted(by_scale.items())},
        "by_resident": [{"admission_id": a, "resident": names.get(a), **tally.figures()}
                        for a, tally in sorted(by_resident.items())],
        "by_shift": {name: {k: v for k, v in by_shift[name].figures().items() if k in shift_keys}
                     for name, _, _ in SHIFTS},
        "worst_late": [{"admission_id": a, "resident": names.get(a), "scale": s, "due_at": _iso(d),
                        "observed_at": _iso(o), "late_minutes": _minutes(m)} for a, s, d, o, m in worst_late],
        "worst_missed": [{"admission_id": a, "resident": names.get(a), "scale": s, "missed": n,
                          "from": _iso(first), "to": _iso(last)} for a, s, n, first, last in worst_missed],
    }


@dataclass
class _Tally:
    """One row of a compliance table (a scale, a resident or a shift), summed from groups."""

    done: int = 0
    on_time: int = 0
    late: int = 0
    not_done: int = 0
    missed: int = 0
    late_ms_total: int = 0
    late_ms_max: int | None = None

    def add_answered(self, done, on_time, late, not_done, late_ms_total, late_ms_max) -> None:
        self.done += done
        self.on_time += int(on_time)
        self.late += int(late)
        self.not_done += int(not_done)
        if late_ms_max is not None:  # the group had late observations
            self.late_ms_total += int(late_ms_total)
            self.late_ms_max = int(late_ms_max) if self.late_ms_max is None else max(self.late_ms_max,
                                                                                     int(late_ms_max))

    def figures(self) -> dict:
        due = self.done + self.missed
        return {"due": due, "on_time": self.on_time, "late": self.late, "missed": self.missed,
                "not_done": self.not_done, "on_time_rate": round(self.on_time / due, 4) if due else None,
                "late_minutes_mean": _minutes(self.late_ms_total, self.late) if self.late else None,
                "late_minutes_max": _minutes(self.late_ms_max) if self.late_ms_max is not None else None}


def _offset_changes(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (whole minutes) over the period: each one with the UTC hour it
    starts at, hour by hour from the hour holding ``start``."""
    hour = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    changes: list[tuple[datetime, int]] = []
    while hour < end:
        offset = int(hour.astimezone(zone).utcoffset().total_seconds() // 60)
        if not changes or offset != changes[-1][1]:
            changes.append((hour, offset))
        hour += timedelta(hours=1)
    return changes


def _shift_sql(due_at, offsets: list[tuple[datetime, int]], dialect: str):
    """SQL for the shift of a due time: the shift of the local hour at the start of its UTC
    hour, with the offset in force then (the period's offsets from ``_offset_changes``)."""
    hour = utc_hour(due_at, dialect)

    def by_hour(offset: int):
        return sa.case({h: shift_of((h * 60 + offset) // 60 % 24) for h in range(24)}, value=hour)

    whens = [(due_at < changed_at, by_hour(offset)) for (_, offset), (changed_at, _) in zip(offsets, offsets[1:])]
    return sa.case(*whens, else_=by_hour(offsets[-1][1])) if whens else by_hour(offsets[-1][1])


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


# --- the sections, as the report composes them (unit.report) -----------------------------------

_FIGURES = ["due", "on_time", "late", "missed", "not_done", "on_time_rate", "late_minutes_mean", "late_minutes_max"]


def observation_tables(obs: dict) -> dict[str, Table]:
    """The observation section's tables for the CSV and PDF exports."""
    return {
        "observations_by_scale": (["scale", *_FIGURES], [[s, *[f[k] for k in _FIGURES]] for s, f in obs["by_scale"].items()]),
        "observations_by_resident": (["admission_id", "resident", *_FIGURES],
                                     [[r["admission_id"], r["resident"], *[r[k] for k in _FIGURES]] for r in obs["by_resident"]]),
        "observations_by_shift": (["shift", "due", "on_time", "late", "missed", "not_done", "on_time_rate"],
                                  [[s, f["due"], f["on_time"], f["late"], f["missed"], f["not_done"], f["on_time_rate"]]
                                   for s, f in obs["by_shift"].items()]),
        "worst_late_observations": (["resident", "scale", "due_at", "observed_at", "late_minutes"],
                                    [[w["resident"], w["scale"], w["due_at"], w["observed_at"], w["late_minutes"]]
                                     for w in obs["worst_late"]]),
    }


def escalation_tables(esc: dict) -> dict[str, Table]:
    """The escalation section's tables for the CSV and PDF exports."""
    return {
        "escalations": (["measure", "value"],
                        [["total", esc["total"]], ["acknowledge_minutes_median", esc["acknowledge_minutes_median"]],
                         ["acknowledge_minutes_p90", esc["acknowledge_minutes_p90"]], ["breaches", len(esc["breaches"])],
                         ["re_escalations", esc["re_escalations"]], ["overridden", esc["overridden"]],
                         ["routing_matched_model", esc["routing_matched_model"]], ["rota_gaps", len(esc["rota_gaps"])]]
                        + [[f"trigger: {k}", v] for k, v in esc["by_trigger"].items()]
                        + [[f"severity: {k}", v] for k, v in esc["by_severity"].items()]
                        + [[f"route: {k}", v] for k, v in esc["by_route"].items()]),
        "escalation_breaches": (["id", "severity", "reason", "raised_at", "target_minutes", "minutes_to_acknowledge"],
                                [[b["id"], b["severity"], b["reason"], b["raised_at"], b["target_minutes"],
                                  b["minutes_to_acknowledge"]] for b in esc["breaches"]]),
    }


def _routing_alerts(esc: dict) -> list[str]:
    return [] if esc["routing_matched_model"] else ["Some escalations were not routed as the model required."]


REPORT_SECTIONS = (
    ReportSection("observations", lambda p: observations_section(p.unit, p.start, p.end, p.zone),
                  observation_tables, titles={"worst_late_observations": "Late observations, worst first"}),
    ReportSection("escalations",
                  lambda p: escalations_section(p.unit, p.start, p.end, p.model_history, p.now),
                  escalation_tables, alerts=_routing_alerts),
)
