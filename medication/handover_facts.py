"""What medication tells the shift handover: each resident's doses in the shift, by drug
(given, and not given with the outcome). Registered when the app is assembled."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from config.clock import local
from config.extensions import db
from medication.drugs import DRUGS
from medication.models import Administration
from unit.handover import HandoverSource


def dose_facts(unit_id: int, admission_ids: list[int], start: datetime,
               end: datetime) -> dict[int, list[dict[str, Any]]]:
    """One line per resident and drug: "Chlordiazepoxide: given 20 mg 08:00, 20 mg 12:00;
    refused 17:00"."""
    per: dict[tuple[int, str], list[Administration]] = defaultdict(list)
    for dose in db.session.scalars(select(Administration).where(
            Administration.admission_id.in_(admission_ids), Administration.given_at >= start,
            Administration.given_at < end).order_by(Administration.given_at, Administration.id)):
        per[(dose.admission_id, dose.drug)].append(dose)
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (admission_id, drug), doses in per.items():
        given = [f"{d.dose_mg:g} mg {local(d.given_at):%H:%M}" for d in doses if d.outcome == "given"]
        other = [f"{d.outcome} {local(d.given_at):%H:%M}" for d in doses if d.outcome != "given"]
        text = f"{DRUGS[drug].name}: " + "; ".join(filter(None, [
            f"given {', '.join(given)}" if given else "", ", ".join(other)]))
        found[admission_id].append({"part": "assessment", "text": text + ".", "live": False})
    return found


SOURCES = (HandoverSource("doses", dose_facts),)
