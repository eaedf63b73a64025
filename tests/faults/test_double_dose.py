"""The double dose: 50 tablets press "give" on the same PRN chlordiazepoxide dose at the same
moment (several nurses, each press its own Idempotency-Key). Exactly one dose is given; every
other press is refused with 409 (the safety check "too soon", or the database's one-dose-per-slot
rule when two got past the check together), and the refusals are on the record."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from tests.faults.conftest import REQUEST_TIMEOUT, STAFF, UNIT_A, ciwa, new_key

pytestmark = pytest.mark.faults

ATTEMPTS = 50
DOSE_MG = 20
# docs/clinical-rules.md s5 / NICE CG115: chlordiazepoxide PRN 10-40 mg, at least 2 h apart, at most
# 250 mg in 24 h, given on a CIWA-Ar of moderate or above (8-15 is moderate).
PRN_ORDER = {"kind": "prn", "drug": "chlordiazepoxide", "dose_mg": DOSE_MG, "route": "oral",
             "min_interval_minutes": 120, "max_daily_mg": 200,
             "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}}


def test_fifty_simultaneous_presses_give_one_dose(server):
    """HAZ-001: fifty presses of the same dose at once give it once."""
    nurses = [name for name, role in STAFF[UNIT_A] if role == "nurse"]
    assert len(nurses) >= 5
    nurse = server.session(nurses[0])
    doctor = server.session("a-doctor")
    admission = server.admit(nurse, "Double Dose Resident")
    response = server.post(doctor, f"/api/v1/admissions/{admission['id']}/orders", PRN_ORDER)
    assert response.status_code == 201, response.text[:500]
    order_id = response.json()["id"]
    observation = server.observe(nurse, admission["id"], "ciwa-ar", ciwa(12))
    assert observation["band"] == "moderate"

    signed_in = [server.session(name) for name in nurses]
    barrier = threading.Barrier(ATTEMPTS)
    results: list[tuple[int | None, dict | str, str]] = []
    lock = threading.Lock()
    url = server.url(f"/api/v1/orders/{order_id}/administrations")

    def press(index: int) -> None:
        client = requests.Session()
        client.cookies.update(signed_in[index % len(signed_in)].cookies)
        client.get(server.url("/api/v1/auth/session"), timeout=REQUEST_TIMEOUT)  # connect first
        try:
            barrier.wait(timeout=60)
            reply = client.post(url, json={"outcome": "given", "dose_mg": DOSE_MG},
                                headers={"Idempotency-Key": new_key()}, timeout=REQUEST_TIMEOUT)
            outcome = (reply.status_code, _json(reply), nurses[index % len(nurses)])
        except (requests.RequestException, threading.BrokenBarrierError) as error:
            outcome = (None, f"{type(error).__name__}: {error}", nurses[index % len(nurses)])
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=press, args=(i,), daemon=True) for i in range(ATTEMPTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a press is stuck"
    assert len(results) == ATTEMPTS

    statuses = Counter(status for status, _, _ in results)
    assert statuses == {201: 1, 409: ATTEMPTS - 1}, (
        statuses, [body for status, body, _ in results if status not in (201, 409)][:3],
        "\n\n".join(server.tracebacks()[:3]))
    given = [body for status, body, _ in results if status == 201][0]
    assert given["outcome"] == "given" and given["dose_mg"] == DOSE_MG
    assert given["trigger_observation_id"] == observation["id"]
    refusals = Counter(body["type"].rsplit("/", 1)[-1] for status, body, _ in results if status == 409)
    assert set(refusals) <= {"dose-refused", "conflict"}, refusals
    checks = Counter(body.get("check") for status, body, _ in results
                     if status == 409 and body["type"].endswith("dose-refused"))
    assert set(checks) <= {"too_soon"}, checks

    database = server.database
    assert database.scalar("SELECT count(*) FROM administrations WHERE order_id = :o AND outcome = 'given'",
                           o=order_id) == 1
    assert database.scalar("SELECT count(*) FROM administrations WHERE order_id = :o", o=order_id) == 1
    # Every safety refusal is kept (a database conflict saved nothing: the nurse reloads).
    assert database.scalar("SELECT count(*) FROM safety_refusals WHERE order_id = :o AND \"check\" = 'too_soon'",
                           o=order_id) == refusals["dose-refused"]
    # The CD register moved once, by one dose.
    entries = database.rows("SELECT amount_mg FROM cd_register_entries WHERE drug = 'chlordiazepoxide' "
                            "AND kind = 'administration'")
    assert [float(row.amount_mg) for row in entries] == [-DOSE_MG]
    print(f"\n{ATTEMPTS} presses in {elapsed:.1f} s: {dict(statuses)}, refusals {dict(refusals)}")


def _json(response: requests.Response) -> dict | str:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
