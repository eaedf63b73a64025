"""Idempotency-Key on clinical writes: a retry replays the first result and writes nothing,
also when both copies arrive at once (a real threaded server, two connections)."""
from __future__ import annotations

import threading
import time

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from config.extensions import db
from config.idempotency import IdempotencyKey, purge_expired_keys
from monitoring import escalations
from monitoring.models import Observation
from tests.conftest import PASSWORD
from tests.monitoring.helpers import (
    NEWS2_ZERO,
    assert_problem,
    ciwa,
    key,
    post_observation,
    row_counts,
)


def observation_count(app, admission_id: int) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Observation)
                                 .where(Observation.admission_id == admission_id))


def test_a_retry_replays_the_first_result_and_writes_nothing(app, ward, clock):
    admission = ward.admit()
    body = {"scale": "ciwa-ar", "items": ciwa(9), "note": "first try"}
    the_key = key()
    first = post_observation(ward.nurse, admission["id"], body, the_key)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    after_first = row_counts(app)
    clock.advance(minutes=3)  # the tablet retries a little later
    again = post_observation(ward.nurse, admission["id"], body, the_key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert row_counts(app) == after_first  # no observation, no audit event, no key
    assert observation_count(app, admission["id"]) == 1


def test_the_same_body_in_another_key_order_is_the_same_request(ward):
    admission = ward.admit()
    the_key = key()
    items = ciwa(4)
    first = post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": items}, the_key)
    reordered = {"items": dict(reversed(list(items.items()))), "scale": "ciwa-ar"}
    again = post_observation(ward.nurse, admission["id"], reordered, the_key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == first.get_json()["id"]


def test_a_key_reused_for_another_body_is_refused(app, ward):
    admission = ward.admit()
    other = ward.admit(name="Second Resident")
    the_key = key()
    post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": ciwa(9)}, the_key)
    before = row_counts(app)
    assert_problem(post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": ciwa(10)},
                                    the_key), 422, "idempotency-key-reused")
    # The same body for another resident is another request too.
    assert_problem(post_observation(ward.nurse, other["id"], {"scale": "ciwa-ar", "items": ciwa(9)},
                                    the_key), 422, "idempotency-key-reused")
    assert row_counts(app) == before


def test_a_missing_key_is_400_and_nothing_is_written(app, ward):
    admission = ward.admit()
    before = row_counts(app)
    url = f"/api/v1/admissions/{admission['id']}/observations"
    body = {"scale": "ciwa-ar", "items": ciwa(9)}
    assert_problem(ward.nurse.post(url, json=body, headers={"Idempotency-Key": ""}), 400, "idempotency-key-missing")
    assert_problem(ward.nurse.post(url, json=body, headers={"Idempotency-Key": "   "}), 400)
    assert_problem(ward.nurse.post(url, json=body, headers={"Idempotency-Key": "k" * 201}), 400)
    assert row_counts(app) == before


@pytest.mark.parametrize("path, body", [
    ("/api/v1/observations/{obs}/strike", {"reason": "checking keys"}),
    ("/api/v1/schedules/{sched}", {"reason": "checking keys"}),
    ("/api/v1/admissions/{adm}/schedules", {"reason": "checking keys", "scale": "sows"})])
def test_every_clinical_write_of_the_package_needs_a_key(ward, path, body):
    admission = ward.admit()
    observation = post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": ciwa(1)})
    schedules = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/schedules").get_json()
    url = path.format(obs=observation.get_json()["id"], sched=schedules[0]["id"], adm=admission["id"])
    assert_problem(ward.nurse.post(url, json=body, headers={"Idempotency-Key": ""}), 400,
                   "idempotency-key-missing")


def test_the_body_is_checked_before_the_key(ward):
    # The body is parsed before the write begins (and, on SQLite, before the write lock is
    # taken): a request wrong in both is told about its body first.
    admission = ward.admit()
    url = f"/api/v1/admissions/{admission['id']}/observations"
    problem = ward.nurse.post(url, json={"scale": "ciwa-ar", "items": ciwa(1), "extra": 1},
                              headers={"Idempotency-Key": ""})
    assert problem.status_code == 422 and "extra" in problem.get_json()["errors"]


def test_a_refused_request_does_not_use_up_its_key(app, ward, clock):
    admission = ward.admit()
    the_key = key()
    bad = {"scale": "ciwa-ar", "items": {**ciwa(0), "orientation": 5}}
    assert_problem(post_observation(ward.nurse, admission["id"], bad, the_key), 422)
    assert_problem(post_observation(ward.nurse, admission["id"], bad, the_key), 422)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)
                                 .where(IdempotencyKey.key == the_key)) == 0
    # Corrected and sent with a new key, it is saved once.
    assert post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "items": ciwa(0)}).status_code == 201


