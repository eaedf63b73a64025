"""Which screen positives the unit's own prescribing explains: a benzodiazepine detox shows
as benzodiazepines, methadone as methadone (EDDP), buprenorphine as buprenorphine. Registered
with monitoring's screens when the app is assembled."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from config.clock import local
from config.extensions import db
from medication.drugs import DRUGS
from medication.models import Administration
from monitoring.screens import DETECTION_DAYS
from unit.models import Admission

SHOWS_AS = {"chlordiazepoxide": "benzodiazepines", "diazepam": "benzodiazepines",
            "lorazepam": "benzodiazepines", "methadone": "methadone", "buprenorphine": "buprenorphine"}


def expected_from_doses(admission: Admission, sample_at: datetime) -> dict[str, str]:
    """{substance: why} for each drug given here that the sample may still show (doses given
    before the sample, within the substance's detection window)."""
    earliest = sample_at - timedelta(days=max(DETECTION_DAYS[s] for s in SHOWS_AS.values()))
    last: dict[str, datetime] = {}
    for drug, given_at in db.session.execute(
            select(Administration.drug, Administration.given_at)
            .where(Administration.admission_id == admission.id, Administration.outcome == "given",
                   Administration.drug.in_(list(SHOWS_AS)), Administration.given_at <= sample_at,
                   Administration.given_at >= earliest)):
        last[drug] = max(given_at, last.get(drug, given_at))
    explained = {}
    for drug, last_given in sorted(last.items()):
        substance = SHOWS_AS[drug]
        if sample_at - last_given <= timedelta(days=DETECTION_DAYS[substance]):
            explained.setdefault(substance, f"{DRUGS[drug].name} given here "
                                            f"(last dose {local(last_given):%d %b %H:%M})")
    return explained
