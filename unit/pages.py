"""Server-rendered pages of the unit package: the ward board, admission form, resident page, sign-in
and sign-out, and the inspector's report and audit log."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import uuid
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup
from marshmallow import ValidationError

from config.clock import now, unit_zone
from config.errors import DomainError
from config.idempotency import fingerprint_of, run_once
from unit import services
from unit.auth import (ALL_ROLES, AUDITORS, CLINICAL_STAFF, DOCTORS, current_staff, public, roles_required, sign_in,
                       sign_out)
from unit.competence import SETTING_LABELS, UNITS_UNKNOWN
from unit.models import CURRENT_OPIOIDS, DISCHARGE_TYPES, HARM_REDUCTION_ITEMS, SUBSTANCES
from unit.report import build_report, parse_period, report_alerts, search_audit_log, tables
from unit.schemas import DischargeIn, HarmReductionIn, ReferralIn, admission_view, whole_number

bp = Blueprint("unit_pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/unit")



@dataclass
class BoardExtension:
    """What another package adds to the ward board and the resident page.

    ``cells(unit_id, rows, now)`` returns {admission id: the row's cells, one ``<td>`` per
    header, as one piece of HTML} for the board's rows (every active admission of the unit;
    anything with an ``id``) in a constant number of queries; ``sections(admission, now)``
    returns HTML blocks for the resident page; ``alerts(unit_id, now)`` returns HTML shown
    above the board.
    """

    headers: tuple[str, ...] = ()
    cells: Callable[[int, list, datetime], dict[int, Markup]] | None = None
    sections: Callable[[object, datetime], list[Markup]] | None = None
    alerts: Callable[[int, datetime], list[Markup]] | None = None


@dataclass(frozen=True, slots=True)
class BoardRow:
    """A resident as the board shows them, the texts made once here so that the template only
    places them (300 rows, rendered again every 30 seconds on every tablet)."""

    id: int
    href: str  # the resident's page
    name: str
    details: str  # age, and the NHS number in groups of 3-3-4
    substances: str
    admitted_at: datetime
    high_risk: bool


def _same_site_path(text: str) -> bool:
    # A path of this site: one leading slash ("//host" and "/\\host" name another host), no
    # backslash (browsers read it as a slash), no control or format character and no space but
    # the plain one (browsers drop tab, CR and LF, so "/\t/evil.example" is "//evil.example"
    # to them, and CR or LF cannot go into a Location header at all), no scheme or host.
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return False
    if not text.isprintable():  # False for C0/C1 controls, format characters, line separators
        return False
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None, default: str) -> str:
    """A same-site path to go back to after a form; anything else goes to ``default``.

    The value is checked as given and after each round of percent-decoding (a browser or a
    proxy may decode it once more), so ``/%09/evil.example`` or ``/%2F%2Fevil.example`` are
    refused like their decoded forms.
    """
    if not isinstance(target, str) or not target or len(target) > 2000:
        return default
    text = target
    for _ in range(4):
        if not _same_site_path(text):
            return default
        decoded = unquote(text)
        if decoded == text:
            return target
        text = decoded
    return default  # still encoded after four rounds: not a path anyone typed


# Filled when the app is assembled (monitoring: scores and due times; medication: doses).
board_extensions: list[BoardExtension] = []


@bp.route("/")
@roles_required(ALL_ROLES)
def board():
    """The ward board: every active resident of the unit."""
    staff, at = current_staff(), now()
    # One url_for for the page, not one per row: the resident page's path, the id appended.
    resident_path = url_for("unit_pages.resident", admission_id=1).removesuffix("1")
    rows = [_board_row(resident, resident_path, at)
            for resident in services.list_board_residents(staff)]
    headers, parts, alerts = [], {row.id: [] for row in rows}, []
    for extension in board_extensions:
        headers.extend(extension.headers)
        found = extension.cells(staff.unit_id, rows, at) if extension.cells else {}
        blank = Markup("<td></td>" * len(extension.headers))
        for row in rows:
            parts[row.id].append(found.get(row.id, blank))
        if extension.alerts:
            alerts.extend(extension.alerts(staff.unit_id, at))
    cells = {row_id: Markup().join(pieces) for row_id, pieces in parts.items()}
    return render_template(
        "unit/board.html", admissions=rows, headers=headers, cells=cells, alerts=alerts,
        checklists=services.open_checklists(staff.unit_id),
        model=services.model_at(staff.unit_id, at), labels=SETTING_LABELS)


def _board_row(resident, resident_path: str, at: datetime) -> BoardRow:
    """A row of ``list_board_residents`` as the board prints it (the referral stays unread).
    The row is unpacked: a SQLAlchemy row's attribute costs a Python call."""
    admission_id, substances, high_risk, admitted_at, name, nhs_number, date_of_birth = resident
    details = f"{services.age_today(date_of_birth, at)} y"
    if nhs_number:
        grouped = (f"{nhs_number[:3]} {nhs_number[3:6]} {nhs_number[6:]}"
                   if len(nhs_number) == 10 else nhs_number)
        details += f" · NHS {grouped}"
    return BoardRow(id=admission_id, href=f"{resident_path}{admission_id}", name=name,
                    details=details, substances=", ".join(substances), admitted_at=admitted_at,
                    high_risk=high_risk)


