"""The controlled-drug register: a line per movement with its running balance, witnessed
entries and stock checks, and the discrepancies a count finds (Misuse of Drugs Regulations
2001, regs 19-20; docs/clinical-rules.md section 5)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import select

from config.db import unit_of_work
from config.errors import Forbidden
from config.extensions import db
from medication.drugs import DRUGS, Drug, drug_or_invalid
from medication.errors import RegisterInvalid, WitnessInvalid, WitnessRefused, WitnessThrottled
from medication.models import CDRegisterEntry
from unit.audit import record_event
from unit.auth import CLINICAL_STAFF, CredentialsRefused, CredentialsThrottled, check_password_throttled
from unit.models import Staff


# Roles that may witness a controlled drug: those that handle medicines on the unit.
WITNESS_ROLES = CLINICAL_STAFF  # the clinical lead witnesses as a doctor does


def verify_witness(actor: Staff, witness: dict | None, *, now: datetime) -> Staff:
    """The witness confirms with their own credentials; never the giver; same unit, clinical role.

    The password goes through the sign-in throttle (``check_password_throttled``): failures
    count per username with the sign-ins', so the witness field is no faster way to guess a
    password than the sign-in page. Every failure (wrong password, unknown or disabled
    username, staff of another unit, a role that does not witness) gets the same answer,
    "Witness not accepted", and is kept: a sign-in attempt and a ``witness.refused`` audit
    event of the actor's unit. The caller has written nothing before this check.
    """
    if not witness:
        raise WitnessInvalid("A controlled drug needs a second member of staff to witness the dose.",
                             errors={"witness": ["Required for a Schedule 2 or 3 controlled drug."]})
    username = str(witness.get("username") or "").strip().lower()
    if username == actor.username:
        # Checked before the password: the giver's own password is no secret to them.
        raise WitnessInvalid("The witness cannot be the person giving the dose.",
                             errors={"witness": ["Must be a second member of staff."]})
    try:
        return check_password_throttled(username, str(witness.get("password") or ""), address=None,
                                        now=now, purpose="witness", unit_id=actor.unit_id,
                                        roles=WITNESS_ROLES, actor=actor)
    except CredentialsThrottled as throttled:
        minutes = int(current_app.config["LOGIN_FAILURE_WINDOW"].total_seconds() // 60)
        raise WitnessThrottled(
            f"Witness not accepted: too many failed confirmations for {username!r}. Wait {minutes} "
            "minutes, or ask another member of staff to witness.",
            errors={"witness": ["Not accepted."]}, retry_after=throttled.extra.get("retry_after", minutes * 60),
        ) from None
    except CredentialsRefused:
        raise WitnessRefused(
            "Witness not accepted: check the witness's username and password. The witness must be "
            "a nurse, doctor, GP or manager of this unit, signing with their own password.",
            errors={"witness": ["Not accepted."]}) from None


def append_register_entry(unit_id: int, drug: str, *, kind: str, amount_mg: float, actor: Staff,
                          witness: Staff | None, now: datetime, counted_mg: float | None = None,
                          supplier: str | None = None, reference: str | None = None,
                          admission_id: int | None = None, administration_id: int | None = None,
                          corrects_id: int | None = None, note: str | None = None) -> CDRegisterEntry:
    """Append a line to a drug's register with its running balance (flushes; the caller commits)."""
    if db.session.get_bind().dialect.name == "postgresql":
        # Lines are numbered per drug: two doses to different residents at the same moment
        # would both read the same last line and one would fail on the unique seq. Queue them
        # (until commit); the read below then sees the other's line. SQLite writers are serial.
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:unit_id, hashtext(:drug))"),
                           {"unit_id": unit_id, "drug": f"cd-register:{drug}"})
    last = db.session.scalars(select(CDRegisterEntry).where(
        CDRegisterEntry.unit_id == unit_id, CDRegisterEntry.drug == drug)
        .order_by(CDRegisterEntry.seq.desc()).limit(1)).first()
    balance = round((last.balance_mg if last else 0.0) + amount_mg, 4)
    # A dose given is never refused for paperwork: a balance below zero shows on the register
    # as a discrepancy to investigate. Stock cannot otherwise leave a register it is not in.
    if balance < 0 and kind != "administration":
        raise RegisterInvalid(f"The register balance of {drug} would go below zero ({balance:g} mg): "
                              "record the receipt first, or a witnessed correction.")
    entry = CDRegisterEntry(unit_id=unit_id, drug=drug, seq=(last.seq if last else 0) + 1, kind=kind,
                            amount_mg=amount_mg, balance_mg=balance, counted_mg=counted_mg,
                            supplier=supplier, reference=reference, admission_id=admission_id,
                            administration_id=administration_id, corrects_id=corrects_id, note=note,
                            at=now, recorded_by_id=actor.id, witness_id=witness.id if witness else None)
    db.session.add(entry)
    db.session.flush()
    record_event(unit_id=unit_id, actor=actor, action=f"cd_register.{kind}", entity_type="cd_register_entry",
                 entity_id=entry.id, now=now,
                 after={"drug": drug, "seq": entry.seq, "amount_mg": amount_mg, "balance_mg": balance,
                        "counted_mg": counted_mg, "witness": witness.username if witness else None,
                        "reference": reference, "supplier": supplier, "note": note})
    return entry


