"""A crash under load: gunicorn (master and workers) is killed with SIGKILL while nurses are
recording observations, then started again on the same database. Every observation whose
reply said 201 is there; a request that got no reply is either wholly stored or wholly absent
(its retry with the same Idempotency-Key then records it exactly once); and the audit chain
still verifies (``flask --app wsgi audit verify`` exits 0)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import requests

from tests.faults.conftest import REQUEST_TIMEOUT, STAFF, UNIT_A, ciwa, new_key

pytestmark = pytest.mark.faults

WRITERS = 8
PER_WRITER = 200           # bound on requests per writer
KILL_AFTER_ACKED = 120     # kill once this many writes were acknowledged...
KILL_AFTER_SECONDS = 20    # ...or after this long, whichever comes first
RESIDENTS = 4


@dataclass
class Write:
    key: str
    admission_id: int
    body: dict
    status: int | None = None
    observation_id: int | None = None
    error: str | None = None


def test_sigkill_under_load_loses_no_acknowledged_write(server):
    """HAZ-002: a write the tablet was told is saved survives the server being killed."""
    nurses = [name for name, role in STAFF[UNIT_A] if role == "nurse"]
    admit_as = server.session(nurses[0])
    admissions = [server.admit(admit_as, f"Crash Resident {i}")["id"] for i in range(RESIDENTS)]
    tablets = [server.session(nurses[i % len(nurses)]) for i in range(WRITERS)]
    writes: list[Write] = []
    lock = threading.Lock()
    acked = threading.Semaphore(0)
    stop = threading.Event()

    def writer(index: int) -> None:
        client = tablets[index]
        for n in range(PER_WRITER):
            if stop.is_set():
                return
            admission_id = admissions[(index + n) % RESIDENTS]
            write = Write(new_key(), admission_id, {"scale": "ciwa-ar", "items": ciwa((index + n) % 16),
                                                    "note": f"crash writer {index} #{n}"})
            with lock:
                writes.append(write)
            try:
                response = client.post(server.url(f"/api/v1/admissions/{admission_id}/observations"),
                                       json=write.body, headers={"Idempotency-Key": write.key},
                                       timeout=REQUEST_TIMEOUT)
            except requests.RequestException as error:
                write.error = f"{type(error).__name__}"
                return  # the server is gone: this tablet stops (its write is in doubt)
            write.status = response.status_code
            if response.status_code == 201:
                write.observation_id = response.json()["id"]
                acked.release()
            else:
                write.error = response.text[:300]

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + KILL_AFTER_SECONDS
    for _ in range(KILL_AFTER_ACKED):
        if not acked.acquire(timeout=max(deadline - time.monotonic(), 0.01)):
            break
    in_flight_at_kill = sum(1 for t in threads if t.is_alive())
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 10)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck"

    acknowledged = [w for w in writes if w.status == 201]
    unanswered = [w for w in writes if w.status is None]
    refused = [w for w in writes if w.status is not None and w.status != 201]
    assert len(acknowledged) >= 20, f"too little load before the kill: {len(acknowledged)} writes"
    assert not refused, [(w.status, w.error) for w in refused[:5]]

    # Start again on the same database (the same port: tablets reconnect to the same address).
    server.start()
    database = server.database
    stored = {row.id for row in database.rows("SELECT id FROM observations WHERE note LIKE 'crash %'")}
    lost = [w.observation_id for w in acknowledged if w.observation_id not in stored]
    assert not lost, f"{len(lost)} acknowledged observations are missing after the crash: {lost[:10]}"
    # Nothing half-done: no idempotency key left claimed without its stored reply.
    assert database.scalar("SELECT count(*) FROM idempotency_keys WHERE status_code IS NULL") == 0
    assert len(stored) in range(len(acknowledged), len(acknowledged) + len(unanswered) + 1)

    # The tablets retry what got no answer, with the same key and body: each is then stored
    # exactly once (replayed if it had committed before the kill, recorded now if not).
    retry = server.session(nurses[0])
    for write in unanswered:
        response = retry.post(server.url(f"/api/v1/admissions/{write.admission_id}/observations"),
                              json=write.body, headers={"Idempotency-Key": write.key},
                              timeout=REQUEST_TIMEOUT)
        assert response.status_code == 201, (response.status_code, response.text[:300])
        write.observation_id = response.json()["id"]
    total = database.scalar("SELECT count(*) FROM observations WHERE note LIKE 'crash %'")
    assert total == len(acknowledged) + len(unanswered), (total, len(acknowledged), len(unanswered))
    assert len({w.observation_id for w in acknowledged + unanswered}) == total

    # The audit chain survived the crash intact.
    server.stop()
    verified = database.flask("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    assert f"{UNIT_A}: OK" in verified.stdout, verified.stdout
    print(f"\nkilled with {in_flight_at_kill} writers running: {len(acknowledged)} acknowledged, "
          f"{len(unanswered)} unanswered (retried), {len(stored) - len(acknowledged)} of those "
          f"had committed; {verified.stdout.strip()}")
