"""``flask demo seed``: a demo unit with staff of every role and a few residents."""
from __future__ import annotations

from datetime import date

import click
from flask.cli import AppGroup
from sqlalchemy import select

from config.clock import now
from config.extensions import db
from unit import services
from unit.models import Staff, Unit

demo_cli = AppGroup("demo", help="Demo data for trying the system.")

DEMO_UNIT = "DEMO"
DEMO_STAFF = [  # username, role, full name, password
    ("nurse", "nurse", "Nina Nurse", "ward-kettle-lamp"),
    ("nurse2", "nurse", "Noah Nurse", "ward-river-stone"),
    ("doctor", "doctor", "Dr Dana Doctor", "clinic-maple-cloud"),
    ("gp", "gp", "Dr Gita GP", "visit-harbour-fig"),
    ("lead", "clinical_lead", "Dr Lee Lead", "ward-lantern-oak"),
    ("manager", "manager", "Morgan Manager", "office-copper-ink"),
    ("inspector", "inspector", "Ira Inspector", "review-violet-map"),
]
DEMO_RESIDENTS = [
    ({"name": "Alex Morgan", "date_of_birth": date(1979, 4, 12), "nhs_number": "9434765919"},
     ["alcohol"], {"sadq": 24, "audit": 28, "units_per_day": 22}),
    ({"name": "Sam Taylor", "date_of_birth": date(1988, 11, 3), "nhs_number": None},
     ["opioids"], {"current_opioids": ["heroin", "methadone"], "last_cows_total": 9}),
    ({"name": "Jo Evans", "date_of_birth": date(1965, 1, 30), "nhs_number": None},
     ["alcohol", "other"], {"sadq": 18, "audit": 24, "units_per_day": 16}),
]


@demo_cli.command("seed")
def seed_command() -> None:
    """Create the demo unit (medically monitored), staff of every role and three residents."""
    at = now()
    if db.session.scalars(select(Unit).where(Unit.code == DEMO_UNIT)).first() is None:
        services.create_unit(DEMO_UNIT, "Demo Detox Unit", "medically_monitored", now=at)
        for username, role, full_name, password in DEMO_STAFF:
            services.create_staff(unit_code=DEMO_UNIT, username=username, role=role,
                                  password=password, full_name=full_name,
                                  email=f"{username}@demo.invalid", now=at)
        nurse = db.session.scalars(select(Staff).where(Staff.username == "nurse")).one()
        for resident, substances, scores in DEMO_RESIDENTS:
            services.admit_resident(nurse, resident=resident, substances=substances, now=at,
                                    assessment={**scores, "history_of_seizures": False,
                                                "history_of_delirium_tremens": False,
                                                "significant_comorbidity": False, "pregnant": False})
        click.echo(f"Demo unit {DEMO_UNIT} created (medically monitored) with "
                   f"{len(DEMO_RESIDENTS)} residents.")
    else:
        click.echo(f"Demo unit {DEMO_UNIT} already exists; left as it is.")
    click.echo("Demo sign-ins (username / password):")
    for username, role, _, password in DEMO_STAFF:
        click.echo(f"  {role:<13} {username:<10} {password}")
