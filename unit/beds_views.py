"""Beds, the waiting list and the census: the JSON API and the pages (thin: schema in, one
service, schema out)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from config.clock import now, unit_zone
from config.api import ApiBlueprint
from config.errors import ValidationFailed
from config.idempotency import idempotent
from unit import beds
from unit.auth import ALL_ROLES, CLINICAL_STAFF, MANAGERS, current_staff, roles_required
from unit.competence import SETTING_LABELS
from unit.fields import Day, Text
from unit.forms import form_write, new_key, number, text
from unit.models import SUBSTANCES
from unit.pages import BoardExtension
from unit.schemas import (AdmissionSchema, AssessmentIn, CriterionSchema, ReferralIn,
                          StaffSchema, StrictId, StrictInt, admission_view)
from unit.services import model_at

blp = ApiBlueprint("beds_api", __name__, url_prefix="/api/v1",
                   description="Beds, the waiting list (referrals accepted with a planned date) "
                               "and the census")
pages = Blueprint("beds_pages", __name__, template_folder="templates")


# --- schemas ---------------------------------------------------------------------------------

class ContactIn(Schema):
    """A referrer or a GP: who they are and where a letter goes."""

    name = Text(200, required=True)
    organisation = Text(200, load_default=None, allow_none=True,
                         metadata={"description": "The referring service, or the GP's practice"})
    address = Text(500, load_default=None, allow_none=True)
    contact = Text(200, load_default=None, allow_none=True,
                    metadata={"description": "Telephone or secure e-mail"})


class PlannedAdmissionIn(ReferralIn):
    """A referral accepted onto the waiting list: the referral, its planned date and stay.

    A doctor's override, the reasons for a re-referral's changed figures and the return
    fields are given at admission, not at acceptance: sent here they are refused (422, unknown
    field), never silently dropped.
    """

    class Meta:
        exclude = ("override_reason", "change_reasons", "return_fields")

    planned_date = Day(required=True)
    planned_stay_days = StrictInt(load_default=7, validate=validate.Range(1, beds.MAX_STAY_DAYS))
    bed_id = StrictId(load_default=None, allow_none=True)
    referrer = fields.Nested(ContactIn, load_default=None, allow_none=True)
    gp = fields.Nested(ContactIn, load_default=None, allow_none=True)
    note = Text(2000, load_default=None, allow_none=True)


class PlannedAdmitIn(Schema):
    assessment = fields.Nested(AssessmentIn, load_default=None, allow_none=True, metadata={
        "description": "The assessment on the day, if it changed (default: the one accepted)"})
    bed_id = StrictId(load_default=None, allow_none=True)


class ReasonIn(Schema):
    reason = Text(2000, 3, required=True)


class BedIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=60))

    @validates_schema
    def not_blank(self, data, **kwargs):
        if not data["name"].strip():
            raise ValidationError("Give the bed a name.", "name")


class BedAssignIn(Schema):
    bed_id = StrictId(required=True)


class ExpectedDischargeIn(Schema):
    expected_on = Day(required=True)
    reason = Text(2000, 3, required=True)


class WaitingQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(beds.PLANNED_STATUSES))


class CensusQuery(Schema):
    day = Day(data_key="date", load_default=None)


class DailyQuery(Schema):
    start = Day(data_key="from", load_default=None)
    end = Day(data_key="to", load_default=None, metadata={"description": "Inclusive"})


class BedSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    opened_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    close_reason = fields.String(allow_none=True)


class ResidentBriefSchema(Schema):
    admission_id = fields.Integer(attribute="id")
    resident = fields.Function(lambda a: a.resident.name)
    admitted_at = fields.DateTime()


class BedAssignmentSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    bed = fields.Nested(BedSchema)
    assigned_at = fields.DateTime()
    released_at = fields.DateTime(allow_none=True)


class ExpectedDischargeSchema(Schema):
    admission_id = fields.Integer()
    expected_on = fields.Date()
    reason = fields.String()
    set_at = fields.DateTime()


class ContactSchema(Schema):
    name = fields.String()
    organisation = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    contact = fields.String(allow_none=True)


class AcceptanceSchema(Schema):
    unit_model = fields.String()
    high_risk = fields.Boolean()
    risk_reasons = fields.List(fields.Nested(CriterionSchema))
    flags = fields.List(fields.Nested(CriterionSchema))
    recommended_setting = fields.String()
    recommended_reasons = fields.List(fields.String())


class PlannedAdmissionSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    resident = fields.Dict()
    substances = fields.List(fields.String())
    assessment = fields.Dict()
    planned_date = fields.Date()
    planned_stay_days = fields.Integer()
    bed = fields.Nested(BedSchema, allow_none=True)
    referrer = fields.Nested(ContactSchema, allow_none=True)
    gp = fields.Nested(ContactSchema, allow_none=True)
    note = fields.String(allow_none=True)
    acceptance = fields.Nested(AcceptanceSchema)
    accepted_at = fields.DateTime()
    accepted_by = fields.Nested(StaffSchema)
    admission_id = fields.Integer(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    close_reason = fields.String(allow_none=True)
    declined_reasons = fields.List(fields.Nested(CriterionSchema), allow_none=True)


class BedStateSchema(Schema):
    bed = fields.Nested(BedSchema)
    occupant = fields.Nested(ResidentBriefSchema, allow_none=True)


class ExpectedOutSchema(Schema):
    admission_id = fields.Function(lambda pair: pair[0].id)
    resident = fields.Function(lambda pair: pair[0].resident.name)
    expected_on = fields.Function(lambda pair: pair[1].expected_on.isoformat())
    reason = fields.Function(lambda pair: pair[1].reason)


class CensusSchema(Schema):
    date = fields.Date(attribute="day")
    at = fields.DateTime()
    census = fields.Integer(metadata={"description": "Residents on the unit"})
    beds_in_service = fields.Function(lambda c: len(c.beds))
    occupancy = fields.Float(allow_none=True, metadata={"description": "census / beds in service"})
    over_capacity = fields.Boolean()
    beds = fields.Function(lambda c: BedStateSchema(many=True).dump(
        [{"bed": bed, "occupant": c.occupied.get(bed.id)} for bed in c.beds]))
    without_bed = fields.List(fields.Nested(ResidentBriefSchema))
    expected_admissions = fields.List(fields.Nested(PlannedAdmissionSchema))
    overdue_admissions = fields.List(fields.Nested(PlannedAdmissionSchema), metadata={
        "description": "Still waiting after their planned date"})
    expected_discharges = fields.List(fields.Nested(ExpectedOutSchema), metadata={
        "description": "Expected to leave on the day or before (still here)"})


class CensusDaySchema(Schema):
    date = fields.String()
    census = fields.Integer()
    beds = fields.Integer()
    occupancy = fields.Float(allow_none=True)
    admitted = fields.Integer()
    discharged = fields.Integer()
    complete = fields.Boolean(metadata={"description": "False for today (the figure is now's)"})


# --- API -------------------------------------------------------------------------------------

@blp.route("/beds", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, BedStateSchema(many=True))
def list_beds():
    """The unit's beds in service, each with who is in it."""
    state = beds.census(current_staff().unit_id, day=None, now=now())
    return [{"bed": bed, "occupant": state.occupied.get(bed.id)} for bed in state.beds]