def test_keys_are_per_unit(ward, make_unit, make_staff, login, admit):
    admission = ward.admit()
    other_nurse = login(make_staff(make_unit(), "nurse"))
    other = admit(other_nurse, name="Other Unit Resident")
    the_key = key()
    body = {"scale": "news2", "items": NEWS2_ZERO}
    assert post_observation(ward.nurse, admission["id"], body, the_key).status_code == 201
    response = post_observation(other_nurse, other["id"], body, the_key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_keys_live_at_least_seven_days(app, ward, clock):
    admission = ward.admit()
    the_key = key()
    body = {"scale": "ciwa-ar", "items": ciwa(2)}
    first = post_observation(ward.nurse, admission["id"], body, the_key).get_json()
    clock.advance(days=7)
    with app.app_context():
        assert purge_expired_keys(clock.now) == 0  # exactly 7 days: still kept
    again = post_observation(ward.nurse, admission["id"], body, the_key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == first["id"]
    assert observation_count(app, admission["id"]) == 1
    clock.advance(seconds=1)
    with app.app_context():
        assert purge_expired_keys(clock.now) == 2  # the observation's and the admission's
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0


# --------------------------------------------------------------------------- at the same time

@pytest.fixture
def real_server(app):
    """The app on 127.0.0.1 (threaded werkzeug), so that two requests really overlap."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _signed_in(base: str, username: str) -> requests.Session:
    http = requests.Session()
    response = http.post(f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD},
                         timeout=10)
    assert response.status_code == 200, response.text
    return http


def test_two_copies_at_once_store_one_observation(app, ward, real_server, monkeypatch):
    admission = ward.admit()
    # Hold the first writer inside its transaction for a moment, so that the second copy
    # surely arrives while the first is still being written (a window, not a schedule).
    written = []

    escalate = escalations.escalate_observation

    def slow_writer(observation, *args):
        written.append(observation.note)
        time.sleep(0.25)
        return escalate(observation, *args)

    monkeypatch.setattr(escalations, "escalate_observation", slow_writer)
    url = f"{real_server}/api/v1/admissions/{admission['id']}/observations"
    # Two connections of the same nurse (the tablet's first try and its retry).
    first = _signed_in(real_server, ward.usernames["nurse"])
    second = requests.Session()
    second.cookies.update(first.cookies)
    rounds = 5
    for n in range(rounds):
        the_key = key()
        body = {"scale": "ciwa-ar", "items": ciwa(n), "note": f"round {n}"}
        start = threading.Barrier(2)
        replies: list = [None, None]

        def send(slot: int, http: requests.Session) -> None:
            start.wait(timeout=10)
            replies[slot] = http.post(url, json=body, headers={"Idempotency-Key": the_key}, timeout=30)

        threads = [threading.Thread(target=send, args=(i, h)) for i, h in enumerate((first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert all(r is not None for r in replies)
        assert [r.status_code for r in replies] == [201, 201], [r.text for r in replies]
        ids = {r.json()["id"] for r in replies}
        assert len(ids) == 1, ids
        replayed = sorted(r.headers.get("Idempotent-Replayed", "") for r in replies)
        assert replayed == ["", "true"]
        assert replies[0].json() == replies[1].json()
    assert observation_count(app, admission["id"]) == rounds
    # The second copy did the work again, found the key taken and rolled its work back.
    assert written == [f"round {n}" for n in range(rounds) for _ in (1, 2)]
    with app.app_context():
        stored = db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey))
    assert stored == rounds + 1  # one per round, and the admission's


def test_a_retry_gets_the_first_reply_even_when_doing_it_again_would_be_refused(app, ward, clock):
    # The tablet's reply was lost; by the time it retries the resident has been discharged.
    # Done again, the write would be refused (409); the retry still gets the first reply.
    admission = ward.admit()
    body = {"scale": "ciwa-ar", "items": ciwa(6)}
    the_key = key()
    first = post_observation(ward.nurse, admission["id"], body, the_key)
    assert first.status_code == 201
    assert ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                           json={"discharge_type": "completed"}).status_code == 200
    after_discharge = row_counts(app)
    again = post_observation(ward.nurse, admission["id"], body, the_key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert row_counts(app) == after_discharge
    # A new key is a new write, and is refused.
    assert_problem(post_observation(ward.nurse, admission["id"], body, key()), 409)
