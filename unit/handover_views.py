"""The shift handover: the JSON API and the pages (the sheet, signing, acknowledging, printing)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from config.clock import now
from config.api import ApiBlueprint
from config.idempotency import idempotent
from unit import handover as handovers
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.fields import Text
from unit.forms import form_write, new_key, text
from unit.schemas import StaffSchema

# The outgoing nurse in charge signs, the incoming nurse acknowledges (or a manager).
NURSES = frozenset({"nurse", "manager"})

blp = ApiBlueprint("handover_api", __name__, url_prefix="/api/v1",
                   description="The shift handover: SBAR per resident, signed and acknowledged")
pages = Blueprint("handover_pages", __name__, template_folder="templates")


class EntryIn(Schema):
    """A resident's SBAR: the parts given are saved (the version before is kept)."""

    situation = fields.String(validate=validate.Length(max=4000))
    background = fields.String(validate=validate.Length(max=4000))
    assessment = fields.String(validate=validate.Length(max=4000))
    recommendation = fields.String(validate=validate.Length(max=4000))

    @validates_schema
    def something(self, data, **kwargs):
        if not data:
            raise ValidationError("Give at least one of situation, background, assessment, "
                                  "recommendation.", "situation")


class AcknowledgeIn(Schema):
    note = Text(2000, load_default=None, allow_none=True)


class FactSchema(Schema):
    part = fields.String()
    text = fields.String()
    live = fields.Boolean(metadata={"description": "A live escalation (frozen at signing)"})


class RevisionSchema(Schema):
    revision = fields.Integer()
    situation = fields.String()
    background = fields.String()
    assessment = fields.String()
    recommendation = fields.String()
    saved_at = fields.DateTime()
    saved_by = fields.Nested(StaffSchema, allow_none=True)


class EntrySchema(Schema):
    id = fields.Integer()
    admission_id = fields.Integer()
    resident = fields.Function(lambda e: e.admission.resident.name)
    situation = fields.String()
    background = fields.String()
    assessment = fields.String()
    recommendation = fields.String()
    facts = fields.List(fields.Nested(FactSchema))
    live = fields.List(fields.Nested(FactSchema), metadata={
        "description": "Live escalations: as frozen at signing, else as last read"})
    revision = fields.Integer()
    updated_at = fields.DateTime()
    updated_by = fields.Nested(StaffSchema, allow_none=True)


