"""The nightly e-mail of each unit's signed audit anchor to its managers (unit.anchor): the
chain's head kept outside the database, where cutting the chain cannot reach it."""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from config.db import unit_of_work
from config.extensions import db
from monitoring.outbox import enqueue
from unit.anchor import anchor_text, make_anchor
from unit.models import Staff, Unit

log = logging.getLogger(__name__)


@unit_of_work
def mail_audit_anchors(now: datetime) -> int:
    """Queue each unit's signed anchor to each of its active managers with an e-mail address,
    once per (UTC) day however often it runs; returns how many messages were queued."""
    if not current_app.config.get("AUDIT_ANCHOR_KEY"):
        log.warning("AUDIT_ANCHOR_KEY is not set: no audit anchor e-mailed")
        return 0
    day = now.date().isoformat()
    queued = 0
    for unit in db.session.scalars(select(Unit).order_by(Unit.code)):
        managers = db.session.scalars(select(Staff).where(
            Staff.unit_id == unit.id, Staff.role == "manager", Staff.active.is_(True),
            Staff.email.is_not(None), Staff.email != "").order_by(Staff.id)).all()
        if not managers:
            continue
        document = make_anchor(now, unit_ids=[unit.id])
        head = document["heads"][0] if document["heads"] else {"seq": 0}
        body = (f"The audit chain of unit {unit.code} reached event {head['seq']} at "
                f"{document['anchored_at']}.\n\nKeep this message. To prove later that no audit "
                "event has been removed since, save it to a file and run:\n"
                "    flask --app wsgi audit verify --anchor FILE\n\n" + anchor_text(document))
        for manager in managers:
            queued += enqueue(unit_id=unit.id, dedup_key=f"audit-anchor:{unit.id}:{day}:{manager.id}",
                              recipient_staff_id=None, recipient_address=manager.email,
                              subject=f"Audit anchor, unit {unit.code}, {day}: event {head['seq']}",
                              body=body, ref_type="audit_anchor", ref_id=unit.id, now=now)
    return queued
