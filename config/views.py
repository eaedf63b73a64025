"""The system's own views: the health of the service, its database and its scheduler, and the
page listing the API.

Every signed-in role may see them: the roles are the unit's, so ``create_app`` declares them.
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template
from marshmallow import Schema, fields

from config.api import ApiBlueprint, api

from config.clock import now
from config.extensions import db
from config.jobs import heartbeat_status

blp = ApiBlueprint("system_api", __name__, url_prefix="/api/v1", description="Service health")
pages = Blueprint("system_pages", __name__)


class SchedulerStatus(Schema):
    last_heartbeat_at = fields.DateTime(allow_none=True, metadata={
        "description": "The oldest last success of the alerting jobs (null until each has run)"})
    stale = fields.Boolean()
    stale_jobs = fields.List(fields.String(), metadata={
        "description": "Alerting jobs (due_sweep, re_escalate, deliver_notifications) not run recently"})
    jobs = fields.Dict(keys=fields.String(), values=fields.DateTime(allow_none=True))
    stale_after_minutes = fields.Integer()


class HealthSchema(Schema):
    status = fields.String(metadata={"description": "ok, or degraded when the scheduler is stale"})
    database = fields.String()
    scheduler = fields.Nested(SchedulerStatus)


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
def health():
    """Is the database answering and has the scheduler checked observations recently?"""
    db.session.execute(sa.text("SELECT 1"))
    scheduler = heartbeat_status(now())
    return {"status": "degraded" if scheduler["stale"] else "ok", "database": "ok",
            "scheduler": scheduler}


@pages.route("/api/v1/docs")
def api_docs():
    """A page listing every API operation, from the OpenAPI document."""
    return render_template("api_docs.html", spec=api.spec.to_dict())
