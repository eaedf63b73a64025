"""The eMAR: giving a dose after every safety check, each refusal with its check, its reason in
words and its row kept (and nothing given); outcomes with reason codes; the witness for
Schedule 2 and 3 drugs; escalations for sedation and maxima; idempotent retries."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.extensions import db
from medication.models import REASON_CODES, Administration, CDRegisterEntry, SafetyRefusal
from monitoring.models import Escalation
from tests.medication.conftest import START
from tests.medication.helpers import (
    NEWS2_CALM,
    assert_problem,
    ciwa,
    count,
    cows,
    fixed,
    give,
    induction_buprenorphine,
    key,
    observe,
    order,
    post,
    prn_chlordiazepoxide,
    rows,
)
from unit.models import AuditEvent


def given_count(app, admission_id: int | None = None) -> int:
    where = [Administration.outcome == "given"]
    if admission_id is not None:
        where.append(Administration.admission_id == admission_id)
    return count(app, Administration, *where)


def assert_refused(ward, response, check: str, *words: str, given_before: int) -> dict:
    """A 409 dose-refused problem naming ``check``, with ``words`` in its detail; the refusal
    row is kept with the same check and detail; no dose was given."""
    problem = assert_problem(response, 409, "dose-refused")
    assert problem["check"] == check, problem
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])
    refusals = rows(ward.app, SafetyRefusal, order_by=SafetyRefusal.id)
    assert refusals, "the refusal was not kept"
    assert (refusals[-1].check, refusals[-1].detail) == (check, problem["detail"])
    assert given_count(ward.app) == given_before
    return problem


def medication_escalations(app) -> list[Escalation]:
    return rows(app, Escalation, Escalation.trigger == "medication_safety", order_by=Escalation.id)


@pytest.fixture
def prn(ward):
    """An admission with a chlordiazepoxide PRN order (20 mg, 2 h apart, 200 mg a day, CIWA-Ar
    moderate or above); returns (admission id, order id)."""
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    return admission["id"], reply["id"]


# --- a dose given ----------------------------------------------------------------------------

def test_prn_dose_given_after_a_qualifying_score(ward, prn, app):
    admission_id, order_id = prn
    score = observe(ward.nurse, admission_id, "ciwa-ar", ciwa(10))
    response = give(ward.nurse, order_id, 20)
    assert response.status_code == 201, response.get_json()
    dose = response.get_json()
    assert dose["outcome"] == "given" and dose["dose_mg"] == 20 and dose["drug"] == "chlordiazepoxide"
    assert dose["given_by"] == ward.usernames["nurse"] and dose["witness"] is None
    assert dose["trigger_observation_id"] == score["id"]
    assert dose["escalation"] is None
    with app.app_context():
        saved = db.session.get(Administration, dose["id"])
        assert saved.given_seq == 1 and saved.given_at == START
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dose.given")).one()
        assert event.after["dose_mg"] == 20
    emar = ward.inspector.get(f"/api/v1/admissions/{admission_id}/administrations").get_json()
    assert [(a["id"], a["outcome"]) for a in emar] == [(dose["id"], "given")]


def test_chlordiazepoxide_needs_no_witness_but_one_offered_is_checked_and_kept(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert give(ward.nurse, order_id, 20).json["witness"] is None
    clock.advance(hours=2)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert_problem(give(ward.nurse, order_id, 20, witness=ward.witness(password="wrong-password")), 422,
                   "witness-invalid")
    response = give(ward.nurse, order_id, 20, witness=ward.witness())
    assert response.status_code == 201 and response.get_json()["witness"] == ward.usernames["nurse2"]


def test_dose_must_match_the_order(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    problem = assert_problem(give(ward.nurse, order_id, 30), 422, "administration-invalid")
    assert problem["errors"] == {"dose_mg": ["Must be 20."]}
    assert given_count(ward.app) == 0


@pytest.mark.parametrize("role", ["inspector"])
def test_inspector_cannot_record_a_dose(ward, prn, role):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert_problem(give(ward.clients[role], order_id, 20), 403)
    assert given_count(ward.app) == 0


# --- every safety refusal --------------------------------------------------------------------

def test_refused_before_the_minimum_interval(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(10))
    assert give(ward.nurse, order_id, 20).status_code == 201

    clock.advance(minutes=119)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(11))
    # 07:30 GMT + 119 min: one minute short of the 2 hours.
    assert_refused(ward, give(ward.nurse2, order_id, 20), "too_soon",
                   "Too soon", "20 mg was given at 07:30", "(1 h 59 min ago)",
                   "needs 2 h between doses", "Next from 09:30", given_before=1)
    clock.advance(minutes=1)
    assert give(ward.nurse2, order_id, 20).status_code == 201


def test_refused_over_the_rolling_24_hour_maximum(ward, clock):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], prn_chlordiazepoxide(max_daily_mg=60))
    for _ in range(3):
        observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
        assert give(ward.nurse, reply["id"], 20).status_code == 201
        clock.advance(hours=2)
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
    problem = assert_refused(ward, give(ward.nurse, reply["id"], 20), "max_daily",
                             "Over the 24-hour maximum", "60 mg of Chlordiazepoxide given in the last 24 hours",
                             "20 mg more would exceed 60 mg", given_before=3)
    # A maximum reached is escalated.
    assert problem["escalation"]["reason"].startswith("Chlordiazepoxide: dose refused: maximum reached")
    assert [e.reason for e in medication_escalations(ward.app)] == [problem["escalation"]["reason"]]

    # Rolling, not per calendar day: one minute before the first dose leaves the window, still
    # refused; once it has left (24 h after it), 40 + 20 = 60 is allowed again.
    clock.set(START + timedelta(hours=23, minutes=59))
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
    assert_refused(ward, give(ward.nurse, reply["id"], 20), "max_daily", given_before=3)
    clock.set(START + timedelta(hours=24))
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
    assert give(ward.nurse, reply["id"], 20).status_code == 201


def test_maximum_counts_every_order_of_the_same_drug(ward, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    prn_order = order(ward.doctor, admission["id"], prn_chlordiazepoxide(max_daily_mg=40))
    first_slot = regimen["scheduled"][0]
    clock.set(datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc))
    response = give(ward.nurse, regimen["id"], 30, scheduled_dose_id=first_slot["id"])
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["scheduled_dose_id"] == first_slot["id"]

    clock.advance(hours=2)
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(12))
    # 30 mg from the regimen + 20 mg PRN > the PRN order's 40 mg in 24 hours.
    assert_refused(ward, give(ward.nurse, prn_order["id"], 20), "max_daily",
                   "30 mg of Chlordiazepoxide given in the last 24 hours", "would exceed 40 mg",
                   given_before=1)


def test_interval_counts_doses_of_other_orders_of_the_drug(ward, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(20))
    prn_order = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    clock.set(datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc))
    assert give(ward.nurse, regimen["id"], 20).status_code == 201
    clock.advance(minutes=30)
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(12))
    assert_refused(ward, give(ward.nurse, prn_order["id"], 20), "too_soon", "given at 08:00",
                   given_before=1)


def test_refused_without_a_score(ward, prn):
    _, order_id = prn
    assert_refused(ward, give(ward.nurse, order_id, 20), "trigger_missing",
                   "No CIWA-Ar score is recorded", given_before=0)


def test_refused_when_the_score_is_below_the_trigger(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(7))   # 0-7 minimal
    assert_refused(ward, give(ward.nurse, order_id, 20), "trigger_not_met",
                   "CIWA-Ar 7 (minimal) is below this order's trigger (moderate or above)", given_before=0)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(8))   # 8 is moderate
    assert give(ward.nurse, order_id, 20).status_code == 201


def test_refused_when_the_score_is_older_than_60_minutes(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(14))
    clock.advance(minutes=61)
    assert_refused(ward, give(ward.nurse, order_id, 20), "trigger_stale",
                   "The latest CIWA-Ar (14) is 1 h 1 min old", "from the last 1 h. Score again.",
                   given_before=0)
    # Exactly 60 minutes old is still recent enough.
    clock.advance(minutes=-1)
    assert give(ward.nurse, order_id, 20).status_code == 201


def test_refused_when_the_latest_score_has_settled(ward, prn, clock):
    # The latest score decides, not the highest: 14 then 5 is below the trigger.
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(14))
    clock.advance(minutes=10)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(5))
    assert_refused(ward, give(ward.nurse, order_id, 20), "trigger_not_met", "CIWA-Ar 5", given_before=0)


@pytest.mark.parametrize("consciousness", ["V", "P", "U"])
def test_held_when_news2_consciousness_is_not_alert(ward, prn, consciousness):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    observe(ward.nurse, admission_id, "news2", {**NEWS2_CALM, "consciousness": consciousness})
    problem = assert_refused(ward, give(ward.nurse, order_id, 20), "hold_sedation",
                             f"Hold: the latest NEWS2 (07:30) records consciousness {consciousness}",
                             "do not give a sedating drug",
                             given_before=0)
    # The hold is escalated to the doctor.
    assert "sedation" in problem["escalation"]["reason"]
    assert len(medication_escalations(ward.app)) == 1


def test_held_when_respiration_rate_is_8_or_below(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    observe(ward.nurse, admission_id, "news2", {**NEWS2_CALM, "respiration_rate": 8})
    assert_refused(ward, give(ward.nurse, order_id, 20), "hold_sedation", "respiration rate 8 /min",
                   given_before=0)
    clock.advance(minutes=5)
    observe(ward.nurse, admission_id, "news2", {**NEWS2_CALM, "respiration_rate": 9})
    assert give(ward.nurse, order_id, 20).status_code == 201


def test_an_old_news2_does_not_hold(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "news2", {**NEWS2_CALM, "consciousness": "V"})
    clock.advance(hours=12, minutes=1)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert give(ward.nurse, order_id, 20).status_code == 201


def test_refused_on_a_stopped_order(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert post(ward.doctor, f"/api/v1/orders/{order_id}/stop", {"reason": "CIWA-Ar settled"}).status_code == 200
    assert_refused(ward, give(ward.nurse, order_id, 20), "order_stopped",
                   "This order is stopped (CIWA-Ar settled).", given_before=0)


def test_refused_on_a_superseded_order(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    changed = post(ward.doctor, f"/api/v1/orders/{order_id}/change",
                   {**prn_chlordiazepoxide(10), "reason": "Lower dose"})
    assert changed.status_code == 201
    assert_refused(ward, give(ward.nurse, order_id, 20), "order_stopped",
                   "This order is superseded (Changed: Lower dose).", given_before=0)
    assert give(ward.nurse, changed.get_json()["id"], 10).status_code == 201


def test_refused_for_a_discharged_resident(ward, prn, clock):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    clock.advance(minutes=5)
    response = ward.nurse.post(f"/api/v1/admissions/{admission_id}/discharge",
                               json={"discharge_type": "self-discharged"},
                               headers={"Idempotency-Key": key()})
    assert response.status_code == 200, response.get_json()
    assert_refused(ward, give(ward.nurse, order_id, 20), "discharged", "Resident 1 is discharged",
                   given_before=0)
    # Nor is anything else recorded on the chart.
    assert_refused(ward, give(ward.nurse, order_id, 20, outcome="omitted", reason="absent"),
                   "discharged", given_before=0)
    assert count(ward.app, Administration) == 0


def test_refused_after_the_course_ends(ward, prn, clock):
    admission_id, order_id = prn
    clock.advance(days=14)
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert_refused(ward, give(ward.nurse, order_id, 20), "order_ended", "This order ended at 17 Mar 07:30",
                   given_before=0)


def test_refusal_rows_name_order_staff_and_time(ward, prn, clock):
    admission_id, order_id = prn
    clock.advance(minutes=3)
    give(ward.nurse2, order_id, 20)
    refusal = rows(ward.app, SafetyRefusal)[0]
    assert (refusal.order_id, refusal.admission_id, refusal.drug) == (order_id, admission_id, "chlordiazepoxide")
    assert refusal.at == START + timedelta(minutes=3)
    with ward.app.app_context():
        from unit.models import Staff

        assert db.session.get(Staff, refusal.staff_id).username == ward.usernames["nurse2"]
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dose.refused_by_check")).one()
        assert event.after["check"] == "trigger_missing"


# --- buprenorphine induction -----------------------------------------------------------------

@pytest.fixture
def induction(ward, clock):
    admission = ward.admit(substances=("opioids",))
    reply = order(ward.doctor, admission["id"], induction_buprenorphine(clock.now - timedelta(hours=10)))
    return admission["id"], reply["id"]


def test_buprenorphine_waits_12_hours_after_a_short_acting_opioid(ward, induction, clock):
    admission_id, order_id = induction
    observe(ward.nurse, admission_id, "cows", cows(10))
    assert_refused(ward, give(ward.nurse, order_id, 4, witness=ward.witness()), "too_soon_after_opioid",
                   "12 h after the last short-acting opioid (used 10 h ago)", "precipitated withdrawal",
                   given_before=0)
    clock.advance(hours=2)
    observe(ward.nurse, admission_id, "cows", cows(10))
    response = give(ward.nurse, order_id, 4, witness=ward.witness())
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["witness"] == ward.usernames["nurse2"]


def test_buprenorphine_needs_cows_8_or_more(ward, induction, clock):
    admission_id, order_id = induction
    clock.advance(hours=2)
    observe(ward.nurse, admission_id, "cows", cows(7))
    assert_refused(ward, give(ward.nurse, order_id, 4, witness=ward.witness()), "trigger_not_met",
                   "COWS 7 is below this order's threshold of 8", given_before=0)
    observe(ward.nurse, admission_id, "cows", cows(8))
    assert give(ward.nurse, order_id, 4, witness=ward.witness()).status_code == 201


def test_buprenorphine_day_1_at_most_12_mg(ward, induction, clock):
    admission_id, order_id = induction
    clock.advance(hours=2)
    for _ in range(3):
        observe(ward.nurse, admission_id, "cows", cows(9))
        assert give(ward.nurse, order_id, 4, witness=ward.witness()).status_code == 201
        clock.advance(hours=2)
    observe(ward.nurse, admission_id, "cows", cows(9))
    assert_refused(ward, give(ward.nurse, order_id, 4, witness=ward.witness()), "max_daily",
                   "Buprenorphine day 1: at most 12 mg", given_before=3)


# --- witness rules (Schedule 2 and 3) --------------------------------------------------------

@pytest.fixture
def methadone(ward):
    admission = ward.admit(substances=("opioids",))
    reply = order(ward.doctor, admission["id"], {
        "kind": "induction", "drug": "methadone", "dose_mg": 20, "route": "oral",
        "min_interval_minutes": 1440, "trigger": {"scale": "cows", "min_total": 8}})
    observe(ward.nurse, admission["id"], "cows", cows(12))
    return admission["id"], reply["id"]


def assert_witness_refused(ward, response, words: str) -> None:
    problem = assert_problem(response, 422, "witness-invalid")
    assert words in problem["detail"], problem["detail"]
    assert "witness" in problem["errors"]
    assert count(ward.app, Administration) == 0
    assert count(ward.app, CDRegisterEntry) == 0
    assert count(ward.app, SafetyRefusal) == 0


def test_controlled_drug_without_a_witness_is_refused(ward, methadone):
    _, order_id = methadone
    assert_witness_refused(ward, give(ward.nurse, order_id, 20), "needs a second member of staff")


def test_the_giver_cannot_witness_their_own_dose(ward, methadone):
    _, order_id = methadone
    assert_witness_refused(ward, give(ward.nurse, order_id, 20, witness=ward.witness("nurse")),
                           "cannot be the person giving the dose")


def _deactivate(ward, role: str) -> None:
    with ward.app.app_context():
        from unit.models import Staff

        staff = db.session.scalars(sa.select(Staff).where(Staff.username == ward.usernames[role])).one()
        staff.active = False
        db.session.commit()


def test_the_witness_field_is_no_password_oracle(ward, make_ward, methadone):
    """Issue 15: a wrong password, an unknown user, another unit's manager, an inspector, a
    disabled account, or a non-witnessing role with its right password: every failure gets the
    same reply, and each is kept as a sign-in attempt and a witness.refused audit event."""
    _, order_id = methadone
    other = make_ward("medically_managed")
    _deactivate(ward, "doctor")
    failures = [ward.witness(password="wrong-password"),
                {"username": "no-such-person", "password": "whatever1"},
                other.witness("manager"),          # right password, another unit
                ward.witness("inspector"),         # right password, not a clinical role
                ward.witness("doctor")]            # right password, disabled
    replies = []
    for witness in failures:
        response = give(ward.nurse, order_id, 20, witness=witness)
        problem = assert_problem(response, 422, "witness-invalid")
        replies.append((response.status_code, problem["detail"], problem["errors"]))
        assert count(ward.app, Administration) == 0 and count(ward.app, CDRegisterEntry) == 0
    assert len(set(map(str, replies))) == 1, replies
    assert replies[0][1].startswith("Witness not accepted")
    events = rows(ward.app, AuditEvent, AuditEvent.action == "witness.refused", order_by=AuditEvent.id)
    assert [e.after["username"] for e in events] == [w["username"] for w in failures]
    with ward.app.app_context():
        from unit.models import LoginAttempt, Unit

        assert {e.unit_id for e in events} == {db.session.scalar(sa.select(Unit.id).where(Unit.code == ward.code))}

        attempts = db.session.scalars(sa.select(LoginAttempt.username).where(
            LoginAttempt.succeeded.is_(False))).all()
    assert sorted(attempts) == sorted(w["username"] for w in failures)


def test_a_witness_username_is_throttled_like_a_sign_in(ward, methadone):
    """Issue 15: after LOGIN_MAX_FAILURES failed checks of one witness username, even the right
    password is refused (429) for the window; the sign-in page counts the same failures."""
    _, order_id = methadone
    limit = ward.app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert_problem(give(ward.nurse, order_id, 20, witness=ward.witness(password="wrong-password")),
                       422, "witness-invalid")
    response = give(ward.nurse, order_id, 20, witness=ward.witness())
    problem = assert_problem(response, 429, "witness-throttled")
    assert "too many failed confirmations" in problem["detail"]
    assert response.headers["Retry-After"]
    assert count(ward.app, Administration) == 0
    events = rows(ward.app, AuditEvent, AuditEvent.action == "witness.refused")
    assert len(events) == limit + 1 and events[-1].after["throttled"] is True
    # Another witness is not held up.
    assert give(ward.nurse, order_id, 20, witness=ward.witness("doctor")).status_code == 201


@pytest.mark.parametrize("witness_role", ["nurse2", "doctor", "manager"])
def test_a_second_clinician_witnesses_with_their_own_password(ward, methadone, witness_role):
    admission_id, order_id = methadone
    response = give(ward.nurse, order_id, 20, witness=ward.witness(witness_role))
    assert response.status_code == 201, response.get_json()
    dose = response.get_json()
    assert dose["witness"] == ward.usernames[witness_role]
    assert "password" not in str(dose)
    entry = rows(ward.app, CDRegisterEntry)[0]
    assert (entry.kind, entry.amount_mg, entry.administration_id) == ("administration", -20, dose["id"])
    with ward.app.app_context():
        from unit.models import Staff

        assert db.session.get(Staff, entry.witness_id).username == ward.usernames[witness_role]


def test_a_refused_controlled_dose_may_be_recorded_without_a_witness(ward, methadone):
    _, order_id = methadone
    response = give(ward.nurse, order_id, 20, outcome="refused", reason="resident_refused")
    assert response.status_code == 201, response.get_json()
    assert count(ward.app, CDRegisterEntry) == 0


# --- outcomes other than given ---------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["refused", "withheld", "omitted"])
def test_not_given_needs_a_reason_code_of_its_outcome(ward, prn, outcome):
    admission_id, order_id = prn
    problem = assert_problem(give(ward.nurse, order_id, 20, outcome=outcome), 422, "administration-invalid")
    assert problem["errors"]["reason"] == [f"One of: {', '.join(REASON_CODES[outcome])}."]
    other = next(code for o, codes in REASON_CODES.items() if o != outcome for code in codes
                 if code not in REASON_CODES[outcome])
    assert_problem(give(ward.nurse, order_id, 20, outcome=outcome, reason=other), 422, "administration-invalid")
    reason = REASON_CODES[outcome][0]
    response = give(ward.nurse, order_id, 20, outcome=outcome, reason=reason)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["reason"] == reason and response.get_json()["outcome"] == outcome
    assert count(ward.app, Administration) == 1


def test_given_takes_no_reason(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert_problem(give(ward.nurse, order_id, 20, reason="asleep"), 422, "administration-invalid")


def test_doses_not_given_do_not_count_toward_interval_or_maximum(ward, prn):
    admission_id, order_id = prn
    assert give(ward.nurse, order_id, 20, outcome="omitted", reason="asleep").status_code == 201
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    assert give(ward.nurse, order_id, 20).status_code == 201


def test_withheld_for_sedation_raises_an_escalation(ward, prn):
    admission_id, prn_id = prn
    regimen = order(ward.doctor, admission_id, fixed(30))
    response = give(ward.nurse, regimen["id"], 30, outcome="withheld", reason="sedated", note="Drowsy, rousable")
    assert response.status_code == 201, response.get_json()
    escalation = response.get_json()["escalation"]
    assert escalation["reason"] == "Chlordiazepoxide: Dose withheld for sedation"
    assert escalation["severity"] == "urgent" and escalation["status"] == "open"
    saved = medication_escalations(ward.app)
    assert [(e.id, e.source_type, e.admission_id) for e in saved] == [
        (escalation["id"], "medication_order", admission_id)]
    # Other reasons are not escalated.
    for outcome, reason in (("withheld", "low_blood_pressure"), ("omitted", "vomited")):
        assert give(ward.nurse, prn_id, 20, outcome=outcome, reason=reason).status_code == 201
    assert len(medication_escalations(ward.app)) == 1


def test_over_120_mg_diazepam_equivalent_asks_for_senior_review(ward, clock):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], {
        "kind": "prn", "drug": "diazepam", "dose_mg": 20, "route": "oral", "min_interval_minutes": 60,
        "max_daily_mg": 200, "trigger": {"scale": "ciwa-ar", "min_band": "moderate"}})
    for dose in range(1, 8):
        observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(15))
        response = give(ward.nurse, reply["id"], 20)
        assert response.status_code == 201, response.get_json()
        escalation = response.get_json()["escalation"]
        if dose < 7:        # 6 x 20 = 120 mg: not over
            assert escalation is None
        else:               # 140 mg diazepam-equivalent in 24 hours
            assert "140 mg diazepam-equivalent in 24 hours" in escalation["reason"]
            assert "senior review" in escalation["reason"]
        clock.advance(hours=1)


# --- scheduled doses of a fixed regimen --------------------------------------------------------

def test_scheduled_dose_given_in_its_slot(ward, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    slots = regimen["scheduled"]
    due = ward.nurse.get("/api/v1/due-doses").get_json()["scheduled"]
    # 07:30: the 08:00 dose may be given from 07:00.
    assert [(d["scheduled_dose_id"], d["state"], d["dose_mg"]) for d in due] == [(slots[0]["id"], "upcoming", 30)]
    assert_problem(give(ward.nurse, regimen["id"], 25), 422, "administration-invalid")
    response = give(ward.nurse, regimen["id"], 30)
    assert response.status_code == 201 and response.get_json()["scheduled_dose_id"] == slots[0]["id"]
    # The 12:00 dose is not due until 11:00.
    assert_problem(give(ward.nurse, regimen["id"], 30), 409, "no-dose-due")
    assert ward.nurse.get("/api/v1/due-doses").get_json()["scheduled"] == []
    clock.set(datetime(2025, 3, 3, 13, 30, tzinfo=timezone.utc))
    due = ward.nurse.get("/api/v1/due-doses").get_json()["scheduled"]
    assert [(d["scheduled_dose_id"], d["state"]) for d in due] == [(slots[1]["id"], "overdue")]


def test_a_scheduled_dose_is_not_given_before_its_time(ward):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    tomorrow = regimen["scheduled"][4]   # day 2 08:00, 25 mg
    problem = assert_problem(give(ward.nurse, regimen["id"], 25, scheduled_dose_id=tomorrow["id"]), 409,
                             "no-dose-due")
    assert "04 Mar 08:00" in problem["detail"]
    assert count(ward.app, Administration) == 0


def test_a_scheduled_dose_is_recorded_once(ward):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    slot = regimen["scheduled"][0]["id"]
    assert give(ward.nurse, regimen["id"], 30, scheduled_dose_id=slot).status_code == 201
    problem = assert_problem(give(ward.nurse2, regimen["id"], 30, scheduled_dose_id=slot), 409, "no-dose-due")
    assert "already recorded" in problem["detail"]
    assert count(ward.app, Administration) == 1


def test_a_scheduled_dose_of_another_order_is_invalid(ward):
    admission = ward.admit()
    first = order(ward.doctor, admission["id"], fixed(30))
    other = ward.admit()
    second = order(ward.doctor, other["id"], fixed(20))
    assert_problem(give(ward.nurse, first["id"], 20, scheduled_dose_id=second["scheduled"][0]["id"]), 422,
                   "administration-invalid")


# --- PRN availability on the due-doses list ----------------------------------------------------

def test_due_doses_say_whether_a_prn_may_be_given_and_why(ward, prn, clock):
    admission_id, order_id = prn
    entry = ward.nurse.get("/api/v1/due-doses").get_json()["prn"][0]
    assert entry["order_id"] == order_id and entry["available"] is False
    assert entry["reason"] == "No CIWA-Ar score is recorded: score first."
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(10))
    entry = ward.nurse.get("/api/v1/due-doses").get_json()["prn"][0]
    assert entry["available"] is True and entry["state"] == "available"
    assert entry["reason"] == "CIWA-Ar 10 (moderate) at 07:30; no dose yet; 200 mg of 200 mg left in 24 h"
    assert give(ward.nurse, order_id, 20).status_code == 201
    clock.advance(minutes=30)
    entry = ward.nurse.get("/api/v1/due-doses").get_json()["prn"][0]
    assert entry["available"] is False and entry["reason"].startswith("Too soon:")
    # Asking is not a refusal: nothing is recorded by looking.
    assert count(ward.app, SafetyRefusal) == 0


# --- idempotent retries ----------------------------------------------------------------------

def test_a_retry_with_the_same_key_replays_and_records_once(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    same = key()
    first = give(ward.nurse, order_id, 20, idempotency_key=same)
    assert first.status_code == 201
    again = give(ward.nurse, order_id, 20, idempotency_key=same)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    assert count(ward.app, Administration) == 1
    assert count(ward.app, CDRegisterEntry) == 1
    assert count(ward.app, SafetyRefusal) == 0     # the retry is not a second dose refused too soon
    # The same key for a different body is refused; a new key is a new (too soon) dose.
    assert_problem(give(ward.nurse, order_id, 20, outcome="omitted", reason="asleep", idempotency_key=same),
                   422, "idempotency-key-reused")
    assert_refused(ward, give(ward.nurse, order_id, 20), "too_soon", given_before=1)


def test_a_retried_refusal_replays_the_same_refusal(ward, prn):
    _, order_id = prn
    same = key()
    first = give(ward.nurse, order_id, 20, idempotency_key=same)
    again = give(ward.nurse, order_id, 20, idempotency_key=same)
    assert first.status_code == again.status_code == 409
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert count(ward.app, SafetyRefusal) == 1


def test_a_dose_needs_an_idempotency_key(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    response = ward.nurse.post(f"/api/v1/orders/{order_id}/administrations", json={"outcome": "given", "dose_mg": 20},
                               headers={"Idempotency-Key": ""})
    assert_problem(response, 400, "idempotency-key-missing")
    assert count(ward.app, Administration) == 0


def test_unknown_fields_and_outcomes_are_refused(ward, prn):
    _, order_id = prn
    assert "outcome" in assert_problem(give(ward.nurse, order_id, 20, outcome="spilled"), 422)["errors"]
    assert_problem(post(ward.nurse, f"/api/v1/orders/{order_id}/administrations",
                        {"outcome": "given", "dose_mg": 20, "given_by": "someone"}), 422)
    assert_problem(give(ward.nurse, 999999, 20), 404, "order-not-found")


# --- the give screen (server-rendered form) --------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
SLOT = re.compile(r'name="scheduled_dose_id" value="(\d+)"')


def give_form(client, url: str) -> dict:
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    text = page.get_data(as_text=True)
    return {"csrf_token": CSRF.search(text).group(1), "idempotency_key": FORM_KEY.search(text).group(1),
            "text": text}


def test_give_screen_shows_the_refusal_and_a_resend_shows_it_again(ward, prn):
    admission_id, order_id = prn
    url = f"/orders/{order_id}/give"
    form = give_form(ward.nurse, url)
    assert "Cannot be given now: No CIWA-Ar score is recorded" in form["text"]
    body = {"csrf_token": form["csrf_token"], "idempotency_key": form["idempotency_key"],
            "dose_mg": "20", "outcome": "given"}
    first = ward.nurse.post(url, data=body)
    assert first.status_code == 409 and first.mimetype == "text/html"
    assert 'data-testid="dose-refusal"' in first.get_data(as_text=True)
    assert "No CIWA-Ar score is recorded: score first." in first.get_data(as_text=True)
    # The same form sent twice (a double tap, a browser resend): the kept refusal again, as a
    # page, and no second refusal row.
    again = ward.nurse.post(url, data=body)
    assert again.status_code == 409 and again.mimetype == "text/html"
    assert "No CIWA-Ar score is recorded: score first." in again.get_data(as_text=True)
    assert count(ward.app, SafetyRefusal) == 1


def test_give_screen_records_a_dose_once(ward, prn):
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    url = f"/orders/{order_id}/give"
    form = give_form(ward.nurse, url)
    body = {"csrf_token": form["csrf_token"], "idempotency_key": form["idempotency_key"],
            "dose_mg": "20", "outcome": "given"}
    first = ward.nurse.post(url, data=body)
    assert first.status_code == 303 and first.headers["Location"].endswith("/doses")
    again = ward.nurse.post(url, data=body)
    assert again.status_code == 303
    assert count(ward.app, Administration) == 1


def test_give_screen_opens_the_slot_chosen_on_the_doses_list(ward, clock):
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    first, second = regimen["scheduled"][0]["id"], regimen["scheduled"][1]["id"]
    clock.set(datetime(2025, 3, 3, 11, 30, tzinfo=timezone.utc))   # 08:00 overdue, 12:00 due soon
    doses = ward.nurse.get("/doses").get_data(as_text=True)
    assert f"slot={first}" in doses and f"slot={second}" in doses
    assert SLOT.search(give_form(ward.nurse, f"/orders/{regimen['id']}/give")["text"]).group(1) == str(first)
    chosen = give_form(ward.nurse, f"/orders/{regimen['id']}/give?slot={second}")
    assert SLOT.search(chosen["text"]).group(1) == str(second)
    assert "day 1 qds 12:00" in chosen["text"]
    # The nurse records the 08:00 dose missed and gives the 12:00 one.
    assert give(ward.nurse, regimen["id"], 30, outcome="omitted", reason="absent",
                scheduled_dose_id=first).status_code == 201
    response = ward.nurse.post(f"/orders/{regimen['id']}/give?slot={second}", data={
        "csrf_token": chosen["csrf_token"], "idempotency_key": chosen["idempotency_key"], "dose_mg": "30",
        "outcome": "given", "scheduled_dose_id": str(second)})
    assert response.status_code == 303
    taken = rows(ward.app, Administration, order_by=Administration.id)
    assert [(a.scheduled_dose_id, a.outcome) for a in taken] == [(first, "omitted"), (second, "given")]


@pytest.mark.parametrize("field, value", [("dose_mg", "nan"), ("dose_mg", "twenty"), ("dose_mg", ""),
                                          ("scheduled_dose_id", "first"), ("outcome", "spilled")])
def test_give_screen_loads_the_form_through_the_schema(ward, prn, field, value):
    """The give form is checked by the API's own schema: a dose that is not a number (NaN
    included), a slot that is not an id, or an unknown outcome is a 422 page naming the field,
    never a 500 and never a row."""
    admission_id, order_id = prn
    observe(ward.nurse, admission_id, "ciwa-ar", ciwa(12))
    url = f"/orders/{order_id}/give"
    form = give_form(ward.nurse, url)
    body = {"csrf_token": form["csrf_token"], "idempotency_key": form["idempotency_key"],
            "dose_mg": "20", "outcome": "given", field: value}
    response = ward.nurse.post(url, data=body)
    assert response.status_code == 422 and response.mimetype == "text/html"
    assert 'data-testid="dose-error"' in response.get_data(as_text=True)
    assert f"{field}:" in response.get_data(as_text=True)
    assert count(ward.app, Administration) == 0 and count(ward.app, SafetyRefusal) == 0


def test_give_screen_says_why_a_dose_was_not_recorded(ward, clock):
    """A refusal without field errors (the slot was recorded from another screen meanwhile) is
    shown in words with a 422, not a blank page that looks as if nothing happened."""
    admission = ward.admit()
    regimen = order(ward.doctor, admission["id"], fixed(30))
    first = regimen["scheduled"][0]["id"]
    clock.set(datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc))
    url = f"/orders/{regimen['id']}/give"
    form = give_form(ward.nurse, url)
    assert give(ward.nurse2, regimen["id"], 30, scheduled_dose_id=first).status_code == 201
    response = ward.nurse.post(url, data={"csrf_token": form["csrf_token"], "idempotency_key": form["idempotency_key"],
                                          "dose_mg": "30", "outcome": "given", "scheduled_dose_id": str(first)})
    assert response.status_code == 422
    assert "The day 1 qds 08:00 dose is already recorded on the chart." in response.get_data(as_text=True)
    assert count(ward.app, Administration) == 1