def _referral_from_form(form) -> dict:
    def number(name):
        value = form.get(name, "").strip()
        if value == "":
            return None
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return value  # the schema names the field

    units = UNITS_UNKNOWN if form.get("units_unknown") == "yes" else number("units_per_day")
    assessment = {"sadq": number("sadq"), "audit": number("audit"), "units_per_day": units,
                  "current_opioids": form.getlist("current_opioids") or None,
                  "last_cows_total": number("last_cows_total")}
    for flag in ("history_of_seizures", "history_of_delirium_tremens",
                 "significant_comorbidity", "pregnant"):
        assessment[flag] = form.get(flag) == "yes"
    body = {"resident": {"name": form.get("name", ""), "date_of_birth": form.get("date_of_birth", ""),
                         "nhs_number": form.get("nhs_number") or None},
            "substances": form.getlist("substances"), "assessment": assessment}
    if form.get("override_reason", "").strip():
        body["override_reason"] = form["override_reason"].strip()
    reasons = {key.removeprefix("change_reason."): value.strip() for key, value in form.items()
               if key.startswith("change_reason.") and value.strip()}
    if reasons:
        body["change_reasons"] = reasons
    return body


@bp.route("/admissions/new", methods=["GET", "POST"])
@roles_required(CLINICAL_STAFF)
def admit():
    """The admission form, with the competence check shown as it is filled in."""
    errors, declined, form = {}, None, request.form
    if request.method == "POST":
        staff = current_staff()

        def save():
            admission = services.admit_resident(staff, now=now(), **body)
            flash(f"{admission.resident.name} admitted.")
            return redirect(url_for("unit_pages.resident", admission_id=admission.id))

        try:
            body = ReferralIn().load(_referral_from_form(form))
            # A double tap or a resent form admits once: the form carries its own key.
            response = run_once(form.get("idempotency_key") or str(uuid.uuid4()),
                                fingerprint_of("admit", sorted(form.items(multi=True))), save)
            if response.status_code < 400:
                return response
            kept = response.get_json(silent=True) or {}  # the same declined form, sent again
            declined = SimpleNamespace(detail=kept.get("detail", "Declined."), extra={
                "reasons": kept.get("reasons", []), "recommended_setting": kept.get("recommended_setting")})
        except ValidationError as invalid:
            errors = _flatten(invalid.messages)
        except DomainError as refusal:
            if refusal.type == "admission-declined":
                declined = refusal
            elif refusal.type == "re-referral-changes-unexplained":
                errors = {"_": [refusal.detail], **(refusal.errors or {})}
            else:
                errors = {"_": [refusal.detail]}
    # A re-referral's changed figures each get a box for the reason (those asked for, and
    # those already given, so that a second send keeps them).
    changed = sorted({key.removeprefix("change_reasons.") for key in errors if key.startswith("change_reasons.")}
                     | {key.removeprefix("change_reason.") for key in form if key.startswith("change_reason.")})
    status = 422 if (errors or declined) else 200
    return render_template("unit/admit.html", form=form, errors=errors, declined=declined,
                           idempotency_key=str(uuid.uuid4()), changed=changed,
                           substances=SUBSTANCES, opioids=CURRENT_OPIOIDS, labels=SETTING_LABELS,
                           may_override=current_staff().role in DOCTORS,
                           model=services.model_at(current_staff().unit_id, now())), status