class HandoverBriefSchema(Schema):
    id = fields.Integer()
    shift = fields.String()
    shift_start = fields.DateTime()
    shift_end = fields.DateTime()
    status = fields.String()
    created_at = fields.DateTime()
    created_by = fields.Nested(StaffSchema)
    facts_at = fields.DateTime()
    signed_at = fields.DateTime(allow_none=True)
    signed_by = fields.Nested(StaffSchema, allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    acknowledged_by = fields.Nested(StaffSchema, allow_none=True)
    acknowledgement_note = fields.String(allow_none=True)
    residents = fields.Function(lambda h: len(h.entries))


class HandoverSchema(HandoverBriefSchema):
    entries = fields.List(fields.Nested(EntrySchema))


# --- API -------------------------------------------------------------------------------------

@blp.route("/handovers", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@idempotent
@blp.response(201, HandoverSchema)
@blp.alt_response(409, description="handover-exists: this shift's handover was started (its `handover_id`)")
def start():
    """Start the handover of the shift now running (an SBAR per resident, pre-filled)."""
    return handovers.start_handover(current_staff(), now=now())


@blp.route("/handovers", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, HandoverBriefSchema(many=True))
def list_handovers():
    """The unit's handovers, newest shift first (the history)."""
    return handovers.list_handovers(current_staff())


@blp.route("/handovers/<int:handover_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, HandoverSchema)
def get_handover(handover_id):
    """One handover with every resident's SBAR and facts."""
    return handovers.get_handover(current_staff(), handover_id)


@blp.route("/handovers/<int:handover_id>/entries/<int:entry_id>", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(EntryIn())
@idempotent
@blp.response(200, EntrySchema)
def edit_entry(body, handover_id, entry_id):
    """Save a resident's SBAR (a draft handover only; every version is kept)."""
    return handovers.edit_entry(current_staff(), handover_id, entry_id, texts=body, now=now())


@blp.route("/handovers/<int:handover_id>/entries/<int:entry_id>/revisions", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, RevisionSchema(many=True))
def entry_revisions(handover_id, entry_id):
    """An entry's earlier versions, oldest first."""
    return handovers.revisions(current_staff(), handover_id, entry_id)


@blp.route("/handovers/<int:handover_id>/refresh", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@idempotent
@blp.response(200, HandoverSchema)
def refresh(handover_id):
    """Read the shift's facts again and add anyone admitted since (texts are kept)."""
    return handovers.refresh_handover(current_staff(), handover_id, now=now())


@blp.route("/handovers/<int:handover_id>/sign", methods=["POST"])
@roles_required(NURSES)
@idempotent
@blp.response(200, HandoverSchema)
def sign(handover_id):
    """The outgoing nurse in charge signs (live escalations are frozen with the signature)."""
    return handovers.sign_handover(current_staff(), handover_id, now=now())


@blp.route("/handovers/<int:handover_id>/acknowledge", methods=["POST"])
@roles_required(NURSES)
@blp.arguments(AcknowledgeIn())
@idempotent
@blp.response(200, HandoverSchema)
def acknowledge(body, handover_id):
    """The incoming nurse has read the handover."""
    return handovers.acknowledge_handover(current_staff(), handover_id, note=body["note"], now=now())


# --- pages -----------------------------------------------------------------------------------

def _sheet(handover_id: int) -> str:
    return url_for("handover_pages.sheet", handover_id=handover_id)


@pages.route("/handovers")
@roles_required(ALL_ROLES)
def handovers_page():
    """This shift's handover (or a button to start it) and the history."""
    staff, at = current_staff(), now()
    shift, start, end = handovers.shift_at(at)
    return render_template("unit/handovers.html", rows=handovers.list_handovers(staff),
                           current=handovers.current_handover(staff.unit_id, at), shift=shift,
                           shift_start=start, shift_end=end, key=new_key)


@pages.route("/handovers/new", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def start_page():
    """Start this shift's handover and open it."""
    staff = current_staff()

    def save():
        handover = handovers.start_handover(staff, now=now())
        flash(f"Handover of the {handover.shift} shift started: {len(handover.entries)} residents, "
              "pre-filled from the shift's record.")
        return redirect(_sheet(handover.id), code=303)

    return form_write(save, back=url_for("handover_pages.handovers_page"), failed="Not started")


@pages.route("/handovers/<int:handover_id>")
@roles_required(ALL_ROLES)
def sheet(handover_id: int):
    """The handover sheet: each resident's facts and SBAR, signing and acknowledging."""
    staff, at = current_staff(), now()
    handover = handovers.get_handover(staff, handover_id)
    return render_template("unit/handover.html", h=handover, key=new_key, parts=handovers.SBAR,
                           titles=handovers.SBAR_TITLES, may_sign=handovers.may_sign(staff, handover, at))


@pages.route("/handovers/<int:handover_id>/print")
@roles_required(ALL_ROLES)
def print_sheet(handover_id: int):
    """The whole unit's handover for print: one page per ten residents."""
    handover = handovers.get_handover(current_staff(), handover_id)
    pages_ = handovers.pages_of(handover)
    return render_template("unit/handover_print.html", h=handover, pages=pages_, parts=handovers.SBAR,
                           titles=handovers.SBAR_TITLES)


@pages.route("/handovers/<int:handover_id>/entries/<int:entry_id>", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def edit_page(handover_id: int, entry_id: int):
    """Save one resident's SBAR from the sheet."""
    staff = current_staff()
    back = _sheet(handover_id) + f"#entry-{entry_id}"

    def save():
        body = EntryIn().load({part: (request.form.get(part) or "").replace("\r\n", "\n").strip()
                               for part in handovers.SBAR if part in request.form})
        entry = handovers.edit_entry(staff, handover_id, entry_id, texts=body, now=now())
        flash(f"Saved {entry.admission.resident.name}'s handover.")
        return redirect(back, code=303)

    return form_write(save, back=back, failed="Not saved")


def _action(handover_id: int, run, done: str, failed: str):
    back = _sheet(handover_id)

    def save():
        run()
        flash(done)
        return redirect(back, code=303)

    return form_write(save, back=back, failed=failed)


@pages.route("/handovers/<int:handover_id>/refresh", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def refresh_page(handover_id: int):
    """Read the shift's facts again from the sheet."""
    staff = current_staff()
    return _action(handover_id, lambda: handovers.refresh_handover(staff, handover_id, now=now()),
                   "Facts read again; anyone admitted since has an entry.", "Not refreshed")


@pages.route("/handovers/<int:handover_id>/sign", methods=["POST"])
@roles_required(NURSES)
def sign_page(handover_id: int):
    """Sign the handover from the sheet (the outgoing nurse in charge)."""
    staff = current_staff()
    return _action(handover_id, lambda: handovers.sign_handover(staff, handover_id, now=now()),
                   "Handover signed: the incoming nurse acknowledges it.", "Not signed")


@pages.route("/handovers/<int:handover_id>/acknowledge", methods=["POST"])
@roles_required(NURSES)
def acknowledge_page(handover_id: int):
    """Acknowledge the handover from the sheet (the incoming nurse)."""
    staff = current_staff()

    def run():
        body = AcknowledgeIn().load({"note": text("note")})
        handovers.acknowledge_handover(staff, handover_id, note=body["note"], now=now())

    return _action(handover_id, run, "Handover acknowledged.", "Not acknowledged")
