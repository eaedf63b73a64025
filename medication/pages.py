"""Nurses' medication pages: due doses, giving a dose (with the witness step), the CD register."""
from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from config.clock import now
from config.errors import DomainError
from config.extensions import db
from config.idempotency import fingerprint_of, run_once
from medication import emar, orders
from medication import register as cd_register
from medication.drugs import DRUGS
from medication.models import REASON_CODES, Administration, CDRegisterEntry, MedicationOrder
from monitoring.charts import Marker
from unit.auth import ALL_ROLES, CLINICAL_STAFF, current_staff, roles_required
from unit.models import Admission
from unit.pages import BoardExtension

bp = Blueprint("medication_pages", __name__, template_folder="templates")


@bp.route("/doses")
@roles_required(ALL_ROLES)
def due():
    """Doses due now and overdue, and PRN doses available now with the reason."""
    return render_template("medication/due.html", due=emar.due_doses(current_staff(), now()), drugs=DRUGS)


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
        witness = ({"username": form.get("witness_username", ""), "password": form.get("witness_password", "")}
                   if form.get("witness_username") else None)
        try:
            dose = float(form.get("dose_mg", ""))
        except ValueError:
            dose = -1.0
        outcome = form.get("outcome", "given")

        def save():
            emar.record_administration(
                staff, order_id, outcome=outcome, dose_mg=dose, reason=form.get("reason") or None,
                note=form.get("note") or None, witness=witness,
                scheduled_dose_id=int(form["scheduled_dose_id"]) if form.get("scheduled_dose_id") else None,
                now=now())
            flash(f"{admission.resident.name}: {drug.name} {dose:g} mg recorded as {outcome}.")
            return redirect(url_for("medication_pages.due"), code=303)

        try:
            fingerprint = fingerprint_of(order_id, sorted((k, v) for k, v in form.items(multi=True)
                                                          if k != "witness_password"))
            response = run_once(form.get("idempotency_key", ""), fingerprint, save)
            if response.status_code < 400:
                return response
            # The same form sent again after a refusal: show the kept refusal, not its JSON.
            refusal = (response.get_json(silent=True) or {}).get("detail", "The dose was refused.")
        except DomainError as refused:
            if refused.type == "dose-refused":
                refusal = refused.detail
            else:
                error = refused.detail + (" " + "; ".join(f"{k}: {' '.join(v) if isinstance(v, list) else v}"
                                                          for k, v in refused.errors.items()) if refused.errors else "")
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
    if drug not in DRUGS or not DRUGS[drug].register:
        abort(404)
    staff = current_staff()
    return render_template("medication/register.html", drug=DRUGS[drug],
                           entries=cd_register.register_entries(staff, drug),
                           balance=cd_register.register_balance(staff.unit_id, drug),
                           registers=[d for d in DRUGS.values() if d.register], at=now())


def resident_sections(admission: Admission, at: datetime) -> list[Markup]:
    """The resident's orders and medication chart (eMAR)."""
    orders = list(db.session.scalars(select(MedicationOrder).where(MedicationOrder.admission_id == admission.id)
                                     .order_by(MedicationOrder.created_at.desc())))
    administrations = list(db.session.scalars(select(Administration).where(
        Administration.admission_id == admission.id).order_by(Administration.given_at.desc()).limit(100)))
    due = emar.due_doses(current_staff(), at, admission_id=admission.id) if admission.status == "active" else None
    return [Markup(render_template("medication/_resident.html", a=admission, orders=orders,
                                   administrations=administrations, due=due, drugs=DRUGS))]


def dose_markers(admission_id: int, start: datetime, end: datetime) -> list[Marker]:
    """Doses given, as marks on the resident's score charts."""
    rows = db.session.scalars(select(Administration).where(
        Administration.admission_id == admission_id, Administration.outcome == "given",
        Administration.given_at >= start, Administration.given_at <= end))
    return [Marker(a.given_at, f"{DRUGS[a.drug].name} {a.dose_mg:g} mg") for a in rows]


def queue_doses(admission_ids: list[int], at: datetime) -> dict[int, Markup]:
    """Recent doses for the doctor's queue (one query)."""
    if not admission_ids:
        return {}
    rows = db.session.scalars(select(Administration).where(
        Administration.admission_id.in_(admission_ids), Administration.outcome == "given")
        .order_by(Administration.given_at.desc()).limit(200))
    recent: dict[int, list[Administration]] = {}
    for row in rows:
        recent.setdefault(row.admission_id, [])
        if len(recent[row.admission_id]) < 3:
            recent[row.admission_id].append(row)
    return {admission_id: Markup(render_template("medication/_queue_doses.html", doses=doses, drugs=DRUGS))
            for admission_id, doses in recent.items()}


def discrepancy_alerts(unit_id: int, at: datetime) -> list[Markup]:
    """A stock count that did not match the register stays on the board until a witnessed
    correction (or a later count that matches) is recorded: e-mail alone may reach nobody."""
    latest = (select(CDRegisterEntry.drug, sa.func.max(CDRegisterEntry.seq).label("seq"))
              .where(CDRegisterEntry.unit_id == unit_id,
                     CDRegisterEntry.kind.in_(("stock_check", "correction")))
              .group_by(CDRegisterEntry.drug).subquery())
    rows = db.session.scalars(select(CDRegisterEntry).join(
        latest, sa.and_(CDRegisterEntry.drug == latest.c.drug, CDRegisterEntry.seq == latest.c.seq))
        .where(CDRegisterEntry.unit_id == unit_id, CDRegisterEntry.kind == "stock_check")
        .order_by(CDRegisterEntry.drug))
    return [Markup(render_template("medication/_discrepancy.html", entry=entry, drug=DRUGS[entry.drug]))
            for entry in rows if entry.counted_mg is not None
            and abs(entry.counted_mg - entry.balance_mg) > 1e-6]


MEDICATION_SECTIONS = BoardExtension(sections=resident_sections, alerts=discrepancy_alerts)
