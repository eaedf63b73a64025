"""The monitoring package's JSON API."""
from __future__ import annotations

from config.api import ApiBlueprint

from datetime import timedelta

from config.clock import now
from config.idempotency import idempotent
from monitoring import escalations, services
from monitoring import rota as duty_rota  # the views "rota", "add_shift"... are named after the routes
from monitoring.scales import SCALES
from monitoring.schedules import due_state
from monitoring.settings import monitoring_settings, unit_bands
from monitoring.schemas import (
    ClinicalSignIn,
    EscalationDetailSchema,
    EscalationQuery,
    EscalationSchema,
    OverrideIn,
    ResolveIn,
    RotaQuery,
    RotaSchema,
    RotaShiftIn,
    RotaShiftSchema,
    ObservationIn,
    ObservationQuery,
    ObservationSchema,
    RecordedSchema,
    ScaleSchema,
    ScheduleChangeIn,
    ScheduleIn,
    ScheduleSchema,
    ScoreIn,
    ScoreSchema,
    StrikeIn,
    StrikeResultSchema,
)
from unit.auth import ALL_ROLES, CLINICAL_STAFF, MANAGERS, current_staff, roles_required

blp = ApiBlueprint("monitoring_api", __name__, url_prefix="/api/v1",
                description="Withdrawal scales, observations and observation schedules")


@blp.route("/scales", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ScaleSchema(many=True))
def list_scales():
    """Every scale with its items, allowed values, descriptors and the unit's bands."""
    settings = monitoring_settings(current_staff().unit_id)
    return [scale.to_dict(unit_bands(settings, code)) for code, scale in SCALES.items()]


@blp.route("/scales/<code>/score", methods=["POST"])
@roles_required(ALL_ROLES)
@blp.arguments(ScoreIn())
@blp.response(200, ScoreSchema)
def score(body, code):
    """Score items without saving anything."""
    return services.score(current_staff().unit_id, code, body["items"]).to_dict()


@blp.route("/admissions/<int:admission_id>/observations", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ObservationIn())
@idempotent
@blp.response(201, RecordedSchema)
def record(body, admission_id):
    """Record an observation (Idempotency-Key header required); the reply says when it is next due."""
    staff, at = current_staff(), now()
    if body["items"] is not None:
        recorded = services.record_observation(
            staff, admission_id, scale=body["scale"], items=body["items"],
            observed_at=body["observed_at"], note=body["note"], now=at)
    else:
        recorded = services.record_not_done(
            staff, admission_id, scale=body["scale"], reason=body["not_done_reason"],
            observed_at=body["observed_at"], note=body["note"], now=at)
    return recorded


