"""The manager's unit-model report for inspectors, assembled from every package's section,
with its CSV and PDF exports. Only the composition root sees all three packages."""
from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo


from config.clock import unit_zone
from config.errors import ValidationFailed
from medication.report import medication_section
from monitoring.report import escalations_section, observations_section
from unit.audit import verify_chain
from unit.models import Staff
from unit.report import admissions_section, model_history

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


def build_report(actor: Staff, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    """The unit-model report for a period: every key an inspector asks for."""
    unit = actor.unit
    zone = unit_zone()
    history = model_history(unit, start, end)
    chain = verify_chain(unit, from_checkpoint=True)
    return {
        "unit": {"code": unit.code, "name": unit.name},
        "period": {"from": start.isoformat(), "to": end.isoformat(), "generated_at": now.isoformat(),
                   "generated_by": actor.username, "timezone": str(zone)},
        "model_history": history,
        "admissions": admissions_section(unit, start, end),
        "observations": observations_section(unit, start, end, zone),
        "escalations": escalations_section(unit, start, end, history, now),
        "medication": medication_section(unit, start, end, now),
        "audit_chain": {"verified": chain.verified, "events": chain.events,
                        "broken_at_seq": chain.broken_at_seq, "problem": chain.problem,
                        "checked_from_seq": chain.checked_from_seq,
                        "full_verification_at": chain.full_verification_at.isoformat()
                        if chain.full_verification_at else None},
    }


# --- exports --------------------------------------------------------------------------------

def tables(report: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Every table of the report, as (header, rows), for CSV and PDF."""
    obs, esc, med, adm = report["observations"], report["escalations"], report["medication"], report["admissions"]
    figures = ["due", "on_time", "late", "missed", "not_done", "on_time_rate", "late_minutes_mean", "late_minutes_max"]
    return {
        "model_history": (["model", "effective_at", "changed_by", "reason"],
                          [[h["model"], h["effective_at"], h["changed_by"] or "", h["reason"]] for h in report["model_history"]]),
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
        "observations_by_scale": (["scale", *figures], [[s, *[f[k] for k in figures]] for s, f in obs["by_scale"].items()]),
        "observations_by_resident": (["admission_id", "resident", *figures],
                                     [[r["admission_id"], r["resident"], *[r[k] for k in figures]] for r in obs["by_resident"]]),
        "observations_by_shift": (["shift", "due", "on_time", "late", "missed", "not_done", "on_time_rate"],
                                  [[s, f["due"], f["on_time"], f["late"], f["missed"], f["not_done"], f["on_time_rate"]]
                                   for s, f in obs["by_shift"].items()]),
        "worst_late_observations": (["resident", "scale", "due_at", "observed_at", "late_minutes"],
                                    [[w["resident"], w["scale"], w["due_at"], w["observed_at"], w["late_minutes"]]
                                     for w in obs["worst_late"]]),
        "escalations": (["measure", "value"],
                        [["total", esc["total"]], ["acknowledge_minutes_median", esc["acknowledge_minutes_median"]],
                         ["acknowledge_minutes_p90", esc["acknowledge_minutes_p90"]], ["breaches", len(esc["breaches"])],
                         ["re_escalations", esc["re_escalations"]], ["overridden", esc["overridden"]],
                         ["routing_matched_model", esc["routing_matched_model"]], ["rota_gaps", len(esc["rota_gaps"])]]
                        + [[f"trigger: {k}", v] for k, v in esc["by_trigger"].items()]
                        + [[f"severity: {k}", v] for k, v in esc["by_severity"].items()]
                        + [[f"route: {k}", v] for k, v in esc["by_route"].items()]),
        "escalation_breaches": (["id", "severity", "reason", "raised_at", "target_minutes", "minutes_to_acknowledge"],
                                [[b["id"], b["severity"], b["reason"], b["raised_at"], b["target_minutes"],
                                  b["minutes_to_acknowledge"]] for b in esc["breaches"]]),
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


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    """One table as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def to_zip(report: dict[str, Any]) -> bytes:
    """Every table as a CSV file in one ZIP."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (header, rows) in tables(report).items():
            archive.writestr(f"{name}.csv", to_csv(header, rows))
    return buffer.getvalue()


TITLES = {"prn_per_resident": "PRN doses per resident", "cd_register": "Controlled-drug register",
          "high_risk_admissions": "High-risk admissions (criteria met, admitted)",
          "declined_referrals": "Declined referrals (criteria met)",
          "uncountersigned_phone_orders": "Phone orders not countersigned in time",
          "worst_late_observations": "Late observations, worst first"}
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
    for name, (header, rows) in tables(report).items():
        # A heading is never left alone at the foot of a page.
        if pdf.get_y() > pdf.h - 45:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin(TITLES.get(name, name.replace("_", " ").capitalize())), new_x="LMARGIN", new_y="NEXT")
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
