"""FHIR R4, read-only, at ``/fhir/R4``: the machinery (reads, searches, Bundles, paging,
``$everything``, OperationOutcome errors, the CapabilityStatement) and a registry of resource
types. The unit's own types (Patient, Encounter, Consent) are in ``unit.fhir_types``.

Each package contributes its resource types (``monitoring.fhir``, ``medication.fhir``);
``config.app`` registers them here when the app is assembled, so unit imports neither.

Who reads what: the same sessions and roles as the API. A unit's staff read their own unit's
residents only; the inspector reads every unit. A read made *for a recipient* names it in the
``X-Consent-Scope`` header (``gp``, ``community_team``, ``ndtms``): then only residents with
a consent in force given to that recipient exist (anyone else is not found, as a record that
does not exist), and the disclosure is audited. Without the header the read is for the
resident's care by the unit itself (or the inspector's statutory inspection).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, request
from sqlalchemy import select
from werkzeug.exceptions import NotAcceptable

from config.clock import now as clock_now
from config.clock import unit_zone
from config.db import unit_of_work
from config.errors import DomainError, NotFound
from config.extensions import db
from unit.audit import record_event
from unit.auth import ALL_ROLES, current_staff, roles_required
from unit.consent import shared_with
from unit.models import Resident, Staff

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UKCORE_ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
UKCORE_ETHNIC_CATEGORY_ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
SCOPE_HEADER = "X-Consent-Scope"
# Recipients a FHIR client may read for. A family member is told in person, never sent a
# record by machine: "family" is a consent recipient but no FHIR scope.
SCOPES = ("gp", "community_team", "ndtms")
DEFAULT_COUNT, MAX_COUNT = 50, 200
MAX_ID = 2**31 - 1
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

bp = Blueprint("fhir", __name__, url_prefix="/fhir/R4")


# --- errors ----------------------------------------------------------------------------------

class FhirNotFound(NotFound):
    type = "fhir-not-found"
    title = "No such resource (or not shared for this scope)"


class FhirInvalidRequest(DomainError):
    type = "fhir-invalid-request"
    title = "The FHIR request is not valid"
    kind = "bad-request"


# OperationOutcome issue codes (http://hl7.org/fhir/issue-type) by HTTP status.
_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
                405: "not-supported", 406: "not-supported", 409: "conflict", 415: "not-supported",
                422: "processing", 429: "throttled", 503: "transient"}


def operation_outcome(status: int, title: str, detail: str | None,
                      errors: dict | None = None) -> dict[str, Any]:
    """An OperationOutcome of one error issue (and one per field for invalid parameters)."""
    code = _ISSUE_CODES.get(status, "exception")
    issues = [{"severity": "error", "code": code, "details": {"text": title},
               **({"diagnostics": detail} if detail else {})}]
    for name, messages in sorted((errors or {}).items()):
        text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
        issues.append({"severity": "error", "code": code, "diagnostics": f"{name}: {text}",
                       "expression": [name]})
    return {"resourceType": "OperationOutcome", "issue": issues}


def problems_as_operation_outcomes(response: Response) -> Response:
    """Every error under /fhir/R4, wherever it arose (routing, sign-in, roles, a search),
    leaves the app's one error mapping as a problem body: a FHIR client reads it as an
    OperationOutcome (installed on the app by ``install``)."""
    if response.mimetype == "application/problem+json" and _under_fhir(request.path):
        problem = json.loads(response.get_data())
        outcome = operation_outcome(response.status_code, problem.get("title", "Error"),
                                    problem.get("detail"), problem.get("errors"))
        response.set_data(json.dumps(outcome, ensure_ascii=False))
        response.mimetype = FHIR_JSON
    return response


def _under_fhir(path: str) -> bool:
    return path == bp.url_prefix or path.startswith(bp.url_prefix + "/")


def install(app, *types: ResourceType) -> None:
    """Serve FHIR R4 on the app with these resource types (the composition root calls it)."""
    from config.extensions import csrf
    from unit.fhir_types import UNIT_TYPES

    register_types(*UNIT_TYPES, *types)
    app.register_blueprint(bp)
    csrf.exempt(bp)  # read-only: nothing to forge
    app.after_request(problems_as_operation_outcomes)


# --- who reads, for whom ---------------------------------------------------------------------

@dataclass
class Reader:
    """One FHIR request: who reads, for which recipient (None: the unit's own care), when."""

    staff: Staff
    scope: str | None
    now: datetime
    base: str
    disclosed: set[int] = field(default_factory=set)  # residents sent to a recipient

    def resident_clauses(self, resident_id: Any, unit_id: Any) -> list:
        """SQL conditions: the resident's record is visible to this reader."""
        clauses = []
        if self.staff.role != "inspector":
            clauses.append(unit_id == self.staff.unit_id)
        if self.scope is not None:
            clauses.append(resident_id.in_(shared_with(self.scope)))
        return clauses

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


def reader_for_request() -> Reader:
    """The Reader of this request: the signed-in staff and the scope its client asked for."""
    scope = request.headers.get(SCOPE_HEADER, "").strip() or None
    if scope is not None and scope not in SCOPES:
        why = (" A family member is told in person, never sent the record." if scope == "family"
               else "")
        raise FhirInvalidRequest(f"{SCOPE_HEADER} must be one of: {', '.join(SCOPES)}.{why}",
                                 errors={SCOPE_HEADER: [f"One of: {', '.join(SCOPES)}."]})
    base = current_app.config.get("FHIR_BASE_URL") or request.url_root.rstrip("/") + bp.url_prefix
    return Reader(staff=current_staff(), scope=scope, now=clock_now(), base=base.rstrip("/"))


# --- search parameters -----------------------------------------------------------------------

def _values(raw: str) -> list[str]:
    values = [value.strip() for value in raw.split(",")]
    if not all(values):
        raise FhirInvalidRequest("An empty value in a search parameter.")
    return values


def record_id(text: str, what: str = "id") -> int | None:
    """A record id from a FHIR id ("12"); None when it cannot name a record (found nothing)."""
    if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
        return int(text)
    if not _FHIR_ID.match(text):
        raise FhirInvalidRequest(f"{text!r} is not a FHIR id.", errors={what: ["Not a FHIR id."]})
    return None


def reference_filter(column: Any, resource_type: str, param: str) -> Callable:
    """A reference search parameter (``patient=Patient/1``, ``patient=1``, comma for or)."""

    def apply(query, raw: str, reader: Reader):
        ids = []
        for value in _values(raw):
            kind, _, ident = value.rpartition("/")
            if kind and kind.rsplit("/", 1)[-1] != resource_type:
                raise FhirInvalidRequest(f"{param} refers to a {resource_type}.",
                                         errors={param: [f"A {resource_type} reference."]})
            ids.append(record_id(ident, param))
        return query.where(column.in_([i for i in ids if i is not None]))

    return apply


def patient_params(column: Any) -> dict[str, SearchParam]:
    """The ``patient`` and ``subject`` search parameters of a resource whose resident is
    ``column`` (every clinical resource type has both)."""
    return {"patient": SearchParam("reference", reference_filter(column, "Patient", "patient")),
            "subject": SearchParam("reference", reference_filter(column, "Patient", "subject"))}


def token_filter(match: Callable[[str | None, str, Reader], Any], param: str) -> Callable:
    """A token search parameter (``system|code``, ``|code``, ``code``; comma for or):
    ``match(system or None, code, reader)`` gives the SQL condition (``sa.false()``: none)."""

    def apply(query, raw: str, reader: Reader):
        conditions = []
        for value in _values(raw):
            system, bar, code = value.partition("|")
            if not bar:
                system, code = None, value
            if not code:
                raise FhirInvalidRequest(f"{param} needs a code.", errors={param: ["A code."]})
            conditions.append(match(system, code, reader))
        return query.where(sa.or_(*conditions))

    return apply


_DATE = re.compile(r"^(eq|ne|ge|gt|le|lt|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2})?)?)(T.+)?$")


def date_range(text: str, param: str) -> tuple[str, datetime, datetime]:
    """A date search value as (prefix, start, end): the instant or the day, month or year it
    names, in the unit's time zone when it has none."""
    match = _DATE.match(text)
    if not match or match.group(1) in ("ne", "sa", "eb", "ap"):
        raise FhirInvalidRequest(f"{param}: {text!r} is not a date with eq, ge, gt, le or lt.",
                                 errors={param: ["YYYY, YYYY-MM, YYYY-MM-DD or a dateTime, "
                                                 "prefixed by eq, ge, gt, le or lt."]})
    prefix, day, clock = match.group(1) or "eq", match.group(2), match.group(5)
    zone = unit_zone()
    try:
        if clock:
            instant = datetime.fromisoformat(day + clock.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=zone)
            return prefix, instant.astimezone(timezone.utc), instant.astimezone(timezone.utc)
        parts = [int(p) for p in day.split("-")]
        start = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
        if len(parts) == 3:
            end = start + timedelta(days=1)
        elif len(parts) == 2:
            end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        else:
            end = date(start.year + 1, 1, 1)
    except (ValueError, OverflowError):
        raise FhirInvalidRequest(f"{param}: {text!r} is not a date.",
                                 errors={param: ["Not a date."]}) from None
    return (prefix, datetime.combine(start, time(0), zone).astimezone(timezone.utc),
            datetime.combine(end, time(0), zone).astimezone(timezone.utc))


def date_filter(column: Any, param: str) -> Callable:
    """A date search parameter on a timestamp column (each value ANDed with the others)."""

    def apply(query, raw: str, reader: Reader):
        prefix, start, end = date_range(raw, param)
        instant = start == end
        condition = {
            "eq": (column == start) if instant else sa.and_(column >= start, column < end),
            "ge": column >= start, "gt": (column > end) if instant else (column >= end),
            "le": (column <= end) if instant else (column < end), "lt": column < start,
        }[prefix]
        return query.where(condition)

    return apply


def choice_filter(column: Any, allowed: dict[str, Any], param: str) -> Callable:
    """A token parameter over a fixed list of codes (``status=active``), comma for or."""

    def apply(query, raw: str, reader: Reader):
        wanted = []
        for value in _values(raw):
            code = value.rpartition("|")[2]
            if code not in allowed:
                raise FhirInvalidRequest(f"{param} is one of: {', '.join(allowed)}.",
                                         errors={param: [f"One of: {', '.join(allowed)}."]})
            wanted.extend(allowed[code] if isinstance(allowed[code], tuple) else (allowed[code],))
        return query.where(column.in_(wanted))

    return apply


# --- resource types --------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchParam:
    type: str  # FHIR search parameter type: token, reference, date, string
    apply: Callable  # (query, raw value, reader) -> query
    documentation: str = ""


@dataclass(frozen=True)
class ResourceType:
    """A resource type the server reads and searches, contributed by the package that owns
    its records. ``rows(reader)`` is every visible row (a select of the records, with what
    ``to_resource`` needs); ``id_column`` names a row; ``patient_column`` is the resident's
    id (for ``patient=`` and ``$everything``; None: not patient data, e.g. a Questionnaire).
    Every row of ``rows`` has a ``resident_id`` column (when it is patient data). Types that
    are not rows (``static``: definitions such as a Questionnaire) give them by id, and their
    parameters' ``apply(definition, value, None)`` say whether one matches."""

    name: str
    to_resource: Callable[[Reader, Any], dict]
    rows: Callable[[Reader], sa.Select] | None = None
    id_column: Any = None
    patient_column: Any = None
    params: dict[str, SearchParam] = field(default_factory=dict)
    sorts: dict[str, Any] = field(default_factory=dict)
    default_order: tuple = ()
    static: Callable[[Reader], dict[str, Any]] | None = None  # id -> definition
    # Narrows a search unless its parameters ask otherwise: (query, parameters) -> query.
    search_default: Callable[[sa.Select, dict[str, list[str]]], sa.Select] | None = None
    documentation: str = ""
    in_everything: bool = True


# The registry: filled when the app is assembled (config.app register_interoperability).
RESOURCE_TYPES: dict[str, ResourceType] = {}


def register_types(*types: ResourceType) -> None:
    """Add resource types to the server (the same type twice is one registration)."""
    for resource_type in types:
        RESOURCE_TYPES[resource_type.name] = resource_type


def _type(name: str) -> ResourceType:
    resource_type = RESOURCE_TYPES.get(name)
    if resource_type is None:
        raise FhirNotFound(f"This server has no resource type {name!r}; see /fhir/R4/metadata.")
    return resource_type


def read_resource(reader: Reader, name: str, ident: str) -> dict:
    """One resource by type and id, if the reader may see it."""
    resource_type = _type(name)
    if resource_type.static is not None:
        found = resource_type.static(reader).get(ident)
        if found is None:
            raise FhirNotFound(f"No {name} {ident!r}.")
        return resource_type.to_resource(reader, found)
    row_id = record_id(ident)
    row = None
    if row_id is not None:
        row = db.session.execute(resource_type.rows(reader).where(
            resource_type.id_column == row_id)).first()
    if row is None:
        raise FhirNotFound(f"No {name} {ident} that you may read"
                           + (f" for {reader.scope}." if reader.scope else "."))
    _note_disclosure(reader, resource_type, row)
    return resource_type.to_resource(reader, row)


def _note_disclosure(reader: Reader, resource_type: ResourceType, row: Any) -> None:
    if reader.scope is not None and resource_type.patient_column is not None:
        reader.disclosed.add(row.resident_id)


COMMON_PARAMS = ("_count", "_page", "_sort", "_format")


def search(reader: Reader, name: str, args: dict[str, list[str]]) -> dict:
    """A searchset Bundle of the resources of a type that match the parameters, a page at a
    time (``_count``, ``_page``), with ``self`` and ``next`` links."""
    resource_type = _type(name)
    unknown = sorted(set(args) - set(resource_type.params) - set(COMMON_PARAMS))
    if unknown:
        supported = ", ".join(sorted(resource_type.params)) or "none"
        raise FhirInvalidRequest(
            f"{name} has no search parameter {', '.join(unknown)} (it has: {supported}).",
            errors={param: ["Not a search parameter of this type."] for param in unknown})
    count = _whole(args, "_count", DEFAULT_COUNT, 0, MAX_COUNT)
    page = _whole(args, "_page", 1, 1, 100_000)
    if resource_type.static is not None:
        if set(args) - set(COMMON_PARAMS):
            found = [r for r in resource_type.static(reader).values()
                     if all(_static_match(resource_type, r, p, v)
                            for p, vs in args.items() if p not in COMMON_PARAMS for v in vs)]
        else:
            found = list(resource_type.static(reader).values())
        resources = [resource_type.to_resource(reader, r) for r in found]
        total = len(resources)
        resources = resources[(page - 1) * count:page * count]
    else:
        query = resource_type.rows(reader)
        if resource_type.search_default is not None:
            query = resource_type.search_default(query, args)
        for param, values in args.items():
            if param in COMMON_PARAMS:
                continue
            for value in values:
                query = resource_type.params[param].apply(query, value, reader)
        query = query.order_by(*_order(resource_type, args))
        total = db.session.scalar(select(sa.func.count()).select_from(
            query.order_by(None).subquery()))
        rows = db.session.execute(query.limit(count).offset((page - 1) * count)).all()
        for row in rows:
            _note_disclosure(reader, resource_type, row)
        resources = [resource_type.to_resource(reader, row) for row in rows]
    links = [{"relation": "self", "url": _page_url(reader, name, args, page, count)}]
    if page * count < total:
        links.append({"relation": "next", "url": _page_url(reader, name, args, page + 1, count)})
    return bundle(reader, resources, total=total, links=links)


def _static_match(resource_type: ResourceType, definition: Any, param: str, value: str) -> bool:
    return resource_type.params[param].apply(definition, value, None)


def _whole(args: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = args.get(name)
    if not values:
        return default
    text = values[-1]
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise FhirInvalidRequest(f"{name} is a whole number from {low} to {high}.",
                                 errors={name: [f"{low} to {high}."]})
    return int(text)


def _order(resource_type: ResourceType, args: dict[str, list[str]]) -> tuple:
    order = list(resource_type.default_order)
    sort = (args.get("_sort") or [None])[-1]
    if sort:
        descending = sort.startswith("-")
        column = resource_type.sorts.get(sort.lstrip("-"))
        if column is None:
            options = ", ".join(sorted(resource_type.sorts)) or "none"
            raise FhirInvalidRequest(f"_sort by {sort.lstrip('-')} is not offered (offered: {options}).",
                                     errors={"_sort": [f"One of: {options}."]})
        order = [column.desc() if descending else column.asc(), resource_type.id_column.desc()
                 if descending else resource_type.id_column.asc()]
    return tuple(order)


def _page_url(reader: Reader, name: str, args: dict[str, list[str]], page: int, count: int) -> str:
    query = [(key, value) for key, values in sorted(args.items()) if key not in ("_page", "_count")
             for value in values] + [("_count", str(count)), ("_page", str(page))]
    return reader.url(name) + "?" + urlencode(query)


def bundle(reader: Reader, resources: list[dict], *, total: int | None = None,
           links: list[dict] | None = None) -> dict:
    """A searchset Bundle of resources."""
    return {"resourceType": "Bundle", "type": "searchset",
            "timestamp": instant(reader.now), "total": len(resources) if total is None else total,
            **({"link": links} if links else {}),
            "entry": [{"fullUrl": reader.url(f"{r['resourceType']}/{r['id']}"), "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def everything(reader: Reader, resident_id: str) -> dict:
    """``Patient/<id>/$everything``: the resident and every record of every registered type
    about them, in one Bundle (what a GP letter or a transfer needs)."""
    patient = read_resource(reader, "Patient", resident_id)
    resources = [patient]
    for name, resource_type in RESOURCE_TYPES.items():
        if name == "Patient" or resource_type.patient_column is None or not resource_type.in_everything:
            continue
        query = resource_type.rows(reader).where(resource_type.patient_column == int(patient["id"]))
        rows = db.session.execute(query.order_by(*resource_type.default_order)).all()
        resources.extend(resource_type.to_resource(reader, row) for row in rows)
    return bundle(reader, resources)


@unit_of_work
def record_disclosure(reader: Reader, path: str) -> None:
    """Audit what was sent to a recipient (a scoped read): who, for whom, which residents."""
    if reader.scope is None or not reader.disclosed:
        return
    for unit_id, resident_ids in _by_unit(reader.disclosed).items():
        record_event(unit_id=unit_id, actor=reader.staff, action="fhir.disclose",
                     entity_type="fhir", entity_id=None, now=reader.now,
                     resident_id=resident_ids[0] if len(resident_ids) == 1 else None,
                     after={"recipient": reader.scope, "path": path[:500],
                            "residents": resident_ids})


def _by_unit(resident_ids: set[int]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for resident_id, unit_id in db.session.execute(
            select(Resident.id, Resident.unit_id).where(Resident.id.in_(sorted(resident_ids)))
            .order_by(Resident.id)):
        grouped.setdefault(unit_id, []).append(resident_id)
    return grouped


def capability_statement(reader: Reader) -> dict:
    """What this server offers: every registered type, its interactions and parameters."""
    resources = []
    for name, resource_type in sorted(RESOURCE_TYPES.items()):
        entry = {"type": name, "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "searchParam": [{"name": p, "type": param.type,
                                  **({"documentation": param.documentation}
                                     if param.documentation else {})}
                                 for p, param in sorted(resource_type.params.items())]}
        if resource_type.documentation:
            entry["documentation"] = resource_type.documentation
        if name == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": instant(reader.now),
        "kind": "instance", "fhirVersion": FHIR_VERSION, "format": ["json"],
        "software": {"name": "Detox unit system"},
        "implementation": {"description": "A residential detox unit's clinical record, read-only",
                           "url": reader.base},
        "rest": [{"mode": "server", "security": {"description": (
            "Sign in as for the API (session cookie). A unit's staff read their own unit, the "
            f"inspector every unit. A read for a recipient sends {SCOPE_HEADER}: "
            f"{', '.join(SCOPES)}; only residents who consented to share with it are found, "
            "and the disclosure is audited.")},
            "resource": resources}],
    }


def instant(at: datetime) -> str:
    """A FHIR instant (UTC, with its offset)."""
    return at.astimezone(timezone.utc).isoformat()


def reference(resource_type: str, ident: Any, display: str | None = None) -> dict:
    return {"reference": f"{resource_type}/{ident}", **({"display": display} if display else {})}


# --- views -----------------------------------------------------------------------------------

def _fhir_response(body: dict, status: int = 200) -> Response:
    return current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                      mimetype=FHIR_JSON)


def _check_format() -> None:
    wanted = request.args.get("_format")
    if wanted and wanted not in ("json", "application/json", "application/fhir+json"):
        raise NotAcceptable("This server speaks FHIR JSON only (_format=json).")


def _args() -> dict[str, list[str]]:
    return {key: request.args.getlist(key) for key in request.args}


def _answer(build: Callable[[Reader], dict]) -> Response:
    _check_format()
    reader = reader_for_request()
    body = build(reader)
    record_disclosure(reader, request.full_path.rstrip("?"))
    return _fhir_response(body)


@bp.route("/metadata", methods=["GET"])
@roles_required(ALL_ROLES)
def metadata():
    """The CapabilityStatement."""
    return _answer(capability_statement)


@bp.route("/Patient/<ident>/$everything", methods=["GET"])
@roles_required(ALL_ROLES)
def patient_everything(ident):
    """Everything about one resident, in one Bundle."""
    return _answer(lambda reader: everything(reader, ident))


@bp.route("/<name>", methods=["GET"])
@roles_required(ALL_ROLES)
def search_type(name):
    """Search a resource type."""
    return _answer(lambda reader: search(reader, name, _args()))


@bp.route("/<name>/<ident>", methods=["GET"])
@roles_required(ALL_ROLES)
def read(name, ident):
    """Read one resource."""
    return _answer(lambda reader: read_resource(reader, name, ident))
