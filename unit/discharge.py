"""The way out: a discharge summary for every discharge, its letter to the GP and the referrer,
and the follow-up tasks (a call within 72 hours) that stay on the board until done.

The summary is opened as a draft when the resident is discharged (a hook of
``discharge_admission``). What happened during the stay comes from the packages that know it,
through ``summary_sections`` (filled when the app is assembled, as the board's cells are):
medication the detox given, monitoring the last scores, incidents and screens. The aftercare
plan and the named contacts are written by staff; signing the summary off (``finalise``)
freezes the sections as they are then, so the letter never changes after it was sent.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.clock import local
from config.db import unit_of_work
from config.errors import Conflict, DomainError, NotFound
from config.extensions import db
from unit.audit import jsonable, record_event
from unit.models import Admission, Staff
from unit.services import MAX_ID, age_today, get_admission

FOLLOW_UP_CALL_HOURS = 72
AFTERCARE_ITEMS = {
    "onward_rehab": "Onward residential rehabilitation",
    "community_team": "Community drug and alcohol team",
    "mutual_aid": "Mutual aid",
    "gp_follow_up": "GP follow-up",
}


# --- what the packages contribute ------------------------------------------------------------

@dataclass(frozen=True)
class SummarySection:
    """A section of the discharge summary, written by the package that knows it.

    ``build(admission)`` returns ``{"lines": [str, ...], "table": {"header": [...], "rows":
    [[...], ...]} | None}`` (plain JSON: it is frozen in the summary when it is signed off),
    or None to leave the section out.
    """

    key: str
    title: str
    order: int
    build: Callable[[Admission], dict[str, Any] | None]


# Filled when the app is assembled (config/app.py): unit adds the stay itself, monitoring the
# last scores, incidents, screens and leave, medication the detox given.
summary_sections: list[SummarySection] = []
# Why a resident must leave with naloxone (or a recorded reason why not): each returns the
# reason or None. Unit knows the declared substances; medication adds opioids given here.
naloxone_reasons: list[Callable[[Admission], str | None]] = []


def _declared_opioids(admission: Admission) -> str | None:
    return "opioids declared at admission" if "opioids" in admission.substances else None


naloxone_reasons.append(_declared_opioids)


# --- models ----------------------------------------------------------------------------------

class DischargeSummary(db.Model):
    """The discharge summary of one admission: a draft until signed off, then frozen."""

    __tablename__ = "discharge_summaries"
    __table_args__ = (sa.CheckConstraint("status IN ('draft', 'final')", name="status"),
                      sa.Index("ix_discharge_summaries_unit_status", "unit_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(8), default="draft")
    aftercare: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    gp: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    referrer: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    note: Mapped[str | None] = mapped_column(sa.Text)
    # The contributed sections as they were when the summary was signed off.
    sections: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    finalised_at: Mapped[datetime | None]
    finalised_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    admission: Mapped[Admission] = relationship()
    finalised_by: Mapped[Staff | None] = relationship(foreign_keys=[finalised_by_id])


class FollowUpTask(db.Model):
    """Something to do after a discharge (a call within 72 hours); on the board until done."""

    __tablename__ = "follow_up_tasks"
    __table_args__ = (sa.Index("ix_follow_up_tasks_unit_open", "unit_id", "done_at", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"), index=True)
    summary_id: Mapped[int | None] = mapped_column(sa.ForeignKey("discharge_summaries.id"))
    title: Mapped[str] = mapped_column(sa.String(300))
    due_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    done_at: Mapped[datetime | None]
    done_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    outcome: Mapped[str | None] = mapped_column(sa.Text)

    admission: Mapped[Admission] = relationship()
    done_by: Mapped[Staff | None] = relationship(foreign_keys=[done_by_id])


# --- errors ----------------------------------------------------------------------------------

class SummaryNotReady(Conflict):
    type = "discharge-summary-not-ready"
    title = "There is no discharge summary yet"


class SummaryFinal(Conflict):
    type = "discharge-summary-final"
    title = "The discharge summary has been signed off"


class SummaryNotFinal(Conflict):
    type = "discharge-summary-not-final"
    title = "The discharge summary has not been signed off"


class SummaryIncomplete(DomainError):
    type = "discharge-summary-incomplete"
    title = "The discharge summary cannot be signed off yet"


class TaskNotFound(NotFound):
    type = "follow-up-not-found"
    title = "No such follow-up task on your unit"


class TaskDone(Conflict):
    type = "follow-up-done"
    title = "The follow-up task is done already"


# --- the summary -----------------------------------------------------------------------------

def open_summary(admission: Admission, actor: Staff | None, now: datetime) -> DischargeSummary:
    """At discharge: a draft summary, its recipients taken from the waiting list (GP, referrer)."""
    existing = db.session.scalars(select(DischargeSummary).where(
        DischargeSummary.admission_id == admission.id)).first()
    if existing is not None:
        return existing
    from unit.beds import planned_for_admission

    planned = planned_for_admission(admission.id)
    summary = DischargeSummary(
        unit_id=admission.unit_id, admission_id=admission.id, status="draft", aftercare={},
        contacts=[], gp=planned.gp if planned else None, referrer=planned.referrer if planned else None,
        created_at=now, updated_at=now, updated_by_id=actor.id if actor else None)
    db.session.add(summary)
    db.session.flush()
    return summary


def _discharged(actor: Staff, admission_id: int) -> Admission:
    admission = get_admission(actor, admission_id)
    if admission.status != "discharged":
        raise SummaryNotReady(f"{admission.resident.name} has not been discharged: the summary is "
                              "written once they leave.")
    return admission


def get_summary(actor: Staff, admission_id: int) -> DischargeSummary:
    """The discharge summary of a discharged resident of the actor's unit."""
    admission = _discharged(actor, admission_id)
    summary = db.session.scalars(select(DischargeSummary).where(
        DischargeSummary.admission_id == admission.id)).first()
    if summary is None:
        # Discharged before summaries were kept: a draft now, written as any other.
        raise SummaryNotReady(f"There is no discharge summary for {admission.resident.name} yet: "
                              "save one first.")
    return summary


