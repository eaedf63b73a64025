"""The inspector's report: the unit-model report for a period, composed of the unit's own
sections and each package's, with its CSV and PDF exports; and the audit-log search.

The unit owns the report's shape (its period, model history, admissions and audit chain, and
where the other sections go); each package contributes its sections through
``report_sections``, filled when the app is assembled (as the board's cells are), so the unit
imports no package.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields
from sqlalchemy import select

from config.clock import unit_zone
from config.errors import ValidationFailed
from config.extensions import db
from unit.audit import search_events, verify_chain
from unit.models import Admission, CareModelChange, Referral, Resident, Staff, Unit
from unit.protocol import protocol_versions
from unit.referrals import doctor_overrides, re_referrals

DEFAULT_DAYS = 30


def parse_period(start: str | None, end: str | None, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``from``/``to`` as dates (whole local days, ``to`` inclusive) or timestamps; default 30 days."""

    def parse(value: str, field: str, end_of_day: bool) -> datetime:
        try:
            if len(value) == 10:
                day = date.fromisoformat(value) + timedelta(days=1 if end_of_day else 0)
                return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(f"{field} is not a date (YYYY-MM-DD) or an ISO timestamp.",
                                   errors={field: ["Not a valid date or timestamp."]}) from None
        if parsed.tzinfo is None:
            raise ValidationFailed(f"{field} needs a timezone.", errors={field: ["Give a timezone."]})
        return parsed.astimezone(timezone.utc)

    finish = parse(end, "to", True) if end else now
    begin = parse(start, "from", False) if start else finish - timedelta(days=DEFAULT_DAYS)
    if begin >= finish:
        raise ValidationFailed("The period is empty: from must be before to.", errors={"from": ["After to."]})
    if finish - begin > timedelta(days=400):
        raise ValidationFailed("A report covers at most 400 days.", errors={"from": ["Period too long."]})
    return begin, finish


Table = tuple[list[str], list[list[Any]]]  # (header, rows)


@dataclass(frozen=True)
class ReportPeriod:
    """What every section is built for: the unit, the period [start, end), when the report is
    made, the unit's time zone and its model history over the period."""

    unit: Unit
    start: datetime
    end: datetime
    now: datetime
    zone: ZoneInfo
    model_history: list[dict]


@dataclass(frozen=True)
class ReportSection:
    """A package's section of the report: ``build`` makes the section (a JSON-ready dict, the
    report's value at ``key``); ``tables`` turns it into the tables of the CSV and PDF exports
    ({name: (header, rows)}); ``alerts`` into the warnings the report page shows first."""

    key: str
    build: Callable[[ReportPeriod], dict]
    tables: Callable[[dict], dict[str, Table]]
    titles: Mapping[str, str] = field(default_factory=dict)  # PDF headings, where not the name
    alerts: Callable[[dict], list[str]] = lambda section: []


# Filled when the app is assembled (monitoring: observations, escalations; medication), in the
# order the report shows them.
report_sections: list[ReportSection] = []


def model_history(unit: Unit, start: datetime, end: datetime) -> list[dict]:
    """The model in force at the start of the period and every change within it, who and why."""
    changes = db.session.execute(
        select(CareModelChange, Staff.username).outerjoin(Staff, Staff.id == CareModelChange.changed_by_id)
        .where(CareModelChange.unit_id == unit.id, CareModelChange.effective_at < end)
        .order_by(CareModelChange.effective_at, CareModelChange.id)).all()
    in_force = [row for row in changes if row[0].effective_at <= start][-1:]
    during = [row for row in changes if row[0].effective_at > start]
    return [{"model": change.model, "effective_at": change.effective_at.isoformat(),
             "reason": change.reason, "changed_by": username, "recorded_at": change.recorded_at.isoformat(),
             "in_force_at_start": change.effective_at <= start}
            for change, username in in_force + during]


