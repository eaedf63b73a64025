"""marshmallow schemas at the edge of the monitoring package."""
from __future__ import annotations

import copy

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from monitoring.escalations import advice
from monitoring.models import NOT_DONE_REASONS
from monitoring.scales import SCALES
from unit.schemas import StaffSchema, StrictBool, StrictId, StrictInt, Timestamp

SCALE_CODES = tuple(SCALES)


class ScoreIn(Schema):
    items = fields.Dict(required=True, metadata={"description": "Item key -> value, as GET /scales describes"})


class ObservationIn(Schema):
    """An observation: ``items`` scored, or ``not_done_reason`` when it could not be done."""

    scale = fields.String(required=True, validate=validate.OneOf(SCALE_CODES))
    items = fields.Dict(load_default=None)
    not_done_reason = fields.String(load_default=None, validate=validate.OneOf(NOT_DONE_REASONS))
    observed_at = Timestamp(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))

    @validates_schema
    def items_or_reason(self, data, **kwargs):
        if (data.get("items") is None) == (data.get("not_done_reason") is None):
            raise ValidationError("Give the scale's items, or a not_done_reason "
                                  f"({', '.join(NOT_DONE_REASONS)}) when it could not be done.",
                                  "items")


class ReplacementIn(Schema):
    items = fields.Dict(required=True)
    observed_at = Timestamp(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class StrikeIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))
    replacement = fields.Nested(ReplacementIn, load_default=None, allow_none=True)


class ObservationQuery(Schema):
    scale = fields.String(load_default=None, validate=validate.OneOf(SCALE_CODES))


class ScheduleIn(Schema):
    scale = fields.String(required=True, validate=validate.OneOf(SCALE_CODES))
    max_interval_minutes = StrictInt(load_default=None, allow_none=True, validate=validate.Range(15, 1440))
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class ScheduleChangeIn(Schema):
    max_interval_minutes = StrictInt(load_default=None, allow_none=True, validate=validate.Range(15, 1440))
    active = StrictBool(load_default=None, allow_none=True)
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


# --- output ----------------------------------------------------------------------------------

class ScoreSchema(Schema):
    scale = fields.String()
    total = fields.Integer()
    band = fields.String()
    item_scores = fields.Dict(keys=fields.String(), values=fields.Integer())
    risk = fields.String()
    warnings = fields.List(fields.String())


class ScaleSchema(Schema):
    code = fields.String()
    name = fields.String()
    substance = fields.String(allow_none=True)
    rater = fields.String()
    max_total = fields.Integer()
    bands = fields.List(fields.Dict())
    single_item_rule = fields.Dict(allow_none=True)
    items = fields.List(fields.Dict())


class ScheduleSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    scale = fields.String()
    active = fields.Boolean()
    interval_minutes = fields.Integer()
    max_interval_minutes = fields.Integer(allow_none=True)
    next_due_at = fields.DateTime()
    state = fields.String(metadata={"description": "ok, due_soon, late or overdue"})


class ObservationSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    scale = fields.String()
    status = fields.String(metadata={"description": "recorded or not_done"})
    not_done_reason = fields.String(allow_none=True)
    items = fields.Dict(allow_none=True)
    item_scores = fields.Dict(allow_none=True)
    total = fields.Integer(allow_none=True)
    band = fields.String(allow_none=True)
    risk = fields.String(allow_none=True)
    warnings = fields.List(fields.String(), allow_none=True)
    note = fields.String(allow_none=True)
    observed_at = fields.DateTime()
    recorded_at = fields.DateTime()
    recorded_by = fields.Pluck(StaffSchema, "username")
    due_at = fields.DateTime(allow_none=True)
    struck_at = fields.DateTime(allow_none=True)
    struck_reason = fields.String(allow_none=True)
    replaces_id = fields.Integer(allow_none=True)


class EscalationSchema(Schema):
    """An escalation as the API shows it (also inside an observation's reply)."""

    id = fields.Integer()
    admission_id = fields.Integer()
    severity = fields.String(metadata={"description": "emergency, urgent or soon"})
    reason = fields.String()
    trigger = fields.String()
    status = fields.String(metadata={"description": "open, acknowledged or resolved"})
    route = fields.String(metadata={"description": "The duty paged first: on_site_doctor, visiting_gp "
                                                   "or nurse_in_charge"})
    level = fields.Integer()
    unit_model = fields.String()
    call_999 = fields.Boolean()
    advice = fields.Function(advice, allow_none=True, metadata={
        "type": "string", "description": "What the nurse must do now, beside waiting (emergencies)"})
    raised_at = fields.DateTime()
    acknowledged_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    target_minutes = fields.Integer()
    escalate_at = fields.DateTime(allow_none=True)
    outcome = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    overridden = fields.Boolean()
    source_type = fields.String(metadata={
        "description": "What raised it: observation, missed_observation, clinical_sign or medication_order"})
    source_id = fields.Integer(allow_none=True)


def _observation_field(field: fields.Field, name: str) -> fields.Field:
    field = copy.deepcopy(field)
    field.attribute = f"observation.{field.attribute or name}"
    return field


class RecordedSchema(Schema):
    """The reply to a recorded observation (a ``Recorded``): the observation's own fields, when
    the next one is due, and the escalation it raised or updated."""

    class Meta:
        include = {name: _observation_field(field, name)
                   for name, field in ObservationSchema._declared_fields.items()}

    next_due_at = fields.DateTime(allow_none=True)
    interval_minutes = fields.Integer(allow_none=True)
    escalation = fields.Nested(EscalationSchema, allow_none=True)


class StrikeResultSchema(Schema):
    struck = fields.Nested(ObservationSchema)
    replacement = fields.Nested(RecordedSchema, allow_none=True)


# --- escalations and the rota ----------------------------------------------------------------

class EscalationQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "acknowledged", "resolved")))


class ResolveIn(Schema):
    outcome = fields.String(required=True, validate=validate.Length(min=2, max=200))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class OverrideIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class ClinicalSignIn(Schema):
    sign = fields.String(required=True, validate=validate.OneOf(("seizure", "delirium_tremens", "wernicke")))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class EscalationStepSchema(Schema):
    at = fields.DateTime()
    kind = fields.String()
    level = fields.Integer()
    detail = fields.String()


class EscalationDetailSchema(EscalationSchema):
    steps = fields.List(fields.Nested(EscalationStepSchema))


class RotaQuery(Schema):
    start = Timestamp(data_key="from", load_default=None)
    end = Timestamp(data_key="to", load_default=None)


class RotaShiftIn(Schema):
    duty = fields.String(required=True, validate=validate.OneOf(
        ("nurse_in_charge", "on_site_doctor", "visiting_gp", "second_on_call", "clinical_lead")))
    staff_id = StrictId(load_default=None, allow_none=True)
    contact = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    starts_at = Timestamp(required=True)
    ends_at = Timestamp(required=True)


class RotaShiftSchema(Schema):
    id = fields.Integer()
    duty = fields.String()
    staff_id = fields.Integer(allow_none=True)
    staff_name = fields.Function(lambda s: s.staff.full_name if s.staff else None)
    contact = fields.String(allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)


class RotaGapSchema(Schema):
    duty = fields.String()
    start = fields.DateTime(data_key="from", attribute="from")
    end = fields.DateTime(data_key="to", attribute="to")


class RotaSchema(Schema):
    shifts = fields.List(fields.Nested(RotaShiftSchema))
    gaps = fields.List(fields.Nested(RotaGapSchema))
