"""Incidents: the JSON API, the pages, and what they add to the board and the resident page."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from config.clock import local, now
from config.api import ApiBlueprint
from config.extensions import db
from config.idempotency import idempotent
from monitoring import incidents
from unit.auth import ALL_ROLES, CLINICAL_STAFF, MANAGERS, current_staff, roles_required
from unit.fields import Text
from unit.forms import form_write, local_time, new_key, text
from unit.models import Admission
from unit.pages import BoardExtension
from unit.schemas import StaffSchema, StrictBool, StrictId, Timestamp, whole_number

blp = ApiBlueprint("incidents_api", __name__, url_prefix="/api/v1",
                   description="Incidents: report, review, the regulator's notification")
pages = Blueprint("incidents_pages", __name__, template_folder="templates")


# --- schemas ---------------------------------------------------------------------------------

class PersonIn(Schema):
    role = fields.String(required=True, validate=validate.OneOf(incidents.PEOPLE_ROLES))
    name = Text(200, load_default=None, allow_none=True)
    admission_id = StrictId(load_default=None, allow_none=True)


class LinkIn(Schema):
    kind = fields.String(required=True, validate=validate.Length(min=1, max=40),
                         metadata={"description": "escalation, or administration (a dose)"})
    id = StrictId(required=True)


class IncidentIn(Schema):
    type = fields.String(required=True, validate=validate.OneOf(tuple(incidents.INCIDENT_TYPES)))
    severity = fields.String(required=True, validate=validate.OneOf(tuple(incidents.SEVERITIES)))
    occurred_at = Timestamp(required=True)
    admission_id = StrictId(load_default=None, allow_none=True,
                            metadata={"description": "The resident concerned (if any)"})
    location = Text(200, load_default=None, allow_none=True)
    description = Text(4000, 3, required=True, metadata={"description": "What happened"})
    action_taken = Text(4000, 3, required=True, metadata={"description": "What was done"})
    people_involved = fields.List(fields.Nested(PersonIn), load_default=list,
                                  validate=validate.Length(max=20))
    police_involved = StrictBool(load_default=False)
    links = fields.List(fields.Nested(LinkIn), load_default=list, validate=validate.Length(max=10))


class ReviewIn(Schema):
    outcome = Text(4000, 3, required=True)
    lessons = Text(4000, 3, required=True)
    severity = fields.String(load_default=None, allow_none=True,
                             validate=validate.OneOf(tuple(incidents.SEVERITIES)),
                             metadata={"description": "Re-graded on review, if it changed"})


class NotificationIn(Schema):
    notified_at = Timestamp(load_default=None, allow_none=True)
    reference = Text(100, required=True, metadata={"description": "The regulator's reference"})
    note = Text(2000, load_default=None, allow_none=True)


class IncidentQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "reviewed")))
    admission_id = fields.Integer(load_default=None, validate=validate.Range(1, 2**31 - 1))


class PersonSchema(Schema):
    role = fields.String()
    name = fields.String()
    admission_id = fields.Integer(allow_none=True)


class LinkSchema(Schema):
    kind = fields.String()
    id = fields.Integer()
    label = fields.String()


class IncidentSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer(allow_none=True)
    resident = fields.Function(lambda i: i.admission.resident.name if i.admission else None)
    type = fields.String()
    type_label = fields.Function(lambda i: incidents.INCIDENT_TYPES[i.type])
    severity = fields.String()
    severity_label = fields.Function(lambda i: incidents.SEVERITIES[i.severity])
    occurred_at = fields.DateTime()
    location = fields.String(allow_none=True)
    description = fields.String()
    action_taken = fields.String()
    people_involved = fields.List(fields.Nested(PersonSchema))
    police_involved = fields.Boolean()
    escalation_id = fields.Integer(allow_none=True)
    links = fields.Function(lambda i: LinkSchema(many=True).dump(
        i.links if i.links is not None else incidents.links_of([i.id])[i.id]))
    reported_at = fields.DateTime()
    reported_by = fields.Nested(StaffSchema)
    status = fields.String()
    reviewed_at = fields.DateTime(allow_none=True)
    reviewed_by = fields.Nested(StaffSchema, allow_none=True)
    review_outcome = fields.String(allow_none=True)
    lessons = fields.String(allow_none=True)
    notification_required = fields.Boolean()
    notification_reasons = fields.List(fields.String())
    notification_due = fields.Boolean()
    notified_at = fields.DateTime(allow_none=True)
    notified_by = fields.Nested(StaffSchema, allow_none=True)
    notification_reference = fields.String(allow_none=True)
    notification_note = fields.String(allow_none=True)


# --- API -------------------------------------------------------------------------------------

@blp.route("/incidents", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(IncidentIn())
@idempotent
@blp.response(201, IncidentSchema)
def report(body):
    """Report an incident; the reply says whether the regulator must be told (and why)."""
    return incidents.report_incident(current_staff(), now=now(), **body)


@blp.route("/incidents", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(IncidentQuery(), location="query")
@blp.response(200, IncidentSchema(many=True))
def list_incidents(query):
    """The unit's incidents, newest first (``status``, ``admission_id`` filter)."""
    return incidents.list_incidents(current_staff(), **query)


