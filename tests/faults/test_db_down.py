"""The database goes away under load: the PostgreSQL cluster is stopped (fast shutdown) for a
few seconds while nurses read and record. Requests in that window answer 503 with Retry-After
(a problem body that says nothing was saved), never 500; once the database is back the service
answers 2xx again by itself (pool pre-ping, no restart) within 30 s; nothing acknowledged is
lost, and the writes refused meanwhile go through on retry, once each.

Stops the cluster that serves TEST_DATABASE_URL (found by its port with pg_lsclusters), so it
runs only with TEST_DATABASE_URL set, on this machine, as root (pg_ctlcluster).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa

from tests.faults.conftest import STAFF, TEST_DATABASE_URL, UNIT_A, ciwa, new_key

pytestmark = pytest.mark.faults

LOADERS = 4
PER_LOADER = 3000          # bound on requests per loader
DOWN_SECONDS = 4
RECOVER_WITHIN = 30
TIMEOUT = 10


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster on TEST_DATABASE_URL's port."""
    if not TEST_DATABASE_URL or shutil.which("pg_lsclusters") is None:
        return None
    url = sa.engine.make_url(TEST_DATABASE_URL)
    if (url.host or "localhost") not in ("127.0.0.1", "localhost", "::1"):
        return None
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        version, name, port, *_ = line.split()
        if int(port) == (url.port or 5432):
            return version, name
    return None


CLUSTER = _cluster()


def _pg_ctl(action: str, *extra: str) -> subprocess.CompletedProcess:
    version, name = CLUSTER
    return subprocess.run(["pg_ctlcluster", version, name, action, *extra], capture_output=True,
                          text=True, timeout=120)


@dataclass
class Call:
    sent: float
    kind: str               # "write" or "read"
    key: str | None = None
    admission_id: int | None = None
    body: dict | None = None
    answered: float | None = None
    status: int | None = None
    retry_after: str | None = None
    problem: str | None = None
    observation_id: int | None = None
    error: str | None = None


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL only: stops the database server "
                    "(pg_ctlcluster); TEST_DATABASE_URL is unset")
@pytest.mark.skipif(bool(TEST_DATABASE_URL) and (CLUSTER is None or os.geteuid() != 0),
                    reason="TEST_DATABASE_URL is not a local pg_ctlcluster cluster, or not root")
