"""The dose an incident concerns (a medication error, a fall after a sedating dose): medication's
link kind for monitoring's incidents, registered when the app is assembled."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, mapped_column

from config.clock import local
from config.extensions import db
from medication.drugs import DRUGS
from medication.models import Administration
from monitoring.incidents import Incident, IncidentInvalid, LinkKind
from unit.models import Staff
from unit.services import MAX_ID


class IncidentDose(db.Model):
    """An eMAR entry an incident concerns."""

    __tablename__ = "incident_doses"
    __table_args__ = (sa.UniqueConstraint("incident_id", "administration_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    administration_id: Mapped[int] = mapped_column(sa.ForeignKey("administrations.id"), index=True)
    linked_at: Mapped[datetime]
    linked_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))


def _label(administration: Administration) -> str:
    drug = DRUGS[administration.drug].name
    return (f"{drug} {administration.dose_mg:g} mg {administration.outcome} "
            f"{local(administration.given_at):%d %b %H:%M}")


def attach(actor: Staff, incident: Incident, administration_id: int, now: datetime, field: str) -> None:
    """Link the incident to a dose of the unit (of the incident's resident, if it has one)."""
    administration = (db.session.get(Administration, administration_id)
                      if 0 < administration_id <= MAX_ID else None)
    if administration is None or administration.unit_id != actor.unit_id:
        raise IncidentInvalid(f"There is no dose {administration_id} on your unit.",
                              errors={field: ["No such dose on your unit."]})
    if incident.admission_id is not None and administration.admission_id != incident.admission_id:
        raise IncidentInvalid("The dose is another resident's.", errors={field: ["Another resident's dose."]})
    exists = db.session.scalar(select(IncidentDose.id).where(
        IncidentDose.incident_id == incident.id, IncidentDose.administration_id == administration.id))
    if exists is None:
        db.session.add(IncidentDose(incident_id=incident.id, administration_id=administration.id,
                                    linked_at=now, linked_by_id=actor.id))


def describe(incident_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The doses each incident concerns (one query)."""
    found: dict[int, list[dict[str, Any]]] = {}
    for incident_id, administration in db.session.execute(
            select(IncidentDose.incident_id, Administration)
            .join(Administration, Administration.id == IncidentDose.administration_id)
            .where(IncidentDose.incident_id.in_(incident_ids))
            .order_by(Administration.given_at)):
        found.setdefault(incident_id, []).append(
            {"kind": "administration", "id": administration.id, "label": _label(administration)})
    return found


def choices(admission_id: int) -> list[tuple[int, str]]:
    """The resident's latest doses, for the incident page's link form."""
    return [(a.id, _label(a)) for a in db.session.scalars(
        select(Administration).where(Administration.admission_id == admission_id)
        .order_by(Administration.given_at.desc()).limit(30))]


DOSE_LINK = LinkKind("Dose (eMAR entry)", attach, describe, choices)
