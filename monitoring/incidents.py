"""Incidents: falls, seizures, aggression, self-harm, medication errors, absconding,
substances found, safeguarding concerns; the manager's review (outcome and lessons), the link
to the escalation or dose concerned, and the regulator's notification when one is due.

Links to other packages' records (a dose: medication) come through ``link_kinds``, filled
when the app is assembled: monitoring never imports medication.
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.db import unit_of_work
from config.errors import Conflict, DomainError, Forbidden, NotFound
from config.extensions import db
from monitoring.models import Escalation
from unit.audit import record_event
from unit.models import Admission, Staff
from unit.services import MAX_ID, get_admission

INCIDENT_TYPES = {
    "fall": "Fall",
    "seizure": "Seizure",
    "aggression": "Aggression or violence",
    "self_harm": "Self-harm",
    "medication_error": "Medication error",
    "absconding": "Absconding (left without agreement)",
    "substance_found": "Substances found on the unit",
    "safeguarding": "Safeguarding concern",
    "overdose": "Overdose",
    "other": "Other",
}
# Degrees of harm as the NHS reports patient-safety incidents (NRLS / LFPSE).
SEVERITIES = {"no_harm": "No harm", "low": "Low harm", "moderate": "Moderate harm",
              "severe": "Severe harm", "death": "Death"}
PEOPLE_ROLES = ("resident", "staff", "visitor", "other")
CLOCK_SKEW = timedelta(minutes=2)


# --- models ----------------------------------------------------------------------------------

class Incident(db.Model):
    """One incident as reported, with its review and the regulator's notification."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'reviewed')", name="status"),
        sa.Index("ix_incidents_unit_occurred", "unit_id", "occurred_at"),
        sa.Index("ix_incidents_unit_status", "unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int | None] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    type: Mapped[str] = mapped_column(sa.String(24))
    severity: Mapped[str] = mapped_column(sa.String(16))
    occurred_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text)
    action_taken: Mapped[str] = mapped_column(sa.Text)
    people_involved: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    police_involved: Mapped[bool] = mapped_column(default=False)
    escalation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("escalations.id"))
    reported_at: Mapped[datetime]
    reported_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    review_outcome: Mapped[str | None] = mapped_column(sa.Text)
    lessons: Mapped[str | None] = mapped_column(sa.Text)
    # The regulator (CQC) must be told of some incidents: the rule's answer and why, and the
    # notification's record once made.
    notification_required: Mapped[bool] = mapped_column(default=False)
    notification_reasons: Mapped[list[str]] = mapped_column(sa.JSON)
    notified_at: Mapped[datetime | None]
    notified_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    notification_reference: Mapped[str | None] = mapped_column(sa.String(100))
    notification_note: Mapped[str | None] = mapped_column(sa.Text)

    admission: Mapped[Admission | None] = relationship()
    reported_by: Mapped[Staff] = relationship(foreign_keys=[reported_by_id])
    reviewed_by: Mapped[Staff | None] = relationship(foreign_keys=[reviewed_by_id])
    notified_by: Mapped[Staff | None] = relationship(foreign_keys=[notified_by_id])
    escalation: Mapped[Escalation | None] = relationship()

    links = None  # filled by list_incidents: the links of each incident (not a column)

    @property
    def notification_due(self) -> bool:
        """The regulator must be told and has not been yet."""
        return self.notification_required and self.notified_at is None


# --- errors ----------------------------------------------------------------------------------

class IncidentNotFound(NotFound):
    type = "incident-not-found"
    title = "No such incident on your unit"


class IncidentInvalid(DomainError):
    type = "incident-invalid"
    title = "The incident record is not valid"


class IncidentReviewed(Conflict):
    type = "incident-reviewed"
    title = "The incident has been reviewed already"


class NotificationRecorded(Conflict):
    type = "notification-recorded"
    title = "The regulator's notification is recorded already"


# --- links to other records ------------------------------------------------------------------

@dataclass(frozen=True)
class LinkKind:
    """A kind of record an incident may be linked to (an escalation; a dose, from medication).

    ``attach(actor, incident, record_id, now)`` checks the record (of the unit; of the
    incident's resident if it has one: raise ``IncidentInvalid`` naming ``field``) and writes
    the link; ``describe(incident_ids)`` returns each incident's links as
    ``{"kind", "id", "label"}``; ``choices(admission_id)`` the records a page may offer.
    """

    label: str
    attach: Callable[[Staff, Incident, int, datetime, str], None]
    describe: Callable[[list[int]], dict[int, list[dict[str, Any]]]]
    choices: Callable[[int], list[tuple[int, str]]] | None = None


