"""What monitoring adds to the discharge summary and the handover: the last scores, the
incidents and the screens of a stay. Registered when the app is assembled."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from config.clock import local
from config.extensions import db
from monitoring import incidents, leave, screens
from monitoring.models import Observation
from monitoring.scales import SCALES
from unit.discharge import SummarySection
from unit.models import Admission


def scores_section(admission: Admission) -> dict[str, Any] | None:
    """Each scale's last score and the highest of the stay (struck entries left out)."""
    rows = list(db.session.scalars(select(Observation).where(
        Observation.admission_id == admission.id, Observation.status == "recorded",
        Observation.struck_at.is_(None)).order_by(Observation.observed_at, Observation.id)))
    if not rows:
        return None
    table = []
    for code in [code for code in SCALES if any(o.scale == code for o in rows)]:
        mine = [o for o in rows if o.scale == code]
        last, worst = mine[-1], max(mine, key=lambda o: (o.total, o.observed_at))
        table.append([SCALES[code].name, f"{last.total} ({last.band.replace('_', ' ')})",
                      f"{local(last.observed_at):%d %b %H:%M}",
                      f"{worst.total} ({worst.band.replace('_', ' ')}) {local(worst.observed_at):%d %b %H:%M}",
                      str(len(mine))])
    return {"lines": [], "table": {"header": ["Scale", "Last score", "Taken", "Highest", "Scores"],
                                   "rows": table}}


def incidents_section(admission: Admission) -> dict[str, Any] | None:
    """The stay's incidents, each with its review outcome when reviewed."""
    rows = list(db.session.scalars(select(incidents.Incident).where(
        incidents.Incident.admission_id == admission.id).order_by(incidents.Incident.occurred_at)))
    if not rows:
        return {"lines": ["No incidents."]}
    lines = []
    for incident in rows:
        line = f"{local(incident.occurred_at):%d %b %H:%M} {incidents.describe(incident)}"
        if incident.review_outcome:
            line += f" Reviewed: {incident.review_outcome}"
        lines.append(line)
    return {"lines": lines}


def screens_section(admission: Admission) -> dict[str, Any] | None:
    """The stay's drug and breath screens, oldest first."""
    rows = list(reversed(screens.screens_of(admission.id, limit=200)))
    if not rows:
        return None
    return {"lines": [screens.summary(screen) for screen in rows]}


def leave_section(admission: Admission) -> dict[str, Any] | None:
    """The stay's leave, oldest first, with the breath reading on each return."""
    episodes = list(reversed(leave.leave_of(admission.id)))
    if not episodes:
        return None
    lines = []
    for e in episodes:
        back = f"back {local(e.returned_at):%d %b %H:%M}" if e.returned_at else "did not return before discharge"
        reading = leave.breath_after(e)
        lines.append(f"{leave.LEAVE_KINDS[e.kind]} {local(e.started_at):%d %b %H:%M}, {back}: {e.reason}"
                     + (f" (breath alcohol on return {reading.mg_per_l:.2f} mg/L)" if reading else "") + ".")
    return {"lines": lines}


SECTIONS = (SummarySection("scores", "Withdrawal and vital-sign scores", 30, scores_section),
            SummarySection("incidents", "Incidents", 40, incidents_section),
            SummarySection("screens", "Drug and breath screens", 50, screens_section),
            SummarySection("leave", "Leave", 45, leave_section))