def admissions_section(unit: Unit, start: datetime, end: datetime) -> dict:
    """Referrals admitted and declined with the criteria met; monitored-unit exceptions; transfers."""
    referrals = db.session.scalars(select(Referral).where(
        Referral.unit_id == unit.id, Referral.decided_at >= start, Referral.decided_at < end)
        .order_by(Referral.decided_at)).all()
    declined = [r for r in referrals if r.decision == "declined"]
    reasons = Counter(reason["code"] for r in declined for reason in r.reasons)
    # Should be none: a resident admitted while the unit was monitored whose referral met a criterion.
    exceptions = [{"referral_id": r.id, "resident": r.resident_snapshot["name"], "decided_at": r.decided_at.isoformat(),
                   "criteria": [c["criterion"] for c in r.reasons]}
                  for r in referrals if r.decision == "admitted" and r.unit_model == "medically_monitored" and r.reasons]
    transfers = db.session.execute(select(Admission, Resident.name).join(Resident, Resident.id == Admission.resident_id)
                                   .where(Admission.unit_id == unit.id, Admission.discharge_type == "transferred",
                                          Admission.discharged_at >= start, Admission.discharged_at < end)).all()
    discharges = Counter(t for (t,) in db.session.execute(select(Admission.discharge_type).where(
        Admission.unit_id == unit.id, Admission.discharged_at >= start, Admission.discharged_at < end)))
    admitted_ids = dict(db.session.execute(select(Admission.referral_id, Admission.id).where(
        Admission.referral_id.in_([r.id for r in referrals if r.decision == "admitted" and r.reasons]))).all())
    return {
        "admitted": sum(1 for r in referrals if r.decision == "admitted"),
        "declined": len(declined),
        "declined_reasons": dict(sorted(reasons.items())),
        "high_risk_admitted": sum(1 for r in referrals if r.decision == "admitted" and r.reasons),
        "admitted_meeting_decline_criteria_while_monitored": exceptions,
        "declined_referrals": [{"referral_id": r.id, "resident": r.resident_snapshot["name"],
                                "decided_at": r.decided_at.isoformat(), "unit_model": r.unit_model,
                                "criteria": [c["criterion"] for c in r.reasons],
                                "criteria_codes": [c["code"] for c in r.reasons],
                                "recommended_setting": r.recommended_setting} for r in declined],
        # Admitted although a decline criterion was met (a medically managed unit may): each
        # with the criteria, so an inspector sees what the unit took on and under which model.
        "high_risk_admissions": [{"admission_id": admitted_ids.get(r.id), "referral_id": r.id,
                                  "resident": r.resident_snapshot["name"], "decided_at": r.decided_at.isoformat(),
                                  "unit_model": r.unit_model, "criteria": [c["criterion"] for c in r.reasons],
                                  "criteria_codes": [c["code"] for c in r.reasons],
                                  "recommended_setting": r.recommended_setting}
                                 for r in referrals if r.decision == "admitted" and r.reasons],
        "transferred_out": [{"admission_id": a.id, "resident": name, "at": a.discharged_at.isoformat(),
                             "why": a.discharge_note} for a, name in transfers],
        "discharges": dict(discharges),
        "treatment_episodes": treatment_episodes(unit, start, end),
    }


