"""The unit package's JSON API: thin handlers that load, call one service and dump."""
from __future__ import annotations

from flask import Response, current_app, jsonify, request, session
from marshmallow import Schema, fields, validate

from config.clock import now, unit_zone
from config.errors import ValidationFailed
from config.idempotency import idempotent
from config.api import ApiBlueprint
from unit import consent, protocol, record, returns, services
from unit.auth import (ALL_ROLES, AUDITORS, CLINICAL_LEADS, CLINICAL_STAFF, MANAGERS, current_staff, public, roles_required,
                       sign_in, sign_out)
from unit.report import (build_report, parse_period, report_schema, search_audit_log, tables, to_csv,
                         to_pdf, to_zip)
from unit.schemas import (
    AdmissionQuery,
    AdmissionSchema,
    AuditEventSchema,
    AuditQuery,
    ConsentIn,
    ConsentSchema,
    ConsentWithdrawIn,
    DischargeIn,
    HarmReductionIn,
    HarmReductionSchema,
    LoginIn,
    ModelChangeIn,
    ModelChangeResult,
    ProposalQuery,
    ProposalRejectIn,
    ProposalResult,
    ProposalSchema,
    ProtocolChangeIn,
    ProtocolSchema,
    ReferralCheckSchema,
    ReferralIn,
    ReportQuery,
    ReturnFieldsIn,
    SessionSchema,
    UnitSchema,
    admission_view,
)

blp = ApiBlueprint("unit_api", __name__, url_prefix="/api/v1",
                description="Sign-in, the unit and its care model, residents and admissions; the "
                "unit-model report for inspectors, and the audit log")


@blp.route("/auth/login", methods=["POST"])
@public
@blp.arguments(LoginIn())
@blp.response(200, SessionSchema)
def login(body):
    """Sign in with a username and password; the session cookie carries the session."""
    staff, token = sign_in(body["username"], body["password"], ip=request.remote_addr,
                           user_agent=request.user_agent.string, now=now())
    session.clear()
    session["token"] = token
    return _session_view(staff)


@blp.route("/auth/logout", methods=["POST"])
@roles_required(ALL_ROLES)
@blp.response(204)
def logout():
    """End this session (it is revoked server-side)."""
    sign_out(session.get("token", ""), now())
    session.clear()


@blp.route("/auth/session", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, SessionSchema)
def who_am_i():
    """The signed-in member of staff and their unit."""
    return _session_view(current_staff())


