"""Fixtures of the report tests: a fixed clock, a unit with every role signed in, and a unit
history generated through the API whose true figures the tests know.

Every figure in ``History`` is written down here from what the scenario does, never read from
the report under test.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import PASSWORD, FakeClock, referral
from tests.items import CIWA_KEYS, NEWS2_ZERO, ciwa  # noqa: F401 (re-exported)
from tests.unit.helpers import assert_problem as problem  # noqa: F401 (re-exported)

UTC = timezone.utc
# Sunday 2 March 2025, 12:00 UTC. London is on GMT until 30 March, so local days are UTC days
# and the period from=2025-03-03&to=2025-03-04 is [3 March 00:00, 5 March 00:00) UTC.
UNIT_CREATED = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
PERIOD_START = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
PERIOD_END = datetime(2025, 3, 5, 0, 0, tzinfo=UTC)
PERIOD_QUERY = "from=2025-03-03&to=2025-03-04"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2025 (UTC)."""
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


ROLES = ("nurse", "nurse2", "doctor", "gp", "manager", "inspector")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def post(client, url: str, body: dict | None = None, status: int | None = 201):
    """POST JSON with a fresh Idempotency-Key; asserts the status (unless None); the reply."""
    response = client.post(url, json=body or {}, headers={"Idempotency-Key": str(uuid.uuid4())})
    if status is not None:
        assert response.status_code == status, (url, response.status_code, response.get_json())
    return response


@dataclass
class Ward:
    """A unit with one signed-in client per role (two nurses, so that one can witness)."""

    app: object
    code: str
    clients: dict
    usernames: dict

    def __getattr__(self, role: str):
        clients = self.__dict__.get("clients", {})
        if role in clients:
            return clients[role]
        raise AttributeError(role)

    def admit(self, name: str, status: int = 201, **kw):
        response = post(self.clients["nurse"], "/api/v1/admissions", referral(name=name, **kw), status)
        return response.get_json()

    def witness(self) -> dict:
        return {"username": self.usernames["nurse2"], "password": PASSWORD}

    def unit_id(self) -> int:
        from unit.models import Unit

        with self.app.app_context():
            return db.session.scalar(sa.select(Unit.id).where(Unit.code == self.code))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(UNIT_CREATED)


@pytest.fixture
def make_ward(app, make_unit, make_staff, login):
    """make_ward(model) -> a Ward created now, every role signed in."""
    # The scenario moves the clock over three days: sign-ins must outlast that here (their
    # timeouts are the unit package's concern and tested there).
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))

    def make(model: str = "medically_monitored", name: str | None = None) -> Ward:
        code = make_unit(model=model, name=name)
        usernames = {role: make_staff(code, role.rstrip("2"), username=f"{role}-{code}".lower())
                     for role in ROLES}
        return Ward(app, code, {role: login(u) for role, u in usernames.items()}, usernames)

    return make


@pytest.fixture
def ward(make_ward) -> Ward:
    return make_ward("medically_monitored", name="Harbour House")


def run_service(app, function, *args, read=lambda result: None, **kw):
    """Call a scheduler service as its job does (inside an app context); ``read`` what it
    returned while the context is open."""
    with app.app_context():
        return read(function(*args, **kw))


@dataclass
class History:
    """What the scenario did, for the tests to compare the report against."""

    ward: Ward
    ids: dict = field(default_factory=dict)
    escalations: dict = field(default_factory=dict)
    orders: dict = field(default_factory=dict)


