"""Drug and breath screens: urine or oral-fluid screens (each substance's result), and
breath-alcohol readings (mg/L), on the resident's chart and in the handover.

A positive result is *expected* when it is explained: a drug the resident is prescribed here
(medication says which, through ``expected_sources``, filled when the app is assembled), or a
substance they declared at admission still within its detection window. Any other positive is
*unexpected* and flagged for the doctor as an escalation of severity ``soon`` routed as the
care model says (the on-site doctor, or the visiting GP): it is paged, stays in the doctor's
queue and on the board until a clinician answers it, and climbs the paging policy if nobody
does (docs/safety/hazard-log.md HAZ-073).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.clock import local
from config.db import unit_of_work
from config.errors import DomainError, NotFound
from config.extensions import db
from monitoring.escalations import Trigger, raise_escalation
from monitoring.models import Escalation
from unit.audit import record_event
from unit.models import Admission, Staff
from unit.services import MAX_ID, active_admission, get_admission

KINDS = {"urine": "Urine screen", "oral_fluid": "Oral-fluid screen", "breath": "Breath alcohol"}
RESULTS = ("negative", "positive", "invalid")
REASONS = {"admission": "On admission", "routine": "Routine", "return_from_leave": "Return from leave",
           "suspicion": "Suspected use", "other": "Other"}
SUBSTANCES = {
    "alcohol": "Alcohol (EtG)",
    "amphetamine": "Amphetamine",
    "barbiturates": "Barbiturates",
    "benzodiazepines": "Benzodiazepines",
    "buprenorphine": "Buprenorphine",
    "cannabis": "Cannabis (THC)",
    "cocaine": "Cocaine",
    "fentanyl": "Fentanyl",
    "gabapentin": "Gabapentin",
    "ketamine": "Ketamine",
    "mdma": "MDMA",
    "methadone": "Methadone (EDDP)",
    "methamphetamine": "Methamphetamine",
    "opiates": "Opiates (morphine, heroin)",
    "oxycodone": "Oxycodone",
    "pregabalin": "Pregabalin",
    "synthetic_cannabinoids": "Synthetic cannabinoids",
    "tramadol": "Tramadol",
}
# What a substance declared at admission shows on a screen, and for how long after the
# admission a positive is explained by use before it (days; conservative detection windows of
# urine immunoassays: EtG about 80 hours, short-acting opioids 2-3 days, methadone and
# buprenorphine about a week, benzodiazepines up to two weeks after regular use).
DECLARED_SHOWS = {
    "alcohol": ("alcohol",),
    "opioids": ("opiates", "fentanyl", "oxycodone", "tramadol", "methadone", "buprenorphine"),
    "benzodiazepines": ("benzodiazepines",),
}
DETECTION_DAYS = {"alcohol": 4, "opiates": 3, "fentanyl": 3, "oxycodone": 3, "tramadol": 3,
                  "methadone": 7, "buprenorphine": 7, "benzodiazepines": 14}
# Breath alcohol clears within hours: a reading above zero is explained only in the first day.
BREATH_DECLARED_HOURS = 24
BREATH_POSITIVE_ABOVE = 0.0  # mg/L; docs/clinical-rules.md s5: "at or below 0.00 mg/L"
SAMPLE_BEFORE_ADMISSION = timedelta(hours=24)  # a sample taken at the door, before admission
CLOCK_SKEW = timedelta(minutes=2)

# Filled when the app is assembled: medication says which positives its prescriptions explain.
# Each source gets (admission, sample time) and returns {substance: why}.
ExpectedSource = Callable[[Admission, datetime], dict[str, str]]
expected_sources: list[ExpectedSource] = []


# --- models ----------------------------------------------------------------------------------

class Screen(db.Model):
    """One sample: a urine or oral-fluid screen, or a breath-alcohol reading."""

    __tablename__ = "screens"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('urine', 'oral_fluid', 'breath')", name="kind"),
        sa.CheckConstraint("kind != 'breath' OR mg_per_l IS NOT NULL", name="breath_reading"),
        sa.Index("ix_screens_admission_sample", "admission_id", "sample_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    admission_id: Mapped[int] = mapped_column(sa.ForeignKey("admissions.id"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(24))
    sample_at: Mapped[datetime]
    taken_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    # Breath alcohol in mg per litre of breath (the item ``mg_per_l`` of the observation scale
    # ``breath-alcohol``, when there is one).
    mg_per_l: Mapped[float | None]
    note: Mapped[str | None] = mapped_column(sa.Text)
    unexpected: Mapped[bool] = mapped_column(default=False)
    escalation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("escalations.id"))
    recorded_at: Mapped[datetime]
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))

    taken_by: Mapped[Staff] = relationship(foreign_keys=[taken_by_id])
    results: Mapped[list[ScreenResult]] = relationship(back_populates="screen", order_by="ScreenResult.id")
    escalation: Mapped[Escalation | None] = relationship()

    @property
    def positives(self) -> list[ScreenResult]:
        return [r for r in self.results if r.result == "positive"]

    @property
    def unexpected_positives(self) -> list[ScreenResult]:
        return [r for r in self.results if r.result == "positive" and not r.expected]


class ScreenResult(db.Model):
    """One substance's result on a screen, and whether a positive was expected (and why)."""

    __tablename__ = "screen_results"
    __table_args__ = (
        sa.UniqueConstraint("screen_id", "substance"),
        sa.CheckConstraint("result IN ('negative', 'positive', 'invalid')", name="result"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    screen_id: Mapped[int] = mapped_column(sa.ForeignKey("screens.id"), index=True)
    substance: Mapped[str] = mapped_column(sa.String(32))
    result: Mapped[str] = mapped_column(sa.String(16))
    expected: Mapped[bool] = mapped_column(default=False)
    expected_reason: Mapped[str | None] = mapped_column(sa.Text)

    screen: Mapped[Screen] = relationship(back_populates="results")


# --- errors ----------------------------------------------------------------------------------

class ScreenNotFound(NotFound):
    type = "screen-not-found"
    title = "No such screen on your unit"


class ScreenInvalid(DomainError):
    type = "screen-invalid"
    title = "The screen cannot be recorded"


# --- the rules -------------------------------------------------------------------------------

def expected_positives(admission: Admission, sample_at: datetime, kind: str,
                       reason: str = "routine") -> dict[str, str]:
    """The substances a positive on this sample would be explained by, and why: what the
    resident declared at admission (within its detection window), and what they are
    prescribed here (medication's sources). On the return from leave, use before the
    admission explains nothing: what shows was taken on leave."""
    explained: dict[str, str] = {}
    since_admission = sample_at - admission.admitted_at
    for declared in (admission.substances if reason != "return_from_leave" else ()):
        for substance in DECLARED_SHOWS.get(declared, ()):
            if kind == "breath":
                window = timedelta(hours=BREATH_DECLARED_HOURS) if substance == "alcohol" else None
            else:
                window = timedelta(days=DETECTION_DAYS[substance])
            if window is not None and since_admission <= window:
                explained.setdefault(substance, f"{declared} declared at admission, "
                                                f"{_span(since_admission)} before the sample")
    for source in expected_sources:
        for substance, why in source(admission, sample_at).items():
            explained.setdefault(substance, why)
    return explained


def _span(delta: timedelta) -> str:
    hours = max(int(delta.total_seconds() // 3600), 0)
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


def _check(admission: Admission, kind: str, sample_at: datetime, results: dict[str, str] | None,
           mg_per_l: float | None, now: datetime) -> None:
    if sample_at > now + CLOCK_SKEW:
        raise ScreenInvalid("The sample cannot have been taken in the future.",
                            errors={"sample_at": ["Must not be in the future."]})
    if sample_at < admission.admitted_at - SAMPLE_BEFORE_ADMISSION:
        raise ScreenInvalid("The sample is dated more than a day before the admission.",
                            errors={"sample_at": ["Before the admission."]})
    if kind == "breath":
        if mg_per_l is None:
            raise ScreenInvalid("A breath test needs its reading.", errors={"mg_per_l": ["Required for breath."]})
        if results:
            raise ScreenInvalid("A breath test has a reading, not per-substance results.",
                                errors={"results": ["Not for breath; give mg_per_l."]})
    else:
        if mg_per_l is not None:
            raise ScreenInvalid("Only a breath test has a reading in mg/L.",
                                errors={"mg_per_l": ["Only for breath."]})
        if not results:
            raise ScreenInvalid("Give the result of each substance tested.",
                                errors={"results": ["At least one substance."]})


def _taken_by(actor: Staff, staff_id: int | None) -> Staff:
    if staff_id is None:
        return actor
    staff = db.session.get(Staff, staff_id) if 0 < staff_id <= MAX_ID else None
    if staff is None or staff.unit_id != actor.unit_id or staff.role == "inspector":
        raise ScreenInvalid("The person who took the sample is not clinical staff of your unit.",
                            errors={"taken_by_id": ["Not clinical staff of your unit."]})
    return staff


@unit_of_work
def record_screen(actor: Staff, admission_id: int, *, kind: str, sample_at: datetime | None,
                  results: dict[str, str] | None, mg_per_l: float | None, taken_by_id: int | None,
                  reason: str, note: str | None, now: datetime) -> Screen:
    """Record a drug screen or a breath-alcohol reading; an unexpected positive is flagged for
    the doctor (an escalation, ``soon``, routed as the care model says)."""
    admission = active_admission(actor, admission_id)
    sample_at = sample_at or now
    _check(admission, kind, sample_at, results, mg_per_l, now)
    taken_by = _taken_by(actor, taken_by_id)
    if kind == "breath":
        results = {"alcohol": "positive" if mg_per_l > BREATH_POSITIVE_ABOVE else "negative"}
    explained = expected_positives(admission, sample_at, kind, reason)
    screen = Screen(unit_id=admission.unit_id, admission_id=admission.id, kind=kind, reason=reason,
                    sample_at=sample_at, taken_by_id=taken_by.id, mg_per_l=mg_per_l, note=note,
                    recorded_at=now, recorded_by_id=actor.id)
    db.session.add(screen)
    for substance, result in sorted(results.items()):
        why = explained.get(substance) if result == "positive" else None
        screen.results.append(ScreenResult(substance=substance, result=result, expected=why is not None,
                                           expected_reason=why))
    db.session.flush()
    unexpected = screen.unexpected_positives
    screen.unexpected = bool(unexpected)
    record_event(unit_id=admission.unit_id, actor=actor, action="screen.record", entity_type="screen",
                 entity_id=screen.id, resident_id=admission.resident_id, now=now,
                 after={"kind": kind, "reason": reason, "sample_at": sample_at, "mg_per_l": mg_per_l,
                        "results": results, "taken_by": taken_by.username,
                        "unexpected": [r.substance for r in unexpected]})
    if unexpected:
        screen.escalation_id = flag_for_doctor(admission, screen, actor, now).id
    return screen


def flag_for_doctor(admission: Admission, screen: Screen, actor: Staff | None,
                    now: datetime) -> Escalation:
    """Raise (or update) the resident's unexpected-positive escalation for this screen."""
    names = ", ".join(SUBSTANCES[r.substance].split(" (")[0] for r in screen.unexpected_positives)
    if screen.kind == "breath":
        reason = (f"Breath alcohol {screen.mg_per_l:.2f} mg/L at {local(screen.sample_at):%H:%M}: "
                  "alcohol not explained by the admission")
    else:
        reason = (f"Unexpected positive {KINDS[screen.kind].lower()} ({local(screen.sample_at):%d %b %H:%M}): "
                  f"{names}; not prescribed here or declared at admission")
    trigger = Trigger("unexpected_positive_screen", "soon", reason, "screen:unexpected")
    return raise_escalation(admission, trigger, source_type="screen", source_id=screen.id,
                            actor=actor, now=now)


def get_screen(actor: Staff, screen_id: int) -> Screen:
    """A screen of the actor's unit."""
    screen = db.session.get(Screen, screen_id) if 0 < screen_id <= MAX_ID else None
    if screen is None or screen.unit_id != actor.unit_id:
        raise ScreenNotFound(f"There is no screen {screen_id} on your unit.")
    return screen


def list_screens(actor: Staff, admission_id: int) -> list[Screen]:
    """The admission's screens, newest sample first."""
    get_admission(actor, admission_id)
    return screens_of(admission_id)


def screens_of(admission_id: int, limit: int = 100) -> list[Screen]:
    """An admission's screens, newest sample first (with their results)."""
    return list(db.session.scalars(select(Screen).where(Screen.admission_id == admission_id)
                                   .options(sa.orm.selectinload(Screen.results))
                                   .order_by(Screen.sample_at.desc(), Screen.id.desc()).limit(limit)))


def screens_between(admission_ids: list[int], start: datetime, end: datetime) -> list[Screen]:
    """These residents' screens sampled in [start, end), oldest first."""
    if not admission_ids:
        return []
    return list(db.session.scalars(select(Screen).where(
        Screen.admission_id.in_(admission_ids), Screen.sample_at >= start, Screen.sample_at < end)
        .options(sa.orm.selectinload(Screen.results)).order_by(Screen.sample_at, Screen.id)))


def latest_breath(admission_id: int, since: datetime) -> Screen | None:
    """The latest breath-alcohol reading sampled at or after ``since``."""
    return db.session.scalars(select(Screen).where(
        Screen.admission_id == admission_id, Screen.kind == "breath", Screen.sample_at >= since)
        .order_by(Screen.sample_at.desc(), Screen.id.desc()).limit(1)).first()


def summary(screen: Screen) -> str:
    """One line: "Urine screen 14:05: positive cocaine (unexpected), benzodiazepines (prescribed)"."""
    when = f"{local(screen.sample_at):%d %b %H:%M}"
    if screen.kind == "breath":
        flag = " (unexpected)" if screen.unexpected else ""
        return f"Breath alcohol {when}: {screen.mg_per_l:.2f} mg/L{flag}"
    positives = [f"{SUBSTANCES[r.substance].split(' (')[0].lower()}"
                 f"{' (unexpected)' if not r.expected else ' (explained)'}" for r in screen.positives]
    tested = len(screen.results)
    text = f"positive {', '.join(positives)}" if positives else "all negative"
    invalid = [r.substance for r in screen.results if r.result == "invalid"]
    if invalid:
        text += f"; invalid {', '.join(invalid)}"
    return f"{KINDS[screen.kind]} {when} ({tested} tested): {text}"


def screen_facts(screen: Screen) -> dict[str, Any]:
    """A screen as a handover or a discharge summary reads it."""
    return {"id": screen.id, "kind": screen.kind, "sample_at": screen.sample_at,
            "unexpected": screen.unexpected, "text": summary(screen)}