def test_database_down_answers_503_with_retry_after_and_recovers_by_itself(server):
    nurses = [name for name, role in STAFF[UNIT_A] if role == "nurse"]
    nurse = server.session(nurses[0])
    admissions = [server.admit(nurse, f"Outage Resident {i}")["id"] for i in range(2)]
    calls: list[Call] = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + 180

    def loader(index: int) -> None:
        client = requests.Session()
        client.cookies.update(nurse.cookies)
        for n in range(PER_LOADER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            admission_id = admissions[(index + n) % len(admissions)]
            if n % 3 == 0:
                call = Call(time.monotonic(), "write", new_key(), admission_id,
                            {"scale": "ciwa-ar", "items": ciwa(n % 8), "note": f"outage {index} #{n}"})
                request = lambda: client.post(  # noqa: E731
                    server.url(f"/api/v1/admissions/{admission_id}/observations"), json=call.body,
                    headers={"Idempotency-Key": call.key}, timeout=TIMEOUT)
            elif n % 3 == 1:
                call = Call(time.monotonic(), "read", admission_id=admission_id)
                request = lambda: client.get(  # noqa: E731
                    server.url(f"/api/v1/admissions/{admission_id}/observations"), timeout=TIMEOUT)
            else:  # the resident's page, as a browser asks for it
                call = Call(time.monotonic(), "page", admission_id=admission_id)
                request = lambda: client.get(  # noqa: E731
                    server.url(f"/admissions/{admission_id}"), headers={"Accept": "text/html"},
                    allow_redirects=False, timeout=TIMEOUT)
            try:
                response = request()
            except requests.RequestException as error:
                call.error = type(error).__name__
            else:
                call.status = response.status_code
                call.retry_after = response.headers.get("Retry-After")
                if response.headers.get("Content-Type", "").startswith("application/problem+json"):
                    call.problem = response.json().get("type")
                if call.kind == "write" and response.status_code == 201:
                    call.observation_id = response.json()["id"]
            call.answered = time.monotonic()
            with lock:
                calls.append(call)
            if call.status is not None and call.status >= 500:
                time.sleep(0.05)  # a client honouring Retry-After would wait longer; keep probing

    def ok_since(moment: float) -> int:
        with lock:
            return sum(1 for c in calls if c.sent >= moment and c.status is not None and c.status < 300)

    threads = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(LOADERS)]
    for thread in threads:
        thread.start()
    stopped = started = None
    try:
        warm = time.monotonic()
        while ok_since(warm) < 40 and time.monotonic() < warm + 60:
            time.sleep(0.05)
        assert ok_since(warm) >= 40, "the service did not answer 2xx before the outage"
        stopping = time.monotonic()
        result = _pg_ctl("stop", "-m", "fast")
        assert result.returncode == 0, result.stderr
        stopped = time.monotonic()
        time.sleep(DOWN_SECONDS)
        starting = time.monotonic()
        result = _pg_ctl("start")
        assert result.returncode == 0, result.stderr
        started = time.monotonic()
        while ok_since(started) < 20 and time.monotonic() < started + RECOVER_WITHIN + 5:
            time.sleep(0.1)
    finally:
        if _pg_ctl("status").returncode != 0:  # never leave the database server down
            _pg_ctl("start")
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads), "a loader is stuck"

    statuses = Counter(c.status for c in calls)
    failures = [c for c in calls if c.status is None or c.status >= 500 and c.status != 503]
    assert not failures, (f"{len(failures)} requests failed otherwise than 503: "
                          f"{Counter((c.kind, c.status, c.error) for c in failures)}\n"
                          + "\n\n".join(server.tracebacks()[-3:]))
    unavailable = [c for c in calls if c.status == 503]
    assert unavailable, f"no request saw the outage: {statuses}"
    for call in unavailable:
        assert call.retry_after and call.retry_after.isdigit() and int(call.retry_after) > 0, call
        if call.kind != "page":
            assert call.problem == "/problems/database-unavailable", call
    # Sent while the database was down (after the stop returned, before the start began): 503.
    down = [c for c in calls if stopped <= c.sent and c.answered <= starting]
    assert down and all(c.status == 503 for c in down), Counter(c.status for c in down)
    other = [c for c in calls if c.status is not None and c.status not in (200, 201, 503)]
    assert not other, Counter((c.status, c.problem) for c in other)

    # Back by itself: a 2xx for a request sent after the start, within RECOVER_WITHIN seconds.
    recovered = min((c.answered for c in calls if c.sent >= started and c.status is not None
                     and c.status < 300), default=None)
    assert recovered is not None and recovered - started <= RECOVER_WITHIN, (
        f"no 2xx within {RECOVER_WITHIN} s of the database's return; after it: "
        f"{Counter(c.status for c in calls if c.sent >= started)}")

    # Nothing acknowledged is lost; a write refused with 503 goes through on retry, once.
    database = server.database
    stored = {row.id for row in database.rows("SELECT id FROM observations WHERE note LIKE 'outage %'")}
    acknowledged = [c for c in calls if c.kind == "write" and c.status == 201]
    assert {c.observation_id for c in acknowledged} <= stored
    refused = [c for c in calls if c.kind == "write" and c.status == 503]
    for call in refused:
        response = nurse.post(server.url(f"/api/v1/admissions/{call.admission_id}/observations"),
                              json=call.body, headers={"Idempotency-Key": call.key}, timeout=TIMEOUT)
        assert response.status_code == 201, (response.status_code, response.text[:300])
    total = database.scalar("SELECT count(*) FROM observations WHERE note LIKE 'outage %'")
    assert total == len(acknowledged) + len(refused), (total, len(acknowledged), len(refused))
    print(f"\n{len(calls)} requests: {dict(statuses)}; stop took {stopped - stopping:.1f} s, "
          f"down {starting - stopped:.1f} s, start took {started - starting:.1f} s; "
          f"2xx again {recovered - started:.2f} s after the start; {len(refused)} refused writes "
          "retried and stored once")