def discharged_admission(actor: Staff, admission_id: int) -> Admission:
    """An admission of the actor's unit that has been discharged (409 while still here)."""
    return _discharged(actor, admission_id)


def summary_for(admission_id: int) -> DischargeSummary | None:
    """The admission's summary, if one was opened."""
    return db.session.scalars(select(DischargeSummary).where(
        DischargeSummary.admission_id == admission_id)).first()


def summary_or_none(actor: Staff, admission_id: int) -> DischargeSummary | None:
    """The summary of a discharged resident of the unit, or None if none was opened yet."""
    return summary_for(_discharged(actor, admission_id).id)


def letter_ready(actor: Staff, admission_id: int, to: str) -> DischargeSummary:
    """The signed-off summary a letter is made from, with its recipient recorded."""
    summary = get_summary(actor, admission_id)
    if summary.status != "final":
        raise SummaryNotFinal("Sign the discharge summary off before its letter is sent.")
    if not (summary.gp if to == "gp" else summary.referrer):
        raise SummaryIncomplete(f"There is no {'GP' if to == 'gp' else 'referrer'} on the summary to write to.",
                                errors={"to": ["No such recipient recorded."]})
    return summary


def tasks_of(admission_id: int) -> list[FollowUpTask]:
    """An admission's follow-up tasks, soonest due first."""
    return list(db.session.scalars(select(FollowUpTask).where(FollowUpTask.admission_id == admission_id)
                                   .order_by(FollowUpTask.due_at, FollowUpTask.id)))


def _locked(actor: Staff, admission_id: int, now: datetime) -> DischargeSummary:
    admission = _discharged(actor, admission_id)
    summary = db.session.scalars(select(DischargeSummary).where(
        DischargeSummary.admission_id == admission.id).with_for_update()).first()
    return summary or open_summary(admission, actor, now)


@unit_of_work
def save_summary(actor: Staff, admission_id: int, *, aftercare: dict[str, Any] | None,
                 contacts: list[dict[str, Any]] | None, gp: dict[str, Any] | None,
                 referrer: dict[str, Any] | None, note: str | None, now: datetime,
                 fields_given: set[str]) -> DischargeSummary:
    """Write the draft: the aftercare plan, named contacts, the GP and the referrer. Only the
    fields given change (``fields_given``); a signed-off summary is not changed."""
    summary = _locked(actor, admission_id, now)
    if summary.status == "final":
        raise SummaryFinal("The discharge summary was signed off on "
                           f"{local(summary.finalised_at):%d %b %Y %H:%M}: it is not changed.")
    before = {name: getattr(summary, name) for name in fields_given}
    values = {"aftercare": aftercare, "contacts": contacts, "gp": gp, "referrer": referrer, "note": note}
    for name in fields_given:
        value = values[name]
        if name == "aftercare":
            value = {**summary.aftercare, **(value or {})}
        if name == "contacts" and value is None:
            value = []
        setattr(summary, name, jsonable(value))
    summary.updated_at, summary.updated_by_id = now, actor.id
    record_event(unit_id=actor.unit_id, actor=actor, action="discharge_summary.save",
                 entity_type="discharge_summary", entity_id=summary.id,
                 resident_id=summary.admission.resident_id, now=now, before=before,
                 after={name: getattr(summary, name) for name in fields_given})
    return summary