def _session_view(staff) -> dict:
    return {"staff": staff, "unit": staff.unit.code,
            "expires_idle_minutes": int(current_app.config["SESSION_IDLE_TIMEOUT"].total_seconds() // 60)}


@blp.route("/unit", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, UnitSchema)
def get_unit():
    """The signed-in user's unit, with the care model in force now and its history."""
    staff = current_staff()
    return {"id": staff.unit.id, "code": staff.unit.code, "name": staff.unit.name,
            "model": services.model_at(staff.unit_id, now()),
            "model_history": services.model_history(staff.unit_id)}


@blp.route("/unit/model", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(ModelChangeIn())
@blp.response(201, ModelChangeResult)
def change_model(body):
    """Declare a new care model (managers), with a reason and an effective time."""
    staff, at = current_staff(), now()
    change = services.change_care_model(staff, model=body["model"], reason=body["reason"],
                                        effective_at=body["effective_at"], now=at)
    warnings = []
    if change.model == "medically_monitored":
        warnings = [f"{a.resident.name} (admission {a.id}) is flagged high-risk: a medically "
                    "monitored unit could not admit them; review or arrange transfer."
                    for a in services.high_risk_admissions(staff.unit_id)]
    return {"change": change, "model": services.model_at(staff.unit_id, at), "warnings": warnings}


@blp.route("/unit/protocol", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ProtocolSchema)
def get_protocol():
    """The unit's protocol in force: each section with its defaults filled in, the version,
    its reason, who adopted it and when."""
    return services.effective_protocol(current_staff().unit_id)


@blp.route("/unit/protocol", methods=["POST"])
@roles_required(MANAGERS)
@blp.arguments(ProtocolChangeIn())
@idempotent
@blp.response(202, ProposalResult)
@blp.alt_response(422, description="protocol-invalid or protocol-outside-safety-envelope: "
                  "`errors` names each refused setting (and its bound)")
def propose_protocol(body):
    """Propose the unit's own protocol values for a section (managers). Nothing changes in
    force until the clinical lead approves the proposal."""
    proposal = protocol.propose_protocol_change(current_staff(), section=body["section"],
                                                values=body["values"], reason=body["reason"], now=now())
    return {"proposal": proposal}


@blp.route("/unit/protocol/proposals", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(ProposalQuery(), location="query")
@blp.response(200, ProposalSchema(many=True))
def list_proposals(query):
    """The unit's protocol proposals, newest first; ``status=proposed`` for those awaiting the
    clinical lead."""
    return protocol.list_protocol_proposals(current_staff(), status=query["status"])


@blp.route("/unit/protocol/proposals/<int:proposal_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ProposalSchema)
def get_proposal(proposal_id):
    """One protocol proposal of the unit."""
    return protocol.get_protocol_proposal(current_staff(), proposal_id)


@blp.route("/unit/protocol/proposals/<int:proposal_id>/approve", methods=["POST"])
@roles_required(CLINICAL_LEADS)
@idempotent
@blp.response(201, ProtocolSchema)
@blp.alt_response(409, description="protocol-proposal-decided: it was approved or rejected already")
@blp.alt_response(422, description="protocol-outside-safety-envelope: it would now cross a bound")
def approve_proposal(proposal_id):
    """The clinical lead approves a proposal (never their own): in force from now, a new version
    naming who proposed and who approved it."""
    staff = current_staff()
    protocol.approve_protocol_proposal(staff, proposal_id, now=now())
    return services.effective_protocol(staff.unit_id)


@blp.route("/unit/protocol/proposals/<int:proposal_id>/reject", methods=["POST"])
@roles_required(CLINICAL_LEADS)
@blp.arguments(ProposalRejectIn())
@idempotent
@blp.response(200, ProposalResult)
@blp.alt_response(409, description="protocol-proposal-decided: it was approved or rejected already")
def reject_proposal(body, proposal_id):
    """The clinical lead rejects a proposal, with the reason; nothing changes in force."""
    proposal = protocol.reject_protocol_proposal(current_staff(), proposal_id, reason=body["reason"],
                                                 now=now())
    return {"proposal": proposal}


@blp.route("/referrals/check", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ReferralIn())
@blp.response(200, ReferralCheckSchema)
def check_referral(body):
    """What this unit would decide for a referral, and the recommended setting; saves nothing."""
    return services.check_referral(current_staff(), now=now(), **body)


@blp.route("/admissions", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ReferralIn())
@idempotent
@blp.response(201, AdmissionSchema)
@blp.alt_response(422, description="Validation failed, or admission-declined with `reasons`")
def admit(body):
    """Admit a referral; a unit declines (422 admission-declined) what it cannot meet, and a
    re-referral after a decline needs a reason for each changed figure (422)."""
    at = now()
    admission = services.admit_resident(current_staff(), now=at, **body)
    return admission_view(admission, at)


@blp.route("/admissions", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.arguments(AdmissionQuery(), location="query")
@blp.response(200, AdmissionSchema(many=True))
def list_admissions(query):
    """The unit's admissions, newest first; ``status=active`` for those on the unit now."""
    at = now()
    return [admission_view(a, at) for a in services.list_admissions(current_staff(), status=query["status"])]


@blp.route("/admissions/<int:admission_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, AdmissionSchema)
def get_admission(admission_id):
    """One admission of the unit."""
    at = now()
    return admission_view(services.get_admission(current_staff(), admission_id), at)


@blp.route("/admissions/<int:admission_id>/discharge", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(DischargeIn())
@idempotent
@blp.response(200, AdmissionSchema)
def discharge(body, admission_id):
    """Discharge (completed, self-discharged, transferred, other)."""
    at = now()
    admission = services.discharge_admission(current_staff(), admission_id, now=at, **body)
    return admission_view(admission, at)


@blp.route("/admissions/<int:admission_id>/harm-reduction", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(HarmReductionIn())
@idempotent
@blp.response(200, HarmReductionSchema)
def harm_reduction(body, admission_id):
    """Record the harm-reduction checklist after a self-discharge."""
    note = body.pop("note", None)
    return services.update_harm_reduction(current_staff(), admission_id, items=body, note=note, now=now())


# --- the inspector's report and the audit log --------------------------------------------

def _report_response(query: dict) -> Response:
    at = now()
    start, end = parse_period(query.get("start"), query.get("end"), at, unit_zone())
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
                raise ValidationFailed(f"No table {name!r}.", errors={"table": [f"One of: {', '.join(all_tables)}."]})
            return Response(to_csv(*all_tables[name]), mimetype="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{stem}-{name}.csv"'})
        return Response(to_zip(report), mimetype="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{stem}-csv.zip"'})
    return jsonify(report_schema().dump(report))


@blp.route("/audit/report", methods=["GET"])
@roles_required(AUDITORS)
@blp.arguments(ReportQuery(), location="query")
@blp.response(200, "Report", description="The report: JSON by default, or the export that "
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
    rows, total = search_audit_log(current_staff(), query, pagination_parameters.page,
                                   pagination_parameters.page_size, now())
    pagination_parameters.item_count = total
    return rows


@blp.route("/admissions/<int:admission_id>/return-fields", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ReturnFieldsIn())
@idempotent
@blp.response(200, AdmissionSchema)
def return_fields(body, admission_id):
    """Record or correct the fields the commissioners' return needs (only those given; null
    clears one); also after discharge."""
    at = now()
    admission = record.update_return_fields(current_staff(), admission_id, values=body, now=at)
    return admission_view(admission, at)


@blp.route("/residents/<int:resident_id>/consents", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, ConsentSchema(many=True))
def list_consents(resident_id):
    """A resident's decisions about sharing their record: those in force first."""
    return consent.list_consents(current_staff(), resident_id)


@blp.route("/residents/<int:resident_id>/consents", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ConsentIn())
@idempotent
@blp.response(201, ConsentSchema)
def record_consent(body, resident_id):
    """Record a resident's decision (given or refused) to share with a recipient; it replaces
    the decision in force for that recipient."""
    return consent.record_consent(current_staff(), resident_id, now=now(), **body)


@blp.route("/consents/<int:consent_id>/withdraw", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(ConsentWithdrawIn())
@idempotent
@blp.response(200, ConsentSchema)
def withdraw_consent(body, consent_id):
    """Withdraw a decision in force: nothing is shared with that recipient from now on."""
    return consent.withdraw_consent(current_staff(), consent_id, reason=body["reason"], now=now())


class ReturnQuery(Schema):
    month = fields.String(required=True, validate=validate.Regexp(
        returns._MONTH, error="YYYY-MM, e.g. 2026-11."), metadata={"description": "YYYY-MM"})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class CheckQuery(Schema):
    month = fields.String(required=True, validate=validate.Regexp(
        returns._MONTH, error="YYYY-MM, e.g. 2026-11."), metadata={"description": "YYYY-MM"})


@blp.route("/returns/ndtms", methods=["GET"])
@roles_required(MANAGERS)
@blp.arguments(ReturnQuery(), location="query")
@blp.response(200, description="The return: JSON (rows, aggregate, check), or the rows as CSV "
              "with format=csv")
@blp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def ndtms_return(query):
    """The month's NDTMS-style return: one row per episode open in the month whose resident
    consented to share with NDTMS; the others counted in the aggregate. Audited."""
    report = returns.export_ndtms_return(current_staff(), query["month"], now())
    if query["format"] == "csv":
        return Response(returns.to_csv(report), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="ndtms-{report["unit"]["code"]}-'
                                   f'{query["month"]}.csv"'})
    return report


@blp.route("/returns/ndtms/check", methods=["GET"])
@roles_required(MANAGERS)
@blp.arguments(CheckQuery(), location="query")
@blp.response(200)
def ndtms_check(query):
    """The check before submission: which episodes lack a field, which residents withheld
    consent (excluded from the identifiable return, counted in the aggregate)."""
    return returns.check_ndtms_return(current_staff(), query["month"], now())