def _flatten(messages: dict) -> dict:
    flat = {}
    for key, value in messages.items():
        if isinstance(value, dict):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


@bp.route("/admissions/<int:admission_id>")
@roles_required(ALL_ROLES)
def resident(admission_id: int):
    """The resident's page: admission, assessment, risk and discharge."""
    at = now()
    admission = services.get_admission(current_staff(), admission_id)
    sections = [block for extension in board_extensions if extension.sections
                for block in extension.sections(admission, at)]
    return render_template("unit/resident.html", a=admission_view(admission, at), sections=sections,
                           discharge_types=DISCHARGE_TYPES, checklist_items=HARM_REDUCTION_ITEMS,
                           labels=SETTING_LABELS)


@bp.route("/admissions/<int:admission_id>/discharge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def discharge(admission_id: int):
    """Discharge from the resident page."""
    try:
        body = DischargeIn().load({"discharge_type": request.form.get("discharge_type", ""),
                                   "note": request.form.get("note") or None})
        if request.form.get("confirm") != "yes":
            # One stray tap must not end someone's observations and close their escalations.
            flash("Not discharged: tick the box to confirm the resident is leaving the unit.")
            return redirect(url_for("unit_pages.resident", admission_id=admission_id))
        services.discharge_admission(current_staff(), admission_id, now=now(), **body)
    except ValidationError as invalid:
        flash("Not discharged: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in invalid.messages.items()))
    except DomainError as refusal:
        flash(f"Not discharged: {refusal.detail}")
    return redirect(url_for("unit_pages.resident", admission_id=admission_id))


@bp.route("/admissions/<int:admission_id>/harm-reduction", methods=["POST"])
@roles_required(CLINICAL_STAFF)
def harm_reduction(admission_id: int):
    """Tick the harm-reduction checklist."""
    body = HarmReductionIn().load({key: request.form.get(key) == "yes" for key in HARM_REDUCTION_ITEMS})
    try:
        services.update_harm_reduction(current_staff(), admission_id, items=body,
                                       note=request.form.get("note") or None, now=now())
    except DomainError as refusal:
        flash(f"Not saved: {refusal.detail}")
    return redirect(url_for("unit_pages.resident", admission_id=admission_id))


# --- sign-in and sign-out ---------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect a signed-in nurse to another host.
    return safe_next(target, url_for("unit_pages.board"))


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """The sign-in form."""
    error = None
    if request.method == "POST":
        try:
            _, token = sign_in(request.form.get("username", ""), request.form.get("password", ""),
                               ip=request.remote_addr, user_agent=request.user_agent.string,
                               now=now())
        except DomainError as refusal:
            error = refusal.detail
        else:
            session.clear()
            session["token"] = token
            return redirect(_safe_next(request.args.get("next")))
    return render_template("unit/login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
@roles_required(ALL_ROLES)
def logout():
    """Sign out and revoke the session."""
    sign_out(session.get("token", ""), now())
    session.clear()
    return redirect(url_for("unit_pages.login"))


# --- the inspector's report and the audit log --------------------------------------------

@bp.route("/audit/report")
@roles_required(AUDITORS)
def report_page():
    """The report as a page, with its exports."""
    at = now()
    start, end = parse_period(request.args.get("from") or None, request.args.get("to") or None, at, unit_zone())
    report = build_report(current_staff(), start, end, at)
    return render_template("unit/report.html", r=report, tables=tables(report), alerts=report_alerts(report),
                           start=start, end=end, args=request.args)


@bp.route("/audit/log")
@roles_required(AUDITORS)
def log_page():
    """The audit log, searchable by resident, user, action and period."""
    page = max(whole_number(request.args.get("page") or "1") or 1, 1)
    query = {k: (request.args.get(k) or None) for k in ("resident", "user", "action")}
    query["start"], query["end"] = request.args.get("from") or None, request.args.get("to") or None
    rows, total = search_audit_log(current_staff(), query, page, 50, now())
    return render_template("unit/audit_log.html", rows=rows, total=total, page=page, args=request.args,
                           pages=(total + 49) // 50)