def build_history(ward: Ward, clock: FakeClock) -> History:
    """Three days of one medically monitored unit that becomes medically managed at 14:00 on
    3 March. Times are UTC (= London). Comments give the figure each step is meant to produce."""
    from monitoring.escalations import re_escalate_due
    from monitoring.services import flag_missed_observations

    h = History(ward)
    app = ward.app
    # --- before the period (2 March): none of this may be counted ---------------------------
    clock.set(at(2, 12, 30))
    olive = ward.admit("Olive Outside")
    h.ids["olive"] = olive["id"]
    clock.set(at(2, 13, 0))
    post(ward.nurse, f"/api/v1/admissions/{olive['id']}/observations",
         {"scale": "news2", "items": NEWS2_ZERO})                      # 30 min late, outside
    post(ward.nurse, "/api/v1/cd-register/chlordiazepoxide/entries",
         {"kind": "receipt", "amount_mg": 500, "supplier": "Pharmacy"})  # opening balance 500
    clock.set(at(2, 23, 59))
    outside = post(ward.nurse, f"/api/v1/admissions/{olive['id']}/escalations", {"sign": "seizure"}).get_json()
    h.escalations["outside"] = outside["id"]
    # --- in the period ----------------------------------------------------------------------
    clock.set(at(3, 0, 10))
    post(ward.gp, f"/api/v1/escalations/{outside['id']}/acknowledge", status=200)
    post(ward.manager, "/api/v1/rota", {"duty": "nurse_in_charge", "contact": "Bank nurse",
                                        "starts_at": iso(at(3, 7)), "ends_at": iso(at(3, 19))})
    clock.set(at(3, 0, 20))
    post(ward.nurse, f"/api/v1/admissions/{olive['id']}/discharge", {"discharge_type": "completed"}, 200)

    clock.set(at(3, 8, 0))
    ann = ward.admit("Ann Abbott")                                     # admitted 1
    h.ids["ann"] = ann["id"]
    clock.set(at(3, 8, 5))
    declined = problem(post(ward.nurse, "/api/v1/admissions",
                            referral(name="Dee Declined", sadq=35, history_of_seizures=True), None),
                       422, "admission-declined")                      # declined 1
    h.ids["declined_codes"] = sorted(r["code"] for r in declined["reasons"])
    clock.set(at(3, 8, 10))
    ann_ciwa = post(ward.nurse, f"/api/v1/admissions/{ann['id']}/observations",
                    {"scale": "ciwa-ar", "items": ciwa(5)}).get_json()  # due 08:00: 10 min late
    ann_news = post(ward.nurse, f"/api/v1/admissions/{ann['id']}/observations",
                    {"scale": "news2", "items": NEWS2_ZERO}).get_json()  # due 08:00: 10 min late
    h.ids["ann_ciwa_next"] = parse(ann_ciwa["next_due_at"])
    h.ids["ann_news_next"] = parse(ann_news["next_due_at"])

    clock.set(at(3, 9, 0))
    post(ward.manager, "/api/v1/unit/model", {"model": "medically_managed",
                                              "reason": "On-site doctor employed from 14:00",
                                              "effective_at": iso(at(3, 14))})

    clock.set(at(3, 10, 0))
    bob = ward.admit("Bob Brown")                                      # admitted 2
    h.ids["bob"] = bob["id"]
    severe = post(ward.nurse, f"/api/v1/admissions/{bob['id']}/observations",
                  {"scale": "ciwa-ar", "items": ciwa(16)}).get_json()   # on time; urgent -> GP
    post(ward.nurse, f"/api/v1/admissions/{bob['id']}/observations",
         {"scale": "news2", "items": NEWS2_ZERO})                       # on time
    h.escalations["overridden"] = severe["escalation"]["id"]
    clock.set(at(3, 10, 6))
    post(ward.nurse, f"/api/v1/escalations/{severe['escalation']['id']}/override",
         {"reason": "Anxious after a phone call; settled with reassurance"}, 200)
    clock.set(at(3, 10, 30))
    seizure = post(ward.nurse, f"/api/v1/admissions/{bob['id']}/escalations", {"sign": "seizure"}).get_json()
    h.escalations["breach"] = seizure["id"]                            # emergency -> GP (monitored)
    clock.set(at(3, 10, 36))
    run_service(app, re_escalate_due, clock())                         # 1 re-escalation
    clock.set(at(3, 10, 38))
    post(ward.gp, f"/api/v1/escalations/{seizure['id']}/acknowledge", status=200)  # 8 min > 5: breach
    clock.set(at(3, 11, 0))
    post(ward.nurse, f"/api/v1/admissions/{bob['id']}/discharge",
         {"discharge_type": "transferred", "note": "Withdrawal seizure: transferred to hospital"}, 200)

    clock.set(at(3, 12, 5))
    assert h.ids["ann_ciwa_next"] == at(3, 12, 10)  # CIWA-Ar minimal: every 4 hours
    post(ward.nurse, f"/api/v1/admissions/{ann['id']}/observations",
         {"scale": "ciwa-ar", "items": ciwa(4)})                        # due 12:10: on time; next 16:05
    clock.set(at(3, 12, 20))
    post(ward.nurse, "/api/v1/cd-register/chlordiazepoxide/entries",
         {"kind": "receipt", "amount_mg": 200, "supplier": "Pharmacy"})  # received 200
    clock.set(at(3, 12, 30))
    phone_ann = post(ward.nurse, f"/api/v1/admissions/{ann['id']}/orders", {
        "kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": 20, "route": "oral",
        "phone_order": {"prescriber": ward.usernames["gp"], "read_back_confirmed": True}}).get_json()
    h.orders["never_countersigned"] = phone_ann["id"]                  # deadline 4 March 12:30
    slots = {parse(s["due_at"]): s for s in phone_ann["scheduled"]}
    assert at(3, 12) in slots and at(3, 17) in slots, sorted(slots)
    post(ward.nurse, f"/api/v1/orders/{phone_ann['id']}/administrations",
         {"outcome": "given", "dose_mg": 20, "scheduled_dose_id": slots[at(3, 12)]["id"]})  # given 20

    clock.set(at(3, 14, 30))
    cara = ward.admit("Cara Cole", sadq=34, units_per_day=35)         # admitted 3, high risk (managed)
    h.ids["cara"] = cara["id"]
    assert cara["high_risk"] is True, cara
    post(ward.nurse, f"/api/v1/admissions/{cara['id']}/observations",
         {"scale": "ciwa-ar", "items": ciwa(10)})                       # on time; moderate
    post(ward.nurse, f"/api/v1/admissions/{cara['id']}/observations",
         {"scale": "news2", "items": NEWS2_ZERO})                       # on time
    clock.set(at(3, 14, 35))
    regimen = post(ward.nurse, f"/api/v1/admissions/{cara['id']}/orders", {
        "kind": "fixed", "drug": "chlordiazepoxide", "start_dose_mg": 30, "route": "oral",
        "phone_order": {"prescriber": ward.usernames["doctor"], "read_back_confirmed": True}}).get_json()
    h.orders["countersigned_late"] = regimen["id"]                     # deadline 4 March 14:35
    clock.set(at(3, 14, 36))
    prn = post(ward.nurse, f"/api/v1/admissions/{cara['id']}/orders", {
        "kind": "prn", "drug": "chlordiazepoxide", "dose_mg": 20, "route": "oral",
        "min_interval_minutes": 120, "max_daily_mg": 200, "trigger": {"scale": "ciwa-ar", "min_band": "moderate"},
        "phone_order": {"prescriber": ward.usernames["doctor"], "read_back_confirmed": True}}).get_json()
    h.orders["countersigned_in_time"] = prn["id"]
    clock.set(at(3, 14, 40))
    post(ward.nurse, f"/api/v1/orders/{prn['id']}/administrations", {"outcome": "given", "dose_mg": 20})  # PRN 20
    clock.set(at(3, 15, 0))
    problem(post(ward.nurse, f"/api/v1/orders/{prn['id']}/administrations",
                 {"outcome": "given", "dose_mg": 20}, None), 409, "dose-refused")  # safety: too_soon
    dt = post(ward.nurse, f"/api/v1/admissions/{cara['id']}/escalations", {"sign": "delirium_tremens"}).get_json()
    h.escalations["managed"] = dt["id"]                                # emergency -> on-site doctor
    clock.set(at(3, 15, 3))
    post(ward.doctor, f"/api/v1/escalations/{dt['id']}/acknowledge", status=200)  # 3 min
    clock.set(at(3, 16, 40))
    missed = run_service(app, flag_missed_observations, clock(),       # Ann's 16:05 CIWA-Ar slot
                         read=lambda rows: [(m.admission_id, m.scale, m.due_at) for m in rows])
    assert missed == [(ann["id"], "ciwa-ar", at(3, 16, 5))], missed
    with app.app_context():
        from monitoring.models import Escalation

        h.escalations["missed"] = db.session.scalar(sa.select(Escalation.id).where(
            Escalation.trigger == "missed_observation"))
    clock.set(at(3, 17, 0))
    cara_slots = {parse(s["due_at"]): s for s in regimen["scheduled"]}
    post(ward.nurse, f"/api/v1/orders/{regimen['id']}/administrations",
         {"outcome": "given", "dose_mg": 30, "scheduled_dose_id": cara_slots[at(3, 17)]["id"]})  # given 30
    post(ward.nurse, f"/api/v1/orders/{phone_ann['id']}/administrations",
         {"outcome": "refused", "dose_mg": 20, "reason": "resident_refused",
          "scheduled_dose_id": slots[at(3, 17)]["id"]})                # refused 20
    clock.set(at(3, 17, 40))
    post(ward.nurse, f"/api/v1/escalations/{h.escalations['missed']}/acknowledge", status=200)  # 60 min
    clock.set(at(3, 18, 0))
    post(ward.doctor, f"/api/v1/orders/{prn['id']}/countersign", status=200)  # in time: not listed
    clock.set(at(4, 9, 0))
    post(ward.nurse, "/api/v1/cd-register/chlordiazepoxide/stock-checks",
         {"counted_mg": 600, "witness": ward.witness()})               # balance 630: discrepancy
    clock.set(at(4, 15, 0))
    post(ward.doctor, f"/api/v1/orders/{regimen['id']}/countersign", status=200)  # 25 min late
    # --- just after the period (5 March 00:00 is outside: `to` is inclusive of 4 March only) --
    clock.set(PERIOD_END)
    lou = ward.admit("Lou Later")
    post(ward.nurse, f"/api/v1/admissions/{lou['id']}/escalations", {"sign": "wernicke"})
    clock.set(at(5, 0, 30))
    return h


@pytest.fixture
def history(ward, clock) -> History:
    return build_history(ward, clock)


def audit_event_count(app, unit_code: str) -> int:
    from unit.models import AuditEvent, Unit

    with app.app_context():
        unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == unit_code))
        return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.unit_id == unit_id))
