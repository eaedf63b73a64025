"""What monitoring tells the shift handover: live escalations (the sheet shows them apart and
they are frozen at signing), the shift's scores, not-done and missed observations, escalations
closed in the shift, incidents, screens, and what is due next. Registered when the app is
assembled."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from config.clock import local
from config.extensions import db
from monitoring import escalations, incidents, leave, rota, screens
from monitoring.models import Escalation, MissedObservation, Observation, ObservationSchedule
from monitoring.scales import SCALES
from unit.handover import HandoverSource

Facts = dict[int, list[dict[str, Any]]]


def _fact(part: str, text: str, live: bool = False) -> dict[str, Any]:
    return {"part": part, "text": text, "live": live}


def escalation_facts(unit_id: int, admission_ids: list[int], start: datetime, end: datetime) -> Facts:
    """Every live escalation (whenever raised), and those closed during the shift."""
    found: Facts = defaultdict(list)
    rows = db.session.scalars(select(Escalation).where(
        Escalation.admission_id.in_(admission_ids),
        (Escalation.status != "resolved") | (Escalation.resolved_at >= start))
        .order_by(Escalation.raised_at, Escalation.id))
    for e in rows:
        if e.status != "resolved":
            answered = (f"; acknowledged {local(e.acknowledged_at):%H:%M}" if e.acknowledged_at
                        else "; NOT YET ACKNOWLEDGED")
            advice = escalations.advice(e)
            found[e.admission_id].append(_fact(
                "situation", f"{e.severity.upper()} escalation open since {local(e.raised_at):%d %b %H:%M}: "
                             f"{e.reason}{answered}" + (f". {advice}" if advice else "."), live=True))
        else:
            found[e.admission_id].append(_fact(
                "assessment", f"Escalation ({e.severity}) raised {local(e.raised_at):%H:%M} resolved "
                              f"{local(e.resolved_at):%H:%M}: {e.outcome or 'closed'}."))
    return found


def observation_facts(unit_id: int, admission_ids: list[int], start: datetime, end: datetime) -> Facts:
    """The shift's scores (latest and highest per scale), not-done and missed observations,
    and the next due time of each scale."""
    found: Facts = defaultdict(list)
    rows = db.session.scalars(select(Observation).where(
        Observation.admission_id.in_(admission_ids), Observation.observed_at >= start,
        Observation.observed_at < end, Observation.struck_at.is_(None))
        .order_by(Observation.observed_at, Observation.id)).all()
    by_scale: dict[tuple[int, str], list[Observation]] = defaultdict(list)
    for o in rows:
        if o.status == "recorded":
            by_scale[(o.admission_id, o.scale)].append(o)
        else:
            found[o.admission_id].append(_fact(
                "assessment", f"{SCALES[o.scale].name} not done at {local(o.observed_at):%H:%M} "
                              f"({o.not_done_reason.replace('_', ' ')})."))
    for (admission_id, scale), scored in by_scale.items():
        last, worst = scored[-1], max(scored, key=lambda o: o.total)
        text = f"{SCALES[scale].name} {last.total} ({last.band.replace('_', ' ')}) at {local(last.observed_at):%H:%M}"
        if len(scored) > 1:
            text += f"; {len(scored)} this shift, highest {worst.total} ({worst.band.replace('_', ' ')})"
        found[admission_id].append(_fact("assessment", text + "."))
    for missed in db.session.scalars(select(MissedObservation).where(
            MissedObservation.admission_id.in_(admission_ids), MissedObservation.due_at >= start,
            MissedObservation.due_at < end).order_by(MissedObservation.due_at)):
        found[missed.admission_id].append(_fact(
            "assessment", f"{SCALES[missed.scale].name} due {local(missed.due_at):%H:%M} was MISSED."))
    for schedule in db.session.scalars(select(ObservationSchedule).where(
            ObservationSchedule.admission_id.in_(admission_ids), ObservationSchedule.active.is_(True))
            .order_by(ObservationSchedule.id)):
        found[schedule.admission_id].append(_fact(
            "recommendation", f"Next {SCALES[schedule.scale].name} due {local(schedule.next_due_at):%H:%M} "
                              f"(every {schedule.interval_minutes} min)."))
    return found


def event_facts(unit_id: int, admission_ids: list[int], start: datetime, end: datetime) -> Facts:
    """The shift's incidents and screens."""
    found: Facts = defaultdict(list)
    for incident in incidents.incidents_between(admission_ids, start, end):
        found[incident.admission_id].append(_fact(
            "assessment", f"Incident {local(incident.occurred_at):%H:%M}: {incidents.describe(incident)}"))
    for screen in screens.screens_between(admission_ids, start, end):
        found[screen.admission_id].append(_fact(
            "situation" if screen.unexpected else "assessment", screens.summary(screen) + "."))
    return found


def leave_facts(unit_id: int, admission_ids: list[int], start: datetime, end: datetime) -> Facts:
    """Who is away (observations paused), who came back in the shift, and any breath-alcohol
    reading still to take."""
    found: Facts = defaultdict(list)
    due = {episode.id for episode in leave.breath_due(unit_id)}
    for admission_id in admission_ids:
        for episode in leave.leave_of(admission_id):
            if episode.status == "on_leave":
                found[admission_id].append(_fact("situation", leave.leave_facts(episode, end)["text"]
                                                 + "; observations paused."))
            elif episode.returned_at is not None and episode.returned_at >= start:
                found[admission_id].append(_fact("situation", leave.leave_facts(episode, end)["text"] + "."))
            if episode.id in due:
                found[admission_id].append(_fact("recommendation",
                                                 "Breath-alcohol reading due since the return from leave."))
    return found


def nurses_in_charge(unit_id: int, at: datetime) -> set[int]:
    """Who holds the nurse-in-charge duty on the rota at ``at``."""
    return {shift.staff_id for shift in rota.on_duty([unit_id], "nurse_in_charge", at)
            if shift.staff_id is not None}


SOURCES = (HandoverSource("escalations", escalation_facts),
           HandoverSource("observations", observation_facts),
           HandoverSource("events", event_facts),
           HandoverSource("leave", leave_facts))
