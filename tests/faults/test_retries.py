"""Retries under load: 20 nurses' tablets post 1,000 CIWA-Ar observations at once, and one in
ten is sent again with the same Idempotency-Key and body (half of them while the first is still
in flight, as a tablet does after a timeout). Exactly 1,000 are stored, each retry gets the
first reply back, and nothing answers 5xx."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests

from tests.faults.conftest import REQUEST_TIMEOUT, STAFF, UNIT_A, ciwa, new_key

pytestmark = pytest.mark.faults

CLIENTS = 20
OBSERVATIONS = 1000
PER_CLIENT = OBSERVATIONS // CLIENTS          # 50
RETRY_EVERY = 10                              # 10% retried
RESIDENTS = 5
DEADLINE_SECONDS = 240


@dataclass
class Sent:
    key: str
    admission_id: int
    body: dict
    status: int | None = None
    observation_id: int | None = None
    replayed: bool = False
    error: str | None = None


def _send(client: requests.Session, url: str, sent: Sent) -> Sent:
    """One POST; a copy of ``sent`` with what came back."""
    reply = Sent(sent.key, sent.admission_id, sent.body)
    try:
        response = client.post(url, json=sent.body, headers={"Idempotency-Key": sent.key},
                               timeout=REQUEST_TIMEOUT)
    except requests.RequestException as error:
        reply.error = f"{type(error).__name__}: {error}"
        return reply
    reply.status = response.status_code
    reply.replayed = response.headers.get("Idempotent-Replayed") == "true"
    if response.status_code == 201:
        reply.observation_id = response.json()["id"]
    else:
        reply.error = response.text[:500]
    return reply


def test_a_thousand_observations_with_retries_are_stored_exactly_once(server):
    """HAZ-002: retried observations are stored exactly once, none lost."""
    nurses = [name for name, role in STAFF[UNIT_A] if role == "nurse"]
    admit_as = server.session(nurses[0])
    admissions = [server.admit(admit_as, f"Retry Resident {i}")["id"] for i in range(RESIDENTS)]
    # One signed-in session per tablet (a requests.Session is not shared between threads).
    tablets = [server.session(nurses[i % len(nurses)]) for i in range(CLIENTS)]
    originals: list[Sent] = []
    retries: list[tuple[Sent, Sent]] = []       # (first send, retry) of the same key
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE_SECONDS
    start = threading.Barrier(CLIENTS)

    def tablet(index: int) -> None:
        rng = random.Random(index)
        client = tablets[index]
        start.wait(timeout=60)
        for n in range(PER_CLIENT):
            if time.monotonic() > deadline:
                return
            admission_id = admissions[(index * PER_CLIENT + n) % RESIDENTS]
            sent = Sent(new_key(), admission_id, {"scale": "ciwa-ar", "items": ciwa(rng.randrange(0, 16)),
                                                  "note": f"tablet {index} obs {n}"})
            url = server.url(f"/api/v1/admissions/{admission_id}/observations")
            if n % RETRY_EVERY != RETRY_EVERY - 1:
                first = _send(client, url, sent)
            elif n % (2 * RETRY_EVERY) == RETRY_EVERY - 1:
                # The tablet timed out and sends again while the first is still in flight.
                racing: list[Sent] = []
                twin = threading.Thread(target=lambda: racing.append(
                    _send(_twin_session(client), url, sent)))
                twin.start()
                first = _send(client, url, sent)
                twin.join(timeout=2 * REQUEST_TIMEOUT)
                with lock:
                    retries.append((first, racing[0] if racing else Sent(sent.key, admission_id, sent.body,
                                                                          error="twin did not finish")))
            else:
                # The reply was lost: the tablet sends the same request again afterwards.
                first = _send(client, url, sent)
                with lock:
                    retries.append((first, _send(client, url, sent)))
            with lock:
                originals.append(first)

    threads = [threading.Thread(target=tablet, args=(i,), daemon=True) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS + 60)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a tablet thread is stuck"

    every_reply = originals + [retry for _, retry in retries]
    server_errors = [r for r in every_reply if r.status is None or r.status >= 500]
    assert not server_errors, (
        f"{len(server_errors)} of {len(every_reply)} requests failed or answered 5xx, e.g. "
        f"{[(r.status, r.error) for r in server_errors[:5]]}\n" + "\n\n".join(server.tracebacks()[:3]))
    statuses = Counter(r.status for r in every_reply)
    assert len(originals) == OBSERVATIONS and len(retries) == OBSERVATIONS // RETRY_EVERY, (
        len(originals), len(retries), f"in {elapsed:.0f} s")
    assert statuses == {201: OBSERVATIONS + len(retries)}, statuses

    # Each retry got the first reply back (the same observation), marked as a replay.
    for first, retry in retries:
        assert retry.observation_id == first.observation_id, (first, retry)
        assert first.replayed != retry.replayed, ("exactly one of the two is the replay", first, retry)

    replied = {r.observation_id for r in originals}
    assert len(replied) == OBSERVATIONS
    stored = {row.id for row in server.database.rows(
        "SELECT id FROM observations WHERE note LIKE 'tablet %'")}
    assert len(stored) == OBSERVATIONS, f"{len(stored)} observations stored for {OBSERVATIONS} sent"
    assert stored == replied
    per_admission = Counter(r.admission_id for r in originals)
    for admission_id in admissions:
        assert server.database.scalar("SELECT count(*) FROM observations WHERE admission_id = :a",
                                      a=admission_id) == per_admission[admission_id]
    keys = server.database.scalar("SELECT count(*) FROM idempotency_keys")
    # One per distinct observation, and one per admission made for the test (also keyed).
    assert keys == OBSERVATIONS + len(admissions), f"{keys} idempotency keys for {OBSERVATIONS} distinct requests"
    print(f"\n{len(every_reply)} requests ({len(retries)} retries) from {CLIENTS} clients "
          f"in {elapsed:.1f} s")


def _twin_session(client: requests.Session) -> requests.Session:
    """A second connection with the same sign-in (the retry goes out on a new socket)."""
    twin = requests.Session()
    twin.cookies.update(client.cookies)
    return twin
