"""Tablet pages of the monitoring package: board cells, observation entry, charts."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Row

from config.clock import local, now, unit_zone
from config.errors import DomainError
from config.extensions import db
from config.idempotency import fingerprint_of, run_once
from config.partials import partials
from monitoring import outbox
from monitoring import escalations, services
from monitoring import rota as duty_rota  # the views "rota", "add_shift"... are named after the routes
from monitoring.charts import Marker, score_chart
from monitoring.models import NOT_DONE_REASONS, Observation
from monitoring.scales import SCALES
from monitoring.schedules import due_state
from monitoring.schemas import (
    ClinicalSignIn,
    ObservationIn,
    OverrideIn,
    ResolveIn,
    RotaShiftIn,
    StrikeIn,
)
from monitoring.settings import monitoring_settings, unit_bands
from unit.auth import ALL_ROLES, CLINICAL_STAFF, MANAGERS, current_staff, roles_required
from unit.models import Admission, Staff
from unit.pages import BoardExtension, safe_next
from unit.schemas import whole_number
from unit.services import get_admission

bp = Blueprint("monitoring_pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/monitoring")

# Filled when the app is assembled: medication adds doses as chart markers.
chart_marker_hooks: list[Callable[[int, datetime, datetime], list[Marker]]] = []
SHORT_NAMES = {"ciwa-ar": "CIWA-Ar", "cows": "COWS", "sows": "SOWS", "gmaws": "GMAWS", "news2": "NEWS2"}
STATE_TEXT = {"ok": "", "due_soon": "due", "late": "LATE", "overdue": "OVERDUE"}


class _BoardLine(NamedTuple):
    """A schedule as the board's cells print it: the scale's name and the band's text looked
    up here, once, so that the macro only places values (two lines a resident, 300 residents)."""

    scale: str  # the scale's short name
    recorded: bool  # the last observation was scored (not "not done"): total, band, when
    total: int | None
    band: str | None  # CSS hook band-<band>
    band_text: str
    observed_at: datetime | None
    next_due_at: datetime
    interval_minutes: int


def _board_lines(unit_id: int, admission_ids: list[int],
                 at: datetime) -> dict[int, list[tuple[_BoardLine, str]]]:
    """Each resident's active schedules with their last observation, and each one's due state.

    Rows are unpacked, not read by name (a SQLAlchemy row's attribute costs a Python call);
    the unit's other admissions have no active schedule, and would be left out if they had.
    """
    found: dict[int, list[tuple[_BoardLine, str]]] = {i: [] for i in admission_ids}
    for (admission_id, scale, status, total, band, observed_at, next_due_at,
         interval) in services.unit_schedule_summaries(unit_id):
        if admission_id in found:
            line = _BoardLine(SHORT_NAMES[scale], status == "recorded", total, band,
                              (band or "").replace("_", " "), observed_at, next_due_at, interval)
            found[admission_id].append((line, due_state(line, at)))
    return found


def board_cells(unit_id: int, rows: list, at: datetime) -> dict[int, Markup]:
    """Last score and band per scale, and the next due time, for every resident (one query)."""
    lines = _board_lines(unit_id, [row.id for row in rows], at)
    macros = partials("monitoring/_board_cells.html", state_text=STATE_TEXT)
    return {row.id: macros.schedules(lines[row.id]) for row in rows}


def resident_sections(admission: Admission, at: datetime) -> list[Markup]:
    """Record buttons, schedules, the score charts and the observation history."""
    schedules = services.active_schedules([admission.id])[admission.id]
    observations = services.recent_observations(admission.id)
    start = admission.admitted_at
    end = max(at, start + timedelta(hours=6)) if admission.status == "active" else (admission.discharged_at or at)
    markers = [m for hook in chart_marker_hooks for m in hook(admission.id, start, end)]
    settings = monitoring_settings(admission.unit_id)
    charts = []
    for code in sorted({o.scale for o in observations} | {s.scale for s in schedules}, key=list(SCALES).index):
        scale = SCALES[code]
        points = [(o.observed_at, o.total, o.band) for o in reversed(observations)
                  if o.scale == code and o.status == "recorded" and o.struck_at is None]
        charts.append((scale, score_chart(points, unit_bands(settings, code) or scale.bands,
                                          scale.max_total, start=start, end=end, markers=markers,
                                          title=f"{scale.name} over time")))
    history = escalations.escalation_history(admission.id)
    return [Markup(render_template(
        "monitoring/_resident_escalations.html", a=admission, history=history, paged=escalations.last_paged,
        advice=escalations.advice, signs=escalations.CLINICAL_SIGNS)), Markup(render_template(
        "monitoring/_resident.html", a=admission, schedules=[(s, due_state(s, at)) for s in schedules],
        observations=observations, charts=charts, scales=SCALES, names=SHORT_NAMES,
        state_text=STATE_TEXT, changes=services.schedule_changes(admission.id),
        reasons=NOT_DONE_REASONS, now=at))]


BOARD = BoardExtension(headers=("Last scores", "Next due"), cells=board_cells,
                       sections=resident_sections)


@bp.route("/admissions/<int:admission_id>/observe/<scale>", methods=["GET", "POST"])
@roles_required(CLINICAL_STAFF)
def observe(admission_id: int, scale: str):
    """The tablet form for one scale: one tap per item, the total live, submit once."""
    if scale not in SCALES:
        abort(404)
    definition = SCALES[scale]
    staff = current_staff()
    admission = get_admission(staff, admission_id)
    errors: dict = {}
    replaces = _struck_to_replace(staff, admission, scale, request.values.get("replaces"))
    if request.method == "POST":
        key = request.form.get("idempotency_key", "")
        try:
            if not key:
                errors = {"_": ["The form expired; reload it and enter the observation again."]}
            else:
                body = _observation_form(scale)
                return run_once(key, fingerprint_of(admission_id, scale, sorted(request.form.items(multi=True))),
                                lambda: _save_observation(staff, admission, body, replaces))
        except ValidationError as invalid:
            errors = {"_": [f"{name.replace('_', ' ').capitalize()}: {' '.join(messages)}"
                            for name, messages in invalid.messages.items()]}
        except DomainError as refusal:
            errors = (refusal.errors or {}).get("items") or {"_": [refusal.detail]}
    return render_template("monitoring/observe.html", a=admission, scale=definition,
                           form=request.form, errors=errors, reasons=NOT_DONE_REASONS,
                           replaces=replaces, idempotency_key=str(uuid.uuid4())), (422 if errors else 200)


_NOT_ITEMS = ("csrf_token", "idempotency_key", "note", "not_done_reason", "replaces")


def _observation_form(scale: str) -> dict:
    """The posted form loaded as the API's ObservationIn: the items (typed by the scale's form
    parser), or why the observation could not be done."""
    reason = request.form.get("not_done_reason") or None
    items = {k: v for k, v in request.form.items() if k not in _NOT_ITEMS}
    return ObservationIn().load({"scale": scale, "not_done_reason": reason,
                                 "items": None if reason else SCALES[scale].parse_form(items),
                                 "note": request.form.get("note") or None})


def _save_observation(staff: Staff, admission: Admission, body: dict, replaces: Observation | None):
    at, definition = now(), SCALES[body["scale"]]
    if body["not_done_reason"]:
        recorded = services.record_not_done(staff, admission.id, scale=body["scale"],
                                            reason=body["not_done_reason"], observed_at=None,
                                            note=body["note"], now=at)
        again = f"{local(recorded.schedule.next_due_at):%H:%M}" if recorded.schedule else "-"
        flash(f"{admission.resident.name}: {definition.name} not done "
              f"({body['not_done_reason'].replace('_', ' ')}); asked again at {again}.")
    else:
        # A correction keeps the struck entry's time and is linked to it.
        recorded = services.record_observation(
            staff, admission.id, scale=body["scale"], items=body["items"],
            observed_at=replaces.observed_at if replaces else None, note=body["note"], now=at,
            replaces=replaces)
        o = recorded.observation
        due = f"{local(recorded.schedule.next_due_at):%H:%M}" if recorded.schedule else "not scheduled"
        flash(f"{admission.resident.name}: {definition.name} {o.total} "
              f"({o.band.replace('_', ' ')}) recorded{' as the correction' if replaces else ''}; "
              f"next due {due}.")
    return redirect(url_for("unit_pages.board"), code=303)


class _CorrectionQuery(Schema):
    replaces = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


def _struck_to_replace(staff: Staff, admission: Admission, scale: str,
                       value: str | None) -> Observation | None:
    """The struck observation a form corrects (``replaces``): of this resident and scale,
    struck through, and not corrected already; anything else is a 404."""
    if not value:
        return None
    try:
        number = _CorrectionQuery().load({"replaces": value})["replaces"]
        return services.correction_target(staff, admission.id, scale, number)
    except (ValidationError, DomainError):
        abort(404)


@bp.route("/observations/<int:observation_id>/strike", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def strike(observation_id: int):
    """Strike an entered-in-error observation through (it stays visible, struck)."""
    staff = current_staff()
    observation = services.get_observation(staff, observation_id)
    resident_page = url_for("unit_pages.resident", admission_id=observation.admission_id)
    try:
        body = StrikeIn().load({"reason": (request.form.get("reason") or "").strip()})
    except ValidationError:
        flash("Not struck through: give the reason it was entered in error.")
        return redirect(resident_page)
    try:
        services.strike_observation(staff, observation_id, now=now(), **body)
    except DomainError as refusal:
        flash(f"Not struck through: {refusal.detail}")
        return redirect(resident_page)
    if get_admission(staff, observation.admission_id).status == "active" and observation.status == "recorded":
        # Straight to the form for the correct score, linked to the struck one.
        flash(f"{SCALES[observation.scale].name} of {local(observation.observed_at):%d %b %H:%M} struck "
              "through. Enter the correct score below (or go back if there is none).")
        return redirect(url_for("monitoring_pages.observe", admission_id=observation.admission_id,
                                scale=observation.scale, replaces=observation.id))
    flash("Observation struck through.")
    return redirect(resident_page)


# --- escalations: board column and alerts, the doctor's queue, the rota -------------------------

def _live_escalations(unit_id: int, admission_ids: list[int]) -> dict[int, list[Row]]:
    found: dict[int, list[Row]] = {i: [] for i in admission_ids}
    for row in escalations.live_escalation_summaries(unit_id):
        if row.admission_id in found:
            found[row.admission_id].append(row)
    return found


def escalation_cells(unit_id: int, rows: list, at: datetime) -> dict[int, Markup]:
    """Each resident's live escalation: severity, reason, who it went to and when (one query)."""
    live = _live_escalations(unit_id, [row.id for row in rows])
    macros = partials("monitoring/_board_cells.html")
    calm = macros.escalation([])  # most residents: the same cell, rendered once
    return {row.id: macros.escalation(live[row.id]) if live[row.id] else calm for row in rows}


