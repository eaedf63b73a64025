"""The discharge summary, its letter and the follow-up tasks: the JSON API and the pages."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from marshmallow import Schema, fields, validate

from config.clock import now
from config.api import ApiBlueprint
from config.idempotency import idempotent
from unit import discharge
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.beds_views import ContactIn, ContactSchema
from unit.discharge_letter import RECIPIENTS, aftercare_lines, letter_pdf
from unit.fields import Text
from unit.forms import form_write, local_time, new_key, text
from unit.pages import BoardExtension
from unit.schemas import StaffSchema, StrictBool, Timestamp

blp = ApiBlueprint("discharge_api", __name__, url_prefix="/api/v1",
                   description="Discharge summaries, the letter to the GP and the referrer, follow-up tasks")
pages = Blueprint("discharge_pages", __name__, template_folder="templates")


# --- schemas ---------------------------------------------------------------------------------

class AftercareIn(Schema):
    """The aftercare plan; only the keys given change."""

    onward_rehab = Text(500, allow_none=True, metadata={"description": "Onward residential rehabilitation"})
    community_team = Text(500, allow_none=True, metadata={"description": "Community drug and alcohol team"})
    mutual_aid = fields.List(Text(100), validate=validate.Length(max=10),
                             metadata={"description": "e.g. AA, NA, SMART Recovery"})
    gp_follow_up = Text(1000, allow_none=True)
    naloxone_supplied = StrictBool(allow_none=True)
    naloxone_detail = Text(300, allow_none=True, metadata={"description": "e.g. the kit and the training given"})
    naloxone_not_supplied_reason = Text(500, allow_none=True)
    tolerance_explained = StrictBool(allow_none=True,
                                     metadata={"description": "Loss of opioid tolerance and the overdose risk explained"})
    medication_on_discharge = Text(1000, allow_none=True)


class NamedContactIn(Schema):
    role = Text(100, required=True, metadata={"description": "e.g. key worker, family"})
    name = Text(200, required=True)
    contact = Text(200, load_default=None, allow_none=True)


class SummaryIn(Schema):
    aftercare = fields.Nested(AftercareIn)
    contacts = fields.List(fields.Nested(NamedContactIn), validate=validate.Length(max=20))
    gp = fields.Nested(ContactIn, allow_none=True)
    referrer = fields.Nested(ContactIn, allow_none=True)
    note = Text(4000, allow_none=True)


class FollowUpIn(Schema):
    title = Text(300, 3, required=True)
    due_at = Timestamp(required=True)


class FinaliseIn(Schema):
    follow_ups = fields.List(fields.Nested(FollowUpIn), load_default=list, validate=validate.Length(max=10),
                             metadata={"description": "Besides the call within 72 hours, always set"})


class TaskDoneIn(Schema):
    outcome = Text(2000, 3, required=True)


class TaskQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "done")))


class LetterQuery(Schema):
    to = fields.String(load_default="gp", validate=validate.OneOf(tuple(RECIPIENTS)))


class SectionSchema(Schema):
    key = fields.String()
    title = fields.String()
    lines = fields.List(fields.String())
    table = fields.Dict(allow_none=True)


class TaskSchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    resident = fields.Function(lambda t: t.admission.resident.name)
    title = fields.String()
    due_at = fields.DateTime()
    done_at = fields.DateTime(allow_none=True)
    done_by = fields.Nested(StaffSchema, allow_none=True)
    outcome = fields.String(allow_none=True)


class SummarySchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    resident = fields.Function(lambda s: discharge.resident_facts(s.admission))
    status = fields.String()
    aftercare = fields.Dict()
    aftercare_text = fields.Function(aftercare_lines)
    contacts = fields.List(fields.Dict())
    gp = fields.Nested(ContactSchema, allow_none=True)
    referrer = fields.Nested(ContactSchema, allow_none=True)
    note = fields.String(allow_none=True)
    sections = fields.Function(lambda s: SectionSchema(many=True).dump(discharge.sections_of(s)))
    naloxone_required = fields.Function(lambda s: discharge.needs_naloxone(s.admission),
                                        metadata={"description": "Why naloxone is needed (empty: it is not)"})
    missing = fields.Function(lambda s: discharge.missing_for_final(s) if s.status == "draft" else {},
                              metadata={"description": "What must be written before signing off"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    finalised_at = fields.DateTime(allow_none=True)
    finalised_by = fields.Nested(StaffSchema, allow_none=True)
    follow_ups = fields.Function(lambda s: TaskSchema(many=True).dump(
        [t for t in discharge.tasks_of(s.admission_id)]))


# --- API -------------------------------------------------------------------------------------

@blp.route("/admissions/<int:admission_id>/discharge-summary", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, SummarySchema)
def get_summary(admission_id):
    """The discharge summary (sections as they are now while a draft, frozen once signed off)."""
    return discharge.get_summary(current_staff(), admission_id)


@blp.route("/admissions/<int:admission_id>/discharge-summary", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(SummaryIn())
@idempotent
@blp.response(200, SummarySchema)
def save_summary(body, admission_id):
    """Write the draft: aftercare plan (keys given change), contacts, the GP and the referrer."""
    values = {name: body.get(name) for name in ("aftercare", "contacts", "gp", "referrer", "note")}
    return discharge.save_summary(current_staff(), admission_id, now=now(), fields_given=set(body), **values)


@blp.route("/admissions/<int:admission_id>/discharge-summary/finalise", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(FinaliseIn())
@idempotent
@blp.response(200, SummarySchema)
@blp.alt_response(422, description="discharge-summary-incomplete: `errors` names what is missing")
def finalise(body, admission_id):
    """Sign the summary off; the call within 72 hours (and any follow-ups given) are set."""
    return discharge.finalise_summary(current_staff(), admission_id, follow_ups=body["follow_ups"], now=now())


@blp.route("/admissions/<int:admission_id>/discharge-summary/letter", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(LetterQuery(), location="query")
@blp.response(200, description="The letter (application/pdf)")
@blp.doc(responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def letter(query, admission_id):
    """The discharge letter as a PDF for the GP (``to=gp``) or the referrer (``to=referrer``)."""
    staff, at = current_staff(), now()
    summary = discharge.letter_ready(staff, admission_id, query["to"])
    name = summary.admission.resident.name.replace(" ", "-")
    return Response(letter_pdf(summary, staff.unit.name, query["to"], at), mimetype="application/pdf",
                    headers={"Content-Disposition":
                             f'attachment; filename="discharge-{name}-{query["to"]}.pdf"'})


@blp.route("/follow-ups", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(TaskQuery(), location="query")
@blp.response(200, TaskSchema(many=True))
def list_tasks(query):
    """The unit's follow-up tasks after discharge (``status=open`` or ``done``)."""
    return discharge.list_tasks(current_staff(), status=query["status"])