def build_report(actor: Staff, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    """The unit-model report for a period: every key an inspector asks for."""
    unit = actor.unit
    zone = unit_zone()
    history = model_history(unit, start, end)
    period = ReportPeriod(unit, start, end, now, zone, history)
    chain = verify_chain(unit, from_checkpoint=True)
    return {
        "unit": {"code": unit.code, "name": unit.name},
        "period": {"from": start.isoformat(), "to": end.isoformat(), "generated_at": now.isoformat(),
                   "generated_by": actor.username, "timezone": str(zone)},
        "model_history": history,
        "protocol_versions": protocol_versions(unit.id, start, end),
        "admissions": {**admissions_section(unit, start, end),
                       "doctor_overrides": doctor_overrides(unit.id, start, end),
                       "re_referrals": re_referrals(unit.id, start, end)},
        **{section.key: section.build(period) for section in report_sections},
        "audit_chain": {"verified": chain.verified, "events": chain.events,
                        "broken_at_seq": chain.broken_at_seq, "problem": chain.problem,
                        "checked_from_seq": chain.checked_from_seq,
                        "full_verification_at": chain.full_verification_at.isoformat()
                        if chain.full_verification_at else None},
    }


def report_alerts(report: dict[str, Any]) -> list[str]:
    """What the report page warns of first: exceptions an inspector must not miss."""
    alerts = []
    exceptions = report["admissions"]["admitted_meeting_decline_criteria_while_monitored"]
    if exceptions:
        alerts.append("Residents admitted while medically monitored whose referral met a decline "
                      f"criterion: {len(exceptions)}.")
    for section in report_sections:
        alerts += section.alerts(report[section.key])
    return alerts


def report_schema() -> Schema:
    """The report's output schema: the unit's keys and each registered section, in order."""
    return Schema.from_dict({
        "unit": fields.Dict(), "period": fields.Dict(), "model_history": fields.List(fields.Dict()),
        "protocol_versions": fields.List(fields.Dict()), "admissions": fields.Dict(), **{section.key: fields.Dict() for section in report_sections},
        "audit_chain": fields.Dict()}, name="ReportSchema")()


# --- exports --------------------------------------------------------------------------------

def tables(report: dict[str, Any]) -> dict[str, Table]:
    """Every table of the report, as (header, rows), for CSV and PDF: the unit's, then each
    section's."""
    adm = report["admissions"]
    own = {
        "model_history": (["model", "effective_at", "changed_by", "reason"],
                          [[h["model"], h["effective_at"], h["changed_by"] or "", h["reason"]] for h in report["model_history"]]),
        "protocol_versions": (["version", "in_force_from", "sections", "reason", "proposed_by", "approved_by"],
                              [[v["version"], v["in_force_from"], "; ".join(v["sections"]), v["reason"],
                                v["proposed_by"] or "", v["approved_by"] or ""] for v in report["protocol_versions"]]),
        "doctor_overrides": (["admission_id", "resident", "admitted_at", "criteria", "reason", "doctor"],
                             [[o["admission_id"], o["resident"], o["admitted_at"], "; ".join(o["criteria"]),
                               o["reason"], o["doctor"]] for o in adm["doctor_overrides"]]),
        "re_referrals": (["referral_id", "resident", "decided_at", "decision", "previous_decline_id", "changes"],
                         [[r["referral_id"], r["resident"], r["decided_at"], r["decision"], r["previous_decline_id"],
                           "; ".join(f"{c['field']}: {c['before']} -> {c['after']} ({c['reason'] or 'no reason'})"
                                     for c in r["changes"])] for r in adm["re_referrals"]]),
        "admissions": (["measure", "value"],
                       [["admitted", adm["admitted"]], ["declined", adm["declined"]],
                        ["high_risk_admitted", adm["high_risk_admitted"]],
                        ["admitted_meeting_decline_criteria_while_monitored",
                         len(adm["admitted_meeting_decline_criteria_while_monitored"])],
                        ["transferred_out", len(adm["transferred_out"])]]
                       + [[f"declined: {code}", n] for code, n in adm["declined_reasons"].items()]),
        "treatment_episodes": (["month", "episodes", "started", "completed", "transferred",
                                "incomplete_dropped_out", "incomplete_treatment_withdrawn_by_provider",
                                "incomplete_client_died", "ended_unmapped", "open_at_month_end"],
                               [[m["month"], m["episodes"], m["started"], m["completed"], m["transferred"],
                                 *m["incomplete"].values(), m["ended_unmapped"], m["open_at_month_end"]]
                                for m in adm["treatment_episodes"]]),
        "declined_referrals": (["referral_id", "resident", "decided_at", "criteria", "recommended_setting"],
                               [[d["referral_id"], d["resident"], d["decided_at"], "; ".join(d["criteria"]),
                                 d["recommended_setting"]] for d in adm["declined_referrals"]]),
        "high_risk_admissions": (["admission_id", "referral_id", "resident", "decided_at", "unit_model", "criteria",
                                  "recommended_setting"],
                                 [[h["admission_id"], h["referral_id"], h["resident"], h["decided_at"], h["unit_model"],
                                   "; ".join(h["criteria"]), h["recommended_setting"]]
                                  for h in adm["high_risk_admissions"]]),
    }
    for section in report_sections:
        own.update(section.tables(report[section.key]))
    return own


# A spreadsheet reads a cell that begins with one of these as a formula (or, for tab and CR,
# strips them and reads what follows): "=HYPERLINK(...)" typed as a resident's name would run
# on the inspector's machine when the CSV is opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value safe to put in a CSV cell (OWASP, CSV injection).

    Text that begins with ``= + - @``, tab or CR gets a leading single quote, which a
    spreadsheet shows as text and never evaluates. Numbers (int, float, Decimal) are written
    as they are: a negative amount (``-20.0``, a register return) stays a number a
    spreadsheet can add up, and a number cannot hold a formula. Only text is quoted, so a
    string that happens to look like a negative number is quoted too: it came from text.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    """One table as CSV text, every text cell neutralised against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([csv_cell(cell) for cell in header])
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def to_zip(report: dict[str, Any]) -> bytes:
    """Every table as a CSV file in one ZIP."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (header, rows) in tables(report).items():
            archive.writestr(f"{name}.csv", to_csv(header, rows))
    return buffer.getvalue()


TITLES = {"high_risk_admissions": "High-risk admissions (criteria met, admitted)",
          "declined_referrals": "Declined referrals (criteria met)",
          "protocol_versions": "Protocol versions (proposed by, approved by)",
          "doctor_overrides": "Admitted on a doctor's override (hospital recommended or under 16)",
          "re_referrals": "Re-referrals within 30 days of a decline"}
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)$")
_MAX_PDF_ROWS = 200