@unit_of_work
def record_register_entry(actor: Staff, drug_code: str, *, kind: str, amount_mg: float,
                          witness: dict | None, supplier: str | None, reference: str | None,
                          corrects_id: int | None, note: str | None, now: datetime) -> CDRegisterEntry:
    """Receipts, returns, destructions and corrections; witnessed where the rules say so."""
    if actor.role not in CLINICAL_STAFF:
        raise Forbidden("Only clinical staff write in the register.")
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    if kind == "receipt":
        if amount_mg <= 0 or not supplier:
            raise RegisterInvalid("A receipt needs a positive amount and the supplier.",
                                  errors={k: ["Required."] for k, v in
                                          (("amount_mg", amount_mg > 0), ("supplier", supplier)) if not v})
        witness_staff = verify_witness(actor, witness, now=now) if witness else None
        signed = amount_mg
    elif kind in ("return", "destruction"):
        witness_staff = verify_witness(actor, witness, now=now)  # returns and destructions are witnessed
        signed = -abs(amount_mg)
    elif kind == "correction":
        witness_staff = verify_witness(actor, witness, now=now)
        if not note:
            raise RegisterInvalid("A correction needs its reason.", errors={"note": ["Required."]})
        if corrects_id is not None:
            target = db.session.get(CDRegisterEntry, corrects_id)
            if target is None or target.unit_id != actor.unit_id or target.drug != drug.code:
                raise RegisterInvalid("The corrected entry is not in this register.",
                                      errors={"corrects_id": ["Not an entry of this drug's register."]})
        signed = amount_mg
    else:
        raise RegisterInvalid(f"Unknown entry kind {kind!r}.")
    return append_register_entry(actor.unit_id, drug.code, kind=kind, amount_mg=signed, actor=actor,
                                 witness=witness_staff, now=now, supplier=supplier, reference=reference,
                                 corrects_id=corrects_id, note=note)


