"""The due sweep (monitoring.services.flag_missed_observations) against a growing history.

3,000 active admissions (100 units of 30; --quick: 300 in 10 units), each with a CIWA-Ar and
a NEWS2 schedule, bulk inserted. Due times are spread as on a working ward at "now": 80% not
yet due, 10% due within 15 minutes, 7% late but within grace, 3% past grace by one slot (the
slots the sweep must flag, each raising a "missed observation" escalation). Then 100,000 past
observations (--quick: 10,000) are bulk inserted into one database, and 1,000,000 (--quick:
100,000) into a second one with the same schedules and due times (SQLite: a second file;
PostgreSQL: a schema ``bench_sweep_large`` in the same database). The sweeps of the two are
timed alternately, seven each, and each figure is a median; between two sweeps what the sweep
wrote (missed rows, escalations, outbox messages, ``missed_through``) is undone so that each
does the same work. The audit events it appended stay (the audit log is append-only).

Prints sweep_ms_100k, sweep_ms_1m and sweep_ratio = 1m / 100k (targets: < 200 ms, ratio <= 1.5).
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ASSESSMENT_OK,
    NEWS2_ZERO,
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

PER_UNIT = 30
BATCH = 20_000
RUNS = 7
MISSED_EVERY = 50  # one past missed slot per 50 past observations (history of the sweep itself)


def sizes(quick: bool) -> dict:
    if quick:
        return {"admissions": 300, "small": 10_000, "large": 100_000}
    return {"admissions": 3_000, "small": 100_000, "large": 1_000_000}


def _ids(table, column="id") -> list[int]:
    import sqlalchemy as sa

    from config.extensions import db

    return list(db.session.scalars(sa.select(getattr(table.c, column)).order_by(table.c.id)))


def seed_admissions(app, count: int, now, rng: random.Random) -> list[dict]:
    """Units (through the service), then residents, referrals, admissions and schedules in bulk.

    Returns the schedules as dicts (id, unit_id, admission_id, scale, interval, next_due_at).
    """
    import sqlalchemy as sa

    from config.extensions import db
    from monitoring.models import ObservationSchedule
    from monitoring.schedules import grace_minutes
    from unit.models import Admission, Referral, Resident, Staff

    units = max(1, count // PER_UNIT)
    for u in range(units):
        seed_unit(app, f"SWEEP{u + 1:03d}", nurses=1, now=now - timedelta(days=400))
    admitted_at = now - timedelta(days=365)  # before the oldest past observation
    with app.app_context():
        staff = db.session.execute(sa.select(Staff.id, Staff.unit_id).order_by(Staff.id)).all()
        residents, referrals = [], []
        for i in range(count):
            staff_id, unit_id = staff[i % units]
            dob = date(1960 + rng.randrange(40), 1 + rng.randrange(12), 1 + rng.randrange(28))
            residents.append({"unit_id": unit_id, "name": f"Sweep resident {i + 1}",
                              "date_of_birth": dob, "nhs_number": None, "created_at": admitted_at})
            referrals.append({
                "unit_id": unit_id, "decided_by_id": staff_id, "decided_at": admitted_at,
                "resident_snapshot": {"name": f"Sweep resident {i + 1}",
                                      "date_of_birth": dob.isoformat(), "nhs_number": None},
                "substances": ["alcohol"], "assessment": ASSESSMENT_OK,
                "unit_model": "medically_monitored", "decision": "admitted", "reasons": [],
                "flags": [], "recommended_setting": "residential_medically_monitored",
                "recommended_reasons": []})
        db.session.execute(sa.insert(Resident), residents)
        db.session.execute(sa.insert(Referral), referrals)
        resident_ids = _ids(Resident.__table__)
        referral_ids = _ids(Referral.__table__)
        db.session.execute(sa.insert(Admission), [
            {"unit_id": residents[i]["unit_id"], "resident_id": resident_ids[i],
             "referral_id": referral_ids[i], "status": "active", "substances": ["alcohol"],
             "high_risk": False, "admitted_at": admitted_at, "admitted_by_id": staff[i % units][0]}
            for i in range(count)])
        admissions = db.session.execute(
            sa.select(Admission.id, Admission.unit_id).order_by(Admission.id)).all()
        schedules = []
        for admission_id, unit_id in admissions:
            for scale, intervals in (("ciwa-ar", (60, 120, 240)), ("news2", (240, 720))):
                interval = rng.choice(intervals)
                grace = grace_minutes(interval)
                state = rng.random()
                if state < 0.03:    # past grace by less than one interval: one slot to flag
                    offset = -(grace + 1 + rng.randrange(min(30, interval - grace - 1)))
                elif state < 0.10:  # late, within grace
                    offset = -rng.randrange(1, grace)
                elif state < 0.20:  # due within 15 minutes
                    offset = rng.randrange(1, 15)
                else:               # not yet due
                    offset = rng.randrange(15, interval)
                schedules.append({"unit_id": unit_id, "admission_id": admission_id,
                                  "scale": scale, "active": True, "interval_minutes": interval,
                                  "next_due_at": now + minutes(offset), "updated_at": now,
                                  "consecutive_minimal": 0, "refusals_in_row": 0})
        db.session.execute(sa.insert(ObservationSchedule), schedules)
        for row, schedule_id in zip(schedules, _ids(ObservationSchedule.__table__)):
            row["id"] = schedule_id
        db.session.commit()
        db.session.remove()
    return schedules


OBSERVATION_COLUMNS = ("unit_id", "admission_id", "scale", "status", "items", "item_scores",
                       "total", "band", "risk", "warnings", "observed_at", "recorded_at",
                       "recorded_by_id", "due_at")
MISSED_COLUMNS = ("unit_id", "admission_id", "schedule_id", "scale", "due_at", "grace_minutes",
                  "detected_at")


def _insert_sql(engine, model, columns) -> str:
    """A driver-level INSERT: rows go to executemany as tuples of values already in the
    engine's form (JSON text, timestamps), skipping per-value type processing (fast)."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(f'"{c}"' for c in columns)
    return (f'INSERT INTO {model.__tablename__} ({names}) '
            f'VALUES ({", ".join(mark for _ in columns)})')