@blp.route("/beds", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(BedIn())
@idempotent
@blp.response(201, BedSchema)
def add_bed(body):
    """Put a bed into service (managers)."""
    return beds.add_bed(current_staff(), name=body["name"], now=now())


@blp.route("/beds/<int:bed_id>/close", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(ReasonIn())
@idempotent
@blp.response(200, BedSchema)
def close_bed(body, bed_id):
    """Take a bed out of service (managers; an occupied bed is 409 bed-occupied)."""
    return beds.close_bed(current_staff(), bed_id, reason=body["reason"], now=now())


@blp.route("/admissions/<int:admission_id>/bed", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(BedAssignIn())
@idempotent
@blp.response(200, BedAssignmentSchema)
def assign_bed(body, admission_id):
    """Put a resident in a free bed, or move them to another."""
    return beds.assign_bed(current_staff(), admission_id, bed_id=body["bed_id"], now=now())


@blp.route("/admissions/<int:admission_id>/expected-discharge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ExpectedDischargeIn())
@idempotent
@blp.response(200, ExpectedDischargeSchema)
def expect_discharge(body, admission_id):
    """Set or move the date the resident is expected to leave."""
    return beds.set_expected_discharge(current_staff(), admission_id, now=now(), **body)


@blp.route("/waiting-list", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(PlannedAdmissionIn())
@idempotent
@blp.response(201, PlannedAdmissionSchema)
@blp.alt_response(422, description="Validation failed, or admission-declined with `reasons`")
def accept(body):
    """Accept a referral with a planned date; one this unit cannot take is declined (422
    admission-declined, kept for the audit) as at admission."""
    return beds.accept_referral(current_staff(), now=now(), **body)


@blp.route("/waiting-list", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(WaitingQuery(), location="query")
@blp.response(200, PlannedAdmissionSchema(many=True))
def waiting_list(query):
    """The waiting list, soonest planned date first (``status`` filters)."""
    return beds.list_planned(current_staff(), status=query["status"])


@blp.route("/waiting-list/<int:planned_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, PlannedAdmissionSchema)
def get_planned(planned_id):
    """One waiting-list entry."""
    return beds.get_planned(current_staff(), planned_id)


@blp.route("/waiting-list/<int:planned_id>/admit", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(PlannedAdmitIn())
@idempotent
@blp.response(201, AdmissionSchema)
@blp.alt_response(422, description="admission-declined: the competence check failed today")
def admit_planned(body, planned_id):
    """Admit from the waiting list: the competence check runs again; a bed is taken."""
    at = now()
    admission = beds.admit_planned(current_staff(), planned_id, now=at, **body)
    return admission_view(admission, at)


@blp.route("/waiting-list/<int:planned_id>/cancel", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ReasonIn())
@idempotent
@blp.response(200, PlannedAdmissionSchema)
def cancel_planned(body, planned_id):
    """Take someone off the waiting list, with the reason."""
    return beds.cancel_planned(current_staff(), planned_id, reason=body["reason"], now=now())


@blp.route("/census", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(CensusQuery(), location="query")
@blp.response(200, CensusSchema)
def get_census(query):
    """Today's census and occupancy, beds, expected admissions and discharges (``date`` for
    another day's expected admissions and discharges)."""
    return beds.census(current_staff().unit_id, day=query["day"], now=now())


@blp.route("/census/daily", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(DailyQuery(), location="query")
@blp.response(200, CensusDaySchema(many=True))
def daily(query):
    """A census figure per day (the midnight census) from ``from`` to ``to`` (inclusive;
    default the last 30 days), as on the inspector's report."""
    at, zone = now(), unit_zone()
    end_day = query["end"] or at.astimezone(zone).date()
    start_day = query["start"] or end_day - timedelta(days=29)
    if start_day > end_day:
        raise ValidationFailed("from is after to.", errors={"from": ["After to."]})
    if (end_day - start_day).days > 400:
        raise ValidationFailed("At most 400 days.", errors={"from": ["Period too long."]})
    start, end = _day_start(start_day, zone), _day_start(end_day + timedelta(days=1), zone)
    return beds.daily_census(current_staff().unit_id, start, end, zone, at)


def _day_start(day: date, zone) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


# --- pages -----------------------------------------------------------------------------------

@pages.route("/beds")
@roles_required(ALL_ROLES)
def beds_page():
    """Beds and who is in them, today's census, the waiting list and expected discharges."""
    staff, at = current_staff(), now()
    state = beds.census(staff.unit_id, day=None, now=at)
    return render_template("unit/beds.html", c=state, waiting=beds.list_planned(staff, status="waiting"),
                           key=new_key, labels=SETTING_LABELS)


@pages.route("/waiting-list/new", methods=["GET", "POST"])
@roles_required(CLINICAL_STAFF)
def accept_page():
    """Accept a referral onto the waiting list, with the competence check shown live."""
    from unit.pages import _flatten, _referral_from_form

    staff, form, errors, declined = current_staff(), request.form, {}, None
    if request.method == "POST":
        body = {**_referral_from_form(form), "planned_date": form.get("planned_date", ""),
                "planned_stay_days": number("planned_stay_days") or 7}
        for who in ("referrer", "gp"):
            contact = {part: text(f"{who}_{part}") for part in ("name", "organisation", "address", "contact")}
            if any(contact.values()):
                body[who] = {k: v for k, v in contact.items() if v is not None}
        body["note"] = text("note")
        try:
            loaded = PlannedAdmissionIn().load(body)
        except ValidationError as invalid:
            messages = dict(invalid.messages)
            for who in ("referrer", "gp"):
                nested = messages.pop(who, None) or {}
                for part, words in (nested.items() if isinstance(nested, dict) else [("name", nested)]):
                    messages[f"{who}_{part}"] = words
            errors = _flatten(messages)
        else:
            def save():
                planned = beds.accept_referral(staff, now=now(), **loaded)
                flash(f"{planned.resident['name']} is on the waiting list for "
                      f"{planned.planned_date:%d %b %Y}.")
                return redirect(url_for("beds_pages.beds_page"), code=303)

            response = form_write(save, back=url_for("beds_pages.accept_page"), failed="Not accepted")
            if response.location.endswith(url_for("beds_pages.beds_page")):
                return response
            declined = True  # the refusal was flashed: the form again, as it was typed
    status = 422 if errors or declined else 200
    return render_template("unit/waiting_new.html", form=form, errors=errors, declined=declined,
                           idempotency_key=new_key(), substances=SUBSTANCES, labels=SETTING_LABELS,
                           model=model_at(staff.unit_id, now())), status


@pages.route("/waiting-list/<int:planned_id>/admit", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def admit_planned_page(planned_id: int):
    """Admit from the waiting list (the competence check runs again)."""
    staff = current_staff()

    def save():
        admission = beds.admit_planned(staff, planned_id, assessment=None,
                                       bed_id=_bed_field(), now=now())
        flash(f"{admission.resident.name} admitted.")
        return redirect(url_for("unit_pages.resident", admission_id=admission.id), code=303)

    return form_write(save, back=url_for("beds_pages.beds_page"), failed="Not admitted")


@pages.route("/waiting-list/<int:planned_id>/cancel", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def cancel_planned_page(planned_id: int):
    """Take someone off the waiting list."""
    staff = current_staff()

    def save():
        body = ReasonIn().load({"reason": text("reason") or ""})
        planned = beds.cancel_planned(staff, planned_id, reason=body["reason"], now=now())
        flash(f"{planned.resident['name']} taken off the waiting list.")
        return redirect(url_for("beds_pages.beds_page"), code=303)

    return form_write(save, back=url_for("beds_pages.beds_page"), failed="Not cancelled")


@pages.route("/beds/new", methods=["POST"])
@roles_required(MANAGERS)
def add_bed_page():
    """Put a bed into service."""
    staff = current_staff()

    def save():
        body = BedIn().load({"name": request.form.get("name", "")})
        bed = beds.add_bed(staff, name=body["name"], now=now())
        flash(f"Bed {bed.name} is in service.")
        return redirect(url_for("beds_pages.beds_page"), code=303)

    return form_write(save, back=url_for("beds_pages.beds_page"), failed="Bed not added")


@pages.route("/beds/<int:bed_id>/close", methods=["POST"])
@roles_required(MANAGERS)
def close_bed_page(bed_id: int):
    """Take a bed out of service."""
    staff = current_staff()

    def save():
        body = ReasonIn().load({"reason": text("reason") or ""})
        bed = beds.close_bed(staff, bed_id, reason=body["reason"], now=now())
        flash(f"Bed {bed.name} is out of service.")
        return redirect(url_for("beds_pages.beds_page"), code=303)

    return form_write(save, back=url_for("beds_pages.beds_page"), failed="Bed not closed")


def _bed_field() -> int | None:
    from unit.schemas import whole_number

    value = whole_number(request.form.get("bed_id") or "")
    return value if value and value < 2**31 else None


@pages.route("/admissions/<int:admission_id>/bed", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def assign_bed_page(admission_id: int):
    """Put a resident in a bed, or move them."""
    staff = current_staff()
    back = request.form.get("next") or url_for("unit_pages.resident", admission_id=admission_id)
    from unit.pages import safe_next

    back = safe_next(back, url_for("unit_pages.resident", admission_id=admission_id))

    def save():
        body = BedAssignIn().load({"bed_id": _bed_field()})
        assignment = beds.assign_bed(staff, admission_id, bed_id=body["bed_id"], now=now())
        flash(f"In bed {assignment.bed.name}.")
        return redirect(back, code=303)

    return form_write(save, back=back, failed="Bed not changed")


@pages.route("/admissions/<int:admission_id>/expected-discharge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def expect_discharge_page(admission_id: int):
    """Set the expected discharge date from the resident page."""
    staff = current_staff()
    back = url_for("unit_pages.resident", admission_id=admission_id)

    def save():
        body = ExpectedDischargeIn().load({"expected_on": request.form.get("expected_on", ""),
                                           "reason": text("reason") or ""})
        row = beds.set_expected_discharge(staff, admission_id, now=now(), **body)
        flash(f"Expected to leave on {row.expected_on:%d %b %Y}.")
        return redirect(back, code=303)

    return form_write(save, back=back, failed="Not saved")


# --- the board and the resident page ---------------------------------------------------------

def census_alerts(unit_id: int, at) -> list:
    """The board's census line: beds taken, expected in and out today, anyone without a bed."""
    from markupsafe import Markup

    from config.partials import partials

    return [Markup(partials("unit/_census.html").line(beds.census(unit_id, day=None, now=at)))]


def resident_section(admission, at) -> list:
    """The resident page's bed and expected discharge, with the forms to change them."""
    from markupsafe import Markup

    bed = beds.bed_of(admission.id)
    expected = beds.expected_discharge(admission.id)
    free = beds.free_beds(admission.unit_id) if admission.status == "active" else []
    return [Markup(render_template("unit/_resident_bed.html", a=admission, bed=bed,
                                   expected=expected, free=free, key=new_key))]


BEDS_BOARD = BoardExtension(alerts=census_alerts, sections=resident_section)
