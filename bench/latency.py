"""Observation write latency at a fixed arrival rate (open loop) against gunicorn.

50 CIWA-Ar observation writes a second for 60 s (--quick: 10 s). Each request is due at its
own scheduled time (t0 + i/50) and is handed to a thread pool then, whether or not earlier
ones have answered; its latency is counted from the scheduled time, so time spent waiting for
a free client thread counts too (no coordinated omission).

Prints observation_write_p50_ms, observation_write_p95_ms, observation_write_p99_ms and
observation_write_errors (targets: p95 < 50 ms, p99 < 200 ms, no errors).
"""
from __future__ import annotations

import math
import queue
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
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

RATE = 50            # writes a second
NURSES = 16
POOL = 48            # client threads (and signed-in sessions): enough to keep the schedule at 50/s
BASE_TOTALS = (2, 4, 5, 9, 11, 3, 6, 13)


def sizes(quick: bool) -> dict:
    return {"admissions": 32 if quick else 64, "seconds": 10 if quick else 60}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def run(args) -> dict[str, float]:
    size = sizes(args.quick)
    count = RATE * size["seconds"]
    with database(args.db) as url:
        app = make_app(url)
        reset_schema(app)
        now = utc_now()
        nurses = seed_unit(app, "LATENCY", nurses=NURSES, now=now)
        admissions = admit_many(app, nurses[0], size["admissions"], now)
        dispose(app)
        rng = random.Random(11)
        base_total = {a: BASE_TOTALS[i % len(BASE_TOTALS)] for i, a in enumerate(admissions)}

        with gunicorn("wsgi:app", url) as base:
            sessions: queue.Queue = queue.Queue()
            for i in range(POOL):
                sessions.put(signed_in_session(base, nurses[i % NURSES]))

            def post(i: int):
                admission = admissions[i % len(admissions)]
                total = max(0, min(15, base_total[admission] + rng.choice((-1, 0, 1))))
                session = sessions.get()
                try:
                    return session.post(
                        f"{base}/api/v1/admissions/{admission}/observations",
                        json={"scale": "ciwa-ar", "items": ciwa_items(total)},
                        headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30)
                finally:
                    sessions.put(session)

            def timed(i: int, scheduled: float):
                started = time.perf_counter()
                try:
                    status = post(i).status_code
                except Exception as exc:  # counted as an error
                    status = repr(exc)[:120]
                finished = time.perf_counter()
                return finished - scheduled, finished - started, status

            with ThreadPoolExecutor(max_workers=POOL) as pool:
                # Warm-up (not counted): every worker imports, connects and caches statements.
                wait([pool.submit(post, i) for i in range(4 * POOL // 3)], timeout=60)
                log(f"latency: {count} writes at {RATE}/s over {size['seconds']} s, "
                    f"{len(admissions)} admissions, {POOL} client threads")
                futures = []
                t0 = time.perf_counter() + 0.2
                for i in range(count):
                    scheduled = t0 + i / RATE
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(timed, i, scheduled))
                done, not_done = wait(futures, timeout=size["seconds"] + 90)
                for future in not_done:
                    future.cancel()
            while not sessions.empty():
                sessions.get().close()

    results = [f.result() for f in done]
    latencies = sorted(r[0] * 1000 for r in results if r[2] in (200, 201))
    service = sorted(r[1] * 1000 for r in results if r[2] in (200, 201))
    failures = [r[2] for r in results if r[2] not in (200, 201)]
    errors = len(failures) + len(not_done)
    if failures:
        log(f"error samples: {failures[:5]}")
    log(f"latency: {len(latencies)} ok; service time (send to answer) p50 "
        f"{percentile(service, 0.5):.1f} ms, p99 {percentile(service, 0.99):.1f} ms; "
        f"max {latencies[-1] if latencies else float('nan'):.1f} ms")
    return {"observation_write_p50_ms": percentile(latencies, 0.50),
            "observation_write_p95_ms": percentile(latencies, 0.95),
            "observation_write_p99_ms": percentile(latencies, 0.99),
            "observation_write_errors": errors}


def main(argv=None) -> int:
    return script_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