@unit_of_work
def record_stock_check(actor: Staff, drug_code: str, *, counted_mg: float, witness: dict | None,
                       note: str | None, now: datetime) -> CDRegisterEntry:
    """Two staff count the stock; a difference from the balance is escalated to the manager."""
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    witness_staff = verify_witness(actor, witness, now=now)
    balance = register_balance(actor.unit_id, drug.code)
    entry = append_register_entry(actor.unit_id, drug.code, kind="stock_check", amount_mg=0, actor=actor,
                                  witness=witness_staff, now=now, counted_mg=counted_mg, note=note)
    if abs(counted_mg - balance) > 1e-6:
        from monitoring.outbox import enqueue

        managers = db.session.scalars(select(Staff).where(Staff.unit_id == actor.unit_id,
                                                          Staff.role == "manager", Staff.active.is_(True))).all()
        text = (f"Controlled-drug discrepancy: {drug.name} counted {counted_mg:g} mg by "
                f"{actor.full_name} and {witness_staff.full_name}, register balance {balance:g} mg.")
        for manager in managers:
            enqueue(unit_id=actor.unit_id, dedup_key=f"cd-discrepancy:{entry.id}:{manager.id}",
                    recipient_staff_id=manager.id, recipient_address=manager.email,
                    subject=f"[URGENT] {text}", body=text + "\nInvestigate and record a witnessed correction.",
                    ref_type="cd_register_entry", ref_id=entry.id, now=now)
        record_event(unit_id=actor.unit_id, actor=actor, action="cd_register.discrepancy",
                     entity_type="cd_register_entry", entity_id=entry.id, now=now,
                     after={"drug": drug.code, "counted_mg": counted_mg, "balance_mg": balance,
                            "escalated_to": [m.username for m in managers]})
    return entry


def register_balance(unit_id: int, drug: str) -> float:
    """The register's running balance for a drug."""
    return float(db.session.scalar(select(CDRegisterEntry.balance_mg).where(
        CDRegisterEntry.unit_id == unit_id, CDRegisterEntry.drug == drug)
        .order_by(CDRegisterEntry.seq.desc()).limit(1)) or 0.0)


def register_entries(actor: Staff, drug_code: str) -> list[CDRegisterEntry]:
    """Every entry of a drug's register on the actor's unit, in order."""
    drug = drug_or_invalid(drug_code)
    if not drug.register:
        raise RegisterInvalid(f"{drug.name} is not kept in the controlled-drug register.")
    return list(db.session.scalars(select(CDRegisterEntry).where(
        CDRegisterEntry.unit_id == actor.unit_id, CDRegisterEntry.drug == drug.code)
        .order_by(CDRegisterEntry.seq)))


def _count_differs() -> sa.ColumnElement[bool]:
    return sa.and_(CDRegisterEntry.kind == "stock_check", CDRegisterEntry.counted_mg.is_not(None),
                   sa.func.abs(CDRegisterEntry.counted_mg - CDRegisterEntry.balance_mg) > 1e-6)


def discrepancies(unit_id: int, drug: str | None = None, *, open_only: bool = False) -> list[CDRegisterEntry]:
    """Stock checks whose count differed from the register balance, by drug and line; with
    ``open_only``, those no later count or witnessed correction of the same drug has answered."""
    query = select(CDRegisterEntry).where(CDRegisterEntry.unit_id == unit_id, _count_differs())
    if drug is not None:
        query = query.where(CDRegisterEntry.drug == drug)
    if open_only:
        # A count that did not match stays open until the drug's next count or correction.
        latest = (select(CDRegisterEntry.drug, sa.func.max(CDRegisterEntry.seq).label("seq"))
                  .where(CDRegisterEntry.unit_id == unit_id,
                         CDRegisterEntry.kind.in_(("stock_check", "correction")))
                  .group_by(CDRegisterEntry.drug).subquery())
        query = query.join(latest, sa.and_(CDRegisterEntry.drug == latest.c.drug,
                                           CDRegisterEntry.seq == latest.c.seq))
    return list(db.session.scalars(query.order_by(CDRegisterEntry.drug, CDRegisterEntry.seq)))


@dataclass
class RegisterBook:
    """A drug's register on one unit: its lines in order, the running balance, and the lines
    whose count differed from the balance."""

    drug: Drug
    entries: list[CDRegisterEntry]
    balance_mg: float
    discrepancies: list[CDRegisterEntry]


def register_book(actor: Staff, drug_code: str) -> RegisterBook:
    """A drug's register on the actor's unit, as the register page and the API show it."""
    entries = register_entries(actor, drug_code)
    return RegisterBook(DRUGS[drug_code], entries, register_balance(actor.unit_id, drug_code),
                        discrepancies(actor.unit_id, drug_code))
