"""System API: health of the service, its database and its scheduler.

Every signed-in role may read it: the roles are the unit's, so ``create_app`` declares them.
"""
from __future__ import annotations

import sqlalchemy as sa
from config.api import ApiBlueprint
from marshmallow import Schema, fields

from config.clock import now
from config.extensions import db
from config.jobs import heartbeat_status

blp = ApiBlueprint("system_api", __name__, url_prefix="/api/v1", description="Service health")


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
