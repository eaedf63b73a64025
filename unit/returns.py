"""The commissioners' NDTMS-style return: one row per treatment episode open in a month, in the
shape of the NDTMS adult treatment dataset as far as its public definitions go, the check
before submission, and the month's counts the inspector's report shows too.

A treatment episode is an admission. Identifiable rows are only for residents whose consent
to share with NDTMS is in force; the others are counted in the aggregate and named in the
check (for the unit, never in the return). The field mapping, each field's source, its code
list and what is unknown are in ``docs/returns/ndtms.md``.
"""
from __future__ import annotations

import csv
import io
import re
import sys
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from config.clock import local, now, unit_zone
from config.db import unit_of_work
from config.errors import DomainError, ValidationFailed
from config.extensions import db
from unit.audit import record_event
from unit.consent import consent_states
from unit.models import Admission, Referral, Resident, Staff, Unit

# NDTMS modality from the unit's care model at the admission: a medically managed unit gives
# inpatient detoxification; a medically monitored one residential treatment (NDTMS counts
# medically monitored residential withdrawal with residential rehabilitation). The
# commissioner confirms this choice (docs/returns/ndtms.md).
MODALITIES = {"medically_managed": "inpatient_detoxification",
              "medically_monitored": "residential_rehabilitation"}
# NDTMS discharge reason from the discharge type; "other" has none (the check lists it).
DISCHARGE_REASONS = {
    "completed": "treatment_completed",
    "transferred": "transferred_not_in_custody",
    "self-discharged": "incomplete_dropped_out",
    "withdrawn-by-unit": "incomplete_treatment_withdrawn_by_provider",
    "died": "incomplete_client_died",
}
INCOMPLETE = ("incomplete_dropped_out", "incomplete_treatment_withdrawn_by_provider",
              "incomplete_client_died")

COLUMNS = ("episode_id", "first_initial", "surname_initial", "date_of_birth", "sex",
           "gender_identity", "ethnicity", "local_authority", "postcode_district",
           "consent_ndtms", "referral_source", "referral_date", "first_contact_date",
           "substance_1", "substance_2", "substance_3", "injecting_status",
           "accommodation_need", "parental_status", "children_living_with", "modality",
           "modality_start", "modality_end", "discharge_date", "discharge_reason")
# Fields every identifiable row must have (the end fields only once the episode has ended).
REQUIRED = ("first_initial", "surname_initial", "date_of_birth", "sex", "gender_identity",
            "ethnicity", "local_authority", "postcode_district", "referral_source",
            "referral_date", "first_contact_date", "substance_1", "injecting_status",
            "accommodation_need", "parental_status", "children_living_with", "modality",
            "modality_start")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class ReturnMonthInvalid(DomainError):
    type = "return-month-invalid"
    title = "The return's month is not valid"


