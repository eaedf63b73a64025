"""Two nurses giving the same dose at the same moment: exactly one succeeds.

The app is served by a real threaded werkzeug server on 127.0.0.1; two nurses, each with
their own signed-in ``requests`` session and their own Idempotency-Key, post at once (a
barrier releases both threads together). Run on SQLite and on PostgreSQL (TEST_DATABASE_URL).
The database itself enforces one dose per slot and one "next dose" per drug: the last tests
write the duplicate rows directly and watch the constraint refuse them.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from werkzeug.serving import make_server

from config.extensions import db
from medication.models import Administration, CDRegisterEntry, SafetyRefusal
from tests.conftest import PASSWORD
from tests.medication.helpers import ciwa, count, cows, fixed, observe, order, prn_chlordiazepoxide, rows

ROUNDS = 5


class Server:
    """The test's app on 127.0.0.1 at a free port, in a background thread."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="med-server", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(app):
    with Server(app) as running:
        yield running


def session_for(server: Server, username: str) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{server.url}/api/v1/auth/login",
                            json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return session


def at_once(sessions: list[requests.Session], url: str, bodies: list[dict]) -> list[requests.Response]:
    """Post one body per session at the same moment (each with its own new Idempotency-Key)."""
    barrier = threading.Barrier(len(sessions), timeout=10)
    results: list = [None] * len(sessions)

    def post(index: int) -> None:
        barrier.wait()
        try:
            results[index] = sessions[index].post(url, json=bodies[index], timeout=30,
                                                  headers={"Idempotency-Key": str(uuid.uuid4())})
        except Exception as error:  # reported below with the other thread's result
            results[index] = error

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(isinstance(r, requests.Response) for r in results), results
    return results


def one_won(responses: list[requests.Response], loser_types: tuple[str, ...]) -> dict:
    """Exactly one 201 and one 409 whose problem type is one of ``loser_types``."""
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409], [(r.status_code, r.text[:300]) for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.headers["Content-Type"].startswith("application/problem+json")
    problem = loser.json()
    assert problem["type"].rsplit("/", 1)[1] in loser_types, problem
    return problem


@pytest.fixture
def nurses(ward, server):
    return [session_for(server, ward.usernames["nurse"]), session_for(server, ward.usernames["nurse2"])]


def test_two_nurses_give_the_same_prn_dose_at_once(ward, server, nurses, clock):
    admission = ward.admit()
    prn = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    url = f"{server.url}/api/v1/orders/{prn['id']}/administrations"
    body = {"outcome": "given", "dose_mg": 20}
    for round_ in range(1, ROUNDS + 1):
        observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(12))
        problem = one_won(at_once(nurses, url, [body, body]), ("dose-refused", "conflict"))
        if problem["type"].endswith("dose-refused"):
            assert problem["check"] == "too_soon"
        assert count(ward.app, Administration) == round_
        clock.advance(hours=2)
    given = rows(ward.app, Administration, order_by=Administration.given_seq)
    assert [a.given_seq for a in given] == list(range(1, ROUNDS + 1))
    assert [a.given_at for a in given] == [given[0].given_at + timedelta(hours=2 * i) for i in range(ROUNDS)]
    # Each dose left the register once.
    assert count(ward.app, CDRegisterEntry, CDRegisterEntry.kind == "administration") == ROUNDS
    assert sum(e.amount_mg for e in rows(ward.app, CDRegisterEntry)) == -20 * ROUNDS


