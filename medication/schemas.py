"""marshmallow schemas at the edge of the medication package."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from medication.drugs import DRUGS
from medication.models import ORDER_KINDS, OUTCOMES
from monitoring.scales import SCALES
from unit.schemas import StrictBool, StrictFloat, StrictId, StrictInt, Timestamp


class TriggerIn(Schema):
    scale = fields.String(required=True, validate=validate.OneOf(tuple(SCALES)))
    min_band = fields.String(load_default=None)
    min_total = StrictInt(load_default=None, validate=validate.Range(0, 100))

    @validates_schema
    def band_or_total(self, data, **kwargs):
        if data.get("min_band") is None and data.get("min_total") is None:
            raise ValidationError("Give min_band or min_total.", "min_band")


class PhoneOrderIn(Schema):
    prescriber = fields.String(required=True, metadata={"description": "The GP's or doctor's username"})
    read_back_confirmed = StrictBool(required=True)


class OrderIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(ORDER_KINDS))
    drug = fields.String(required=True, validate=validate.OneOf(tuple(DRUGS)))
    form = fields.String(load_default=None, validate=validate.Length(max=40))
    strength = fields.String(load_default=None, validate=validate.Length(max=40), metadata={
        "description": "As stocked (e.g. \"10 mg\"); default the drug's usual strength"})
    route = fields.String(required=True, validate=validate.Length(min=2, max=24))
    dose_mg = StrictFloat(load_default=None, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    start_dose_mg = StrictInt(load_default=None, validate=validate.Range(5, 100))
    min_interval_minutes = StrictInt(load_default=None, validate=validate.Range(15, 1440))
    max_daily_mg = StrictFloat(load_default=None, validate=validate.Range(min=0, min_inclusive=False, max=5000))
    trigger = fields.Nested(TriggerIn, load_default=None, allow_none=True)
    starts_at = Timestamp(load_default=None, allow_none=True)
    ends_at = Timestamp(load_default=None, allow_none=True)
    last_opioid_at = Timestamp(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    phone_order = fields.Nested(PhoneOrderIn, load_default=None, allow_none=True)


class ChangeOrderIn(OrderIn):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class StopIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


class WitnessIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000), load_only=True)


class AdministrationIn(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    dose_mg = StrictFloat(required=True, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    reason = fields.String(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    witness = fields.Nested(WitnessIn, load_default=None, allow_none=True)
    scheduled_dose_id = StrictId(load_default=None, allow_none=True)


class RegisterEntryIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("receipt", "return", "destruction", "correction")))
    amount_mg = StrictFloat(required=True, validate=validate.Range(min=-100000, max=100000))
    supplier = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    reference = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    witness = fields.Nested(WitnessIn, load_default=None, allow_none=True)
    corrects_id = StrictId(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class StockCheckIn(Schema):
    counted_mg = StrictFloat(required=True, validate=validate.Range(min=0, max=100000))
    witness = fields.Nested(WitnessIn, required=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


# --- output ----------------------------------------------------------------------------------

class ScheduledDoseSchema(Schema):
    id = fields.Integer()
    due_at = fields.DateTime()
    dose_mg = fields.Float()
    label = fields.String()


class OrderSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    kind = fields.String()
    drug = fields.String()
    form = fields.String()
    strength = fields.String(allow_none=True)
    route = fields.String()
    dose_mg = fields.Float(allow_none=True)
    start_dose_mg = fields.Float(allow_none=True)
    min_interval_minutes = fields.Integer(allow_none=True)
    max_daily_mg = fields.Float(allow_none=True)
    trigger = fields.Dict(allow_none=True)
    controlled = fields.Boolean()
    cd_schedule = fields.Integer(allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime(allow_none=True)
    status = fields.String()
    version = fields.Integer()
    supersedes_id = fields.Integer(allow_none=True)
    prescriber = fields.Pluck("unit.schemas.StaffSchema", "username")
    phone_order = fields.Boolean()
    countersign_due_at = fields.DateTime(allow_none=True)
    countersigned_at = fields.DateTime(allow_none=True)
    stop_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class OrderDetailSchema(OrderSchema):
    scheduled = fields.List(fields.Nested(ScheduledDoseSchema))
    warnings = fields.List(fields.String())


class AdministrationSchema(Schema):
    id = fields.Integer()
    order_id = fields.Integer()
    admission_id = fields.Integer()
    scheduled_dose_id = fields.Integer(allow_none=True)
    drug = fields.String()
    outcome = fields.String()
    dose_mg = fields.Float()
    reason = fields.String(attribute="reason_code", allow_none=True)
    note = fields.String(allow_none=True)
    given_at = fields.DateTime()
    given_by = fields.Pluck("unit.schemas.StaffSchema", "username")
    witness = fields.Pluck("unit.schemas.StaffSchema", "username", allow_none=True)
    trigger_observation_id = fields.Integer(allow_none=True)


class GivenSchema(AdministrationSchema):
    escalation = fields.Dict(allow_none=True)


class RegisterEntrySchema(Schema):
    id = fields.Integer()
    seq = fields.Integer()
    kind = fields.String()
    amount_mg = fields.Float()
    balance_mg = fields.Float()
    counted_mg = fields.Float(allow_none=True)
    supplier = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    admission_id = fields.Integer(allow_none=True)
    administration_id = fields.Integer(allow_none=True)
    corrects_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    at = fields.DateTime()
    recorded_by = fields.Pluck("unit.schemas.StaffSchema", "username")
    witness = fields.Pluck("unit.schemas.StaffSchema", "username", allow_none=True)


class RegisterSchema(Schema):
    drug = fields.String(attribute="drug.code")
    name = fields.String(attribute="drug.name")
    cd_schedule = fields.Integer(attribute="drug.cd_schedule", allow_none=True)
    balance_mg = fields.Float()
    entries = fields.List(fields.Nested(RegisterEntrySchema))


class DueDoseSchema(Schema):
    admission_id = fields.Integer()
    resident = fields.String()
    order_id = fields.Integer()
    drug = fields.String()
    dose_mg = fields.Float()
    kind = fields.String()
    scheduled_dose_id = fields.Integer(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    state = fields.String()
    available = fields.Boolean()
    reason = fields.String()
    witness_required = fields.Boolean()


class DueDosesSchema(Schema):
    scheduled = fields.List(fields.Nested(DueDoseSchema))
    prn = fields.List(fields.Nested(DueDoseSchema))
