"""The ward board ("/") with 30 and with 300 active residents, through the Flask test client.

Two units are seeded in one database: 30 and 300 alcohol admissions (admit_resident: CIWA-Ar
and NEWS2 schedules), three past observations per schedule (bulk insert) with the schedule
moved on from the last one and due times spread over ok / due soon / late / overdue, and every
tenth resident with a fresh severe CIWA-Ar through record_observation (an open escalation).
A nurse of each unit, signed in through the API, GETs "/"; SQL statements are counted with a
``before_cursor_execute`` listener and the request is timed (median of several runs).

Prints board_queries_30, board_queries_300, board_ms_30, board_ms_300 (targets: the same
number of queries for both, 300 residents in under 50 ms).
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    NEWS2_ZERO,
    PASSWORD,
    admit_many,
    ciwa_items,
    database,
    dispose,
    log,
    make_app,
    minutes,
    reset_schema,
    score_rows,
    script_main,
    seed_unit,
    utc_now,
)

SIZES = (30, 300)
NEWS2_ITEMS = (NEWS2_ZERO, {**NEWS2_ZERO, "pulse": 95}, {**NEWS2_ZERO, "respiration_rate": 21})


def sizes(quick: bool) -> dict:
    return {"runs": 5 if quick else 11}


def seed_history(app, unit_code: str, now, rng: random.Random) -> None:
    """Three past observations per schedule; the schedule moved on from the last one."""
    import sqlalchemy as sa
    from sqlalchemy import select

    from config.extensions import db
    from monitoring import services
    from monitoring.models import Observation, ObservationSchedule
    from unit.models import Admission, Staff, Unit

    with app.app_context():
        unit_id = db.session.scalar(select(Unit.id).where(Unit.code == unit_code))
        nurse = db.session.scalars(select(Staff).where(Staff.unit_id == unit_id)).first()
        schedules = db.session.scalars(select(ObservationSchedule)
                                       .where(ObservationSchedule.unit_id == unit_id)).all()
        rows = []
        for schedule in schedules:
            for k in range(3):
                at = now - minutes(60 * (3 - k) + rng.randrange(30))
                if schedule.scale == "ciwa-ar":
                    scored = score_rows("ciwa-ar", ciwa_items(rng.choice((2, 5, 9, 12))))
                else:
                    scored = score_rows("news2", rng.choice(NEWS2_ITEMS))
                rows.append({"unit_id": unit_id, "admission_id": schedule.admission_id,
                             "scale": schedule.scale, "status": "recorded", "observed_at": at,
                             "recorded_at": at, "recorded_by_id": nurse.id, "due_at": at,
                             "note": None, **scored})
        db.session.execute(sa.insert(Observation), rows)
        latest = {(admission_id, scale): last_id for last_id, admission_id, scale in
                  db.session.execute(
                      select(sa.func.max(Observation.id), Observation.admission_id,
                             Observation.scale)
                      .where(Observation.unit_id == unit_id)
                      .group_by(Observation.admission_id, Observation.scale))}
        for schedule in schedules:
            schedule.last_observation_id = latest[(schedule.admission_id, schedule.scale)]
            schedule.interval_minutes = rng.choice((60, 120, 240))
            state = rng.random()  # ok 60%, due soon 15%, late 15%, overdue 10%
            offset = (rng.randrange(20, 200) if state < 0.60 else rng.randrange(1, 14)
                      if state < 0.75 else -rng.randrange(1, 14) if state < 0.90
                      else -rng.randrange(35, 90))
            schedule.next_due_at = now + minutes(offset)
        db.session.commit()
        # Every tenth resident: a severe CIWA-Ar now (an open urgent escalation on the board).
        admissions = db.session.scalars(select(Admission).where(Admission.unit_id == unit_id)
                                        .order_by(Admission.id)).all()
        for admission in admissions[::10]:
            services.record_observation(nurse, admission.id, scale="ciwa-ar",
                                        items=ciwa_items(17), observed_at=None, note=None, now=now)
        db.session.remove()


def measure(app, username: str, runs: int) -> tuple[int, float]:
    """(SQL statements, median ms) of GET / for this nurse."""
    from sqlalchemy import event

    from config.extensions import db

    client = app.test_client()
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    for _ in range(2):  # warm-up: templates compiled, statement caches filled
        assert client.get("/").status_code == 200
    counts, times = [], []
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(runs):
            statements.clear()
            started = time.perf_counter()
            response = client.get("/")
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.status_code
            counts.append(len(statements))
            times.append(elapsed)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if len(set(counts)) > 1:
        log(f"board: statement counts varied between runs: {counts}")
    return max(counts), statistics.median(times)


def run(args) -> dict[str, float]:
    size = sizes(args.quick)
    results: dict[str, float] = {}
    with database(args.db) as url:
        app = make_app(url)
        reset_schema(app)
        seeded_at = utc_now() - minutes(12 * 60)
        rng = random.Random(3)
        nurses = {}
        for n in SIZES:
            code = f"BOARD{n}"
            nurses[n] = seed_unit(app, code, nurses=1, now=seeded_at)[0]
            admit_many(app, nurses[n], n, seeded_at, seed=n)
            seed_history(app, code, utc_now(), rng)
        log(f"board: seeded {SIZES} residents; {size['runs']} timed runs each")
        for n in SIZES:
            queries, ms = measure(app, nurses[n], size["runs"])
            results[f"board_queries_{n}"] = queries
            results[f"board_ms_{n}"] = ms
        dispose(app)
    return {"board_queries_30": results["board_queries_30"],
            "board_queries_300": results["board_queries_300"],
            "board_ms_30": results["board_ms_30"], "board_ms_300": results["board_ms_300"]}


def main(argv=None) -> int:
    return script_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
