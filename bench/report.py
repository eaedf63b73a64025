"""Benchmark: the unit-model report over one year of a unit's history.

Generates about 260,000 observations, 30,000 doses, 2,000 escalations (and their audit
events, hash-chained, so the report verifies a realistic chain) with bulk inserts, then times
``GET /api/v1/audit/report`` for the whole year through the Flask test client.
Prints ``report_ms_year`` (target: under 2,000 ms on SQLite) and the sizes.
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ASSESSMENT_OK,
    NEWS2_ZERO,
    PASSWORD,
    ciwa_items,
    database,
    dispose,
    figure,
    log,
    make_app,
    parse_args,
    reset_schema,
    score_rows,
    seed_unit,
)

BATCH = 5000


def generate(app, *, observations: int, doses: int, escalations: int, start: datetime, seed: int = 7) -> dict:
    """Bulk-insert a year of one unit's history; returns the counts."""
    import sqlalchemy as sa

    from config.extensions import db
    from medication.models import Administration, MedicationOrder
    from monitoring.models import Escalation, EscalationStep, MissedObservation, Observation, ObservationSchedule
    from unit.audit import event_hash, jsonable
    from unit.models import Admission, AuditChainHead, AuditEvent, Referral, Resident, Staff, Unit

    rng = random.Random(seed)
    with app.app_context():
        unit = db.session.scalars(sa.select(Unit)).one()
        nurse = db.session.scalars(sa.select(Staff).where(Staff.role == "nurse")).first()
        head = db.session.get(AuditChainHead, unit.id)
        seq, prev = head.seq, head.hash
        days = 365
        beds = 30
        stay = 7
        admissions = beds * days // stay                       # about 1,560 admissions
        per_admission = max(observations // admissions, 2)
        ciwa_scores = {t: score_rows("ciwa-ar", ciwa_items(t)) for t in range(0, 30)}
        news_zero = score_rows("news2", dict(NEWS2_ZERO))
        rows = {name: [] for name in ("residents", "referrals", "admissions", "schedules", "observations",
                                      "missed", "orders", "administrations", "escalations", "steps", "audit")}

        def audit(at, action, entity_type, entity_id, after, resident_id=None):
            nonlocal seq, prev
            seq += 1
            event = AuditEvent(unit_id=unit.id, seq=seq, at=at, actor_id=nurse.id, actor_role="nurse",
                               action=action, entity_type=entity_type, entity_id=str(entity_id),
                               resident_id=resident_id, before=None, after=jsonable(after), prev_hash=prev)
            event.hash = event_hash(event)
            prev = event.hash
            rows["audit"].append({c: getattr(event, c) for c in (
                "unit_id", "seq", "at", "actor_id", "actor_role", "action", "entity_type", "entity_id",
                "resident_id", "before", "after", "prev_hash", "hash")})

        observation_id = dose_id = escalation_id = 0
        doses_per_admission = max(doses // admissions, 1)
        escalation_every = max(admissions * per_admission // max(escalations, 1), 1)
        for index in range(admissions):
            admitted = start + timedelta(days=index * stay / beds, hours=rng.random())
            admission_id = index + 1
            rows["residents"].append({"id": admission_id, "unit_id": unit.id, "name": f"Resident {admission_id}",
                                      "date_of_birth": datetime(1970 + index % 30, 1 + index % 12, 1).date(),
                                      "nhs_number": None, "created_at": admitted})
            declined = index % 25 == 0
            rows["referrals"].append({"id": admission_id, "unit_id": unit.id,
                                      "resident_snapshot": {"name": f"Resident {admission_id}"},
                                      "substances": ["alcohol"], "assessment": dict(ASSESSMENT_OK),
                                      "unit_model": "medically_monitored",
                                      "decision": "declined" if declined else "admitted",
                                      "reasons": [{"code": "sadq_over_limit", "criterion": "SADQ over 30",
                                                   "detail": "SADQ 35"}] if declined else [],
                                      "flags": [], "recommended_setting": "residential_medically_monitored",
                                      "recommended_reasons": [], "decided_at": admitted, "decided_by_id": nurse.id})
            discharged = admitted + timedelta(days=stay)
            rows["admissions"].append({"id": admission_id, "unit_id": unit.id, "resident_id": admission_id,
                                       "referral_id": admission_id, "status": "discharged",
                                       "substances": ["alcohol"], "high_risk": False, "admitted_at": admitted,
                                       "admitted_by_id": nurse.id, "discharged_at": discharged,
                                       "discharge_type": "completed"})
            rows["schedules"].append({"id": admission_id, "unit_id": unit.id, "admission_id": admission_id,
                                      "scale": "ciwa-ar", "active": False, "interval_minutes": 60,
                                      "next_due_at": discharged, "consecutive_minimal": 0,
                                      "refusals_in_row": 0, "updated_at": discharged})
            interval = timedelta(minutes=stay * 24 * 60 / per_admission)
            for k in range(per_admission):
                due = admitted + interval * k
                if rng.random() < 0.02:
                    rows["missed"].append({"unit_id": unit.id, "admission_id": admission_id,
                                           "schedule_id": admission_id, "scale": "ciwa-ar", "due_at": due,
                                           "grace_minutes": 15, "detected_at": due + timedelta(minutes=16)})
                    continue
                observation_id += 1
                observed = due + timedelta(minutes=rng.choice((-5, -2, 0, 3, 8, 20)))
                scale, scored = ("news2", news_zero) if k % 5 == 0 else ("ciwa-ar", ciwa_scores[rng.randrange(30)])
                rows["observations"].append({"id": observation_id, "unit_id": unit.id, "admission_id": admission_id,
                                             "scale": scale, "status": "recorded", **scored, "note": None,
                                             "observed_at": observed, "recorded_at": observed,
                                             "recorded_by_id": nurse.id, "due_at": due})
                audit(observed, "observation.record", "observation", observation_id,
                      {"scale": scale, "total": scored["total"]}, admission_id)
                if observation_id % escalation_every == 0 and escalation_id < escalations:
                    escalation_id += 1
                    ack = observed + timedelta(minutes=rng.choice((2, 4, 8, 15, 25, 40)))
                    rows["escalations"].append({
                        "id": escalation_id, "unit_id": unit.id, "admission_id": admission_id,
                        "dedup_key": f"obs:{scale}:{escalation_id}", "trigger": "ciwa_severe", "severity": "urgent",
                        "reason": "CIWA-Ar severe", "source_type": "observation", "source_id": observation_id,
                        "status": "resolved", "route": "visiting_gp", "unit_model": "medically_monitored",
                        "call_999": False, "level": 1, "target_minutes": 30, "raised_at": observed,
                        "escalate_at": None, "acknowledged_at": ack, "resolved_at": ack, "outcome": "reviewed",
                        "overridden": False, "updated_at": ack})
                    rows["steps"].append({"escalation_id": escalation_id, "at": observed, "kind": "raised",
                                          "level": 1, "detail": "raised"})
            rows["orders"].append({"id": admission_id, "unit_id": unit.id, "admission_id": admission_id,
                                   "kind": "prn", "drug": "chlordiazepoxide", "form": "capsule", "route": "oral",
                                   "dose_mg": 20, "min_interval_minutes": 120, "max_daily_mg": 200,
                                   "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}, "controlled": True,
                                   "cd_schedule": 4, "starts_at": admitted, "ends_at": discharged,
                                   "status": "completed", "version": 1, "prescriber_id": nurse.id,
                                   "entered_by_id": nurse.id, "phone_order": False, "read_back_confirmed": False,
                                   "created_at": admitted})
            for k in range(doses_per_admission):
                dose_id += 1
                given = admitted + timedelta(hours=3 * k + 1)
                outcome = "given" if k % 10 else "refused"
                rows["administrations"].append({
                    "id": dose_id, "unit_id": unit.id, "admission_id": admission_id, "order_id": admission_id,
                    "drug": "chlordiazepoxide", "outcome": outcome, "dose_mg": 20,
                    "reason_code": None if outcome == "given" else "resident_refused",
                    "given_seq": k + 1 if outcome == "given" else None, "given_at": given, "recorded_at": given,
                    "given_by_id": nurse.id})
                audit(given, f"dose.{outcome}", "administration", dose_id, {"dose_mg": 20}, admission_id)
        for name, table in (("residents", Resident), ("referrals", Referral), ("admissions", Admission),
                            ("schedules", ObservationSchedule), ("observations", Observation),
                            ("missed", MissedObservation), ("orders", MedicationOrder),
                            ("administrations", Administration), ("escalations", Escalation),
                            ("steps", EscalationStep), ("audit", AuditEvent)):
            for i in range(0, len(rows[name]), BATCH):
                db.session.execute(sa.insert(table), rows[name][i:i + BATCH])
        head = db.session.get(AuditChainHead, unit.id)
        head.seq, head.hash = seq, prev
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            for table in ("observations", "missed_observations", "administrations", "escalations",
                          "audit_events", "admissions", "referrals"):
                db.session.execute(sa.text(f"ANALYZE {table}"))
            db.session.commit()
        else:
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
        db.session.remove()
        return {name: len(value) for name, value in rows.items()}


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    scale = 10 if args.quick else 1
    with database(args.db) as url:
        app = make_app(url)
        reset_schema(app)
        start = datetime(2025, 11, 1, tzinfo=timezone.utc)
        seed_unit(app, "YEAR", nurses=1, now=start - timedelta(days=1))
        with app.app_context():
            from unit import services

            services.create_staff(unit_code="YEAR", username="year-manager", role="manager", password=PASSWORD,
                                  full_name="Manager", email=None, now=start)
        began = time.perf_counter()
        counts = generate(app, observations=260_000 // scale, doses=30_000 // scale,
                          escalations=2_000 // scale, start=start)
        log(f"generated in {time.perf_counter() - began:.1f} s: {counts}")
        with app.app_context():
            from unit.audit import verify_all_chains

            began = time.perf_counter()
            verify_all_chains(datetime.now(timezone.utc))  # the nightly full verification
            figure("audit_full_verify_ms", (time.perf_counter() - began) * 1000)
        client = app.test_client()
        assert client.post("/api/v1/auth/login", json={"username": "year-manager", "password": PASSWORD}).status_code == 200
        query = "/api/v1/audit/report?from=2025-11-01&to=2026-10-31"
        timings = []
        for _ in range(3):
            began = time.perf_counter()
            response = client.get(query)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.get_json()
        body = response.get_json()
        log(f"report: {body['observations']['by_scale']} escalations={body['escalations']['total']} "
            f"chain={body['audit_chain']}")
        figure("report_observations", counts["observations"])
        figure("report_doses", counts["administrations"])
        figure("report_escalations", counts["escalations"])
        figure("report_audit_events", counts["audit"])
        figure("report_ms_year", statistics.median(timings))
        dispose(app)


if __name__ == "__main__":
    main()
