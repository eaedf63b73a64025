"""The application factory: every ``register_*`` step in one place (the composition root)."""
from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

from flask import Flask, g, redirect, request, session, url_for
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from config.clock import now
from config.db import end_transaction
from config.api import api, register_error_handlers, wants_json
from config.errors import Forbidden, Unauthorized, ValidationFailed
from config.extensions import csrf, db, migrate
from config.settings import BaseConfig, config_from_env


def create_app(config: type[BaseConfig] | None = None, **overrides) -> Flask:
    """Build the app from a settings class (default: chosen by DETOX_CONFIG) and overrides."""
    app = Flask(__name__, instance_relative_config=True,
                template_folder="templates", static_folder="static")
    app.config.from_object(config or config_from_env())
    app.config.update(overrides)
    app.url_map.converters["int"] = RecordIdConverter
    register_database(app)
    register_extensions(app)
    register_blueprints(app)
    register_security(app)
    register_hooks(app)
    register_report_sections(app)
    register_cli(app)
    return app


class RecordIdConverter(IntegerConverter):
    """``<int:...>`` in every route: a record id, 1 to 2**31 - 1 (the INTEGER columns' range).

    Any other number matches no route: a 404 like any unknown id, never a database error
    (PostgreSQL refuses to cast it to INTEGER; SQLite cannot bind past 2**63). The regex does
    the refusing, not ``min``/``max``: werkzeug answers 405, not 404, when a converter rejects
    a value its regex matched. ``max`` documents the bound in the OpenAPI document.
    """

    regex = ("0*(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
             "|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
             "|21474836[0-3][0-9]|214748364[0-7])")

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 (werkzeug's name)
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate (JSON "\ud800")
        return True
    return False


def _unstorable_json(document) -> Iterator[str]:
    """Paths (``resident.name``, ``items.0``) of the strings in a JSON document that no
    database can store as text; iterative, so any depth that parsed is walked."""
    stack = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                yield path or "(body)"
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if _unstorable(key):
                    yield child
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}" if path else str(index), item)
                         for index, item in enumerate(value))


def _check_storable_text() -> None:
    """Refuse NUL characters and unpaired surrogates anywhere in the request's text.

    PostgreSQL cannot store either in a text column and SQLite's driver cannot encode the
    latter: refused here, for every route at once, as a 422 naming the field, rather than
    failing in the database as a 500 halfway through a request.
    """
    paths = [key for source in (request.args, request.form)
             for key, value in source.items(multi=True) if _unstorable(key) or _unstorable(value)]
    if request.is_json:
        try:
            document = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):
            document = None  # invalid JSON: the view's parser answers 400
        paths += _unstorable_json(document)
    if paths:
        raise ValidationFailed("The request holds text that cannot be stored.", errors={
            path: ["Text may not contain NUL characters or unpaired surrogates."] for path in paths})


def register_database(app: Flask) -> None:
    """SQLite in the instance folder unless DATABASE_URL (or a test) names another database."""
    uri = app.config.get("SQLALCHEMY_DATABASE_URI")
    if not uri:
        os.makedirs(app.instance_path, exist_ok=True)
        uri = "sqlite:///" + os.path.join(app.instance_path, "detox.db")
    if uri.startswith("postgresql://") or uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri.split("://", 1)[1]  # psycopg 3
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    from unit.audit import canonical_json

    # JSON columns are stored as canonical text, so the audit chain can be verified from it.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}),
                                               "json_serializer": canonical_json}
    if uri.startswith("sqlite"):
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {})
        # Python's own timeout is the busy timeout in seconds; the connect hook sets the PRAGMA.
        options["connect_args"] = {**options["connect_args"],
                                   "timeout": app.config["SQLITE_BUSY_TIMEOUT_MS"] / 1000,
                                   "check_same_thread": False}
        options.pop("pool_size", None)
        options.pop("max_overflow", None)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    elif uri.startswith("postgresql"):
        # Sessions in UTC: psycopg then returns timestamps already in UTC, so reading one costs
        # no conversion (the board reads over a thousand). SQL that needs a zone names it.
        # connect_args replace the URL's own parameters: keep the URL's ``options`` (a
        # search_path, a statement_timeout) and any given in connect_args, then add ours.
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        connect_args = dict(options.get("connect_args") or {})
        in_url = make_url(uri).query.get("options", ())
        given = [*((in_url,) if isinstance(in_url, str) else in_url),
                 connect_args.get("options", ""), "-c TimeZone=UTC"]
        connect_args["options"] = " ".join(part.strip() for part in given if part.strip())
        options["connect_args"] = connect_args
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY is not set: set it in the environment.")