def insert_history(app, schedules: list[dict], start: int, stop: int, staff_by_unit: dict) -> None:
    """Past observations ``start``..``stop`` (round-robin over schedules, older as they go),
    and one past missed slot per MISSED_EVERY observations, in batches of BATCH rows."""
    import json


    from config.extensions import db
    from monitoring.models import MissedObservation, Observation

    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":  # how SQLAlchemy stores a UTC timestamp on SQLite
        def stamp(at):
            return at.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        def stamp(at):
            return at

    def scored(scale, items):
        row = score_rows(scale, items)
        return {**row, **{k: json.dumps(row[k]) for k in ("items", "item_scores", "warnings")}}

    variants = {"ciwa-ar": [scored("ciwa-ar", ciwa_items(t)) for t in (1, 3, 5, 7, 9, 12)],
                "news2": [scored("news2", NEWS2_ZERO), scored("news2", {**NEWS2_ZERO, "pulse": 95})]}
    observation_sql = _insert_sql(engine, Observation, OBSERVATION_COLUMNS)
    missed_sql = _insert_sql(engine, MissedObservation, MISSED_COLUMNS)
    count = len(schedules)
    with engine.begin() as conn:
        observations, missed = [], []
        for j in range(start, stop):
            schedule = schedules[j % count]
            depth = j // count + 1  # 1 = the interval before the current due time
            interval = schedule["interval_minutes"]
            at = schedule["next_due_at"] - minutes(interval * depth + 3)
            kinds = variants[schedule["scale"]]
            scored_row = kinds[j % len(kinds)]
            observations.append((
                schedule["unit_id"], schedule["admission_id"], schedule["scale"], "recorded",
                scored_row["items"], scored_row["item_scores"], scored_row["total"],
                scored_row["band"], scored_row["risk"], scored_row["warnings"], stamp(at),
                stamp(at), staff_by_unit[schedule["unit_id"]], stamp(at - minutes(3))))
            if j % MISSED_EVERY == 0:
                missed.append((schedule["unit_id"], schedule["admission_id"], schedule["id"],
                               schedule["scale"], stamp(at - minutes(interval // 2)), 15, stamp(at)))
            if len(observations) >= BATCH:
                conn.exec_driver_sql(observation_sql, observations)
                observations = []
        if observations:
            conn.exec_driver_sql(observation_sql, observations)
        if missed:
            conn.exec_driver_sql(missed_sql, missed)
    if engine.dialect.name == "sqlite":
        # Fold the bulk load into the database file now, not in the first timed sweep's commit.
        raw = engine.raw_connection()  # outside any transaction (the pragma refuses one)
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    if engine.dialect.name == "postgresql":
        # What autovacuum would do after a bulk load, done now so that it does not run beside
        # the timed sweeps; SQLite gets no ANALYZE (the app never runs it).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE observations, missed_observations")


def undo_sweep(app, now) -> None:
    """Remove what a sweep at ``now`` wrote (except its audit events), so the next does the same."""
    import sqlalchemy as sa

    from config.extensions import db
    from monitoring.outbox import OutboxMessage
    from monitoring.models import Escalation, EscalationStep, MissedObservation, ObservationSchedule

    with app.app_context():
        db.session.execute(sa.delete(EscalationStep))
        db.session.execute(sa.delete(Escalation))
        db.session.execute(sa.delete(OutboxMessage))
        db.session.execute(sa.delete(MissedObservation).where(MissedObservation.detected_at == now))
        db.session.execute(sa.update(ObservationSchedule)
                           .where(ObservationSchedule.missed_through.is_not(None))
                           .values(missed_through=None))
        db.session.commit()
        db.session.remove()


def sweep_once(app, now, engine) -> tuple[float, int, int]:
    """(ms, missed slots flagged, SQL statements) of one flag_missed_observations(now)."""
    from sqlalchemy import event

    from config.extensions import db
    from monitoring.services import flag_missed_observations

    undo_sweep(app, now)
    statements = [0]

    def count(*_):
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        with app.app_context():
            started = time.perf_counter()
            missed = flag_missed_observations(now)
            elapsed = (time.perf_counter() - started) * 1000
            db.session.remove()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return elapsed, len(missed), statements[0]


def second_database(url: str, engine_name: str) -> str:
    """A second, independent database beside ``url`` for the large history.

    SQLite: another file next to it. PostgreSQL: the same database with its own schema
    (``bench_sweep_large``, first on the search_path), so that --db needs only one database.
    """
    if engine_name == "sqlite":
        path = url.split("///", 1)[1]
        return "sqlite:///" + (path[:-3] if path.endswith(".db") else path) + "-large.db"
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3Dbench_sweep_large"


def run(args) -> dict[str, float]:
    import sqlalchemy as sa

    from config.extensions import db
    from unit.models import Staff

    size = sizes(args.quick)
    with database(args.db) as url:
        # Two databases with the same schedules and due times: one with the small history, one
        # with the large. Their sweeps are timed alternately, so that a change in the machine's
        # load during the run (this is a shared 2-core machine) weighs on both alike.
        apps, engines = {}, {}
        now = utc_now()
        for label in ("100k", "1m"):
            app = make_app(url)
            with app.app_context():
                name = db.engine.dialect.name
                if label == "1m" and name == "postgresql":
                    with db.engine.begin() as conn:
                        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS bench_sweep_large")
            if label == "1m":
                app = make_app(second_database(url, name))
            reset_schema(app)
            started = time.perf_counter()
            schedules = seed_admissions(app, size["admissions"], now, random.Random(5))
            with app.app_context():
                staff_by_unit = {unit_id: staff_id for staff_id, unit_id in
                                 db.session.execute(sa.select(Staff.id, Staff.unit_id))}
                engines[label] = db.engine
            total = size["small"] if label == "100k" else size["large"]
            insert_history(app, schedules, 0, total, staff_by_unit)
            log(f"sweep: {size['admissions']} admissions, {len(schedules)} schedules and {total} "
                f"past observations seeded in {time.perf_counter() - started:.1f} s")
            apps[label] = app
        times = {"100k": [], "1m": []}
        for _ in range(RUNS):
            for label in ("100k", "1m"):
                ms, flagged, statements = sweep_once(apps[label], now, engines[label])
                times[label].append(ms)
        results = {label: statistics.median(values) for label, values in times.items()}
        for label, values in times.items():
            log(f"sweep {label}: median {results[label]:.1f} ms of {[round(v) for v in values]}; "
                f"{flagged} slots flagged, {statements} SQL statements a sweep")
        for app in apps.values():
            dispose(app)
        if args.db and name == "sqlite":
            log(f"sweep: the large history is in {second_database(url, name)} (left in place)")
    return {"sweep_ms_100k": results["100k"], "sweep_ms_1m": results["1m"],
            "sweep_ratio": results["1m"] / results["100k"]}


def main(argv=None) -> int:
    return script_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
