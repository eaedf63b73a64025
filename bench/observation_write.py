"""Observation write throughput against gunicorn, beside the floor of a bare write.

16 client threads (16 nurses, one signed-in requests.Session each) post CIWA-Ar observations
(POST /api/v1/admissions/<id>/observations, a fresh Idempotency-Key each) to N active
admissions, then the same threads post to POST /bench/floor, which inserts one bare row
through the same stack (sign-in check, engine, pragmas, unit_of_work). Both are served by one
gunicorn (``bench.floor_app:app``, production settings) in the same run, in alternating rounds
so that neither gets the warmer or emptier database.

Prints observation_write_rps, floor_write_rps and observation_write_ratio (target >= 0.5).
"""
from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    admit_many,
    ciwa_items,
    database,
    dispose,
    gunicorn,
    log,
    make_app,
    reset_schema,
    script_main,
    seed_unit,
    signed_in_session,
    utc_now,
)

THREADS = 16
BASE_TOTALS = (2, 4, 5, 9, 11, 3, 6, 13)  # CIWA-Ar minimal (0-7) and moderate (8-15): no escalation


def sizes(quick: bool) -> dict:
    if quick:
        return {"admissions": 32, "per_thread": 10, "rounds": 2, "phase_seconds": 15}
    return {"admissions": 64, "per_thread": 80, "rounds": 6, "phase_seconds": 90}


def _phase(sessions, make_request, per_thread: int, seconds: float) -> tuple[int, int, float]:
    """Every thread sends ``per_thread`` requests (bounded by ``seconds``); (ok, errors, elapsed)."""
    barrier = threading.Barrier(len(sessions) + 1)
    ok = [0] * len(sessions)
    errors = [0] * len(sessions)
    samples: list[str] = []

    def work(index: int) -> None:
        session = sessions[index]
        barrier.wait()
        deadline = time.monotonic() + seconds
        for n in range(per_thread):
            if time.monotonic() > deadline:
                break
            try:
                response = make_request(session, index, n)
                if 200 <= response.status_code < 300:
                    ok[index] += 1
                else:
                    errors[index] += 1
                    if len(samples) < 3:
                        samples.append(f"{response.status_code} {response.text[:200]}")
            except Exception as exc:  # a refused or reset connection counts as an error
                errors[index] += 1
                if len(samples) < 3:
                    samples.append(repr(exc)[:200])

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - started
    for sample in samples:
        log(f"error sample: {sample}")
    return sum(ok), sum(errors), elapsed


def run(args) -> dict[str, float]:
    from bench.floor_app import FLOOR_METADATA

    size = sizes(args.quick)
    with database(args.db) as url:
        app = make_app(url)
        reset_schema(app, [FLOOR_METADATA])
        now = utc_now()
        nurses = seed_unit(app, "WRITE", nurses=THREADS, now=now)
        admissions = admit_many(app, nurses[0], size["admissions"], now)
        dispose(app)
        log(f"observation_write: {len(admissions)} admissions, {THREADS} threads, "
            f"{size['per_thread'] * size['rounds']} writes per thread per endpoint")

        rng = random.Random(7)
        base_total = {a: BASE_TOTALS[i % len(BASE_TOTALS)] for i, a in enumerate(admissions)}

        def observation(session, index, n):
            admission = admissions[(index + n * THREADS) % len(admissions)]
            total = max(0, min(15, base_total[admission] + rng.choice((-1, 0, 1))))
            return session.post(
                f"{base}/api/v1/admissions/{admission}/observations",
                json={"scale": "ciwa-ar", "items": ciwa_items(total)},
                headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30)

        def floor(session, index, n):
            return session.post(f"{base}/bench/floor", json={}, timeout=30)

        with gunicorn("bench.floor_app:app", url) as base:
            sessions = [signed_in_session(base, nurse) for nurse in nurses]
            # Warm every worker (imports, first connections, statement caches) on both routes.
            _phase(sessions, observation, 1, 30)
            _phase(sessions, floor, 1, 30)
            totals = {"observation": [0, 0, 0.0], "floor": [0, 0, 0.0]}
            per_round = size["per_thread"]
            for _ in range(size["rounds"]):
                for name, make in (("observation", observation), ("floor", floor)):
                    ok, errors, elapsed = _phase(sessions, make, per_round, size["phase_seconds"])
                    totals[name][0] += ok
                    totals[name][1] += errors
                    totals[name][2] += elapsed
            for session in sessions:
                session.close()

    for name, (ok, errors, elapsed) in totals.items():
        log(f"{name}: {ok} ok, {errors} errors in {elapsed:.1f} s")
        if errors:
            log(f"WARNING: {errors} {name} writes failed; the rate counts successful writes only")
    obs_rps = totals["observation"][0] / totals["observation"][2]
    floor_rps = totals["floor"][0] / totals["floor"][2]
    return {"observation_write_rps": obs_rps, "floor_write_rps": floor_rps,
            "observation_write_ratio": obs_rps / floor_rps if floor_rps else 0.0}


def main(argv=None) -> int:
    return script_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
