"""What medication adds to the discharge summary: the detox given (drugs, doses, dates), and
why a resident given opioids here must leave with naloxone. Registered when the app is
assembled."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from config.clock import local
from config.extensions import db
from medication.drugs import DRUGS
from medication.models import Administration
from unit.discharge import SummarySection
from unit.models import Admission


def detox_section(admission: Admission) -> dict[str, Any] | None:
    """Each drug given: doses and milligrams in all, first and last dose, and a row per day;
    doses not given are counted by outcome."""
    rows = list(db.session.scalars(select(Administration).where(
        Administration.admission_id == admission.id).order_by(Administration.given_at, Administration.id)))
    if not rows:
        return {"lines": ["No medication was given for the detox."]}
    lines, table = [], []
    by_drug: dict[str, list[Administration]] = defaultdict(list)
    for row in rows:
        by_drug[row.drug].append(row)
    for drug, doses in sorted(by_drug.items(), key=lambda item: item[1][0].given_at):
        given = [d for d in doses if d.outcome == "given"]
        not_given = defaultdict(int)
        for dose in doses:
            if dose.outcome != "given":
                not_given[dose.outcome] += 1
        name = DRUGS[drug].name
        if given:
            lines.append(f"{name}: {len(given)} dose{'s' if len(given) != 1 else ''}, "
                         f"{sum(d.dose_mg for d in given):g} mg in all, "
                         f"{local(given[0].given_at):%d %b %H:%M} to {local(given[-1].given_at):%d %b %H:%M}"
                         + (f" (not given: {', '.join(f'{n} {o}' for o, n in sorted(not_given.items()))})"
                            if not_given else "") + ".")
        else:
            lines.append(f"{name}: no dose given ({', '.join(f'{n} {o}' for o, n in sorted(not_given.items()))}).")
        per_day: dict[str, list[float]] = defaultdict(list)
        for dose in given:
            per_day[f"{local(dose.given_at):%d %b %Y}"].append(dose.dose_mg)
        for day, amounts in per_day.items():
            table.append([day, name, str(len(amounts)), f"{sum(amounts):g}"])
    return {"lines": lines, "table": {"header": ["Date", "Drug", "Doses given", "Total mg"], "rows": table}}


def opioids_given(admission: Admission) -> str | None:
    """Opioid substitution given here: the resident leaves with naloxone."""
    drugs = db.session.scalars(select(Administration.drug).where(
        Administration.admission_id == admission.id, Administration.outcome == "given",
        Administration.drug.in_([code for code, d in DRUGS.items() if d.group == "opioid"])).distinct()).all()
    return f"{' and '.join(DRUGS[d].name for d in sorted(drugs))} given here" if drugs else None


SECTIONS = (SummarySection("detox", "The detox given", 20, detox_section),)