def register_extensions(app: Flask) -> None:
    """Bind the extensions to the app (every model module imported, for migrations)."""
    import config.idempotency  # noqa: F401
    import config.jobs  # noqa: F401
    import medication.models  # noqa: F401
    import monitoring.models  # noqa: F401
    import monitoring.outbox  # noqa: F401
    import unit.models  # noqa: F401

    db.init_app(app)

    @app.teardown_appcontext
    def _end_session(_error) -> None:
        # Runs before Flask-SQLAlchemy's own teardown (teardowns run in reverse order), which
        # would fail on a connection lost with the database and turn a made reply into a 500.
        end_transaction(db.session(), close=True)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                                     "migrations"))
    csrf.init_app(app)
    api.init_app(app)


def register_blueprints(app: Flask) -> None:
    """API blueprints (JSON, CSRF-exempt: see register_security) and page blueprints."""
    from config.views import blp as system_api
    from config.views import pages as system_pages
    from medication.views import blp as medication_api
    from medication.pages import bp as medication_pages
    from monitoring.pages import bp as monitoring_pages
    from monitoring.views import blp as monitoring_api
    from unit.auth import ALL_ROLES, roles_required
    from unit.pages import bp as unit_pages
    from unit.views import blp as unit_api

    for blueprint in (system_api, unit_api, monitoring_api, medication_api):
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)
    app.register_blueprint(system_pages)
    app.register_blueprint(unit_pages)
    app.register_blueprint(monitoring_pages)
    app.register_blueprint(medication_pages)

    # The infrastructure's endpoints (the OpenAPI document and its page, health) are for every
    # signed-in role: the roles are the unit's, so config's own modules cannot name them.
    for endpoint in ("api-docs.openapi_json", "system_pages.api_docs", "system_api.health"):
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = roles_required(ALL_ROLES)(functools.wraps(view)(
            lambda *a, _view=view, **kw: _view(*a, **kw)))


def register_security(app: Flask) -> None:
    """Client addresses, authentication and roles on every request, CSRF for the API,
    security headers."""
    from unit.auth import resolve_session

    # X-Forwarded-For (and -Proto) are believed only from the proxies the deployment says are
    # in front of the app (TRUSTED_PROXIES, default none): from anyone else a client could
    # name any address and step around the sign-in throttle's per-address bound.
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    @app.before_request
    def authenticate():
        if request.endpoint is None:
            return None  # no such route: the 404 handler answers
        view = app.view_functions.get(request.endpoint)
        if request.path.startswith("/api/") and request.method not in ("GET", "HEAD", "OPTIONS"):
            _check_same_origin()  # sign-in included
        if _is_static(request.endpoint):
            return None
        if getattr(view, "public", False):
            _check_storable_text()
            return None
        try:
            staff = resolve_session(session.get("token"), now(),
                                    activity=request.headers.get("X-Background-Refresh") != "1")
        except Unauthorized:
            if wants_json():
                raise
            session.clear()
            return redirect(url_for("unit_pages.login", next=request.full_path.rstrip("?")))
        g.staff = staff
        g.staff_role = staff.role  # read after the commit too, when staff is expired
        allowed = getattr(view, "allowed_roles", None)
        if allowed is None or staff.role not in allowed:
            # Views without a role declaration are refused: fail closed.
            raise Forbidden(f"A {staff.role} may not do this.")
        _check_storable_text()
        return None

    @app.after_request
    def audit_inspector_views(response):
        # Every look an inspector takes is itself audited (CQC inspections are on the record).
        # The role was read before the view: the staff row is expired by the view's commit and
        # reloading it here could fail with the database gone, after a write had been saved.
        if (g.get("staff_role") == "inspector" and request.method == "GET"
                and response.status_code < 400 and not _is_static(request.endpoint)):
            from unit.audit import record_view

            try:
                record_view(g.staff, request.full_path.rstrip("?"), now())
            except OperationalError as error:
                # A look that cannot be audited is not shown: the 503 of any database outage.
                return app.make_response(app.handle_user_exception(error))
        return response

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'")
        if not _is_static(request.endpoint):
            response.headers.setdefault("Cache-Control", "no-store")  # clinical data
        if app.config.get("SESSION_COOKIE_SECURE"):
            # Served over HTTPS only (production): browsers never try plain HTTP again, so a
            # network that strips TLS cannot read the session cookie or the clinical record.
            response.headers.setdefault("Strict-Transport-Security",
                                        f"max-age={int(app.config['HSTS_MAX_AGE'])}; includeSubDomains")
        return response


