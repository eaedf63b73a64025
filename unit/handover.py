"""The shift handover: SBAR per resident (situation, background, assessment, recommendation),
pre-filled from the shift's record, edited and signed by the outgoing nurse in charge, read and
acknowledged by the incoming one, and kept with every revision.

What the shift recorded comes from the packages that hold it, through ``handover_sources``
(filled when the app is assembled, as the board's cells are): monitoring the scores, not-done
and missed observations, escalations, incidents, screens and leave; medication the doses. A
live escalation is a *fact*, not prose: it is shown on the sheet apart from the nurse's text,
taken again at signing and frozen with the signature, so no edit can leave it out
(docs/safety/hazard-log.md HAZ-076).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.clock import local, unit_zone
from config.db import unit_of_work
from config.errors import Conflict, DomainError, Forbidden, NotFound
from config.extensions import db
from unit.audit import jsonable, record_event
from unit.auth import CLINICAL_STAFF
from unit.models import Admission, Staff
from unit.services import MAX_ID

# Nursing shifts in the unit's local time: [start hour, end hour).
SHIFTS = (("night", 23, 7), ("early", 7, 15), ("late", 15, 23))
SBAR = ("situation", "background", "assessment", "recommendation")
SBAR_TITLES = {"situation": "Situation", "background": "Background", "assessment": "Assessment",
               "recommendation": "Recommendation"}
RESIDENTS_PER_PAGE = 10
HANDOVER_STATUSES = ("draft", "signed", "acknowledged")


# --- what the packages contribute ------------------------------------------------------------

@dataclass(frozen=True)
class HandoverSource:
    """Facts of the shift for the handover, from the package that holds them.

    ``collect(unit_id, admission_ids, start, end)`` returns {admission id: [fact, ...]} where a
    fact is ``{"part": one of SBAR, "text": str, "live": bool}`` (``live``: an escalation still
    open, which the sheet shows apart and which is frozen at signing), in a constant number of
    queries whatever the number of residents.
    """

    key: str
    collect: Callable[[int, list[int], datetime, datetime], dict[int, list[dict[str, Any]]]]


# Filled when the app is assembled (config/app.py); unit adds its own (the stay) below.
handover_sources: list[HandoverSource] = []
# Who holds the nurse-in-charge duty at a time (monitoring's rota): staff ids; empty if nobody.
nurse_in_charge_finders: list[Callable[[int, datetime], set[int]]] = []


# --- models ----------------------------------------------------------------------------------

class Handover(db.Model):
    """The handover of one shift of one unit."""

    __tablename__ = "handovers"
    __table_args__ = (
        sa.UniqueConstraint("unit_id", "shift_start"),
        sa.CheckConstraint("status IN ('draft', 'signed', 'acknowledged')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"))
    shift: Mapped[str] = mapped_column(sa.String(8))
    shift_start: Mapped[datetime]
    shift_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    facts_at: Mapped[datetime]  # when the shift's facts were last read
    signed_at: Mapped[datetime | None]
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    acknowledgement_note: Mapped[str | None] = mapped_column(sa.Text)

    created_by: Mapped[Staff] = relationship(foreign_keys=[created_by_id])
    signed_by: Mapped[Staff | None] = relationship(foreign_keys=[signed_by_id])
    acknowledged_by: Mapped[Staff | None] = relationship(foreign_keys=[acknowledged_by_id])
    entries: Mapped[list[HandoverEntry]] = relationship(back_populates="handover",
                                                        order_by="HandoverEntry.position")


class HandoverEntry(db.Model):
    """One resident's SBAR in a handover: the nurse's text and the system's facts."""

    __tablename__ = "handover_entries"
    __table_args__ = (sa.UniqueConstraint("handover_id", "admission_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    handover_id: Mapped[int] = mapped_column(sa.ForeignKey("handovers.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    position: Mapped[int]
    situation: Mapped[str] = mapped_column(sa.Text, default="")
    background: Mapped[str] = mapped_column(sa.Text, default="")
    assessment: Mapped[str] = mapped_column(sa.Text, default="")
    recommendation: Mapped[str] = mapped_column(sa.Text, default="")
    facts: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    live_at_signing: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    revision: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    handover: Mapped[Handover] = relationship(back_populates="entries")
    admission: Mapped[Admission] = relationship()
    updated_by: Mapped[Staff | None] = relationship(foreign_keys=[updated_by_id])

    @property
    def live(self) -> list[dict[str, Any]]:
        """The live escalations: frozen at signing, else as last read."""
        facts = self.live_at_signing if self.live_at_signing is not None else self.facts
        return [fact for fact in facts if fact.get("live")]


class HandoverRevision(db.Model):
    """Every saved version of an entry's SBAR (the handover's history)."""

    __tablename__ = "handover_revisions"
    __table_args__ = (sa.UniqueConstraint("entry_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(sa.ForeignKey("handover_entries.id"), index=True)
    revision: Mapped[int]
    situation: Mapped[str] = mapped_column(sa.Text)
    background: Mapped[str] = mapped_column(sa.Text)
    assessment: Mapped[str] = mapped_column(sa.Text)
    recommendation: Mapped[str] = mapped_column(sa.Text)
    saved_at: Mapped[datetime]
    saved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    saved_by: Mapped[Staff | None] = relationship(foreign_keys=[saved_by_id])


# --- errors ----------------------------------------------------------------------------------

class HandoverNotFound(NotFound):
    type = "handover-not-found"
    title = "No such handover on your unit"


class HandoverExists(Conflict):
    type = "handover-exists"
    title = "This shift's handover has been started already"


class HandoverSigned(Conflict):
    type = "handover-signed"
    title = "The handover has been signed: it is not changed"


class HandoverNotSigned(Conflict):
    type = "handover-not-signed"
    title = "The handover has not been signed yet"


class HandoverIncomplete(Conflict):
    type = "handover-incomplete"
    title = "The handover leaves a resident out"


class HandoverInvalid(DomainError):
    type = "handover-invalid"
    title = "The handover cannot be changed so"


# --- shifts ----------------------------------------------------------------------------------

def shift_at(at: datetime) -> tuple[str, datetime, datetime]:
    """The nursing shift holding ``at``: its name, start and end (UTC)."""
    zone = unit_zone()
    here = at.astimezone(zone)
    for name, start_hour, end_hour in SHIFTS:
        if start_hour < end_hour and start_hour <= here.hour < end_hour:
            day = here.date()
            break
        if start_hour > end_hour and (here.hour >= start_hour or here.hour < end_hour):
            day = here.date() if here.hour >= start_hour else here.date() - timedelta(days=1)
            break
    start = datetime.combine(day, time(start_hour), tzinfo=zone)
    end_day = day + timedelta(days=1) if end_hour <= start_hour else day
    end = datetime.combine(end_day, time(end_hour), tzinfo=zone)
    return name, start.astimezone(timezone.utc), end.astimezone(timezone.utc)


# --- facts -----------------------------------------------------------------------------------

def _stay_facts(unit_id: int, admission_ids: list[int], start: datetime,
                end: datetime) -> dict[int, list[dict[str, Any]]]:
    """Unit's own facts: the day of the stay, what the detox is for, high risk, a new arrival."""
    from unit.beds import Bed, BedAssignment, ExpectedDischarge

    found: dict[int, list[dict[str, Any]]] = {}
    admissions = db.session.scalars(select(Admission).where(Admission.id.in_(admission_ids))).all()
    beds = dict(db.session.execute(
        select(BedAssignment.admission_id, Bed.name).join(Bed, Bed.id == BedAssignment.bed_id)
        .where(BedAssignment.admission_id.in_(admission_ids), BedAssignment.released_at.is_(None))).all())
    leaving = dict(db.session.execute(select(ExpectedDischarge.admission_id, ExpectedDischarge.expected_on)
                                      .where(ExpectedDischarge.admission_id.in_(admission_ids))).all())
    for admission in admissions:
        day = (local(end).date() - local(admission.admitted_at).date()).days + 1
        background = f"Day {day} of {' and '.join(admission.substances)} detox"
        if admission.high_risk:
            background += " (HIGH RISK: admitted although a decline criterion was met)"
        if admission.id in beds:
            background += f"; bed {beds[admission.id]}"
        facts = [{"part": "background", "text": background + ".", "live": False}]
        if admission.admitted_at >= start:
            facts.insert(0, {"part": "situation", "live": False,
                             "text": f"Admitted this shift at {local(admission.admitted_at):%H:%M}."})
        if admission.id in leaving:
            expected = leaving[admission.id]
            if expected <= local(end).date() + timedelta(days=1):
                facts.append({"part": "recommendation", "live": False,
                              "text": f"Expected to leave {expected:%d %b}: check the discharge plan."})
        found[admission.id] = facts
    return found


handover_sources.append(HandoverSource("stay", _stay_facts))


def collect_facts(unit_id: int, admission_ids: list[int], start: datetime,
                  end: datetime) -> dict[int, list[dict[str, Any]]]:
    """Every source's facts for these residents over [start, end), by resident."""
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in admission_ids}
    if not admission_ids:
        return found
    for source in handover_sources:
        for admission_id, facts in source.collect(unit_id, admission_ids, start, end).items():
            if admission_id in found:
                found[admission_id].extend(jsonable(facts))
    return found


def _until(now: datetime) -> datetime:
    """The end of the facts' window: what was recorded up to and including ``now``."""
    return now + timedelta(microseconds=1)


def prefill(facts: list[dict[str, Any]]) -> dict[str, str]:
    """The SBAR texts a nurse starts from: each part's facts, a line each (live ones first)."""
    parts = {}
    for part in SBAR:
        lines = [f["text"] for f in facts if f["part"] == part and f.get("live")]
        lines += [f["text"] for f in facts if f["part"] == part and not f.get("live")]
        parts[part] = "\n".join(lines)
    return parts


# --- writing ---------------------------------------------------------------------------------

def _active_ids(unit_id: int) -> list[int]:
    return list(db.session.scalars(select(Admission.id).where(
        Admission.unit_id == unit_id, Admission.status == "active").order_by(Admission.admitted_at, Admission.id)))


def _clinical(actor: Staff, what: str) -> None:
    if actor.role not in CLINICAL_STAFF:
        raise Forbidden(f"Only clinical staff may {what}.")


@unit_of_work
def start_handover(actor: Staff, *, now: datetime) -> Handover:
    """Start the handover of the shift now running: an SBAR entry per resident on the unit,
    pre-filled from what the shift recorded so far."""
    _clinical(actor, "write a handover")
    shift, start, end = shift_at(now)
    existing = db.session.scalar(select(Handover.id).where(Handover.unit_id == actor.unit_id,
                                                           Handover.shift_start == start))
    if existing:
        raise HandoverExists(f"The {shift} shift's handover was started already (handover {existing}).",
                             handover_id=existing)
    handover = Handover(unit_id=actor.unit_id, shift=shift, shift_start=start, shift_end=end,
                        status="draft", created_at=now, created_by_id=actor.id, facts_at=now)
    db.session.add(handover)
    db.session.flush()
    _add_entries(handover, _active_ids(actor.unit_id), actor, now)
    record_event(unit_id=actor.unit_id, actor=actor, action="handover.start", entity_type="handover",
                 entity_id=handover.id, now=now,
                 after={"shift": shift, "shift_start": start, "residents": len(handover.entries)})
    return handover


def _add_entries(handover: Handover, admission_ids: list[int], actor: Staff, now: datetime) -> None:
    facts = collect_facts(handover.unit_id, admission_ids, handover.shift_start, _until(now))
    position = max((e.position for e in handover.entries), default=0)
    for admission_id in admission_ids:
        position += 1
        texts = prefill(facts[admission_id])
        entry = HandoverEntry(handover=handover, admission_id=admission_id, position=position,
                              facts=facts[admission_id], revision=0, updated_at=now, **texts)
        db.session.add(entry)
    db.session.flush()


def get_handover(actor: Staff, handover_id: int, *, lock: bool = False) -> Handover:
    """A handover of the actor's unit."""
    handover = None
    if 0 < handover_id <= MAX_ID:
        query = select(Handover).where(Handover.id == handover_id)
        handover = db.session.scalars(query.with_for_update() if lock else query).first()
    if handover is None or handover.unit_id != actor.unit_id:
        raise HandoverNotFound(f"There is no handover {handover_id} on your unit.")
    return handover


def _draft(actor: Staff, handover_id: int) -> Handover:
    handover = get_handover(actor, handover_id, lock=True)
    if handover.status != "draft":
        raise HandoverSigned(f"The handover was signed at {local(handover.signed_at):%H:%M} by "
                             f"{handover.signed_by.full_name}: it is kept as signed.")
    return handover


@unit_of_work
def edit_entry(actor: Staff, handover_id: int, entry_id: int, *, texts: dict[str, str],
               now: datetime) -> HandoverEntry:
    """Save a resident's SBAR (the parts given); the version before is kept."""
    _clinical(actor, "write a handover")
    handover = _draft(actor, handover_id)
    entry = next((e for e in handover.entries if e.id == entry_id), None)
    if entry is None:
        raise HandoverNotFound(f"There is no entry {entry_id} in handover {handover_id}.")
    before = {part: getattr(entry, part) for part in SBAR}
    db.session.add(HandoverRevision(entry_id=entry.id, revision=entry.revision, saved_at=entry.updated_at,
                                    saved_by_id=entry.updated_by_id, **before))
    for part, value in texts.items():
        setattr(entry, part, value)
    entry.revision += 1
    entry.updated_at, entry.updated_by_id = now, actor.id
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="handover.edit", entity_type="handover_entry",
                 entity_id=entry.id, resident_id=entry.admission.resident_id, now=now,
                 before={part: before[part] for part in texts},
                 after={**texts, "revision": entry.revision})
    return entry


@unit_of_work
def refresh_handover(actor: Staff, handover_id: int, *, now: datetime) -> Handover:
    """Read the shift's facts again (what has happened since) and add anyone admitted since;
    the nurses' texts are left as they are."""
    _clinical(actor, "write a handover")
    handover = _draft(actor, handover_id)
    _refresh(handover, actor, now)
    record_event(unit_id=actor.unit_id, actor=actor, action="handover.refresh", entity_type="handover",
                 entity_id=handover.id, now=now, after={"residents": len(handover.entries)})
    return handover


def _refresh(handover: Handover, actor: Staff, now: datetime) -> list[int]:
    present = {e.admission_id for e in handover.entries}
    facts = collect_facts(handover.unit_id, sorted(present), handover.shift_start, _until(now))
    for entry in handover.entries:
        entry.facts = facts[entry.admission_id]
    new = [i for i in _active_ids(handover.unit_id) if i not in present]
    _add_entries(handover, new, actor, now)
    handover.facts_at = now
    return new


def may_sign(actor: Staff, handover: Handover, now: datetime) -> bool:
    """The nurse in charge on the rota (any nurse when the rota names none), or a manager."""
    if actor.role == "manager":
        return True
    if actor.role != "nurse":
        return False
    in_charge = set().union(*(finder(handover.unit_id, now) for finder in nurse_in_charge_finders)) \
        if nurse_in_charge_finders else set()
    return not in_charge or actor.id in in_charge


@unit_of_work
def sign_handover(actor: Staff, handover_id: int, *, now: datetime) -> Handover:
    """The outgoing nurse in charge signs: every resident on the unit has an entry, and each
    entry's live escalations are read now and frozen with the signature."""
    handover = _draft(actor, handover_id)
    if not may_sign(actor, handover, now):
        raise Forbidden("The nurse in charge on the rota signs the handover (or a manager).")
    present = {e.admission_id for e in handover.entries}
    missing = [i for i in _active_ids(handover.unit_id) if i not in present]
    if missing:
        names = ", ".join(db.session.get(Admission, i).resident.name for i in missing)
        raise HandoverIncomplete(f"Not signed: {names} arrived after the handover was started and "
                                 "have no entry. Refresh the handover, write theirs, then sign.",
                                 missing_admission_ids=missing)
    facts = collect_facts(handover.unit_id, sorted(present), handover.shift_start, _until(now))
    for entry in handover.entries:
        entry.facts = facts[entry.admission_id]
        entry.live_at_signing = [fact for fact in entry.facts if fact.get("live")]
    handover.facts_at = now
    handover.status, handover.signed_at, handover.signed_by_id = "signed", now, actor.id
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="handover.sign", entity_type="handover",
                 entity_id=handover.id, now=now,
                 after={"shift": handover.shift, "residents": len(handover.entries),
                        "live_escalations": sum(len(e.live_at_signing) for e in handover.entries)})
    return handover


@unit_of_work
def acknowledge_handover(actor: Staff, handover_id: int, *, note: str | None, now: datetime) -> Handover:
    """The incoming nurse (not the one who signed) has read the handover."""
    handover = get_handover(actor, handover_id, lock=True)
    if actor.role not in ("nurse", "manager"):
        raise Forbidden("The incoming nurse acknowledges the handover.")
    if handover.status == "draft":
        raise HandoverNotSigned("The handover has not been signed by the outgoing nurse yet.")
    if handover.status == "acknowledged":
        raise HandoverInvalid(f"{handover.acknowledged_by.full_name} acknowledged this handover at "
                              f"{local(handover.acknowledged_at):%H:%M}.")
    if handover.signed_by_id == actor.id:
        raise HandoverInvalid("The nurse who signed a handover cannot acknowledge it: the incoming "
                              "nurse does.")
    handover.status = "acknowledged"
    handover.acknowledged_at, handover.acknowledged_by_id = now, actor.id
    handover.acknowledgement_note = note
    record_event(unit_id=actor.unit_id, actor=actor, action="handover.acknowledge", entity_type="handover",
                 entity_id=handover.id, now=now, after={"note": note})
    return handover


def list_handovers(actor: Staff, limit: int = 60) -> list[Handover]:
    """The unit's handovers, newest shift first."""
    return list(db.session.scalars(select(Handover).where(Handover.unit_id == actor.unit_id)
                                   .order_by(Handover.shift_start.desc()).limit(limit)))


def revisions(actor: Staff, handover_id: int, entry_id: int) -> list[HandoverRevision]:
    """An entry's earlier versions, oldest first."""
    handover = get_handover(actor, handover_id)
    if entry_id not in {e.id for e in handover.entries}:
        raise HandoverNotFound(f"There is no entry {entry_id} in handover {handover_id}.")
    return list(db.session.scalars(select(HandoverRevision).where(HandoverRevision.entry_id == entry_id)
                                   .order_by(HandoverRevision.revision)))


def pages_of(handover: Handover) -> list[list[HandoverEntry]]:
    """The entries in pages of ``RESIDENTS_PER_PAGE`` (the printed sheet)."""
    entries = list(handover.entries)
    return [entries[i:i + RESIDENTS_PER_PAGE] for i in range(0, len(entries), RESIDENTS_PER_PAGE)] or [[]]


def current_handover(unit_id: int, now: datetime) -> Handover | None:
    """The handover of the shift now running, if started."""
    _, start, _ = shift_at(now)
    return db.session.scalars(select(Handover).where(Handover.unit_id == unit_id,
                                                     Handover.shift_start == start)).first()
