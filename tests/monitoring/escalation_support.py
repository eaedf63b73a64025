"""Support for the escalation tests: item sets that land in a known band, a unit with every
role signed in (and e-mail addresses), posting observations, reading escalation rows, and a
real SMTP server (aiosmtpd) that collects what it is sent.

Totals and bands are worked out by hand from CLINICAL.md, never read from the code under test.
"""
from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes

import sqlalchemy as sa

from config.extensions import db
from tests.items import CIWA_KEYS, ciwa  # noqa: F401 (re-exported)

ROLES = ("nurse", "doctor", "gp", "manager", "inspector")

# --- item sets ------------------------------------------------------------------------------


# CLINICAL.md s1: COWS items and their only allowed values.
COWS_VALUES = {"resting_pulse": (0, 1, 2, 4), "sweating": (0, 1, 2, 3, 4), "restlessness": (0, 1, 3, 5),
               "pupil_size": (0, 1, 2, 5), "bone_joint_aches": (0, 1, 2, 4),
               "runny_nose_tearing": (0, 1, 2, 4), "gi_upset": (0, 1, 2, 3, 5), "tremor": (0, 1, 2, 4),
               "yawning": (0, 1, 2, 4), "anxiety_irritability": (0, 1, 2, 4), "gooseflesh": (0, 3, 5)}


def cows(total: int) -> dict[str, int]:
    """COWS items (allowed values only) adding up to ``total`` (0-48)."""
    keys = list(COWS_VALUES)

    def fill(i: int, left: int) -> dict[str, int] | None:
        if i == len(keys):
            return {} if left == 0 else None
        for value in sorted(COWS_VALUES[keys[i]], reverse=True):
            if value <= left:
                rest = fill(i + 1, left - value)
                if rest is not None:
                    return {keys[i]: value, **rest}
        return None

    items = fill(0, total)
    assert items is not None and sum(items.values()) == total
    return items


GMAWS_KEYS = ("tremor", "sweating", "hallucinations", "orientation", "agitation")


def gmaws(total: int) -> dict[str, int]:
    """GMAWS items (each 0-2) adding up to ``total`` (0-10)."""
    assert 0 <= total <= 10
    items, left = {}, total
    for key in GMAWS_KEYS:
        items[key] = min(2, left)
        left -= items[key]
    return items


# CLINICAL.md s1 NEWS2 worked checks, and two built by hand from the table.
NEWS2_ZERO = {"respiration_rate": 18, "spo2": 97, "spo2_scale": 1, "supplemental_oxygen": False,
              "systolic_bp": 128, "pulse": 88, "consciousness": "A", "temperature": 37.2}  # 0
NEWS2_LOW_4 = {**NEWS2_ZERO, "respiration_rate": 22, "spo2": 96, "systolic_bp": 150, "pulse": 112,
               "temperature": 37.9}                                                         # 4 low
NEWS2_SINGLE_3 = {**NEWS2_ZERO, "respiration_rate": 26, "spo2": 96, "systolic_bp": 120, "pulse": 80,
                  "temperature": 36.8}                                                      # 3 low-medium
NEWS2_MEDIUM_5 = {**NEWS2_ZERO, "respiration_rate": 22, "spo2": 95, "systolic_bp": 135, "pulse": 105,
                  "temperature": 38.3}                    # RR 2 + SpO2 1 + P 1 + T 1 = 5 medium
NEWS2_MEDIUM_6 = {**NEWS2_ZERO, "respiration_rate": 18, "spo2": 95, "systolic_bp": 135, "pulse": 105,
                  "consciousness": "C", "temperature": 38.3}                                # 6 medium
NEWS2_HIGH_7 = {**NEWS2_ZERO, "respiration_rate": 25, "spo2": 95, "systolic_bp": 135, "pulse": 112,
                "temperature": 38.3}                      # RR 3 + SpO2 1 + P 2 + T 1 = 7 high
NEWS2_HIGH_14 = {"respiration_rate": 8, "spo2": 90, "spo2_scale": 1, "supplemental_oxygen": True,
                 "systolic_bp": 98, "pulse": 52, "consciousness": "V", "temperature": 35.8}  # 14 high

# --- a unit with every role signed in ---------------------------------------------------------


@dataclass
class Ward:
    """One unit: signed-in clients and usernames per role; ``admit(**referral)`` -> JSON."""

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


def build_ward(app, make_unit, make_staff, login, admit, model: str, emails: bool = True) -> Ward:
    """A unit of this care model with one signed-in member of staff per role."""
    # The tests move the fake clock by hours: sign-ins must outlast that here.
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))
    code = make_unit(model=model)
    usernames = {}
    for role in ROLES:
        name = f"{role}{uuid.uuid4().hex[:6]}"
        usernames[role] = make_staff(code, role, username=name,
                                     email=f"{name}@example.org" if emails else None)
    clients = {role: login(name) for role, name in usernames.items()}
    return Ward(app, code, model, clients, usernames, admit)


def post_observation(client, admission_id: int, scale: str, items: dict, key: str | None = None):
    """POST an observation with an Idempotency-Key."""
    return client.post(f"/api/v1/admissions/{admission_id}/observations",
                       json={"scale": scale, "items": items},
                       headers={"Idempotency-Key": key or str(uuid.uuid4())})


def observe(client, admission_id: int, scale: str, items: dict) -> dict:
    """Record an observation (asserts 201); the reply, with its ``escalation``."""
    response = post_observation(client, admission_id, scale, items)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def escalation_rows(app, admission_id: int | None = None) -> list:
    """Every escalation row (of one admission), oldest first, detached."""
    from monitoring.models import Escalation

    with app.app_context():
        query = sa.select(Escalation).order_by(Escalation.id)
        if admission_id is not None:
            query = query.where(Escalation.admission_id == admission_id)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def steps_of(app, escalation_id: int) -> list:
    """The escalation's steps, in order, detached."""
    from monitoring.models import EscalationStep

    with app.app_context():
        rows = list(db.session.scalars(sa.select(EscalationStep)
                                       .where(EscalationStep.escalation_id == escalation_id)
                                       .order_by(EscalationStep.id)))
        db.session.expunge_all()
        return rows


def outbox_rows(app, ref_id: int | None = None) -> list:
    """Every outbox message (about one escalation), oldest first, detached."""
    from config.outbox import OutboxMessage

    with app.app_context():
        query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
        if ref_id is not None:
            query = query.where(OutboxMessage.ref_type == "escalation", OutboxMessage.ref_id == ref_id)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


# --- a real SMTP server -----------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collector:
    """An aiosmtpd handler that keeps every message it is sent."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list:
        return [message_from_bytes(e.original_content or e.content) for e in self.envelopes]

    def recipients(self) -> list[str]:
        return [rcpt for e in self.envelopes for rcpt in e.rcpt_tos]


class SMTPServer:
    """An aiosmtpd server on 127.0.0.1:port, started and stopped by the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = Collector()
        self.controller = None

    def start(self) -> SMTPServer:
        from aiosmtpd.controller import Controller

        # start() waits (bounded by ready_timeout) until the server answers.
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