def board_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """Call-999 emergencies, gaps in the rota and notifications that keep failing."""
    emergencies = escalations.open_emergencies(unit_id)
    gaps = duty_rota.rota_gaps(unit_id, at, at + timedelta(hours=24))
    return [Markup(render_template("monitoring/_board_alerts.html", emergencies=emergencies,
                                   gaps=gaps, failing=outbox.failing(unit_id),
                                   labels=duty_rota.DUTY_LABELS, advice=escalations.advice))]


ESCALATION_BOARD = BoardExtension(headers=("Escalation",), cells=escalation_cells, alerts=board_alerts)


@bp.route("/escalations")
@roles_required(ALL_ROLES)
def queue():
    """The doctor's queue: live escalations by severity and age, with the resident at a glance."""
    staff, at = current_staff(), now()
    live = escalations.live_escalations(staff)
    admissions = {e.admission_id: e.admission for e in live}
    ids = sorted(admissions)
    extras = {}
    for hook in queue_extra_hooks:
        for admission_id, html in hook(ids, at).items():
            extras.setdefault(admission_id, []).append(html)
    return render_template("monitoring/queue.html", live=live, admissions=admissions,
                           schedules=services.active_schedules(ids), extras=extras,
                           recent=escalations.recently_resolved(staff), names=SHORT_NAMES,
                           may_answer=escalations.may_answer, advice=escalations.advice,
                           paged=escalations.last_paged, labels=duty_rota.DUTY_LABELS,
                           notifications=outbox.for_staff(staff.id), now=at)