def _attach_escalation(actor: Staff, incident: Incident, escalation_id: int, now: datetime,
                       field: str) -> None:
    escalation = db.session.get(Escalation, escalation_id) if 0 < escalation_id <= MAX_ID else None
    if escalation is None or escalation.unit_id != actor.unit_id:
        raise IncidentInvalid(f"There is no escalation {escalation_id} on your unit.",
                              errors={field: ["No such escalation on your unit."]})
    if incident.admission_id is not None and escalation.admission_id != incident.admission_id:
        raise IncidentInvalid("The escalation is another resident's.",
                              errors={field: ["Another resident's escalation."]})
    if incident.escalation_id not in (None, escalation_id):
        raise IncidentInvalid("The incident is linked to another escalation already.",
                              errors={field: ["Already linked to an escalation."]})
    incident.escalation_id = escalation_id


def _describe_escalations(incident_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    rows = db.session.execute(
        select(Incident.id, Escalation.id, Escalation.severity, Escalation.reason, Escalation.raised_at)
        .join(Escalation, Escalation.id == Incident.escalation_id).where(Incident.id.in_(incident_ids)))
    found: dict[int, list[dict[str, Any]]] = {}
    for incident_id, escalation_id, severity, reason, raised_at in rows:
        found.setdefault(incident_id, []).append({
            "kind": "escalation", "id": escalation_id,
            "label": f"{severity} escalation: {reason}"})
    return found


def _escalation_choices(admission_id: int) -> list[tuple[int, str]]:
    return [(e.id, f"{e.severity}: {e.reason}") for e in db.session.scalars(
        select(Escalation).where(Escalation.admission_id == admission_id)
        .order_by(Escalation.raised_at.desc()).limit(20))]


# Kind -> definition. "escalation" is monitoring's own; medication adds "administration" when
# the app is assembled (config/app.py).
link_kinds: dict[str, LinkKind] = {
    "escalation": LinkKind("Escalation", _attach_escalation, _describe_escalations, _escalation_choices),
}


def links_of(incident_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every link of these incidents, by incident (one query per kind)."""
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in incident_ids}
    if not incident_ids:
        return found
    for kind in link_kinds.values():
        for incident_id, links in kind.describe(incident_ids).items():
            found[incident_id].extend(links)
    return found


# --- the rules -------------------------------------------------------------------------------

def notification_reasons(*, type_: str, severity: str, police_involved: bool) -> list[str]:
    """Why the regulator must be told of an incident (empty: it need not be).

    The Care Quality Commission (Registration) Regulations 2009: the death of a person using
    the service (reg 16), a serious injury, abuse or an allegation of abuse, and an incident
    reported to or investigated by the police (reg 18).
    """
    reasons = []
    if severity == "death":
        reasons.append("A resident died (CQC Registration Regulations 2009, regulation 16)")
    if severity == "severe":
        reasons.append("Serious injury (regulation 18(2)(a))")
    if type_ == "safeguarding":
        reasons.append("Abuse or an allegation of abuse (regulation 18(2)(e))")
    if police_involved:
        reasons.append("Reported to or investigated by the police (regulation 18(2)(f))")
    return reasons


def _check_time(occurred_at: datetime, admission: Admission | None, now: datetime) -> None:
    if occurred_at > now + CLOCK_SKEW:
        raise IncidentInvalid("The incident cannot have happened in the future.",
                              errors={"occurred_at": ["Must not be in the future."]})
    if admission is not None and occurred_at < admission.admitted_at - timedelta(hours=1):
        raise IncidentInvalid("The incident is dated before the resident's admission.",
                              errors={"occurred_at": ["Before the admission."]})


def _people(actor: Staff, people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = []
    for index, person in enumerate(people):
        entry = {"role": person["role"], "name": person.get("name"), "admission_id": None}
        admission_id = person.get("admission_id")
        if admission_id is not None:
            try:
                admission = get_admission(actor, admission_id)
            except NotFound:
                raise IncidentInvalid(f"There is no admission {admission_id} on your unit.", errors={
                    f"people_involved.{index}.admission_id": ["No such admission on your unit."]}) from None
            entry.update(admission_id=admission.id, name=entry["name"] or admission.resident.name)
        if not entry["name"]:
            raise IncidentInvalid("Name each person involved, or give their admission.", errors={
                f"people_involved.{index}.name": ["Give a name or an admission_id."]})
        kept.append(entry)
    return kept


def _attach(actor: Staff, incident: Incident, links: list[dict[str, Any]], now: datetime,
            prefix: str = "links") -> None:
    for index, link in enumerate(links):
        kind = link_kinds.get(link["kind"])
        if kind is None:
            raise IncidentInvalid(f"An incident cannot be linked to a {link['kind']!r}.", errors={
                f"{prefix}.{index}.kind": [f"One of: {', '.join(sorted(link_kinds))}."]})
        kind.attach(actor, incident, link["id"], now, f"{prefix}.{index}.id")


@unit_of_work
def report_incident(actor: Staff, *, type: str, severity: str, occurred_at: datetime,  # noqa: A002
                    admission_id: int | None, location: str | None, description: str,
                    action_taken: str, people_involved: list[dict[str, Any]],
                    police_involved: bool, links: list[dict[str, Any]], now: datetime) -> Incident:
    """Record an incident as reported; whether the regulator must be told is worked out now."""
    admission = get_admission(actor, admission_id) if admission_id is not None else None
    _check_time(occurred_at, admission, now)
    people = _people(actor, people_involved)
    if admission is not None and not any(p.get("admission_id") == admission.id for p in people):
        people.insert(0, {"role": "resident", "name": admission.resident.name,
                          "admission_id": admission.id})
    reasons = notification_reasons(type_=type, severity=severity, police_involved=police_involved)
    incident = Incident(
        unit_id=actor.unit_id, admission_id=admission.id if admission else None, type=type,
        severity=severity, occurred_at=occurred_at, location=location, description=description,
        action_taken=action_taken, people_involved=people, police_involved=police_involved,
        reported_at=now, reported_by_id=actor.id, status="open",
        notification_required=bool(reasons), notification_reasons=reasons)
    db.session.add(incident)
    db.session.flush()
    _attach(actor, incident, links, now)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="incident.report", entity_type="incident",
                 entity_id=incident.id, resident_id=admission.resident_id if admission else None,
                 now=now, after={"type": type, "severity": severity, "occurred_at": occurred_at,
                                 "description": description, "action_taken": action_taken,
                                 "people_involved": people, "police_involved": police_involved,
                                 "links": links, "notification_required": bool(reasons)})
    return incident


def get_incident(actor: Staff, incident_id: int, *, lock: bool = False) -> Incident:
    """An incident of the actor's unit."""
    incident = None
    if 0 < incident_id <= MAX_ID:
        query = select(Incident).where(Incident.id == incident_id)
        incident = db.session.scalars(query.with_for_update() if lock else query).first()
    if incident is None or incident.unit_id != actor.unit_id:
        raise IncidentNotFound(f"There is no incident {incident_id} on your unit.")
    return incident


@unit_of_work
def link_incident(actor: Staff, incident_id: int, *, kind: str, record_id: int,
                  now: datetime) -> Incident:
    """Link an incident to the escalation or dose concerned (after it was reported)."""
    incident = get_incident(actor, incident_id, lock=True)
    _attach(actor, incident, [{"kind": kind, "id": record_id}], now, prefix="link")
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="incident.link", entity_type="incident",
                 entity_id=incident.id, now=now, after={"kind": kind, "id": record_id})
    return incident


@unit_of_work
def review_incident(actor: Staff, incident_id: int, *, outcome: str, lessons: str,
                    severity: str | None, now: datetime) -> Incident:
    """A manager reviews an incident: the outcome, the lessons, and the severity re-graded if
    need be (which may make a notification due)."""
    if actor.role != "manager":
        raise Forbidden("Only a manager may review an incident.")
    incident = get_incident(actor, incident_id, lock=True)
    if incident.status == "reviewed":
        raise IncidentReviewed(f"Incident {incident_id} was reviewed on "
                               f"{incident.reviewed_at:%d %b %Y}.")
    before = {"status": incident.status, "severity": incident.severity}
    if severity is not None and severity != incident.severity:
        incident.severity = severity
        reasons = notification_reasons(type_=incident.type, severity=severity,
                                       police_involved=incident.police_involved)
        # A notification once due stays due: re-grading down does not unsay it.
        incident.notification_reasons = sorted(set(incident.notification_reasons) | set(reasons))
        incident.notification_required = bool(incident.notification_reasons)
    incident.status, incident.reviewed_at, incident.reviewed_by_id = "reviewed", now, actor.id
    incident.review_outcome, incident.lessons = outcome, lessons
    record_event(unit_id=actor.unit_id, actor=actor, action="incident.review", entity_type="incident",
                 entity_id=incident.id, now=now, before=before,
                 after={"status": "reviewed", "severity": incident.severity, "outcome": outcome,
                        "lessons": lessons, "notification_required": incident.notification_required})
    return incident


@unit_of_work
def record_notification(actor: Staff, incident_id: int, *, notified_at: datetime | None,
                        reference: str, note: str | None, now: datetime) -> Incident:
    """A manager records the regulator's notification of an incident (when, its reference)."""
    if actor.role != "manager":
        raise Forbidden("Only a manager may record the regulator's notification.")
    incident = get_incident(actor, incident_id, lock=True)
    if incident.notified_at is not None:
        raise NotificationRecorded(f"The notification of incident {incident_id} was recorded on "
                                   f"{incident.notified_at:%d %b %Y} ({incident.notification_reference}).")
    notified_at = notified_at or now
    if notified_at > now + CLOCK_SKEW:
        raise IncidentInvalid("The notification cannot have been made in the future.",
                              errors={"notified_at": ["Must not be in the future."]})
    if notified_at < incident.reported_at - timedelta(days=1):
        raise IncidentInvalid("The notification is dated before the incident was reported.",
                              errors={"notified_at": ["Before the incident was reported."]})
    incident.notified_at, incident.notified_by_id = notified_at, actor.id
    incident.notification_reference, incident.notification_note = reference, note
    record_event(unit_id=actor.unit_id, actor=actor, action="incident.notify", entity_type="incident",
                 entity_id=incident.id, now=now,
                 after={"notified_at": notified_at, "reference": reference, "note": note,
                        "required": incident.notification_required})
    return incident


def list_incidents(actor: Staff, *, status: str | None = None, admission_id: int | None = None,
                   limit: int = 200) -> list[Incident]:
    """The unit's incidents, newest first (open or reviewed; one resident's)."""
    query = select(Incident).where(Incident.unit_id == actor.unit_id)
    if status:
        query = query.where(Incident.status == status)
    if admission_id is not None:
        get_admission(actor, admission_id)
        query = query.where(Incident.admission_id == admission_id)
    rows = list(db.session.scalars(query.order_by(Incident.occurred_at.desc(), Incident.id.desc())
                                   .limit(limit)))
    links = links_of([row.id for row in rows])
    for row in rows:
        row.links = links[row.id]  # read once for the list, not once per incident
    return rows


def incidents_between(admission_ids: list[int], start: datetime, end: datetime) -> list[Incident]:
    """The incidents of these residents that happened in [start, end), oldest first."""
    if not admission_ids:
        return []
    return list(db.session.scalars(select(Incident).where(
        Incident.admission_id.in_(admission_ids), Incident.occurred_at >= start,
        Incident.occurred_at < end).order_by(Incident.occurred_at, Incident.id)))


def notifications_due(unit_id: int) -> list[Incident]:
    """Incidents the regulator must be told of, not yet recorded as told (oldest first)."""
    return list(db.session.scalars(select(Incident).where(
        Incident.unit_id == unit_id, Incident.notification_required.is_(True),
        Incident.notified_at.is_(None)).order_by(Incident.reported_at)))


def open_count(unit_id: int) -> int:
    """Incidents awaiting a manager's review."""
    return db.session.scalar(select(sa.func.count()).select_from(Incident).where(
        Incident.unit_id == unit_id, Incident.status == "open"))


def describe(incident: Incident) -> str:
    """One line: "14:05 Fall (low harm): found on the bathroom floor"."""
    return (f"{INCIDENT_TYPES[incident.type]} ({SEVERITIES[incident.severity].lower()}): "
            f"{incident.description}")


# --- the inspector's report ------------------------------------------------------------------

def incidents_section(unit, start: datetime, end: datetime, now: datetime) -> dict:
    """Incidents that happened in the period: counts by type and severity, time to review
    (hours, from report to review; one not yet reviewed counts to now), and the regulator's
    notifications due, made and outstanding."""
    rows = list(db.session.scalars(select(Incident).where(
        Incident.unit_id == unit.id, Incident.occurred_at >= start, Incident.occurred_at < end)
        .order_by(Incident.occurred_at, Incident.id)))
    hours = [(i.reviewed_at - i.reported_at).total_seconds() / 3600 for i in rows if i.reviewed_at]
    waiting = [(now - i.reported_at).total_seconds() / 3600 for i in rows if i.reviewed_at is None]
    quantiles = statistics.quantiles(hours, n=10, method="inclusive") if len(hours) >= 2 else None
    by_pair = Counter((i.type, i.severity) for i in rows)
    return {
        "total": len(rows),
        "by_type": dict(sorted(Counter(i.type for i in rows).items())),
        "by_severity": {code: n for code in SEVERITIES
                        if (n := sum(1 for i in rows if i.severity == code))},
        "by_type_and_severity": [{"type": t, "severity": s, "count": n}
                                 for (t, s), n in sorted(by_pair.items())],
        "reviewed": len(hours),
        "awaiting_review": len(waiting),
        "review_hours_median": round(statistics.median(hours), 1) if hours else None,
        "review_hours_p90": round(quantiles[8], 1) if quantiles else (round(hours[0], 1) if hours else None),
        "review_hours_max": round(max(hours), 1) if hours else None,
        "longest_awaiting_review_hours": round(max(waiting), 1) if waiting else None,
        "notifications_required": sum(1 for i in rows if i.notification_required),
        "notifications_made": sum(1 for i in rows if i.notified_at is not None),
        "notifications_outstanding": [
            {"incident_id": i.id, "type": i.type, "severity": i.severity,
             "occurred_at": i.occurred_at.isoformat(), "reasons": i.notification_reasons}
            for i in rows if i.notification_due],
    }


def incident_tables(section: dict) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The incidents section as the report's CSV and PDF tables."""
    return {
        "incidents": (["measure", "value"],
                      [["total", section["total"]], ["reviewed", section["reviewed"]],
                       ["awaiting_review", section["awaiting_review"]],
                       ["review_hours_median", section["review_hours_median"]],
                       ["review_hours_p90", section["review_hours_p90"]],
                       ["review_hours_max", section["review_hours_max"]],
                       ["longest_awaiting_review_hours", section["longest_awaiting_review_hours"]],
                       ["notifications_required", section["notifications_required"]],
                       ["notifications_made", section["notifications_made"]]]
                      + [[f"type: {k}", v] for k, v in section["by_type"].items()]
                      + [[f"severity: {k}", v] for k, v in section["by_severity"].items()]),
        "incidents_by_type_and_severity": (["type", "severity", "count"],
                                           [[r["type"], r["severity"], r["count"]]
                                            for r in section["by_type_and_severity"]]),
        "notifications_outstanding": (["incident_id", "type", "severity", "occurred_at", "reasons"],
                                      [[o["incident_id"], o["type"], o["severity"], o["occurred_at"],
                                        "; ".join(o["reasons"])] for o in section["notifications_outstanding"]]),
    }


def incident_alerts(section: dict) -> list[str]:
    """What the report page shows first: notifications the regulator has not had."""
    outstanding = section["notifications_outstanding"]
    return ([f"{len(outstanding)} incident(s) the regulator must be told of have no notification recorded."]
            if outstanding else [])


_INCIDENTS_SECTION = []


def report_section():
    """The report's incidents section, made once (registered in create_app)."""
    if not _INCIDENTS_SECTION:
        _INCIDENTS_SECTION.append(_make_report_section())
    return _INCIDENTS_SECTION[0]


def _make_report_section():
    from unit.report import ReportSection

    return ReportSection(
        "incidents", lambda p: incidents_section(p.unit, p.start, p.end, p.now), incident_tables,
        titles={"incidents_by_type_and_severity": "Incidents by type and severity",
                "notifications_outstanding": "Incidents the regulator has not been told of"},
        alerts=incident_alerts)