def _local(value: str | None, zone: ZoneInfo) -> str:
    """An ISO timestamp as a short local time ("3 Mar 2025 14:30"); other text unchanged."""
    if not value or not _ISO.match(value):
        return "" if value is None else value
    when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
    return f"{when.day} {when:%b %Y %H:%M}"


def _col_widths(header: list[str], rows: list[list[str]]) -> tuple[float, ...]:
    # Each column as wide as its longest word of heading or longest cell (within bounds), so
    # that headings wrap between words and timestamps stay on one line.
    widths = []
    for i, title in enumerate(header):
        longest_word = max(len(word) for word in title.split())
        longest_cell = max((len(row[i]) for row in rows[:_MAX_PDF_ROWS]), default=0)
        widths.append(min(max(longest_word + 1, longest_cell, 4), 48))
    return tuple(widths)


def _new_pdf(footer_text: str):
    """An A4 fpdf2 document whose footer names the unit, the period and the page."""
    from fpdf import FPDF

    class ReportPDF(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(90, 90, 90)
            self.cell(0, 6, _latin(f"{footer_text} - page {self.page_no()} of {{nb}}"), align="C")
            self.set_text_color(0, 0, 0)

    return ReportPDF(orientation="P", unit="mm", format="A4")


def to_pdf(report: dict[str, Any]) -> bytes:
    """The whole report as one PDF; the first page names the unit, period, time and chain result."""
    unit, period, chain = report["unit"], report["period"], report["audit_chain"]
    zone = ZoneInfo(period.get("timezone") or "UTC")
    span = f"{_local(period['from'], zone)} to {_local(period['to'], zone)} ({zone})"
    pdf = _new_pdf(f"Unit-model report, {unit['name']} ({unit['code']}), {span}")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin("Unit-model report for inspection"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    current = report["model_history"][-1]["model"] if report["model_history"] else "unknown"
    facts = [
        ("Unit", f"{unit['name']} ({unit['code']})"),
        ("Period", f"{span}; 'to' is the end, not included"),
        ("Generated", f"{_local(period['generated_at'], zone)} ({zone}) by {period['generated_by']}"),
        ("Declared model", f"at the end of the period: {current.replace('_', ' ')}"),
    ]
    for label, text in facts:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(38, 7, _latin(label + ":"))
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 7, _latin(text), new_x="LMARGIN", new_y="NEXT")
    # The chain's result stands out: an inspector must not miss a broken chain.
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 12)
    if chain["verified"]:
        pdf.set_text_color(0, 110, 40)
        result = f"Audit chain: VERIFIED ({chain['events']} events)"
    else:
        pdf.set_text_color(180, 0, 0)
        result = f"Audit chain: NOT VERIFIED - broken at event {chain['broken_at_seq']}: {chain['problem']}"
    pdf.multi_cell(0, 7, _latin(result), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 9)
    if chain.get("full_verification_at"):
        detail = (f"Events 1-{chain['checked_from_seq'] - 1} were verified in full at "
                  f"{_local(chain['full_verification_at'], zone)}; events from {chain['checked_from_seq']} "
                  "on, and the link to them, were verified for this report.")
    else:
        detail = "Every event was verified for this report."
    pdf.multi_cell(0, 5, _latin(detail), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    headings = {**TITLES, **{name: title for section in report_sections
                            for name, title in section.titles.items()}}
    for name, (header, rows) in tables(report).items():
        # A heading is never left alone at the foot of a page.
        if pdf.get_y() > pdf.h - 45:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin(headings.get(name, name.replace("_", " ").capitalize())), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        if not rows:
            pdf.cell(0, 6, "None.", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
            continue
        titles = [_latin(h.replace("_", " ")) for h in header]
        cells = [[_latin(_local(v, zone) if isinstance(v, str) else ("" if v is None else str(v))) for v in row]
                 for row in rows[:_MAX_PDF_ROWS]]
        with pdf.table(text_align="LEFT", line_height=4.5, col_widths=_col_widths(titles, cells)) as table:
            table.row(titles)
            for row in cells:
                table.row(row)
        if len(rows) > _MAX_PDF_ROWS:
            pdf.cell(0, 6, f"... {len(rows) - _MAX_PDF_ROWS} more rows in the CSV export.",
                     new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    return bytes(pdf.output())


def _latin(text: str) -> str:
    # The core PDF fonts are Latin-1; replace what they cannot draw rather than fail.
    return text.replace("–", "-").replace("—", "-").encode("latin-1", "replace").decode("latin-1")


# --- the audit log ----------------------------------------------------------------------------

def search_audit_log(actor: Staff, query: dict, page: int, per_page: int, now: datetime) -> tuple[list[dict], int]:
    """The unit's audit log as the inspector searches it (by resident, user, action and
    period), newest first, a page at a time, with the total count."""
    start = end = None
    if query.get("start") or query.get("end"):
        start, end = parse_period(query.get("start") or "2000-01-01", query.get("end"), now, unit_zone())
    rows, total = search_events(actor.unit_id, resident=query.get("resident"), user=query.get("user"),
                                action=query.get("action"), start=start, end=end, page=page, per_page=per_page)
    return [{**{c: getattr(event, c) for c in ("seq", "at", "actor_role", "action", "entity_type", "entity_id",
                                               "resident_id", "before", "after", "hash")}, "user": username}
            for event, username in rows], total


def treatment_episodes(unit: Unit, start: datetime, end: datetime) -> list[dict]:
    """For each calendar month the period touches, the whole month's episodes as the
    commissioners' return counts them (started, completed, incomplete by reason), so that the
    unit and the commissioner read the same figures."""
    from unit.returns import month_bounds, month_counts, months_between

    return [{"month": month, **month_counts(unit.id, *month_bounds(month))}
            for month in months_between(start, end)]
