"""Fixtures: a fresh app and database per test (SQLite file, or PostgreSQL when
TEST_DATABASE_URL is set), a fake clock, and factories for units, staff and admissions."""
from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pytest
from flask.testing import FlaskClient
import sqlalchemy as sa

from config.app import create_app
from config.extensions import db
from config.settings import TestingConfig

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
_pg_schema_ready = False


class FakeClock:
    """A clock the tests move by hand; installed as app.config["CLOCK"]."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(timezone.utc).replace(microsecond=0))


def _reset_postgres() -> None:
    global _pg_schema_ready
    if not _pg_schema_ready:
        db.drop_all()
        db.create_all()
        _pg_schema_ready = True
        return
    # DELETE (a few ms) rather than TRUNCATE (~0.4 s for 30 tables); session_replication_role
    # = replica skips the foreign-key and append-only triggers for this transaction only (the
    # test role is a superuser).
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("; ".join(f'DELETE FROM "{table.name}"'
                                       for table in reversed(db.metadata.sorted_tables)))


@pytest.fixture
def database_url(tmp_path) -> str:
    return TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'test.db'}"


class TabletClient(FlaskClient):
    """A test client that writes as the tablets do: every POST to the API carries a fresh
    Idempotency-Key unless the test sends its own (the same key to test a retry, or ``""`` to
    test a missing one)."""

    def open(self, *args, **kwargs):
        headers = kwargs.get("headers")
        method = (kwargs.get("method") or "GET").upper()
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        if method == "POST" and path.startswith("/api/") and not (
                headers and "Idempotency-Key" in dict(headers)):
            kwargs["headers"] = {**dict(headers or {}), "Idempotency-Key": str(uuid.uuid4())}
        return super().open(*args, **kwargs)


@pytest.fixture
def app(database_url, clock):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, CLOCK=clock)
    app.test_client_class = TabletClient
    with app.app_context():
        if database_url.startswith("postgresql"):
            _reset_postgres()
        else:
            db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ctx(app):
    """An application context for calling services directly."""
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


_names = itertools.count(1)
PASSWORD = "correct-horse-battery"
ASSESSMENT_OK = {"sadq": 20, "audit": 25, "units_per_day": 12, "history_of_seizures": False,
                 "history_of_delirium_tremens": False, "significant_comorbidity": False,
                 "pregnant": False}


@pytest.fixture
def make_unit(app, clock):
    """make_unit(code=None, model="medically_monitored") -> the unit's code."""
    from unit import services

    def make(code: str | None = None, model: str = "medically_monitored", name: str | None = None):
        code = code or f"U{next(_names)}"
        with app.app_context():
            services.create_unit(code, name or f"Unit {code}", model, now=clock())
        return code

    return make


@pytest.fixture
def make_staff(app, clock):
    """make_staff(unit_code, role, username=None) -> the username (password: PASSWORD)."""
    from unit import services

    def make(unit_code: str, role: str, username: str | None = None, email: str | None = None):
        username = username or f"{role}{next(_names)}"
        with app.app_context():
            services.create_staff(unit_code=unit_code, username=username, role=role,
                                  password=PASSWORD, full_name=username.title(), email=email,
                                  now=clock(), min_password_length=8)
        return username

    return make


@pytest.fixture
def login(app):
    """login(username) -> a test client signed in as that user."""

    def sign_in(username: str, password: str = PASSWORD):
        client = app.test_client()
        response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return client

    return sign_in


@pytest.fixture
def unit_staff(make_unit, make_staff, login):
    """unit_staff(model) -> (unit code, {role: signed-in client}) for one unit."""

    def make(model: str = "medically_monitored"):
        code = make_unit(model=model)
        clients = {role: login(make_staff(code, role))
                   for role in ("nurse", "doctor", "gp", "manager", "inspector", "clinical_lead")}
        return code, clients

    return make


WARD_ROLES = ("nurse", "doctor", "gp", "manager", "inspector")