@blp.route("/admissions/<int:admission_id>/observations", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(ObservationQuery(), location="query")
@blp.response(200, ObservationSchema(many=True))
@blp.paginate()
def list_observations(query, admission_id, pagination_parameters):
    """The admission's observations, newest first (``page``, ``page_size``; ``scale`` filters)."""
    rows, total = services.list_observations(
        current_staff(), admission_id, scale=query["scale"],
        page=pagination_parameters.page, per_page=pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return rows


@blp.route("/observations/<int:observation_id>/strike", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(StrikeIn())
@idempotent
@blp.response(200, StrikeResultSchema)
def strike(body, observation_id):
    """Strike an entered-in-error observation through, with a reason and optional replacement."""
    struck, recorded = services.strike_observation(
        current_staff(), observation_id, reason=body["reason"], replacement=body["replacement"],
        now=now())
    return {"struck": struck, "replacement": recorded}


@blp.route("/admissions/<int:admission_id>/schedules", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ScheduleSchema(many=True))
def list_schedules(admission_id):
    """The admission's observation schedules and what is due."""
    at = now()
    return [_schedule_view(s, at) for s in services.list_schedules(current_staff(), admission_id)]


@blp.route("/admissions/<int:admission_id>/schedules", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ScheduleIn())
@idempotent
@blp.response(201, ScheduleSchema)
def add_schedule(body, admission_id):
    """Start observations of another scale (due now)."""
    at = now()
    schedule = services.add_schedule(current_staff(), admission_id, now=at, **body)
    return _schedule_view(schedule, at)


@blp.route("/schedules/<int:schedule_id>", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ScheduleChangeIn())
@idempotent
@blp.response(200, ScheduleSchema)
def change_schedule(body, schedule_id):
    """Set "at least every N minutes" (the protocol may still ask sooner), or stop/restart."""
    at = now()
    schedule = services.change_schedule(current_staff(), schedule_id, now=at, **body)
    return _schedule_view(schedule, at)


def _schedule_view(schedule, at) -> dict:
    fields = (name for name in ScheduleSchema._declared_fields if name != "state")
    return {**{name: getattr(schedule, name) for name in fields},
            "state": due_state(schedule, at)}


# --- escalations ----------------------------------------------------------------------------

@blp.route("/escalations", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(EscalationQuery(), location="query")
@blp.response(200, EscalationSchema(many=True))
def list_escalations(query):
    """The unit's escalations, most severe and oldest first (``status`` filters)."""
    return escalations.list_escalations(current_staff(), status=query["status"])


@blp.route("/escalations/<int:escalation_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, EscalationDetailSchema)
def get_escalation(escalation_id):
    """One escalation with every step of its life."""
    return escalations.get_escalation(current_staff(), escalation_id)


@blp.route("/escalations/<int:escalation_id>/acknowledge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@idempotent
@blp.response(200, EscalationSchema)
def acknowledge(escalation_id):
    """The routed doctor (doctor on a managed unit, GP on a monitored one) or a manager acknowledges."""
    return escalations.acknowledge(current_staff(), escalation_id, now=now())


@blp.route("/escalations/<int:escalation_id>/resolve", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ResolveIn())
@idempotent
@blp.response(200, EscalationSchema)
def resolve(body, escalation_id):
    """Close an escalation with its outcome and a note."""
    return escalations.resolve(current_staff(), escalation_id, now=now(), **body)


@blp.route("/escalations/<int:escalation_id>/override", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(OverrideIn())
@idempotent
@blp.response(200, EscalationSchema)
def override(body, escalation_id):
    """A nurse judges an automatic escalation not needed (with a reason; the doctor is told)."""
    return escalations.override(current_staff(), escalation_id, now=now(), **body)


@blp.route("/admissions/<int:admission_id>/escalations", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ClinicalSignIn())
@idempotent
@blp.response(201, EscalationSchema)
def raise_sign(body, admission_id):
    """Report a seizure, delirium tremens or Wernicke signs: an emergency on every unit."""
    return escalations.raise_clinical_sign(current_staff(), admission_id, now=now(), **body)


# --- the on-call rota -----------------------------------------------------------------------

@blp.route("/rota", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(RotaQuery(), location="query")
@blp.response(200, RotaSchema)
def rota(query):
    """Shifts and gaps in cover between ``from`` and ``to`` (default: the next 24 hours)."""
    at = now()
    start = query["start"] or at
    end = query["end"] or start + timedelta(hours=24)
    staff = current_staff()
    return {"shifts": duty_rota.list_shifts(staff, start, end),
            "gaps": duty_rota.rota_gaps(staff.unit_id, start, end)}


@blp.route("/rota", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(RotaShiftIn())
@blp.response(201, RotaShiftSchema)
def add_shift(body):
    """Put someone (or an external service, as ``contact``) on the rota for a duty."""
    return duty_rota.add_shift(current_staff(), now=now(), **body)


@blp.route("/rota/<int:shift_id>/cancel", methods=["POST"])
@roles_required(MANAGERS)
@blp.response(200, RotaShiftSchema)
def cancel_shift(shift_id):
    """Take a shift off the rota (kept, marked cancelled)."""
    return duty_rota.cancel_shift(current_staff(), shift_id, now=now())
