"""The API's machinery: flask-smorest's Api and Blueprint, and the one place that turns every
error into an HTTP problem (RFC 9457) or, for a browser, an error page."""
from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, Response, g, jsonify, render_template, request
from flask_smorest import Api, Blueprint
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from config.db import end_transaction
from config.errors import DomainError
from config.extensions import db

log = logging.getLogger(__name__)

PROBLEM_BASE = "/problems/"


# The only mapping from domain error kinds to HTTP status codes.
STATUS_BY_KIND = {
    "bad-request": 400,
    "invalid": 422,
    "not-found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unauthorized": 401,
    "throttled": 429,
}


def problem(status: int, type_: str, title: str, detail: str | None = None, *,
            errors: dict | None = None, headers: dict | None = None, **extra: Any) -> Response:
    """A problem-details JSON response."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = json.loads(json.dumps(errors))  # int keys (list items) as text: sortable
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def wants_json() -> bool:
    """True for API calls (and clients that ask for JSON), where errors are problem bodies."""
    if request.path.startswith(("/api/", "/fhir/")):  # FHIR: OperationOutcome, made from it
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def domain_error_response(error: DomainError) -> Response:
    """The problem response for a domain error."""
    status = STATUS_BY_KIND[error.kind]
    # Read, not popped: a recorded refusal's response is built twice (kept with its
    # Idempotency-Key, then answered), and both must carry the header.
    extra = {k: v for k, v in error.extra.items() if k != "retry_after"}
    headers = {"Retry-After": str(error.extra["retry_after"])} if "retry_after" in error.extra else None
    return problem(status, error.type, error.title, error.detail, errors=error.errors,
                   headers=headers, **extra)


def http_error_response(error: HTTPException) -> Response:
    """Turn any werkzeug/webargs HTTP error into a problem body."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    if isinstance(errors, dict) and set(errors) <= {"json", "query", "form", "headers", "view_args"}:
        # webargs nests by location; flatten so that fields are named directly.
        flat: dict = {}
        for location, fields in errors.items():
            flat.update(fields if isinstance(fields, dict) else {location: fields})
        errors = flat
    slug = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
            405: "method-not-allowed", 409: "conflict", 413: "too-large", 415: "unsupported-media-type",
            422: "validation-error", 429: "too-many-attempts"}.get(status, "http-error")
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail = data.get("message")
    if detail is None and status == 422:
        detail = "Some fields are not valid; see errors."
    elif detail is None and status < 500:
        detail = error.description
    if status >= 500:
        detail = "The server could not complete the request; nothing was saved."
    return problem(status, slug, title, detail, errors=errors if isinstance(errors, dict) else None,
                   headers=data.get("headers"))


def register_error_handlers(app: Flask) -> None:
    """Install the handlers: JSON problems for the API, friendly pages for browsers."""

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        if wants_json():
            return domain_error_response(error)
        status = STATUS_BY_KIND[error.kind]
        return render_template("error.html", status=status, title=error.title,
                               detail=error.detail), status

    @app.errorhandler(OperationalError)
    def _db_unavailable(error: OperationalError):
        # The database is down or locked past the busy timeout: tell the client to retry.
        log.error("database unavailable: %s", error)
        end_transaction(db.session())
        g.pop("staff", None)  # expired by the rollback: no hook or template may reload it now
        if wants_json():
            return problem(503, "database-unavailable", "Service Unavailable",
                           "The database is unavailable; nothing was saved. Retry shortly.",
                           headers={"Retry-After": "5"})
        return render_template("error.html", status=503, title="Service unavailable",
                               detail="The database is unavailable; nothing was saved. Retry shortly."), 503, {"Retry-After": "5"}

    @app.errorhandler(IntegrityError)
    def _integrity(error: IntegrityError):
        # Two writes raced and the database kept its rule (a unique slot, one active admission).
        log.warning("integrity error: %s", error.orig)
        db.session.rollback()
        if wants_json():
            return problem(409, "conflict", "Conflict",
                           "Another change to the same record was saved first; nothing was saved. "
                           "Reload and check before trying again.")
        return render_template("error.html", status=409, title="Conflict",
                               detail="Another change was saved first; nothing was saved."), 409

    @app.errorhandler(DBAPIError)
    def _db_error(error: DBAPIError):
        log.exception("database error")
        db.session.rollback()
        if error.connection_invalidated:
            return _db_unavailable(error)  # type: ignore[arg-type]
        if wants_json():
            return problem(500, "internal-error", "Internal Server Error",
                           "The server could not complete the request; nothing was saved.")
        return render_template("error.html", status=500, title="Something went wrong",
                               detail="Nothing was saved. Please try again."), 500

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if wants_json():
            return http_error_response(error)
        return render_template("error.html", status=error.code, title=error.name,
                               detail=error.description), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        db.session.rollback()
        if wants_json():
            return problem(500, "internal-error", "Internal Server Error",
                           "The server could not complete the request; nothing was saved.")
        return render_template("error.html", status=500, title="Something went wrong",
                               detail="Nothing was saved. Please try again."), 500


class ProblemSchema(ma.Schema):
    """The problem-details body of every API error (RFC 9457)."""

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Messages per field"})


class ProblemApi(Api):
    """flask-smorest's Api with problem-details errors (documented and produced)."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error):
        return http_error_response(error)


class _BodyParser(FlaskParser):
    """webargs' parser, except that JSON the standard library cannot parse is invalid JSON
    (400) however it fails.

    webargs only turns JSONDecodeError into a 400. The decoder raises RecursionError on a body
    nested too deeply (``[[[[...``), and a plain ValueError on an integer literal longer than
    Python's int-digits limit (4,300 digits): either would otherwise be a 500.
    """

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "<body>", 0) from None
        except json.JSONDecodeError:
            raise
        except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
            raise json.JSONDecodeError("a number with too many digits", "<body>", 0) from None


class ApiBlueprint(Blueprint):
    """flask-smorest's Blueprint with the parser above; every API blueprint uses it."""

    ARGUMENTS_PARSER = _BodyParser()


api = ProblemApi()  # bound to the app by create_app (register_extensions), like the extensions
