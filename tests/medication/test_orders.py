"""Orders: the chlordiazepoxide reducing regimen (docs/clinical-rules.md s5), PRN and induction rules,
phone orders with their countersign deadline, and stop/change as versions (never edits)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from config.extensions import db
from medication.drugs import reducing_regimen
from medication.models import MedicationOrder, ScheduledDose
from medication.orders import escalate_uncountersigned
from monitoring.models import Escalation
from tests.conftest import adopt_protocol
from tests.medication.conftest import START
from tests.medication.helpers import (
    assert_problem,
    count,
    fixed,
    induction_buprenorphine,
    order,
    post,
    prn_chlordiazepoxide,
    rows,
)
from unit.models import AuditEvent, Staff

LONDON = ZoneInfo("Europe/London")

# docs/clinical-rules.md s5, word for word: from 30 mg, d1 30 qds, d2 25 qds, d3 20 qds, d4 15 qds,
# d5 10 qds, d6 10 tds, d7 5 tds, d8 5 bd, d9 5 nocte.
EXAMPLE_FROM_30 = [(1, "qds", 30), (2, "qds", 25), (3, "qds", 20), (4, "qds", 15), (5, "qds", 10),
                   (6, "tds", 10), (7, "tds", 5), (8, "bd", 5), (9, "nocte", 5)]
TIMES = {"qds": ["08:00", "12:00", "17:00", "22:00"], "tds": ["08:00", "14:00", "22:00"],
         "bd": ["08:00", "22:00"], "nocte": ["22:00"]}


def expected_slots(first_day: datetime, table=EXAMPLE_FROM_30) -> list[tuple[datetime, float, str]]:
    """(due in UTC, mg, label) for every slot of the table, at the local times above."""
    slots = []
    for day, frequency, mg in table:
        date = first_day.date() + timedelta(days=day - 1)
        for time in TIMES[frequency]:
            hour, minute = map(int, time.split(":"))
            local = datetime(date.year, date.month, date.day, hour, minute, tzinfo=LONDON)
            slots.append((local.astimezone(timezone.utc), mg, f"day {day} {frequency} {time}"))
    return slots


def as_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


# --- the fixed reducing regimen --------------------------------------------------------------

def test_reducing_regimen_from_30_is_the_clinical_example():
    assert reducing_regimen(30) == EXAMPLE_FROM_30


@pytest.mark.parametrize("start, days", [(15, 6), (20, 7), (50, 13)])
def test_reducing_regimen_lasts_6_to_13_days(start, days):
    # NICE CG115: 15-50 mg q.d.s., reducing over 6-13 days.
    table = reducing_regimen(start)
    assert len(table) == days
    assert table[0] == (1, "qds", start)
    assert table[-4:] == [(days - 3, "tds", 10), (days - 2, "tds", 5), (days - 1, "bd", 5),
                          (days, "nocte", 5)]
    qds = [mg for _, frequency, mg in table if frequency == "qds"]
    assert qds == list(range(start, 9, -5))


@pytest.mark.parametrize("start", [10, 55, 32])
def test_reducing_regimen_refuses_starts_outside_15_to_50_in_fives(start):
    with pytest.raises(ValueError):
        reducing_regimen(start)


def test_fixed_order_schedules_the_example_at_local_times(ward):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], fixed(30))

    # Ordered at 07:30 on Monday 3 March (GMT): the regimen starts with the 08:00 dose today.
    assert reply["kind"] == "fixed" and reply["status"] == "active" and reply["version"] == 1
    assert reply["controlled"] is True and reply["cd_schedule"] == 4
    assert reply["warnings"] == []
    got = [(as_utc(s["due_at"]), s["dose_mg"], s["label"]) for s in reply["scheduled"]]
    assert got == expected_slots(START)
    assert len(got) == 5 * 4 + 2 * 3 + 2 + 1 == 29
    assert sum(mg for _, mg, _ in got) == 4 * (30 + 25 + 20 + 15 + 10) + 3 * (10 + 5) + 2 * 5 + 5
    # Ends the day after day 9, at local midnight.
    assert as_utc(reply["ends_at"]) == datetime(2025, 3, 12, tzinfo=LONDON).astimezone(timezone.utc)

    stored = rows(ward.app, ScheduledDose, ScheduledDose.order_id == reply["id"],
                  order_by=ScheduledDose.due_at)
    assert [(s.due_at, s.dose_mg) for s in stored] == [(d, mg) for d, mg, _ in expected_slots(START)]


def test_regimen_times_are_london_local_across_the_clock_change(make_ward, clock):
    # British Summer Time starts at 01:00 UTC on Sunday 30 March 2025: 08:00 local is 08:00 UTC
    # on Friday 28 March but 07:00 UTC from the Sunday on.
    clock.set(datetime(2025, 3, 28, 6, 0, tzinfo=timezone.utc))
    ward = make_ward("medically_managed")
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], fixed(30))
    got = [(as_utc(s["due_at"]), s["dose_mg"], s["label"]) for s in reply["scheduled"]]
    assert got == expected_slots(clock.now)
    due = {s["label"]: as_utc(s["due_at"]) for s in reply["scheduled"]}
    assert due["day 1 qds 08:00"] == datetime(2025, 3, 28, 8, 0, tzinfo=timezone.utc)
    assert due["day 3 qds 08:00"] == datetime(2025, 3, 30, 7, 0, tzinfo=timezone.utc)
    assert due["day 9 nocte 22:00"] == datetime(2025, 4, 5, 21, 0, tzinfo=timezone.utc)
    for label, at in due.items():
        assert f"{at.astimezone(LONDON):%H:%M}" == label.rsplit(" ", 1)[1]


def test_fixed_order_later_in_the_day_starts_with_the_next_slots(ward, clock):
    admission = ward.admit()
    clock.set(datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc))
    reply = order(ward.doctor, admission["id"], fixed(20))
    labels = [s["label"] for s in reply["scheduled"]]
    assert labels[:3] == ["day 1 qds 17:00", "day 1 qds 22:00", "day 2 qds 08:00"]
    assert [s["dose_mg"] for s in reply["scheduled"][:6]] == [20, 20, 15, 15, 15, 15]


def test_fixed_above_30_mg_warns_close_monitoring(ward):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], fixed(40))
    assert reply["warnings"] == ["Above 30 mg four times daily: close monitoring needed (NICE CG115)."]
    assert reply["scheduled"][0]["dose_mg"] == 40


@pytest.mark.parametrize("body, field", [
    (fixed(35 + 20), "start_dose_mg"),
    (fixed(12), "start_dose_mg"),
    (fixed(30, drug="diazepam"), "drug"),
    (fixed(30, route="sublingual"), "route"),
])
def test_fixed_order_breaking_a_rule_is_refused(ward, body, field):
    admission = ward.admit()
    response = post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders", body)
    problem = assert_problem(response, 422, "order-invalid")
    assert field in problem["errors"]
    assert count(ward.app, MedicationOrder) == 0


# --- PRN and induction -------------------------------------------------------------------------

def test_prn_order_reply_carries_its_id_and_limits(ward):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    assert isinstance(reply["id"], int)
    assert reply["kind"] == "prn" and reply["dose_mg"] == 20
    assert reply["min_interval_minutes"] == 120 and reply["max_daily_mg"] == 200
    assert reply["trigger"] == {"scale": "ciwa-ar", "min_band": "moderate", "min_total": None}
    assert reply["scheduled"] == []
    # A chlordiazepoxide PRN course is at most 14 days.
    assert as_utc(reply["ends_at"]) == START + timedelta(days=14)
    got = ward.doctor.get(f"/api/v1/orders/{reply['id']}").get_json()
    assert got["id"] == reply["id"] and got["prescriber"] == ward.usernames["doctor"]


@pytest.mark.parametrize("change, field", [
    ({"dose_mg": 45}, "dose_mg"),                  # max single 50 but PRN 10-40
    ({"dose_mg": 5}, "dose_mg"),
    ({"min_interval_minutes": 60}, "min_interval_minutes"),
    ({"max_daily_mg": 300}, "max_daily_mg"),
    ({"trigger": None}, "trigger"),
    ({"trigger": {"scale": "ciwa-ar", "min_band": "very_bad"}}, "trigger"),
    ({"max_daily_mg": None}, "max_daily_mg"),
])
def test_prn_chlordiazepoxide_limits(ward, change, field):
    admission = ward.admit()
    response = post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders",
                    {**prn_chlordiazepoxide(), **change})
    problem = assert_problem(response, 422)
    assert field in problem["errors"], problem


def test_prn_benzodiazepine_on_monitored_unit_needs_the_protocol(make_ward, app, clock, make_staff, login):
    ward = make_ward("medically_monitored")
    admission = ward.admit()
    response = post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders", prn_chlordiazepoxide())
    problem = assert_problem(response, 422, "order-invalid")
    assert "NICE CG100" in problem["detail"] and "kind" in problem["errors"]
    # A GP is refused the same; a fixed regimen is fine.
    assert_problem(post(ward.gp, f"/api/v1/admissions/{admission['id']}/orders", prn_chlordiazepoxide()), 422)
    order(ward.gp, admission["id"], fixed(20))
    # Non-benzodiazepine PRN (lofexidine) is not affected.
    order(ward.gp, admission["id"], {"kind": "prn", "drug": "lofexidine", "dose_mg": 0.2, "route": "oral",
                                     "min_interval_minutes": 240, "max_daily_mg": 0.8,
                                     "trigger": {"scale": "cows", "min_total": 5}})

    adopt_protocol(ward.manager, login(make_staff(ward.code, "clinical_lead")), "medication",
                   {"prn_benzodiazepines_on_monitored": True}, "24-hour nursing with CIWA-trained staff")
    reply = order(ward.gp, admission["id"], prn_chlordiazepoxide())
    assert reply["kind"] == "prn"


def test_buprenorphine_induction_rules(ward, clock):
    admission = ward.admit(substances=("opioids",))
    url = f"/api/v1/admissions/{admission['id']}/orders"
    last = clock.now - timedelta(hours=14)
    for dose in (1, 5):
        problem = assert_problem(post(ward.doctor, url, induction_buprenorphine(last, dose)), 422)
        assert "dose_mg" in problem["errors"] and "2-4 mg" in problem["detail"]
    body = induction_buprenorphine(last)
    del body["last_opioid_at"]
    assert "last_opioid_at" in assert_problem(post(ward.doctor, url, body), 422)["errors"]
    reply = order(ward.doctor, admission["id"], induction_buprenorphine(last, 2))
    assert reply["cd_schedule"] == 3 and reply["controlled"] is True
    assert reply["trigger"]["min_total"] == 8


def test_methadone_induction_starts_at_10_to_30(ward):
    admission = ward.admit(substances=("opioids",))
    body = {"kind": "induction", "drug": "methadone", "route": "oral", "min_interval_minutes": 1440,
            "trigger": {"scale": "cows", "min_total": 8}}
    assert "dose_mg" in assert_problem(post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders",
                                            {**body, "dose_mg": 40}), 422)["errors"]
    assert order(ward.doctor, admission["id"], {**body, "dose_mg": 20})["cd_schedule"] == 2


@pytest.mark.parametrize("role, status", [("nurse", 403), ("manager", 403), ("inspector", 403)])
def test_only_doctors_and_gps_prescribe(ward, role, status):
    admission = ward.admit()
    response = post(ward.clients[role], f"/api/v1/admissions/{admission['id']}/orders", fixed(20))
    assert_problem(response, status)
    assert count(ward.app, MedicationOrder) == 0


def test_an_order_names_a_stocked_strength(ward):
    admission = ward.admit()
    assert order(ward.doctor, admission["id"], prn_chlordiazepoxide())["strength"] == "10 mg"  # usual
    assert order(ward.doctor, admission["id"], {**prn_chlordiazepoxide(), "strength": "5 mg"})["strength"] == "5 mg"
    problem = assert_problem(post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders",
                                  {**prn_chlordiazepoxide(), "strength": "25 mg"}), 422, "order-invalid")
    assert problem["errors"] == {"strength": ["One of: 10 mg, 5 mg."]}


def test_order_needs_an_idempotency_key(ward):
    admission = ward.admit()
    response = ward.doctor.post(f"/api/v1/admissions/{admission['id']}/orders", json=fixed(20),
                                headers={"Idempotency-Key": ""})
    assert_problem(response, 400, "idempotency-key-missing")


def test_order_for_another_units_admission_is_not_found(ward, make_ward):
    other = make_ward("medically_managed")
    admission = other.admit()
    assert_problem(post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders", fixed(20)), 404)


# --- phone orders and the countersign deadline -------------------------------------------------

def phone(gp: str, **kw) -> dict:
    return {"phone_order": {"prescriber": gp, "read_back_confirmed": True, **kw}}


def test_nurse_records_a_gps_phone_order(ward, app):
    admission = ward.admit()
    reply = order(ward.nurse, admission["id"], {**fixed(20), **phone(ward.usernames["gp"])})
    assert reply["phone_order"] is True
    assert reply["prescriber"] == ward.usernames["gp"]
    assert as_utc(reply["countersign_due_at"]) == START + timedelta(hours=24)
    assert reply["countersigned_at"] is None
    with app.app_context():
        saved = db.session.get(MedicationOrder, reply["id"])
        entered_by = db.session.get(Staff, saved.entered_by_id).username
        assert entered_by == ward.usernames["nurse"] and saved.read_back_confirmed is True
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "order.create")).one()
        assert event.entity_id == str(reply["id"])
        assert event.after["phone_order"] is True and event.after["prescriber"] == ward.usernames["gp"]


@pytest.mark.parametrize("phone_order, field", [
    ({"read_back_confirmed": False}, "read_back_confirmed"),
    ({"prescriber": "nobody-here"}, "prescriber"),
])
def test_phone_order_needs_read_back_and_a_real_prescriber(ward, phone_order, field):
    admission = ward.admit()
    body = {**fixed(20), "phone_order": {"prescriber": ward.usernames["gp"], "read_back_confirmed": True,
                                         **phone_order}}
    problem = assert_problem(post(ward.nurse, f"/api/v1/admissions/{admission['id']}/orders", body), 422)
    assert field in problem["errors"]["phone_order"]
    assert count(ward.app, MedicationOrder) == 0


def test_phone_order_prescriber_must_be_a_doctor_or_gp_of_this_unit(ward, make_ward):
    admission = ward.admit()
    url = f"/api/v1/admissions/{admission['id']}/orders"
    for not_prescriber in (ward.usernames["nurse2"], ward.usernames["manager"],
                           make_ward("medically_managed").usernames["gp"]):
        problem = assert_problem(post(ward.nurse, url, {**fixed(20), **phone(not_prescriber)}), 422)
        assert "prescriber" in problem["errors"]["phone_order"]


def test_nurse_without_a_phone_order_cannot_prescribe(ward):
    admission = ward.admit()
    problem = assert_problem(post(ward.nurse, f"/api/v1/admissions/{admission['id']}/orders", fixed(20)), 403)
    assert "phone order" in problem["detail"]


def test_countersign_by_the_prescriber_only(ward, clock):
    admission = ward.admit()
    reply = order(ward.nurse, admission["id"], {**fixed(20), **phone(ward.usernames["gp"])})
    url = f"/api/v1/orders/{reply['id']}/countersign"
    assert_problem(ward.doctor.post(url), 403)     # another prescriber
    assert_problem(ward.nurse.post(url), 403)      # not a prescriber
    clock.advance(hours=3)
    signed = ward.gp.post(url)
    assert signed.status_code == 200, signed.get_json()
    assert as_utc(signed.get_json()["countersigned_at"]) == START + timedelta(hours=3)
    # A second countersign changes nothing.
    clock.advance(hours=1)
    assert as_utc(ward.gp.post(url).get_json()["countersigned_at"]) == START + timedelta(hours=3)
    # Orders a doctor wrote themselves are not countersigned.
    own = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    assert_problem(ward.doctor.post(f"/api/v1/orders/{own['id']}/countersign"), 422, "order-invalid")


def test_uncountersigned_phone_order_escalates_after_24_hours(ward, app, clock):
    admission = ward.admit()
    late = order(ward.nurse, admission["id"], {**fixed(20), **phone(ward.usernames["gp"])})
    signed = order(ward.nurse, admission["id"], {**prn_chlordiazepoxide(), **phone(ward.usernames["gp"])})
    assert ward.gp.post(f"/api/v1/orders/{signed['id']}/countersign").status_code == 200

    with app.app_context():
        clock.set(START + timedelta(hours=23, minutes=59))
        assert escalate_uncountersigned(clock()) == []
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Escalation)) == 0

        clock.set(START + timedelta(hours=24))
        overdue = escalate_uncountersigned(clock())
        assert [o.id for o in overdue] == [late["id"]]
        escalation = db.session.scalars(sa.select(Escalation)).one()
        assert escalation.trigger == "phone_order_not_countersigned"
        assert escalation.source_type == "medication_order" and escalation.source_id == late["id"]
        assert escalation.admission_id == admission["id"]
        assert "not countersigned within 24 hours" in escalation.reason
        # To the GP who phoned it in, although this unit (managed) routes to its own doctor.
        assert escalation.route == "visiting_gp"
        assert db.session.get(MedicationOrder, late["id"]).countersign_escalated_at == START + timedelta(hours=24)

        # The job runs every few minutes: the same order is escalated once.
        clock.advance(minutes=5)
        assert escalate_uncountersigned(clock()) == []
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Escalation)) == 0 + 1

    # The GP may answer it (the routed role), the on-site doctor may not.
    escalation_id = ward.gp.get("/api/v1/escalations?status=open").get_json()[0]["id"]
    assert ward.doctor.post(f"/api/v1/escalations/{escalation_id}/acknowledge").status_code == 403
    assert ward.gp.post(f"/api/v1/escalations/{escalation_id}/acknowledge").status_code == 200
    # A late countersign is still recorded, and audited as late.
    clock.advance(hours=2)
    assert ward.gp.post(f"/api/v1/orders/{late['id']}/countersign").status_code == 200
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "order.countersign",
                                                                AuditEvent.entity_id == str(late["id"]))).one()
        assert event.after["late"] is True


def test_countersign_hours_follow_the_unit_protocol(ward, app, clock, make_staff, login):
    adopt_protocol(ward.manager, login(make_staff(ward.code, "clinical_lead")), "medication",
                   {"countersign_hours": 12}, "Local policy: countersign by the next ward round")
    admission = ward.admit()
    reply = order(ward.nurse, admission["id"], {**fixed(20), **phone(ward.usernames["gp"])})
    assert as_utc(reply["countersign_due_at"]) == START + timedelta(hours=12)
    with app.app_context():
        assert [o.id for o in escalate_uncountersigned(START + timedelta(hours=12))] == [reply["id"]]


# --- stop and change: versions, never edits ---------------------------------------------------

def test_stop_keeps_the_order_marked_stopped(ward, app, clock):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    url = f"/api/v1/orders/{reply['id']}/stop"
    assert_problem(post(ward.nurse, url, {"reason": "no longer needed"}), 403)
    clock.advance(minutes=10)
    stopped = post(ward.gp, url, {"reason": "CIWA-Ar settled"})
    assert stopped.status_code == 200, stopped.get_json()
    assert stopped.get_json()["status"] == "stopped"
    assert stopped.get_json()["stop_reason"] == "CIWA-Ar settled"
    assert_problem(post(ward.gp, url, {"reason": "again"}), 409, "order-not-active")
    assert_problem(post(ward.gp, url, {}), 422)
    listed = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/orders").get_json()
    assert [(o["id"], o["status"]) for o in listed] == [(reply["id"], "stopped")]
    with app.app_context():
        saved = db.session.get(MedicationOrder, reply["id"])
        assert saved.stopped_at == START + timedelta(minutes=10) and saved.dose_mg == 20


def test_change_makes_a_new_version_and_supersedes_the_old(ward, app, clock):
    admission = ward.admit()
    first = order(ward.doctor, admission["id"], fixed(30))
    clock.advance(hours=1)
    response = post(ward.doctor, f"/api/v1/orders/{first['id']}/change",
                    {**fixed(20), "reason": "Drowsy at 30 mg"})
    assert response.status_code == 201, response.get_json()
    second = response.get_json()
    assert second["id"] != first["id"]
    assert second["version"] == 2 and second["supersedes_id"] == first["id"]
    assert second["start_dose_mg"] == 20 and second["scheduled"][0]["dose_mg"] == 20

    old = ward.nurse.get(f"/api/v1/orders/{first['id']}").get_json()
    assert old["status"] == "superseded" and old["start_dose_mg"] == 30
    assert old["stop_reason"] == "Changed: Drowsy at 30 mg"
    assert [s["dose_mg"] for s in old["scheduled"]] == [s["dose_mg"] for s in first["scheduled"]]

    listed = ward.nurse.get(f"/api/v1/admissions/{admission['id']}/orders").get_json()
    assert [(o["version"], o["status"]) for o in listed] == [(2, "active"), (1, "superseded")]
    # A superseded order cannot be changed or stopped again; the new one can be changed.
    assert_problem(post(ward.doctor, f"/api/v1/orders/{first['id']}/change",
                        {**fixed(15), "reason": "again"}), 409, "order-not-active")
    third = post(ward.gp, f"/api/v1/orders/{second['id']}/change", {**fixed(15), "reason": "Settled"}).get_json()
    assert third["version"] == 3 and third["supersedes_id"] == second["id"]
    # Due doses come only from the live version.
    due = ward.nurse.get("/api/v1/due-doses").get_json()
    assert {d["order_id"] for d in due["scheduled"]} <= {third["id"]}


def test_invalid_change_leaves_the_old_order_active(ward):
    admission = ward.admit()
    first = order(ward.doctor, admission["id"], fixed(30))
    response = post(ward.doctor, f"/api/v1/orders/{first['id']}/change", {**fixed(55), "reason": "typo"})
    assert_problem(response, 422, "order-invalid")
    assert ward.nurse.get(f"/api/v1/orders/{first['id']}").get_json()["status"] == "active"
    assert len(ward.nurse.get(f"/api/v1/admissions/{admission['id']}/orders").get_json()) == 1
    assert_problem(post(ward.nurse, f"/api/v1/orders/{first['id']}/change", {**fixed(20), "reason": "x" * 5}),
                   403)


def test_inspector_reads_orders_but_cannot_write(ward):
    admission = ward.admit()
    reply = order(ward.doctor, admission["id"], fixed(20))
    assert ward.inspector.get(f"/api/v1/orders/{reply['id']}").status_code == 200
    assert_problem(post(ward.inspector, f"/api/v1/orders/{reply['id']}/stop", {"reason": "inspection"}), 403)


def test_no_order_for_a_discharged_resident(ward):
    admission = ward.admit()
    discharged = post(ward.nurse, f"/api/v1/admissions/{admission['id']}/discharge",
                      {"discharge_type": "completed"})
    assert discharged.status_code == 200, discharged.get_json()
    assert_problem(post(ward.doctor, f"/api/v1/admissions/{admission['id']}/orders", fixed(20)), 409)
    assert count(ward.app, MedicationOrder) == 0


def test_an_order_retried_with_its_key_is_written_once(ward):
    admission = ward.admit()
    url = f"/api/v1/admissions/{admission['id']}/orders"
    first = post(ward.doctor, url, fixed(20), idempotency_key="order-key-1")
    again = post(ward.doctor, url, fixed(20), idempotency_key="order-key-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count(ward.app, MedicationOrder) == 1
    assert count(ward.app, ScheduledDose) == len(first.get_json()["scheduled"]) == 3 * 4 + 2 * 3 + 2 + 1  # from 20 mg: 20, 15, 10 qds, then tds, tds, bd, nocte


def test_the_report_does_not_count_a_late_countersign_sent_to_the_gp_as_misrouted(ward, app, clock):
    """On a managed unit escalations go to the on-site doctor, except a phone order's, which
    goes to the GP who gave it: the inspector's routing check must not flag that one."""
    admission = ward.admit()
    order(ward.nurse, admission["id"], {**fixed(20), **phone(ward.usernames["gp"])})
    with app.app_context():
        clock.set(START + timedelta(hours=24))
        assert len(escalate_uncountersigned(clock())) == 1
    first, last = START.date().isoformat(), (START + timedelta(days=1)).date().isoformat()
    report = ward.manager.get(f"/api/v1/audit/report?from={first}&to={last}").get_json()
    escalations = report["escalations"]
    assert escalations["by_route"] == {"visiting_gp": 1}
    assert escalations["routing_matched_model"] is True and escalations["routing_mismatches"] == []
