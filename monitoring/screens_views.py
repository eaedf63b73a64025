"""Drug and breath screens: the JSON API, the form on the resident page and its section."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from marshmallow import Schema, fields, validate

from config.clock import now
from config.api import ApiBlueprint
from config.idempotency import idempotent
from monitoring import screens
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.fields import Text
from unit.forms import form_write, local_time, new_key, number, text
from unit.pages import BoardExtension
from unit.schemas import StaffSchema, StrictFloat, StrictId, Timestamp

blp = ApiBlueprint("screens_api", __name__, url_prefix="/api/v1",
                   description="Drug screens (urine, oral fluid) and breath-alcohol readings")
pages = Blueprint("screens_pages", __name__, template_folder="templates")


class ScreenIn(Schema):
    """A urine or oral-fluid screen (``results`` per substance), or a breath test (``mg_per_l``)."""

    kind = fields.String(required=True, validate=validate.OneOf(tuple(screens.KINDS)))
    sample_at = Timestamp(load_default=None, allow_none=True,
                          metadata={"description": "When the sample was taken (default now)"})
    results = fields.Dict(
        keys=fields.String(validate=validate.OneOf(tuple(screens.SUBSTANCES))),
        values=fields.String(validate=validate.OneOf(screens.RESULTS)), load_default=None,
        allow_none=True, validate=validate.Length(min=1),
        metadata={"description": "Substance -> negative, positive or invalid (urine, oral fluid)"})
    mg_per_l = StrictFloat(load_default=None, allow_none=True, validate=validate.Range(0, 5),
                           metadata={"description": "Breath alcohol, mg per litre (breath only)"})
    taken_by_id = StrictId(load_default=None, allow_none=True,
                           metadata={"description": "Who took the sample (default: who records it)"})
    reason = fields.String(load_default="routine", validate=validate.OneOf(tuple(screens.REASONS)))
    note = Text(2000, load_default=None, allow_none=True)


class ResultSchema(Schema):
    substance = fields.String()
    label = fields.Function(lambda r: screens.SUBSTANCES[r.substance])
    result = fields.String()
    expected = fields.Boolean(metadata={"description": "A positive explained (prescribed, declared)"})
    expected_reason = fields.String(allow_none=True)


class ScreenSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    kind = fields.String()
    reason = fields.String()
    sample_at = fields.DateTime()
    taken_by = fields.Nested(StaffSchema)
    mg_per_l = fields.Float(allow_none=True)
    note = fields.String(allow_none=True)
    results = fields.List(fields.Nested(ResultSchema))
    unexpected = fields.Boolean(metadata={"description": "An unexpected positive: flagged for the doctor"})
    escalation_id = fields.Integer(allow_none=True)
    recorded_at = fields.DateTime()
    summary = fields.Function(screens.summary)


@blp.route("/admissions/<int:admission_id>/screens", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ScreenIn())
@idempotent
@blp.response(201, ScreenSchema)
def record(body, admission_id):
    """Record a screen; an unexpected positive raises an escalation (``soon``) to the doctor."""
    return screens.record_screen(current_staff(), admission_id, now=now(), **body)


@blp.route("/admissions/<int:admission_id>/screens", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ScreenSchema(many=True))
def list_screens(admission_id):
    """The resident's screens, newest sample first."""
    return screens.list_screens(current_staff(), admission_id)


@blp.route("/screens/<int:screen_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ScreenSchema)
def get_screen(screen_id):
    """One screen with each substance's result."""
    return screens.get_screen(current_staff(), screen_id)


@pages.route("/admissions/<int:admission_id>/screens", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def record_page(admission_id: int):
    """Record a screen or a breath test from the resident page."""
    staff = current_staff()
    back = url_for("unit_pages.resident", admission_id=admission_id) + "#screens"
    kind = request.form.get("kind", "")
    results = {code: request.form[f"r_{code}"] for code in screens.SUBSTANCES
               if request.form.get(f"r_{code}")}

    def save():
        body = ScreenIn().load({k: v for k, v in {
            "kind": kind, "sample_at": local_time("sample_at"),
            "results": (results or None) if kind != "breath" else None,
            "mg_per_l": number("mg_per_l") if kind == "breath" else None,
            "reason": request.form.get("reason") or "routine", "note": text("note")}.items()})
        screen = screens.record_screen(staff, admission_id, now=now(), **body)
        flash(screens.summary(screen) + (". Flagged for the doctor." if screen.unexpected else "."))
        return redirect(back, code=303)

    return form_write(save, back=back, failed="Screen not recorded")


def resident_sections(admission, at: datetime) -> list[Markup]:
    """The resident's screens and breath tests, with the forms to record one."""
    return [Markup(render_template("monitoring/_resident_screens.html", a=admission,
                                   rows=screens.screens_of(admission.id, limit=30), key=new_key,
                                   kinds=screens.KINDS, substances=screens.SUBSTANCES,
                                   reasons=screens.REASONS, summary=screens.summary))]


SCREENS_BOARD = BoardExtension(sections=resident_sections)