def _is_static(endpoint: str | None) -> bool:
    # The app's static files (app.css) and each package blueprint's own (its JavaScript).
    return endpoint is not None and (endpoint == "static" or endpoint.endswith(".static"))


def _check_same_origin() -> None:
    # The API takes cookies, so a cross-site page must not be able to post to it. Browsers send
    # Origin on every cross-origin POST; with SameSite=Lax cookies this closes CSRF for the API.
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise Forbidden("Cross-site requests are refused.")
    if request.content_length and not request.is_json:
        from werkzeug.exceptions import UnsupportedMediaType

        raise UnsupportedMediaType("The API takes JSON bodies (Content-Type: application/json).")


def register_hooks(app: Flask) -> None:
    """Wire the packages together: the only place that sees all three."""
    from monitoring import escalations
    from monitoring import services as monitoring
    from unit import services as unit

    register_error_handlers(app)
    register_template_filters(app)

    @app.context_processor
    def scheduler_banner():
        # Every page shows a red banner when the due sweep has not run recently.
        if getattr(g, "staff", None) is None:
            return {}
        from config.jobs import heartbeat_status

        return {"scheduler": heartbeat_status(now())}

    # Hooks are module-level lists: register each function once, however many apps are made.
    from medication import pages as medication_pages
    from monitoring import pages as monitoring_pages
    from monitoring.pages import BOARD as monitoring_board
    from monitoring.pages import ESCALATION_BOARD as escalation_board
    from unit.pages import board_extensions

    _add_once(unit.admitted_hooks, monitoring.start_schedules)
    _add_once(unit.discharged_hooks, monitoring.stop_schedules)
    _add_once(unit.discharged_hooks, escalations.close_for_discharge)
    _add_once(board_extensions, monitoring_board)
    _add_once(board_extensions, escalation_board)
    # The resident page and the doctor's queue show doses: medication fills monitoring's hooks.
    _add_once(board_extensions, medication_pages.MEDICATION_SECTIONS)
    _add_once(monitoring_pages.chart_marker_hooks, medication_pages.dose_markers)
    _add_once(monitoring_pages.queue_extra_hooks, medication_pages.queue_doses)
    # Each package checks its own sections of the unit protocol before they are stored.
    from medication import protocol as medication_protocol
    from monitoring import protocol as monitoring_protocol

    unit.protocol_sections.update({**monitoring_protocol.SECTIONS, **medication_protocol.SECTIONS})
    # The tablet form scores live with the unit's own bands, as the saved observation will.
    app.add_template_global(monitoring_protocol.scale_for_unit, "unit_scale")
    logging.basicConfig(level=logging.INFO if not app.testing else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def register_report_sections(app: Flask) -> None:
    """The inspector's report (unit.report) composes each package's sections, in this order;
    its output schema, built from them, is documented as the ``Report`` component."""
    from medication.report import REPORT_SECTIONS as medication_sections
    from monitoring.report import REPORT_SECTIONS as monitoring_sections
    from unit.report import report_schema, report_sections

    for section in (*monitoring_sections, *medication_sections):
        _add_once(report_sections, section)
    api.spec.components.schema("Report", schema=report_schema())


def register_cli(app: Flask) -> None:
    """Command-line groups: unit, user, audit, demo."""
    from unit.demo import demo_cli
    from config.scheduler import scheduler_cli
    from unit.cli import audit_cli, unit_cli, user_cli

    for group in (unit_cli, user_cli, audit_cli, demo_cli, scheduler_cli):
        app.cli.add_command(group)


def _add_once(hooks: list, function) -> None:
    if function not in hooks:
        hooks.append(function)


def register_template_filters(app: Flask) -> None:
    """Times shown in the unit's own time zone (UK local time by default)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(app.config.get("UNIT_TIMEZONE", "Europe/London"))

    def local(value, fmt: str) -> str:
        return value.astimezone(zone).strftime(fmt) if value else ""

    def hm(value) -> str:
        # The ward board prints four per resident: strftime costs three times this.
        if not value:
            return ""
        at = value.astimezone(zone)
        return f"{at.hour:02d}:{at.minute:02d}"

    app.add_template_filter(hm, "hm")
    app.add_template_filter(lambda v: local(v, "%d %b %H:%M"), "dhm")
    app.add_template_filter(lambda v: local(v, "%d %b %Y %H:%M"), "dyhm")

    def interval(minutes: int) -> str:
        if minutes % 60 == 0:
            return f"{minutes // 60} h"
        return f"{minutes} min"

    app.add_template_filter(interval, "interval")
