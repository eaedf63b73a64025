"""Pages of the shell: sign-in, sign-out and the API docs page."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from config.clock import now
from config.errors import DomainError
from config.api import api
from unit.auth import ALL_ROLES, public, roles_required, sign_in, sign_out
from unit.pages import safe_next

bp = Blueprint("shell", __name__)


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
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
@roles_required(ALL_ROLES)
def logout():
    """Sign out and revoke the session."""
    sign_out(session.get("token", ""), now())
    session.clear()
    return redirect(url_for("shell.login"))


@bp.route("/api/v1/docs")
@roles_required(ALL_ROLES)
def api_docs():
    """A page listing every API operation, from the OpenAPI document."""
    spec = api.spec.to_dict()
    return render_template("api_docs.html", spec=spec)