@dataclass
class Ward:
    """One unit with a signed-in client per role (``ward.nurse``, ``ward.gp``...), their
    usernames, and ``admit(**referral)`` -> the admission JSON."""

    app: object
    code: str
    model: str
    clients: dict
    usernames: dict
    _admit: object
    admitted: list = field(default_factory=list)

    def __getattr__(self, role: str):
        clients = self.__dict__.get("clients", {})
        if role in clients:
            return clients[role]
        raise AttributeError(role)

    def admit(self, **kw) -> dict:
        kw.setdefault("name", f"Resident {self.code}-{len(self.admitted) + 1}")
        admission = self._admit(self.clients["nurse"], **kw)
        self.admitted.append(admission)
        return admission

    def staff_id(self, role: str) -> int:
        from unit.models import Staff

        with self.app.app_context():
            return db.session.scalar(sa.select(Staff.id).where(Staff.username == self.usernames[role]))

    def email(self, role: str) -> str:
        return f"{self.usernames[role]}@example.org"

    def witness(self, role: str = "nurse2", password: str = PASSWORD) -> dict:
        """A witness body: the username of ``role`` and a password."""
        return {"username": self.usernames[role], "password": password}


@pytest.fixture
def make_ward(app, make_unit, make_staff, login, admit):
    """make_ward(model="medically_monitored", emails=True, roles=WARD_ROLES) -> a Ward.

    A role may be numbered ("nurse2": a second nurse, to witness the first). With ``emails``
    every member of staff has an address (``ward.email(role)``). The tests move the fake
    clock by hours and days; sign-ins outlast that here (their timeouts are the unit
    package's concern and tested there).
    """
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=60), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=90))

    def make(model: str = "medically_monitored", emails: bool = True, roles=WARD_ROLES) -> Ward:
        code = make_unit(model=model)
        usernames = {}
        for role in roles:
            username = f"{role}-{code}-{next(_names)}".lower()
            usernames[role] = make_staff(code, role.rstrip("0123456789"), username=username,
                                         email=f"{username}@example.org" if emails else None)
        clients = {role: login(username) for role, username in usernames.items()}
        return Ward(app, code, model, clients, usernames, admit)

    return make


@pytest.fixture
def ward(make_ward) -> Ward:
    """A medically monitored unit with every role signed in."""
    return make_ward()


def referral(name: str = "Alex Example", dob: str = "1980-05-17", substances=("alcohol",),
             nhs_number: str | None = None, **assessment) -> dict:
    """A referral body for POST /api/v1/admissions. An opioid referral says what the person
    uses now (heroin, unless the test says otherwise); ``None`` leaves a field out."""
    resident = {"name": name, "date_of_birth": dob}
    if nhs_number is not None:
        resident["nhs_number"] = nhs_number
    if "opioids" in substances:
        assessment.setdefault("current_opioids", ["heroin"])
    assessment = {key: value for key, value in {**ASSESSMENT_OK, **assessment}.items()
                  if value is not None}
    return {"resident": resident, "substances": list(substances), "assessment": assessment}


def propose_protocol(manager, section: str, values: dict, reason: str = "Local protocol",
                     key: str | None = None):
    """POST /api/v1/unit/protocol as the manager (a proposal); the response."""
    headers = {"Idempotency-Key": key} if key is not None else None
    return manager.post("/api/v1/unit/protocol", json={"section": section, "values": values,
                                                       "reason": reason}, headers=headers)


def adopt_protocol(manager, clinical_lead, section: str, values: dict,
                   reason: str = "Local protocol") -> dict:
    """A protocol change proposed by the manager and approved by the clinical lead, through
    the API (asserts 202, then 201); the protocol now in force."""
    proposed = propose_protocol(manager, section, values, reason)
    assert proposed.status_code == 202, proposed.get_json()
    proposal_id = proposed.get_json()["proposal"]["id"]
    approved = clinical_lead.post(f"/api/v1/unit/protocol/proposals/{proposal_id}/approve")
    assert approved.status_code == 201, approved.get_json()
    return approved.get_json()


@pytest.fixture
def admit():
    """admit(client, **referral kw) -> the admission JSON (asserts 201)."""

    def make(client, **kw):
        response = client.post("/api/v1/admissions", json=referral(**kw))
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


def years_ago(years: int, days: int = 0) -> str:
    today = date.today()
    try:
        then = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        then = today.replace(year=today.year - years, day=28)
    return (then - timedelta(days=days)).isoformat()


def audit_rows(app, unit_code: str) -> list:
    from unit.models import AuditEvent, Unit

    with app.app_context():
        unit_id = db.session.scalar(sa.select(Unit.id).where(Unit.code == unit_code))
        return list(db.session.execute(
            sa.select(AuditEvent.seq, AuditEvent.action, AuditEvent.actor_role)
            .where(AuditEvent.unit_id == unit_id).order_by(AuditEvent.seq)))