def month_period(month: str, at: datetime) -> tuple[datetime, datetime]:
    """The month ``YYYY-MM`` as [start, end) in UTC, its days in the unit's time zone; a month
    that has not begun at ``at`` is refused."""
    match = _MONTH.match(month or "")
    if not match:
        raise ReturnMonthInvalid("Give the month as YYYY-MM, e.g. 2026-11.",
                                 errors={"month": ["YYYY-MM."]})
    if not 1900 <= int(match.group(1)) <= 2999:
        raise ReturnMonthInvalid("Give a month of this era, YYYY-MM.", errors={"month": ["YYYY-MM."]})
    start, end = month_bounds(month)
    if start > at:
        raise ReturnMonthInvalid(f"{month} has not begun: a return covers a month already under way "
                                 "or past.", errors={"month": ["Not begun yet."]})
    return start, end


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """A well-formed ``YYYY-MM`` as [start, end) in UTC, its days in the unit's time zone."""
    year, number = int(month[:4]), int(month[5:7])
    zone = unit_zone()
    start = datetime.combine(date(year, number, 1), time(0), zone)
    end = datetime.combine(date(year + number // 12, number % 12 + 1, 1), time(0), zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _episodes(unit_id: int, start: datetime, end: datetime) -> list[Any]:
    """Admissions of the unit open at some moment of [start, end), oldest first."""
    return db.session.execute(
        select(Admission, Resident, Referral.unit_model)
        .join(Resident, Resident.id == Admission.resident_id)
        .join(Referral, Referral.id == Admission.referral_id)
        .where(Admission.unit_id == unit_id, Admission.admitted_at < end,
               (Admission.discharged_at.is_(None)) | (Admission.discharged_at >= start))
        .order_by(Admission.admitted_at, Admission.id)).all()


def _initial(word: str) -> str:
    letter = next((c for c in word if c.isalpha()), "")
    return letter.upper()


def episode_row(admission: Admission, resident: Resident, unit_model: str, end: datetime) -> dict:
    """The return's row for one episode, as of the month ending at ``end``."""
    words = resident.name.split()
    substances = list(admission.problem_substances or [])[:3]
    ended = admission.discharged_at is not None and admission.discharged_at < end
    return {
        "episode_id": admission.id,
        "first_initial": _initial(words[0]) if len(words) > 1 else "",
        "surname_initial": _initial(words[-1]),
        "date_of_birth": resident.date_of_birth.isoformat(),
        "sex": resident.sex, "gender_identity": resident.gender_identity,
        "ethnicity": resident.ethnicity,
        "local_authority": admission.local_authority, "postcode_district": admission.postcode_district,
        "consent_ndtms": "Y",
        "referral_source": admission.referral_source,
        "referral_date": admission.referral_date.isoformat() if admission.referral_date else None,
        "first_contact_date": admission.first_contact_date.isoformat()
        if admission.first_contact_date else None,
        **{f"substance_{n}": substances[n - 1] if len(substances) >= n else None for n in (1, 2, 3)},
        "injecting_status": admission.injecting_status,
        "accommodation_need": admission.accommodation_need,
        "parental_status": admission.parental_status,
        "children_living_with": admission.children_living_with,
        "modality": MODALITIES.get(unit_model),
        "modality_start": local(admission.admitted_at).date().isoformat(),
        "modality_end": local(admission.discharged_at).date().isoformat() if ended else None,
        "discharge_date": local(admission.discharged_at).date().isoformat() if ended else None,
        "discharge_reason": DISCHARGE_REASONS.get(admission.discharge_type) if ended else None,
    }


def _missing(row: dict, ended: bool) -> list[str]:
    wanted = REQUIRED + (("modality_end", "discharge_date", "discharge_reason") if ended else ())
    return [name for name in wanted if row[name] in (None, "")]


def month_counts(unit_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """The month's episodes, whatever the residents' consent: open, started, ended by NDTMS
    reason (completed, transferred, incomplete by reason), open at the month's end."""
    reasons: Counter[str] = Counter()
    started = open_at_end = 0
    episodes = _episodes(unit_id, start, end)
    for admission, _resident, _model in episodes:
        if admission.admitted_at >= start:
            started += 1
        if admission.discharged_at is not None and admission.discharged_at < end:
            reasons[DISCHARGE_REASONS.get(admission.discharge_type, "unmapped")] += 1
        else:
            open_at_end += 1
    return {"episodes": len(episodes), "started": started,
            "completed": reasons["treatment_completed"],
            "transferred": reasons["transferred_not_in_custody"],
            "incomplete": {reason: reasons[reason] for reason in INCOMPLETE},
            "ended_unmapped": reasons["unmapped"], "open_at_month_end": open_at_end}


def build_ndtms_return(unit: Unit, month: str, at: datetime) -> dict[str, Any]:
    """The month's return: identifiable rows (consent to NDTMS in force), the aggregate of
    every episode, and the check before submission."""
    start, end = month_period(month, at)
    episodes = _episodes(unit.id, start, end)
    states = consent_states([resident.id for _a, resident, _m in episodes], "ndtms")
    rows, missing, withheld = [], [], []
    for admission, resident, model in episodes:
        state = states[resident.id]
        if state != "given":
            withheld.append({"episode_id": admission.id, "resident": resident.name, "consent": state})
            continue
        row = episode_row(admission, resident, model, end)
        rows.append(row)
        ended = admission.discharged_at is not None and admission.discharged_at < end
        lacking = _missing(row, ended)
        if lacking:
            missing.append({"episode_id": admission.id, "resident": resident.name, "fields": lacking})
    consent_counts = Counter(item["consent"] for item in withheld)
    return {
        "unit": {"code": unit.code, "name": unit.name}, "month": month,
        "period": {"from": start.isoformat(), "to": end.isoformat(), "timezone": str(unit_zone())},
        "generated_at": at.isoformat(), "columns": list(COLUMNS), "rows": rows,
        "aggregate": {**month_counts(unit.id, start, end), "identifiable": len(rows),
                      "withheld_consent": {state: consent_counts[state]
                                           for state in ("refused", "withdrawn", "not_recorded")}},
        "check": {"ready": not missing, "missing": missing, "withheld_consent": withheld},
    }


def check_ndtms_return(actor: Staff, month: str, at: datetime) -> dict[str, Any]:
    """The check before submission (no identifiable rows): what is missing, who withheld
    consent, and the aggregate."""
    full = build_ndtms_return(actor.unit, month, at)
    return {key: full[key] for key in ("unit", "month", "period", "generated_at", "aggregate", "check")}


@unit_of_work
def export_ndtms_return(actor: Staff, month: str, at: datetime) -> dict[str, Any]:
    """The month's return for the actor's unit; taking it is a disclosure, audited."""
    full = build_ndtms_return(actor.unit, month, at)
    record_event(unit_id=actor.unit_id, actor=actor, action="returns.ndtms", entity_type="return",
                 entity_id=month, now=at,
                 after={"month": month, "recipient": "ndtms",
                        "episodes": [row["episode_id"] for row in full["rows"]],
                        "withheld": len(full["check"]["withheld_consent"])})
    return full


def to_csv(report: dict[str, Any]) -> str:
    """The identifiable rows as CSV, one column per field, empty where unknown."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=report["columns"], lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return out.getvalue()


def months_between(start: datetime, end: datetime) -> list[str]:
    """Every calendar month (``YYYY-MM``, the unit's time zone) that [start, end) touches."""
    first, last = local(start).date(), local(end - timedelta(microseconds=1)).date()
    months, year, number = [], first.year, first.month
    while (year, number) <= (last.year, last.month):
        months.append(f"{year:04d}-{number:02d}")
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return months


# --- command line ----------------------------------------------------------------------------

returns_cli = AppGroup("returns", help="Returns to commissioners.")


@returns_cli.command("ndtms")
@click.option("--month", required=True, help="The month, YYYY-MM.")
@click.option("--unit", "unit_code", default=None, help="The unit's code (default: the only unit).")
@click.option("--manager", "manager_username", default=None,
              help="The manager taking the return (default: the unit's only active manager).")
@click.option("--check", "check_only", is_flag=True,
              help="Only the check: what is missing and who withheld consent; exit 1 if not ready.")
@click.option("--output", type=click.File("w"), default="-", help="Where the CSV goes (default: standard output).")
def ndtms_command(month: str, unit_code: str | None, manager_username: str | None,
                  check_only: bool, output) -> None:
    """The month's NDTMS-style return as CSV (identifiable rows), its check on standard error."""
    try:
        manager = _manager(unit_code, manager_username)
        at = now()
        report = (check_ndtms_return(manager, month, at) if check_only
                  else export_ndtms_return(manager, month, at))
    except DomainError as error:
        click.echo(f"Error: {error.detail}", err=True)
        sys.exit(2)
    check, aggregate = report["check"], report["aggregate"]
    click.echo(f"{report['unit']['code']} {month}: {aggregate['episodes']} episodes, "
               f"{aggregate['identifiable']} identifiable, "
               f"{sum(aggregate['withheld_consent'].values())} without consent to NDTMS "
               "(counted, not identified).", err=True)
    for item in check["missing"]:
        click.echo(f"  missing: episode {item['episode_id']} ({item['resident']}): "
                   f"{', '.join(item['fields'])}", err=True)
    for item in check["withheld_consent"]:
        click.echo(f"  consent {item['consent'].replace('_', ' ')}: episode {item['episode_id']} "
                   f"({item['resident']})", err=True)
    if check_only:
        click.echo("Ready to submit." if check["ready"] else "Not ready: fill in what is missing.",
                   err=True)
        sys.exit(0 if check["ready"] else 1)
    output.write(to_csv(report))


def _manager(unit_code: str | None, username: str | None) -> Staff:
    units = db.session.scalars(select(Unit).where(Unit.code == unit_code) if unit_code
                               else select(Unit)).all()
    if len(units) != 1:
        raise ValidationFailed("Name the unit with --unit." if units or not unit_code
                               else f"There is no unit {unit_code!r}.")
    query = select(Staff).where(Staff.unit_id == units[0].id, Staff.role == "manager",
                                Staff.active.is_(True))
    if username:
        query = query.where(Staff.username == username.strip().lower())
    managers = db.session.scalars(query).all()
    if len(managers) != 1:
        raise ValidationFailed(f"Name the manager of unit {units[0].code} with --manager "
                               f"({len(managers)} active managers match).")
    return managers[0]