def needs_naloxone(admission: Admission) -> list[str]:
    """Why this resident must leave with naloxone (empty: no opioid risk known)."""
    return [reason for check in naloxone_reasons if (reason := check(admission))]


def missing_for_final(summary: DischargeSummary) -> dict[str, list[str]]:
    """What must still be written before the summary is signed off, by field."""
    aftercare, missing = summary.aftercare or {}, {}
    if not any(aftercare.get(item) for item in AFTERCARE_ITEMS):
        missing["aftercare"] = ["Give the aftercare plan: onward rehabilitation, the community team, "
                                "mutual aid or GP follow-up."]
    naloxone = needs_naloxone(summary.admission)
    if naloxone:
        # UK guidance: everyone at risk of opioid overdose leaves detox with naloxone and knows
        # that their tolerance is lost (docs/safety/hazard-log.md HAZ-074).
        if aftercare.get("naloxone_supplied") is not True and not aftercare.get("naloxone_not_supplied_reason"):
            missing["aftercare.naloxone_supplied"] = [
                f"Naloxone: supplied, or why not ({'; '.join(naloxone)})."]
        if aftercare.get("tolerance_explained") is not True:
            missing["aftercare.tolerance_explained"] = [
                "Explain the loss of opioid tolerance and the overdose risk, and tick it."]
    if not summary.contacts:
        missing["contacts"] = ["Name at least one contact for the resident after discharge."]
    if not summary.gp:
        missing["gp"] = ["Give the GP the letter goes to."]
    return missing


def build_sections(admission: Admission) -> list[dict[str, Any]]:
    """The contributed sections, in order, as they are now (plain JSON)."""
    built = []
    for section in sorted(summary_sections, key=lambda s: (s.order, s.key)):
        content = section.build(admission)
        if content is not None:
            built.append(jsonable({"key": section.key, "title": section.title,
                                   "lines": content.get("lines", []), "table": content.get("table")}))
    return built


def sections_of(summary: DischargeSummary) -> list[dict[str, Any]]:
    """The summary's sections: frozen when signed off, as they are now while a draft."""
    return summary.sections if summary.status == "final" else build_sections(summary.admission)


@unit_of_work
def finalise_summary(actor: Staff, admission_id: int, *, follow_ups: list[dict[str, Any]],
                     now: datetime) -> DischargeSummary:
    """Sign the summary off: everything required is written (aftercare; naloxone and the
    tolerance talk for anyone at opioid risk; a contact; the GP), the sections are frozen, and
    the follow-up tasks are set: a call within 72 hours of discharge, and any others given."""
    summary = _locked(actor, admission_id, now)
    if summary.status == "final":
        raise SummaryFinal("The discharge summary was signed off already.")
    missing = missing_for_final(summary)
    if missing:
        raise SummaryIncomplete("The summary cannot be signed off yet: "
                                + " ".join(words[0] for words in missing.values()), errors=missing)
    admission = summary.admission
    for index, task in enumerate(follow_ups):
        if task["due_at"] < now - timedelta(minutes=5):
            raise SummaryIncomplete("A follow-up cannot be due in the past.",
                                    errors={f"follow_ups.{index}.due_at": ["Must not be in the past."]})
    summary.sections = build_sections(admission)
    summary.status, summary.finalised_at, summary.finalised_by_id = "final", now, actor.id
    summary.updated_at, summary.updated_by_id = now, actor.id
    call = {"title": f"Phone {admission.resident.name} within {FOLLOW_UP_CALL_HOURS} hours of "
                     "discharge: how are they, is the aftercare plan in place",
            "due_at": max(admission.discharged_at + timedelta(hours=FOLLOW_UP_CALL_HOURS), now)}
    tasks = [FollowUpTask(unit_id=admission.unit_id, admission_id=admission.id, summary_id=summary.id,
                          title=task["title"], due_at=task["due_at"], created_at=now,
                          created_by_id=actor.id) for task in [call, *follow_ups]]
    db.session.add_all(tasks)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="discharge_summary.finalise",
                 entity_type="discharge_summary", entity_id=summary.id,
                 resident_id=admission.resident_id, now=now,
                 after={"aftercare": summary.aftercare, "contacts": summary.contacts,
                        "sections": [s["key"] for s in summary.sections],
                        "follow_ups": [{"title": t.title, "due_at": t.due_at} for t in tasks]})
    return summary