# Filled when the app is assembled: medication adds recent doses to the queue.
queue_extra_hooks: list[Callable[[list[int], datetime], dict[int, Markup]]] = []


def _answer(action: Callable[[], object], done: str):
    try:
        action()
        flash(done)
    except DomainError as refusal:
        flash(f"Not done: {refusal.detail}")
    return redirect(safe_next(request.form.get("next"), url_for("monitoring_pages.queue")), code=303)


@bp.route("/escalations/<int:escalation_id>/acknowledge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def acknowledge(escalation_id: int):
    """Acknowledge from the queue."""
    return _answer(lambda: escalations.acknowledge(current_staff(), escalation_id, now=now()),
                   "Escalation acknowledged.")


@bp.route("/escalations/<int:escalation_id>/resolve", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def resolve(escalation_id: int):
    """Resolve from the queue, with an outcome and a note."""
    try:
        body = ResolveIn().load({"outcome": (request.form.get("outcome") or "").strip(),
                                 "note": request.form.get("note") or None})
    except ValidationError:
        flash("Not resolved: choose an outcome.")
        return redirect(url_for("monitoring_pages.queue"), code=303)
    return _answer(lambda: escalations.resolve(current_staff(), escalation_id, now=now(), **body),
                   "Escalation resolved.")


@bp.route("/escalations/<int:escalation_id>/override", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def override(escalation_id: int):
    """A nurse overrides an automatic escalation with a reason."""
    try:
        body = OverrideIn().load({"reason": (request.form.get("reason") or "").strip()})
    except ValidationError:
        flash("Not overridden: give the reason.")
        return redirect(safe_next(request.form.get("next"), url_for("unit_pages.board")), code=303)
    return _answer(lambda: escalations.override(current_staff(), escalation_id, now=now(), **body),
                   "Escalation overridden; the doctor has been told.")


@bp.route("/admissions/<int:admission_id>/sign", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def clinical_sign(admission_id: int):
    """Report a seizure, delirium tremens or Wernicke signs from the resident page."""
    try:
        body = ClinicalSignIn().load({"sign": request.form.get("sign", ""),
                                      "note": request.form.get("note") or None})
    except ValidationError:
        flash("Choose what you saw.")
    else:
        try:
            escalation = escalations.raise_clinical_sign(current_staff(), admission_id, now=now(), **body)
            flash(f"EMERGENCY raised: {escalation.reason}. {escalations.advice(escalation)}")
        except DomainError as refusal:
            flash(f"Not raised: {refusal.detail}")
    return redirect(url_for("unit_pages.resident", admission_id=admission_id), code=303)


@bp.route("/rota", methods=["GET", "POST"])
@roles_required(ALL_ROLES)
def rota():
    """The on-call rota: who holds each duty, gaps in cover; managers add and cancel shifts."""
    staff, at = current_staff(), now()
    errors = {}
    if request.method == "POST":
        if staff.role != "manager":
            abort(403)
        try:
            body = RotaShiftIn().load({k: v for k, v in {
                "duty": request.form.get("duty"),
                "staff_id": whole_number(request.form.get("staff_id", "")),
                "contact": request.form.get("contact") or None,
                "starts_at": _local_to_utc(request.form.get("starts_at", "")),
                "ends_at": _local_to_utc(request.form.get("ends_at", "")),
            }.items()})
            duty_rota.add_shift(staff, now=at, **body)
            flash("Shift added.")
            return redirect(url_for("monitoring_pages.rota"), code=303)
        except ValidationError as invalid:
            errors = invalid.messages
        except DomainError as refusal:
            errors = refusal.errors or {"_": [refusal.detail]}
    start = at.replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(days=7)
    return render_template("monitoring/rota.html", shifts=duty_rota.list_shifts(staff, start, end),
                           gaps=duty_rota.rota_gaps(staff.unit_id, at, at + timedelta(hours=24)),
                           labels=duty_rota.DUTY_LABELS, staff_list=duty_rota.rota_staff(staff), errors=errors,
                           form=request.form), (422 if errors else 200)


@bp.route("/rota/<int:shift_id>/cancel", methods=["POST"])
@roles_required(MANAGERS)
def cancel_shift(shift_id: int):
    """Cancel a shift from the rota page."""
    try:
        duty_rota.cancel_shift(current_staff(), shift_id, now=now())
        flash("Shift cancelled.")
    except DomainError as refusal:
        flash(f"Not cancelled: {refusal.detail}")
    return redirect(url_for("monitoring_pages.rota"), code=303)


def _local_to_utc(value: str) -> str:
    # <input type=datetime-local> gives the unit's wall-clock time without a zone.
    if not value:
        return value
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return value  # the schema names the field
    zone = unit_zone()
    return naive.replace(tzinfo=zone).astimezone(timezone.utc).isoformat()
