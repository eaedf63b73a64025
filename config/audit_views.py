"""The inspection report and the audit log: API and pages (managers and inspectors)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint as PageBlueprint
from flask import Response, render_template, request
from config.errors import ApiBlueprint
from marshmallow import Schema, fields, validate

from config.clock import now, unit_zone
from config.report import build_report, parse_period, tables, to_csv, to_pdf, to_zip
from unit.audit import search_events
from unit.auth import current_staff, roles_required
from unit.schemas import whole_number

AUDITORS = ("manager", "inspector")
blp = ApiBlueprint("audit_api", __name__, url_prefix="/api/v1",
                description="The unit-model report for inspectors, and the audit log")
pages = PageBlueprint("audit_pages", __name__)


class ReportQuery(Schema):
    start = fields.String(data_key="from", load_default=None, metadata={"description": "YYYY-MM-DD or ISO timestamp"})
    end = fields.String(data_key="to", load_default=None, metadata={"description": "YYYY-MM-DD (inclusive) or ISO timestamp"})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "pdf")))
    table = fields.String(load_default=None, metadata={"description": "With format=csv: one table; without: a ZIP of all"})


class ReportSchema(Schema):
    unit = fields.Dict()
    period = fields.Dict()
    model_history = fields.List(fields.Dict())
    protocol_versions = fields.List(fields.Dict())
    admissions = fields.Dict()
    observations = fields.Dict()
    escalations = fields.Dict()
    medication = fields.Dict()
    audit_chain = fields.Dict()


class AuditQuery(Schema):
    resident = fields.String(load_default=None, metadata={"description": "Resident id or part of the name"})
    user = fields.String(load_default=None)
    action = fields.String(load_default=None, metadata={"description": "Action or its prefix, e.g. dose."})
    start = fields.String(data_key="from", load_default=None)
    end = fields.String(data_key="to", load_default=None)


class AuditEventSchema(Schema):
    seq = fields.Integer()
    at = fields.DateTime()
    user = fields.String(allow_none=True)
    role = fields.String(attribute="actor_role", allow_none=True)
    action = fields.String()
    entity_type = fields.String()
    entity_id = fields.String(allow_none=True)
    resident_id = fields.Integer(allow_none=True)
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
    hash = fields.String()


def _zone() -> ZoneInfo:
    return unit_zone()


def _report_response(query: dict):
    at = now()
    start, end = parse_period(query.get("start"), query.get("end"), at, _zone())
    report = build_report(current_staff(), start, end, at)
    stem = f"report-{report['unit']['code']}-{start:%Y%m%d}-{end:%Y%m%d}"
    if query.get("format") == "pdf":
        return Response(to_pdf(report), mimetype="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.pdf"'})
    if query.get("format") == "csv":
        all_tables = tables(report)
        name = query.get("table")
        if name:
            if name not in all_tables:
                from config.errors import ValidationFailed

                raise ValidationFailed(f"No table {name!r}.", errors={"table": [f"One of: {', '.join(all_tables)}."]})
            return Response(to_csv(*all_tables[name]), mimetype="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{stem}-{name}.csv"'})
        return Response(to_zip(report), mimetype="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{stem}-csv.zip"'})
    return report


@blp.route("/audit/report", methods=["GET"])
@roles_required(AUDITORS)
@blp.arguments(ReportQuery(), location="query")
@blp.response(200, ReportSchema, description="The report: JSON by default, or the export that "
              "``format`` asks for (csv: one table, or a ZIP of all; pdf)")
@blp.doc(responses={200: {"content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/zip": {"schema": {"type": "string", "format": "binary"}},
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def report(query):
    """The unit-model report for a period (``from``, ``to``); ``format=csv`` or ``pdf`` for exports."""
    return _report_response(query)


@blp.route("/audit/events", methods=["GET"])
@roles_required(AUDITORS)
@blp.arguments(AuditQuery(), location="query")
@blp.response(200, AuditEventSchema(many=True))
@blp.paginate()
def audit_events(query, pagination_parameters):
    """The audit log, newest first, searchable by resident, user, action and period."""
    rows, total = _search(query, pagination_parameters.page, pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return rows


def _search(query: dict, page: int, per_page: int):
    start = end = None
    if query.get("start") or query.get("end"):
        start, end = parse_period(query.get("start") or "2000-01-01", query.get("end"), now(), _zone())
    rows, total = search_events(current_staff().unit_id, resident=query.get("resident"), user=query.get("user"),
                                action=query.get("action"), start=start, end=end, page=page, per_page=per_page)
    return [{**{c: getattr(event, c) for c in ("seq", "at", "actor_role", "action", "entity_type", "entity_id",
                                               "resident_id", "before", "after", "hash")}, "user": username}
            for event, username in rows], total


@pages.route("/audit/report")
@roles_required(AUDITORS)
def report_page():
    """The report as a page, with its exports."""
    at = now()
    start, end = parse_period(request.args.get("from") or None, request.args.get("to") or None, at, _zone())
    report = build_report(current_staff(), start, end, at)
    return render_template("report.html", r=report, tables=tables(report), start=start, end=end,
                           args=request.args)


@pages.route("/audit/log")
@roles_required(AUDITORS)
def log_page():
    """The audit log, searchable by resident, user, action and period."""
    page = max(whole_number(request.args.get("page") or "1") or 1, 1)
    query = {k: (request.args.get(k) or None) for k in ("resident", "user", "action")}
    query["start"], query["end"] = request.args.get("from") or None, request.args.get("to") or None
    rows, total = _search(query, page, 50)
    return render_template("audit_log.html", rows=rows, total=total, page=page, args=request.args,
                           pages=(total + 49) // 50)