def summaries_to_write(unit_id: int) -> list[DischargeSummary]:
    """Drafts not yet signed off (shown on the board: every discharge gets its summary)."""
    return list(db.session.scalars(select(DischargeSummary).where(
        DischargeSummary.unit_id == unit_id, DischargeSummary.status == "draft")
        .options(sa.orm.joinedload(DischargeSummary.admission)).order_by(DischargeSummary.created_at)))


# --- follow-up tasks -------------------------------------------------------------------------

def open_tasks(unit_id: int) -> list[FollowUpTask]:
    """Follow-up tasks not done, soonest due first."""
    return list(db.session.scalars(select(FollowUpTask).where(
        FollowUpTask.unit_id == unit_id, FollowUpTask.done_at.is_(None))
        .options(sa.orm.joinedload(FollowUpTask.admission)).order_by(FollowUpTask.due_at, FollowUpTask.id)))


def list_tasks(actor: Staff, *, status: str | None) -> list[FollowUpTask]:
    """The unit's follow-up tasks (``open`` or ``done``), soonest due first."""
    query = select(FollowUpTask).where(FollowUpTask.unit_id == actor.unit_id)
    if status == "open":
        query = query.where(FollowUpTask.done_at.is_(None))
    elif status == "done":
        query = query.where(FollowUpTask.done_at.is_not(None))
    return list(db.session.scalars(query.order_by(FollowUpTask.due_at, FollowUpTask.id)))


@unit_of_work
def complete_task(actor: Staff, task_id: int, *, outcome: str, now: datetime) -> FollowUpTask:
    """Mark a follow-up done, with what came of it."""
    task = db.session.scalars(select(FollowUpTask).where(FollowUpTask.id == task_id)
                              .with_for_update()).first() if 0 < task_id <= MAX_ID else None
    if task is None or task.unit_id != actor.unit_id:
        raise TaskNotFound(f"There is no follow-up task {task_id} on your unit.")
    if task.done_at is not None:
        raise TaskDone(f"Follow-up {task_id} was done on {local(task.done_at):%d %b %H:%M}.")
    task.done_at, task.done_by_id, task.outcome = now, actor.id, outcome
    record_event(unit_id=actor.unit_id, actor=actor, action="follow_up.done", entity_type="follow_up_task",
                 entity_id=task.id, resident_id=task.admission.resident_id, now=now,
                 after={"title": task.title, "outcome": outcome, "late": now > task.due_at})
    return task


# --- unit's own section ----------------------------------------------------------------------

DISCHARGE_WORDS = {"completed": "completed the detox", "self-discharged": "left before the end of the detox (self-discharge)",
                   "transferred": "was transferred", "other": "left"}


def stay_section(admission: Admission) -> dict[str, Any]:
    """The stay: admitted, discharged, how long, why they left."""
    admitted, left = local(admission.admitted_at), local(admission.discharged_at or admission.admitted_at)
    days = (left.date() - admitted.date()).days
    lines = [f"Admitted {admitted:%d %b %Y %H:%M} for {', '.join(admission.substances)} detox"
             + (" (high risk)" if admission.high_risk else "") + ".",
             f"Discharged {left:%d %b %Y %H:%M} after {days} day{'s' if days != 1 else ''}: "
             f"{DISCHARGE_WORDS.get(admission.discharge_type or 'other', 'left')}."]
    if admission.discharge_note:
        lines.append(f"Reason for discharge: {admission.discharge_note}")
    return {"lines": lines}


summary_sections.append(SummarySection("stay", "The stay", 10, stay_section))


def resident_facts(admission: Admission) -> dict[str, str]:
    """Name, date of birth and NHS number as a letter heads them."""
    resident = admission.resident
    nhs = resident.nhs_number
    return {"name": resident.name,
            "date_of_birth": f"{resident.date_of_birth:%d %b %Y}",
            "age": str(age_today(resident.date_of_birth, admission.discharged_at or admission.admitted_at)),
            "nhs_number": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}" if nhs and len(nhs) == 10 else (nhs or "not recorded")}


def day_of(at: datetime) -> date:
    """The unit's local date of a time."""
    return local(at).date()
