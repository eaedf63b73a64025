"""Medication's part of the inspection report: doses, PRN use, safety refusals, CD reconciliation."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import aliased

from config.extensions import db
from medication.drugs import REGISTER_DRUGS
from medication.models import Administration, CDRegisterEntry, MedicationOrder, SafetyRefusal
from medication.register import discrepancies
from unit.models import Admission, Resident, Staff, Unit
from unit.report import ReportSection, Table


def medication_section(unit: Unit, start: datetime, end: datetime, now: datetime | None = None) -> dict:
    """Doses by outcome, PRN use per resident, safety refusals, register reconciliation, and
    phone orders not countersigned by their deadline."""
    in_period = [Administration.unit_id == unit.id, Administration.given_at >= start, Administration.given_at < end]
    outcomes = {o: 0 for o in ("given", "refused", "withheld", "omitted")}
    outcomes.update(dict(db.session.execute(select(Administration.outcome, sa.func.count())
                                            .where(*in_period).group_by(Administration.outcome)).all()))
    by_drug = [{"drug": d, "outcome": o, "doses": n, "mg": float(mg or 0)} for d, o, n, mg in db.session.execute(
        select(Administration.drug, Administration.outcome, sa.func.count(), sa.func.sum(Administration.dose_mg))
        .where(*in_period).group_by(Administration.drug, Administration.outcome)
        .order_by(Administration.drug, Administration.outcome))]
    prn = [{"admission_id": a, "resident": name, "drug": d, "doses": n, "mg": float(mg or 0)}
           for a, name, d, n, mg in db.session.execute(
               select(Administration.admission_id, Resident.name, Administration.drug, sa.func.count(),
                      sa.func.sum(Administration.dose_mg))
               .join(MedicationOrder, MedicationOrder.id == Administration.order_id)
               .join(Admission, Admission.id == Administration.admission_id).join(Resident)
               .where(*in_period, Administration.outcome == "given", MedicationOrder.kind == "prn")
               .group_by(Administration.admission_id, Resident.name, Administration.drug)
               .order_by(Administration.admission_id))]
    refusals = dict(db.session.execute(select(SafetyRefusal.check, sa.func.count()).where(
        SafetyRefusal.unit_id == unit.id, SafetyRefusal.at >= start, SafetyRefusal.at < end)
        .group_by(SafetyRefusal.check)).all())
    register = []
    for drug in REGISTER_DRUGS:
        entries = db.session.scalars(select(CDRegisterEntry).where(
            CDRegisterEntry.unit_id == unit.id, CDRegisterEntry.drug == drug.code, CDRegisterEntry.at < end)
            .order_by(CDRegisterEntry.seq)).all()
        if not entries:
            continue
        opening = next((e.balance_mg for e in reversed(entries) if e.at < start), 0.0)
        period = [e for e in entries if e.at >= start]
        found = [{"seq": e.seq, "at": e.at.isoformat(), "counted_mg": e.counted_mg, "balance_mg": e.balance_mg}
                 for e in discrepancies(unit.id, drug.code) if start <= e.at < end]
        given = sum(-e.amount_mg for e in period if e.kind == "administration")
        eMAR_given = float(db.session.scalar(select(sa.func.coalesce(sa.func.sum(Administration.dose_mg), 0)).where(
            *in_period, Administration.drug == drug.code, Administration.outcome == "given")) or 0)
        register.append({"drug": drug.code, "opening_mg": opening, "closing_mg": entries[-1].balance_mg,
                         "received_mg": sum(e.amount_mg for e in period if e.kind == "receipt"),
                         "administered_mg": given, "emar_given_mg": eMAR_given,
                         "register_matches_emar": abs(given - eMAR_given) < 1e-6,
                         "entries": len(period), "negative_balance": entries[-1].balance_mg < 0,
                         "discrepancies": found})
    return {"doses": outcomes, "uncountersigned_phone_orders": uncountersigned_phone_orders(unit, start, end, now), "by_drug": by_drug, "prn_per_resident": prn,
            "safety_refusals": dict(sorted(refusals.items())), "safety_refusals_total": sum(refusals.values()),
            "cd_register": register}


def uncountersigned_phone_orders(unit: Unit, start: datetime, end: datetime, now: datetime | None) -> list[dict]:
    """Phone orders whose countersign deadline (default 24 h) fell in the period, had passed by
    ``now``, and found no countersignature by then: still unsigned (``countersigned_at`` null) or
    signed late. Issue 5: such orders are "listed in the audit"."""
    until = min(end, now) if now is not None else end
    if until <= start:
        return []
    prescriber = aliased(Staff)
    rows = db.session.execute(
        select(MedicationOrder, Resident.name, prescriber.username)
        .join(Admission, Admission.id == MedicationOrder.admission_id).join(Resident)
        .join(prescriber, prescriber.id == MedicationOrder.prescriber_id)
        .where(MedicationOrder.unit_id == unit.id, MedicationOrder.phone_order.is_(True),
               MedicationOrder.countersign_due_at >= start, MedicationOrder.countersign_due_at < until,
               sa.or_(MedicationOrder.countersigned_at.is_(None),
                      MedicationOrder.countersigned_at > MedicationOrder.countersign_due_at))
        .order_by(MedicationOrder.countersign_due_at, MedicationOrder.id)).all()
    return [{"order_id": o.id, "admission_id": o.admission_id, "resident": name, "drug": o.drug,
             "prescriber": username, "ordered_at": o.created_at.isoformat(),
             "deadline": o.countersign_due_at.isoformat(),
             "countersigned_at": o.countersigned_at.isoformat() if o.countersigned_at else None}
            for o, name, username in rows]


# --- the section, as the report composes it (unit.report) --------------------------------------

def medication_tables(med: dict) -> dict[str, Table]:
    """The medication section's tables for the CSV and PDF exports."""
    return {
        "doses": (["drug", "outcome", "doses", "mg"], [[d["drug"], d["outcome"], d["doses"], d["mg"]] for d in med["by_drug"]]),
        "prn_per_resident": (["admission_id", "resident", "drug", "doses", "mg"],
                             [[p["admission_id"], p["resident"], p["drug"], p["doses"], p["mg"]] for p in med["prn_per_resident"]]),
        "safety_refusals": (["check", "count"], [[k, v] for k, v in med["safety_refusals"].items()]),
        "uncountersigned_phone_orders": (["order_id", "resident", "drug", "prescriber", "ordered_at", "deadline",
                                          "countersigned_at"],
                                         [[o["order_id"], o["resident"], o["drug"], o["prescriber"], o["ordered_at"],
                                           o["deadline"], o["countersigned_at"]]
                                          for o in med["uncountersigned_phone_orders"]]),
        "cd_register": (["drug", "opening_mg", "received_mg", "administered_mg", "emar_given_mg", "closing_mg",
                         "register_matches_emar", "discrepancies"],
                        [[r["drug"], r["opening_mg"], r["received_mg"], r["administered_mg"], r["emar_given_mg"],
                          r["closing_mg"], r["register_matches_emar"], len(r["discrepancies"])] for r in med["cd_register"]]),
    }


REPORT_SECTIONS = (
    ReportSection("medication", lambda p: medication_section(p.unit, p.start, p.end, p.now), medication_tables,
                  titles={"prn_per_resident": "PRN doses per resident", "cd_register": "Controlled-drug register",
                          "uncountersigned_phone_orders": "Phone orders not countersigned in time"}),
)
