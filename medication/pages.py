"""Nurses' medication pages: due doses, giving a dose (with the witness step), the CD register."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from marshmallow import ValidationError

from config.clock import now
from config.errors import DomainError
from config.extensions import db
from config.idempotency import fingerprint_of, run_once
from medication import emar, orders
from medication import register as cd_register
from medication.drugs import DRUGS, REGISTER_DRUGS
from medication.errors import OrderInvalid, RegisterInvalid
from medication.models import REASON_CODES
from medication.schemas import AdministrationIn
from monitoring.charts import Marker
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.models import Admission
from unit.pages import BoardExtension
from unit.schemas import whole_number

bp = Blueprint("medication_pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/medication")


@bp.route("/doses")
@roles_required(ALL_ROLES)
def due():
    """Doses due now and overdue, and PRN doses available now with the reason."""
    return render_template("medication/due.html", due=emar.due_doses(current_staff(), now()), drugs=DRUGS)


def _number(text: str | None, *, whole: bool = False) -> Any:
    """A form field as the number the schema expects; text that is no number goes on as text,
    for the schema to refuse with the field's name."""
    if not text:
        return None
    if whole:
        number = whole_number(text)
        return text if number is None else number
    try:
        return float(text) if text.isascii() else text
    except ValueError:
        return text


def _administration_form(form) -> dict[str, Any]:
    """The give form as ``AdministrationIn`` input (the API's own schema checks it)."""
    witness = ({"username": form.get("witness_username", ""), "password": form.get("witness_password", "")}
               if form.get("witness_username") else None)
    return {"outcome": form.get("outcome", "given"), "dose_mg": _number(form.get("dose_mg")),
            "reason": form.get("reason") or None, "note": form.get("note") or None, "witness": witness,
            "scheduled_dose_id": _number(form.get("scheduled_dose_id"), whole=True)}


def _field_errors(errors: dict, prefix: str = "") -> list[str]:
    """Field errors in words, nested fields named in full ("witness password: ...")."""
    lines = []
    for field, messages in errors.items():
        name = f"{prefix}{field}"
        if isinstance(messages, dict):
            lines += _field_errors(messages, f"{name} ")
        else:
            lines.append(f"{name}: {' '.join(messages) if isinstance(messages, list) else messages}")
    return lines


@bp.route("/orders/<int:order_id>/give", methods=["GET", "POST"])
@roles_required(CLINICAL_STAFF)
def give(order_id: int):
    """Give (or record not given) one dose: one screen, with the witness step for CDs."""
    staff = current_staff()
    order = orders.get_order(staff, order_id)
    admission = db.session.get(Admission, order.admission_id)
    drug = DRUGS[order.drug]
    refusal = error = None
    if request.method == "POST":
        form = request.form

        def save():
            emar.record_administration(staff, order_id, now=now(), **body)
            flash(f"{admission.resident.name}: {drug.name} {body['dose_mg']:g} mg recorded as {body['outcome']}.")
            return redirect(url_for("medication_pages.due"), code=303)

        try:
            body = AdministrationIn().load(_administration_form(form))
            fingerprint = fingerprint_of(order_id, sorted((k, v) for k, v in form.items(multi=True)
                                                          if k != "witness_password"))
            response = run_once(form.get("idempotency_key", ""), fingerprint, save)
            if response.status_code < 400:
                return response
            # The same form sent again after a refusal: show the kept refusal, not its JSON.
            refusal = (response.get_json(silent=True) or {}).get("detail", "The dose was refused.")
        except ValidationError as invalid:
            error = "Not recorded: " + "; ".join(_field_errors(invalid.messages))
        except DomainError as refused:
            if refused.type == "dose-refused":
                refusal = refused.detail
            else:
                error = " ".join([refused.detail, "; ".join(_field_errors(refused.errors or {}))]).strip()
    status = emar.due_doses(staff, now(), admission_id=admission.id)
    mine = [d for d in status["scheduled"] + status["prn"] if d["order_id"] == order_id]
    # The slot chosen on the doses list (?slot=), else the order's earliest due dose.
    slot = request.values.get("slot", type=int)
    entry = next((d for d in mine if slot is not None and d["scheduled_dose_id"] == slot), mine[0] if mine else None)
    return render_template("medication/give.html", order=order, admission=admission, drug=drug, entry=entry,
                           refusal=refusal, error=error, reasons=REASON_CODES,
                           idempotency_key=str(uuid.uuid4())), (409 if refusal else 422 if error else 200)


@bp.route("/cd-register/<drug>")
@roles_required(ALL_ROLES)
def register(drug: str):
    """The printable controlled-drug register of one drug."""
    try:
        book = cd_register.register_book(current_staff(), drug)
    except (OrderInvalid, RegisterInvalid):
        abort(404)  # not a drug, or not one kept in the register
    return render_template("medication/register.html", drug=book.drug, entries=book.entries,
                           balance=book.balance_mg, discrepant={e.id for e in book.discrepancies},
                           registers=REGISTER_DRUGS, at=now())


def resident_sections(admission: Admission, at: datetime) -> list[Markup]:
    """The resident's orders and medication chart (eMAR)."""
    staff = current_staff()
    due = emar.due_doses(staff, at, admission_id=admission.id) if admission.status == "active" else None
    return [Markup(render_template("medication/_resident.html", a=admission, orders=orders.list_orders(
        staff, admission.id), administrations=emar.list_administrations(staff, admission.id, limit=100),
        due=due, drugs=DRUGS))]


def dose_markers(admission_id: int, start: datetime, end: datetime) -> list[Marker]:
    """Doses given, as marks on the resident's score charts."""
    return [Marker(a.given_at, f"{DRUGS[a.drug].name} {a.dose_mg:g} mg")
            for a in emar.doses_given(admission_id, start, end)]


def queue_doses(admission_ids: list[int], at: datetime) -> dict[int, Markup]:
    """Recent doses for the doctor's queue (one query)."""
    return {admission_id: Markup(render_template("medication/_queue_doses.html", doses=doses, drugs=DRUGS))
            for admission_id, doses in emar.recent_doses(admission_ids).items()}


def discrepancy_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """A stock count that did not match the register stays on the board until a witnessed
    correction (or a later count that matches) is recorded: e-mail alone may reach nobody."""
    return [Markup(render_template("medication/_discrepancy.html", entry=entry, drug=DRUGS[entry.drug]))
            for entry in cd_register.discrepancies(unit_id, open_only=True)]


MEDICATION_SECTIONS = BoardExtension(sections=resident_sections, alerts=discrepancy_alerts)