@blp.route("/follow-ups/<int:task_id>/done", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(TaskDoneIn())
@idempotent
@blp.response(200, TaskSchema)
def task_done(body, task_id):
    """Mark a follow-up done, with its outcome (it leaves the board)."""
    return discharge.complete_task(current_staff(), task_id, outcome=body["outcome"], now=now())


# --- pages -----------------------------------------------------------------------------------

def _page(admission_id: int) -> str:
    return url_for("discharge_pages.summary_page", admission_id=admission_id)


@pages.route("/admissions/<int:admission_id>/discharge-summary")
@roles_required(ALL_ROLES)
def summary_page(admission_id: int):
    """The summary: what the stay was, the aftercare plan to write, signing off, the letters."""
    staff = current_staff()
    summary = discharge.summary_or_none(staff, admission_id)
    admission = summary.admission if summary else discharge.discharged_admission(staff, admission_id)
    return render_template("unit/discharge_summary.html", a=admission, s=summary,
                           sections=discharge.sections_of(summary) if summary else discharge.build_sections(admission),
                           missing=discharge.missing_for_final(summary) if summary and summary.status == "draft" else {},
                           naloxone=discharge.needs_naloxone(admission),
                           aftercare=aftercare_lines(summary) if summary else [],
                           tasks=discharge.tasks_of(admission_id), items=discharge.AFTERCARE_ITEMS,
                           facts=discharge.resident_facts(admission), key=new_key, now=now())


def _contact(prefix: str) -> dict | None:
    contact = {part: text(f"{prefix}_{part}") for part in ("name", "organisation", "address", "contact")}
    return {k: v for k, v in contact.items() if v is not None} if any(contact.values()) else None


@pages.route("/admissions/<int:admission_id>/discharge-summary", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def save_page(admission_id: int):
    """Save the draft from the summary page."""
    staff = current_staff()
    form = request.form

    def tri(name: str):
        return {"yes": True, "no": False}.get(form.get(name, ""))

    def save():
        contacts = [{"role": text(f"contact{n}_role") or "", "name": text(f"contact{n}_name") or "",
                     "contact": text(f"contact{n}_contact")}
                    for n in range(3) if text(f"contact{n}_role") or text(f"contact{n}_name")]
        body = SummaryIn().load({
            "aftercare": {"onward_rehab": text("onward_rehab"), "community_team": text("community_team"),
                          "mutual_aid": [part.strip() for part in (form.get("mutual_aid") or "").split(",")
                                         if part.strip()],
                          "gp_follow_up": text("gp_follow_up"), "naloxone_supplied": tri("naloxone_supplied"),
                          "naloxone_detail": text("naloxone_detail"),
                          "naloxone_not_supplied_reason": text("naloxone_not_supplied_reason"),
                          "tolerance_explained": form.get("tolerance_explained") == "yes" or None,
                          "medication_on_discharge": text("medication_on_discharge")},
            "contacts": contacts, "gp": _contact("gp"), "referrer": _contact("referrer"), "note": text("note")})
        discharge.save_summary(staff, admission_id, now=now(), fields_given=set(body),
                               **{name: body.get(name) for name in ("aftercare", "contacts", "gp", "referrer", "note")})
        flash("Discharge summary saved.")
        return redirect(_page(admission_id), code=303)

    return form_write(save, back=_page(admission_id), failed="Not saved")


@pages.route("/admissions/<int:admission_id>/discharge-summary/finalise", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def finalise_page(admission_id: int):
    """Sign the summary off from its page (with one more follow-up, if given)."""
    staff = current_staff()

    def save():
        extra = []
        if text("follow_up_title"):
            extra.append({"title": text("follow_up_title"), "due_at": local_time("follow_up_due_at") or ""})
        body = FinaliseIn().load({"follow_ups": extra})
        discharge.finalise_summary(staff, admission_id, follow_ups=body["follow_ups"], now=now())
        flash("Discharge summary signed off: the letters are ready and the follow-up call is on the board.")
        return redirect(_page(admission_id), code=303)

    return form_write(save, back=_page(admission_id), failed="Not signed off")


@pages.route("/follow-ups/<int:task_id>/done", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def task_done_page(task_id: int):
    """Mark a follow-up done from the board."""
    staff = current_staff()
    back = url_for("unit_pages.board")

    def save():
        body = TaskDoneIn().load({"outcome": text("outcome") or ""})
        task = discharge.complete_task(staff, task_id, outcome=body["outcome"], now=now())
        flash(f"Done: {task.title}.")
        return redirect(back, code=303)

    return form_write(save, back=back, failed="Not marked done")


# --- the board and the resident page ---------------------------------------------------------

def board_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """Follow-up tasks until done (red once overdue) and summaries still to sign off."""
    tasks, drafts = discharge.open_tasks(unit_id), discharge.summaries_to_write(unit_id)
    if not tasks and not drafts:
        return []
    return [Markup(render_template("unit/_discharge_alerts.html", tasks=tasks, drafts=drafts, now=at,
                                   key=new_key))]


def resident_sections(admission, at: datetime) -> list[Markup]:
    """A discharged resident's page links to the summary."""
    if admission.status != "discharged":
        return []
    summary = discharge.summary_for(admission.id)
    return [Markup(render_template("unit/_resident_discharge.html", a=admission, s=summary))]


DISCHARGE_BOARD = BoardExtension(alerts=board_alerts, sections=resident_sections)
