"""Leave: the JSON API, the forms on the resident page, the board's alerts."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, url_for
from markupsafe import Markup
from marshmallow import Schema, fields, validate

from config.clock import now
from config.api import ApiBlueprint
from config.idempotency import idempotent
from monitoring import leave
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.fields import Text
from unit.forms import form_write, local_time, new_key, number, text
from unit.pages import BoardExtension
from unit.schemas import StaffSchema, StrictFloat, Timestamp

blp = ApiBlueprint("leave_api", __name__, url_prefix="/api/v1",
                   description="Leave and time off the unit: observations paused, returns escalated when late")
pages = Blueprint("leave_pages", __name__, template_folder="templates")


class LeaveIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(tuple(leave.LEAVE_KINDS)))
    reason = Text(2000, 3, required=True, metadata={"description": "Why, and where to (planned); how it was found (unplanned)"})
    expected_return_at = Timestamp(load_default=None, allow_none=True,
                                   metadata={"description": "Required for planned leave"})
    started_at = Timestamp(load_default=None, allow_none=True, metadata={"description": "Default now"})
    note = Text(2000, load_default=None, allow_none=True)


class ReturnIn(Schema):
    returned_at = Timestamp(load_default=None, allow_none=True, metadata={"description": "Default now"})
    mg_per_l = StrictFloat(load_default=None, allow_none=True, validate=validate.Range(0, 5),
                           metadata={"description": "The breath-alcohol reading on return, if taken now"})
    note = Text(2000, load_default=None, allow_none=True)


class ExtendIn(Schema):
    expected_return_at = Timestamp(required=True)
    reason = Text(2000, 3, required=True)


class LeaveSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    resident = fields.Function(lambda e: e.admission.resident.name)
    kind = fields.String()
    status = fields.String()
    reason = fields.String()
    started_at = fields.DateTime()
    expected_return_at = fields.DateTime(allow_none=True)
    returned_at = fields.DateTime(allow_none=True)
    note = fields.String(allow_none=True)
    return_note = fields.String(allow_none=True)
    started_by = fields.Nested(StaffSchema)
    returned_by = fields.Nested(StaffSchema, allow_none=True)
    escalated_at = fields.DateTime(allow_none=True)
    escalation_id = fields.Integer(allow_none=True)
    breath_due = fields.Function(lambda e: e.status == "returned" and leave.breath_after(e) is None,
                                 metadata={"description": "Back, and no breath-alcohol reading since"})
    breath_mg_per_l = fields.Function(lambda e: (reading.mg_per_l if (reading := leave.breath_after(e)) else None))


@blp.route("/admissions/<int:admission_id>/leave", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(LeaveIn())
@idempotent
@blp.response(201, LeaveSchema)
def start(body, admission_id):
    """A resident goes on leave (observations paused); unplanned leave is escalated at once."""
    return leave.start_leave(current_staff(), admission_id, now=now(), **body)


@blp.route("/admissions/<int:admission_id>/leave", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, LeaveSchema(many=True))
def list_leave(admission_id):
    """The resident's leave, newest first."""
    return leave.list_leave(current_staff(), admission_id)


@blp.route("/leave/<int:leave_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, LeaveSchema)
def get_leave(leave_id):
    """One leave episode."""
    return leave.get_leave(current_staff(), leave_id)


@blp.route("/leave/<int:leave_id>/return", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ReturnIn())
@idempotent
@blp.response(200, LeaveSchema)
def return_(body, leave_id):
    """Back on the unit: schedules restart, due now; the breath reading, now or as soon as may be."""
    return leave.return_from_leave(current_staff(), leave_id, now=now(), **body)


@blp.route("/leave/<int:leave_id>/extend", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ExtendIn())
@idempotent
@blp.response(200, LeaveSchema)
def extend(body, leave_id):
    """A new expected return (the resident phoned)."""
    return leave.extend_leave(current_staff(), leave_id, now=now(), **body)


# --- pages -----------------------------------------------------------------------------------

def _resident(admission_id: int) -> str:
    return url_for("unit_pages.resident", admission_id=admission_id) + "#leave"


@pages.route("/admissions/<int:admission_id>/leave", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def start_page(admission_id: int):
    """Start a leave from the resident page."""
    staff = current_staff()

    def save():
        body = LeaveIn().load({"kind": text("kind") or "", "reason": text("reason") or "",
                               "expected_return_at": local_time("expected_return_at"),
                               "started_at": local_time("started_at"), "note": text("note")})
        episode = leave.start_leave(staff, admission_id, now=now(), **body)
        flash(leave.leave_facts(episode, now())["text"] + ". Observations paused.")
        return redirect(_resident(admission_id), code=303)

    return form_write(save, back=_resident(admission_id), failed="Leave not recorded")


@pages.route("/leave/<int:leave_id>/return", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def return_page(leave_id: int):
    """Record the return from the resident page (with the breath reading, if taken)."""
    staff = current_staff()
    episode = leave.get_leave(staff, leave_id)

    def save():
        body = ReturnIn().load({"returned_at": local_time("returned_at"), "mg_per_l": number("mg_per_l"),
                                "note": text("note")})
        back = leave.return_from_leave(staff, leave_id, now=now(), **body)
        flash(f"{back.admission.resident.name} is back: observations are due now"
              + ("." if body["mg_per_l"] is not None else "; take a breath-alcohol reading."))
        return redirect(_resident(episode.admission_id), code=303)

    return form_write(save, back=_resident(episode.admission_id), failed="Return not recorded")


@pages.route("/leave/<int:leave_id>/extend", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def extend_page(leave_id: int):
    """Move the expected return from the resident page."""
    staff = current_staff()
    episode = leave.get_leave(staff, leave_id)

    def save():
        body = ExtendIn().load({"expected_return_at": local_time("expected_return_at") or "",
                                "reason": text("reason") or ""})
        leave.extend_leave(staff, leave_id, now=now(), **body)
        flash("Expected return moved.")
        return redirect(_resident(episode.admission_id), code=303)

    return form_write(save, back=_resident(episode.admission_id), failed="Not moved")


# --- the board and the resident page ---------------------------------------------------------

def board_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """Who is away (red when overdue or gone without agreement), and who is back with a
    breath-alcohol reading still to take."""
    away, breath = leave.on_leave(unit_id), leave.breath_due(unit_id)
    if not away and not breath:
        return []
    return [Markup(render_template("monitoring/_leave_alerts.html", away=away, breath=breath, now=at,
                                   facts=leave.leave_facts))]


def resident_sections(admission, at: datetime) -> list[Markup]:
    """The resident's leave: now, the forms, the history."""
    episodes = leave.leave_of(admission.id)
    current = next((e for e in episodes if e.status == "on_leave"), None)
    return [Markup(render_template("monitoring/_resident_leave.html", a=admission, episodes=episodes,
                                   current=current, now=at, key=new_key, kinds=leave.LEAVE_KINDS,
                                   breath_after=leave.breath_after))]


LEAVE_BOARD = BoardExtension(alerts=board_alerts, sections=resident_sections)