def test_two_nurses_give_the_same_scheduled_dose_at_once(ward, server, nurses, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    url = f"{server.url}/api/v1/orders/{regimen['id']}/administrations"
    slots = regimen["scheduled"][:ROUNDS]
    for round_, slot in enumerate(slots, start=1):
        clock.set(datetime.fromisoformat(slot["due_at"]).astimezone(timezone.utc))
        # One nurse names the slot from the due list, the other takes "the next due dose".
        bodies = [{"outcome": "given", "dose_mg": slot["dose_mg"], "scheduled_dose_id": slot["id"]},
                  {"outcome": "given", "dose_mg": slot["dose_mg"]}]
        one_won(at_once(nurses, url, bodies), ("no-dose-due", "conflict"))
        assert count(ward.app, Administration) == round_
    taken = rows(ward.app, Administration, order_by=Administration.id)
    assert [a.scheduled_dose_id for a in taken] == [s["id"] for s in slots]


def test_two_nurses_give_the_same_controlled_dose_at_once(ward, server, nurses, clock):
    admission = ward.admit(substances=("opioids",))
    methadone = order(ward.doctor, admission["id"], {
        "kind": "induction", "drug": "methadone", "dose_mg": 20, "route": "oral",
        "min_interval_minutes": 1440, "trigger": {"scale": "cows", "min_total": 8}})
    url = f"{server.url}/api/v1/orders/{methadone['id']}/administrations"
    # Each nurse brings a different witness, each signing with their own password.
    bodies = [{"outcome": "given", "dose_mg": 20, "witness": ward.witness("doctor")},
              {"outcome": "given", "dose_mg": 20, "witness": ward.witness("manager")}]
    for round_ in range(1, 4):
        observe(ward.nurse, admission["id"], "cows", cows(10))
        problem = one_won(at_once(nurses, url, bodies), ("dose-refused", "conflict"))
        if problem["type"].endswith("dose-refused"):
            assert problem["check"] == "too_soon"
        assert count(ward.app, Administration) == round_
        assert count(ward.app, CDRegisterEntry) == round_
        clock.advance(hours=24)
    refused = rows(ward.app, SafetyRefusal)
    assert all(r.check == "too_soon" for r in refused)


def test_doses_to_two_residents_at_once_both_reach_the_register(ward, server, nurses, clock):
    # A drug round: two nurses each give chlordiazepoxide to a different resident at the same
    # moment. Both doses are right; both must be recorded and both must leave the register
    # (whose lines are numbered per drug), one after the other.
    residents = [ward.admit(), ward.admit()]
    orders = [order(ward.doctor, r["id"], prn_chlordiazepoxide()) for r in residents]
    body = {"outcome": "given", "dose_mg": 20}
    for round_ in range(1, ROUNDS + 1):
        for resident in residents:
            observe(ward.nurse, resident["id"], "ciwa-ar", ciwa(12))
        barrier = threading.Barrier(2, timeout=10)
        results: list = [None, None]

        def post(index: int) -> None:
            barrier.wait()
            results[index] = nurses[index].post(
                f"{server.url}/api/v1/orders/{orders[index]['id']}/administrations", json=body, timeout=30,
                headers={"Idempotency-Key": str(uuid.uuid4())})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert [r.status_code for r in results] == [201, 201], [r.text[:300] for r in results]
        assert count(ward.app, Administration) == 2 * round_
        clock.advance(hours=2)
    register = rows(ward.app, CDRegisterEntry, order_by=CDRegisterEntry.seq)
    assert [e.seq for e in register] == list(range(1, 2 * ROUNDS + 1))
    assert [e.balance_mg for e in register] == [-20.0 * i for i in range(1, 2 * ROUNDS + 1)]


def test_the_same_key_twice_at_once_records_one_dose(ward, server, nurses, clock):
    # A nurse's tablet retries while the first request is still running: one dose, and the
    # retry either replays it or is told to retry; never a second dose or a refusal row.
    admission = ward.admit()
    prn = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(12))
    same = nurses[0]
    url = f"{server.url}/api/v1/orders/{prn['id']}/administrations"
    barrier = threading.Barrier(2, timeout=10)
    shared_key = str(uuid.uuid4())
    results: list = []

    def post() -> None:
        barrier.wait()
        results.append(same.post(url, json={"outcome": "given", "dose_mg": 20}, timeout=30,
                                 headers={"Idempotency-Key": shared_key}))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([201, 201], [201, 409], [201, 422]), [(r.status_code, r.text[:200]) for r in results]
    assert count(ward.app, Administration) == 1
    assert count(ward.app, SafetyRefusal) == 0


# --- the database's own rules ---------------------------------------------------------------

def _dose(admission_id: int, order_id: int, staff_id: int, unit_id: int, at: datetime, **kw) -> Administration:
    kw.setdefault("outcome", "given")
    return Administration(unit_id=unit_id, admission_id=admission_id, order_id=order_id, drug="chlordiazepoxide",
                          dose_mg=20, given_at=at, recorded_at=at, given_by_id=staff_id, **kw)


def _ids(app, ward, order_id: int) -> tuple[int, int, int]:
    from medication.models import MedicationOrder

    with app.app_context():
        saved = db.session.get(MedicationOrder, order_id)
        return saved.admission_id, saved.unit_id, saved.entered_by_id


def test_the_database_refuses_a_second_dose_with_the_same_number(ward, app, clock):
    admission = ward.admit()
    prn = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    admission_id, unit_id, staff_id = _ids(app, ward, prn["id"])
    with app.app_context():
        db.session.add(_dose(admission_id, prn["id"], staff_id, unit_id, clock.now, given_seq=1))
        db.session.commit()
        db.session.add(_dose(admission_id, prn["id"], staff_id, unit_id, clock.now, given_seq=1))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        # Doses not given carry no number and do not collide.
        for _ in range(2):
            db.session.add(_dose(admission_id, prn["id"], staff_id, unit_id, clock.now, given_seq=None,
                                 outcome="omitted", reason_code="asleep"))
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Administration)) == 3


def test_the_database_refuses_a_second_record_of_a_scheduled_dose(ward, app, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    slot = regimen["scheduled"][0]["id"]
    admission_id, unit_id, staff_id = _ids(app, ward, regimen["id"])
    with app.app_context():
        db.session.add(_dose(admission_id, regimen["id"], staff_id, unit_id, clock.now, given_seq=1,
                             scheduled_dose_id=slot))
        db.session.commit()
        db.session.add(_dose(admission_id, regimen["id"], staff_id, unit_id, clock.now, given_seq=None,
                             outcome="omitted", reason_code="asleep", scheduled_dose_id=slot))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