@blp.route("/incidents/<int:incident_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, IncidentSchema)
def get_incident(incident_id):
    """One incident, with its links, review and notification."""
    return incidents.get_incident(current_staff(), incident_id)


@blp.route("/incidents/<int:incident_id>/links", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(LinkIn())
@idempotent
@blp.response(200, IncidentSchema)
def link(body, incident_id):
    """Link the incident to the escalation or the dose (eMAR entry) concerned."""
    return incidents.link_incident(current_staff(), incident_id, kind=body["kind"],
                                   record_id=body["id"], now=now())


@blp.route("/incidents/<int:incident_id>/review", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(ReviewIn())
@idempotent
@blp.response(200, IncidentSchema)
def review(body, incident_id):
    """A manager's review: outcome, lessons, and the severity re-graded if need be."""
    return incidents.review_incident(current_staff(), incident_id, now=now(), **body)


@blp.route("/incidents/<int:incident_id>/notification", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(NotificationIn())
@idempotent
@blp.response(200, IncidentSchema)
def notification(body, incident_id):
    """Record the regulator's notification (when it was made and its reference)."""
    return incidents.record_notification(current_staff(), incident_id, now=now(), **body)


# --- pages -----------------------------------------------------------------------------------

@pages.route("/incidents")
@roles_required(ALL_ROLES)
def incidents_page():
    """The unit's incidents: notifications due first, then those awaiting review, then all."""
    staff = current_staff()
    rows = incidents.list_incidents(staff)
    return render_template("monitoring/incidents.html", rows=rows,
                           due=incidents.notifications_due(staff.unit_id),
                           types=incidents.INCIDENT_TYPES, severities=incidents.SEVERITIES)


def _residents(unit_id: int) -> list[Admission]:
    return list(db.session.scalars(select(Admission).where(
        Admission.unit_id == unit_id, Admission.status == "active").order_by(Admission.admitted_at)))


@pages.route("/incidents/new", methods=["GET", "POST"])
@roles_required(CLINICAL_STAFF)
def report_page():
    """Report an incident (type, severity, when, who, what happened and what was done)."""
    staff, form, errors = current_staff(), request.form, {}
    if request.method == "POST":
        others = [name.strip() for name in (form.get("others") or "").split(",") if name.strip()]
        body = {"type": form.get("type", ""), "severity": form.get("severity", ""),
                "occurred_at": local_time("occurred_at") or "",
                "admission_id": whole_number(form.get("admission_id") or "") or None,
                "location": text("location"), "description": text("description") or "",
                "action_taken": text("action_taken") or "",
                "police_involved": form.get("police_involved") == "yes",
                "people_involved": [{"role": "other", "name": name[:200]} for name in others]}
        if body["admission_id"] is not None and body["admission_id"] >= 2**31:
            body["admission_id"] = 0  # the schema names it
        try:
            loaded = IncidentIn().load(body)
        except ValidationError as invalid:
            errors = {key: value for key, value in invalid.messages.items()}
        else:
            def save():
                incident = incidents.report_incident(staff, now=now(), **loaded)
                flash(f"Incident {incident.id} recorded."
                      + (" The regulator must be told: record the notification."
                         if incident.notification_required else ""))
                return redirect(url_for("incidents_pages.incident_page", incident_id=incident.id), code=303)

            response = form_write(save, back=url_for("incidents_pages.report_page"), failed="Not recorded")
            if "/incidents/new" not in response.location:
                return response
            errors = {"_": ["Not recorded: see the message above."]}
    chosen = whole_number(request.values.get("admission_id") or "")
    return render_template("monitoring/incident_new.html", form=form, errors=errors,
                           residents=_residents(staff.unit_id), chosen=chosen,
                           now_local=f"{local(now()):%Y-%m-%dT%H:%M}", key=new_key,
                           types=incidents.INCIDENT_TYPES, severities=incidents.SEVERITIES), \
        (422 if errors else 200)


@pages.route("/incidents/<int:incident_id>")
@roles_required(ALL_ROLES)
def incident_page(incident_id: int):
    """One incident: what happened, its links, the review and the regulator's notification."""
    incident = incidents.get_incident(current_staff(), incident_id)
    choices = {}
    if incident.admission_id is not None:
        choices = {kind: (definition.label, definition.choices(incident.admission_id))
                   for kind, definition in incidents.link_kinds.items() if definition.choices}
    return render_template("monitoring/incident.html", i=incident,
                           links=incidents.links_of([incident.id])[incident.id], choices=choices,
                           key=new_key, types=incidents.INCIDENT_TYPES, severities=incidents.SEVERITIES)


def _back(incident_id: int) -> str:
    return url_for("incidents_pages.incident_page", incident_id=incident_id)


@pages.route("/incidents/<int:incident_id>/review", methods=["POST"])
@roles_required(MANAGERS)
def review_page(incident_id: int):
    """The manager's review from the incident page."""
    staff = current_staff()

    def save():
        body = ReviewIn().load({"outcome": text("outcome") or "", "lessons": text("lessons") or "",
                                "severity": text("severity")})
        incidents.review_incident(staff, incident_id, now=now(), **body)
        flash("Review recorded.")
        return redirect(_back(incident_id), code=303)

    return form_write(save, back=_back(incident_id), failed="Review not saved")


@pages.route("/incidents/<int:incident_id>/notification", methods=["POST"])
@roles_required(MANAGERS)
def notification_page(incident_id: int):
    """Record the regulator's notification from the incident page."""
    staff = current_staff()

    def save():
        body = NotificationIn().load({"notified_at": local_time("notified_at"),
                                      "reference": text("reference") or "", "note": text("note")})
        incidents.record_notification(staff, incident_id, now=now(), **body)
        flash("Notification recorded.")
        return redirect(_back(incident_id), code=303)

    return form_write(save, back=_back(incident_id), failed="Notification not saved")


@pages.route("/incidents/<int:incident_id>/links", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def link_page(incident_id: int):
    """Link the incident to an escalation or a dose from the incident page."""
    staff = current_staff()

    def save():
        body = LinkIn().load({"kind": request.form.get("kind", ""),
                              "id": whole_number(request.form.get("record_id") or "")})
        incidents.link_incident(staff, incident_id, kind=body["kind"], record_id=body["id"], now=now())
        flash("Linked.")
        return redirect(_back(incident_id), code=303)

    return form_write(save, back=_back(incident_id), failed="Not linked")


# --- the board and the resident page ---------------------------------------------------------

def board_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """Incidents the regulator must be told of (red until recorded), and those awaiting review."""
    due = incidents.notifications_due(unit_id)
    waiting = incidents.open_count(unit_id)
    if not due and not waiting:
        return []
    return [Markup(render_template("monitoring/_incident_alerts.html", due=due, waiting=waiting,
                                   types=incidents.INCIDENT_TYPES))]


def resident_sections(admission, at: datetime) -> list[Markup]:
    """The resident's incidents, with a button to report one."""
    rows = list(db.session.scalars(select(incidents.Incident).where(
        incidents.Incident.admission_id == admission.id)
        .order_by(incidents.Incident.occurred_at.desc()).limit(50)))
    return [Markup(render_template("monitoring/_resident_incidents.html", a=admission, rows=rows,
                                   types=incidents.INCIDENT_TYPES, severities=incidents.SEVERITIES))]


INCIDENTS_BOARD = BoardExtension(alerts=board_alerts, sections=resident_sections)
