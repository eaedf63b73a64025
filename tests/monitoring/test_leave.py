"""Leave and time off the unit: observation schedules paused without a missed slot (the due
sweep run with a fixed ``now``), the board, the escalation when the expected return passes,
and on return a breath-alcohol reading and the scales due at once. API and pages."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from config.extensions import db
from monitoring.models import MissedObservation, ObservationSchedule, ScheduleChange
from tests.items import ciwa
from tests.monitoring.helpers import NEWS2_ZERO
from tests.stay_helpers import crew, flashes, page_form  # noqa: F401
from tests.unit.helpers import assert_problem, row_counts, writes_between

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)  # Monday 09:00 in London (GMT)


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


def observe(client, admission_id: int, scale: str, items: dict) -> dict:
    response = client.post(f"/api/v1/admissions/{admission_id}/observations", json={"scale": scale, "items": items})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def sweep(app, now: datetime) -> list[tuple[int, str, datetime]]:
    """The due sweep at a fixed ``now``: the slots it flags as missed."""
    from monitoring.services import flag_missed_observations

    with app.app_context():
        return [(m.admission_id, m.scale, m.due_at) for m in flag_missed_observations(now)]


def overdue_check(app, now: datetime) -> list[int]:
    from monitoring.leave import escalate_overdue_returns

    with app.app_context():
        return [episode.id for episode in escalate_overdue_returns(now)]


def schedules(app, admission_id: int) -> dict[str, tuple[bool, datetime]]:
    with app.app_context():
        return {s.scale: (s.active, s.next_due_at) for s in db.session.scalars(
            sa.select(ObservationSchedule).where(ObservationSchedule.admission_id == admission_id))}


def go(client, admission_id: int, status: int = 201, **body) -> dict:
    body.setdefault("kind", "planned")
    body.setdefault("reason", "Home visit with family")
    response = client.post(f"/api/v1/admissions/{admission_id}/leave", json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def test_haz_078_leave_pauses_and_restarts_observations_without_a_missed_slot(app, crew, clock):
    """HAZ-078: a resident on leave has no slot flagged as missed while away (the sweep run at a
    fixed time after their CIWA-Ar fell due finds nothing, while the same schedule of a resident
    on the unit is flagged); on return every paused scale is due at once, the sweep flags again
    from then, and a schedule a doctor had stopped stays stopped."""
    clock.set(T0)
    unit = crew()
    away = unit.admit(name="Alex Example")
    here = unit.admit(name="Sam Example")
    for resident in (away, here):
        observe(unit.nurse, resident["id"], "ciwa-ar", ciwa(4))       # minimal: every 4 h
        observe(unit.nurse, resident["id"], "news2", NEWS2_ZERO)      # 0: every 12 h
    sows = unit.nurse.post(f"/api/v1/admissions/{away['id']}/schedules",
                           json={"scale": "sows", "reason": "Opioid use suspected"}).get_json()
    unit.doctor.post(f"/api/v1/schedules/{sows['id']}", json={"active": False, "reason": "Not needed"})
    clock.set(at(1))
    episode = go(unit.nurse, away["id"], expected_return_at=at(7).isoformat())
    assert episode["status"] == "on_leave" and episode["breath_due"] is False
    assert {scale: active for scale, (active, _) in schedules(app, away["id"]).items()} == {
        "ciwa-ar": False, "news2": False, "sows": False}

    # CIWA-Ar fell due at 13:00 (grace 30 min): the resident on the unit is flagged, not the one away.
    assert sweep(app, at(6)) == [(here["id"], "ciwa-ar", at(4))]
    assert sweep(app, at(6, 20)) == []

    clock.set(at(6, 30))
    back = unit.nurse.post(f"/api/v1/leave/{episode['id']}/return", json={})
    assert back.status_code == 200, back.get_json()
    assert back.get_json()["status"] == "returned" and back.get_json()["breath_due"] is True
    restarted = schedules(app, away["id"])
    assert restarted["ciwa-ar"] == (True, at(6, 30)) and restarted["news2"] == (True, at(6, 30))
    assert restarted["sows"][0] is False  # stopped by the doctor: not restarted by the leave
    assert sweep(app, at(6, 50)) == []    # in grace
    clock.set(at(6, 35))
    observe(unit.nurse, away["id"], "ciwa-ar", ciwa(4))
    assert sweep(app, at(7, 5)) == [(away["id"], "news2", at(6, 30))]  # the NEWS2 asked for on return
    with app.app_context():
        missed_away = db.session.scalars(sa.select(MissedObservation.due_at).where(
            MissedObservation.admission_id == away["id"])).all()
        reasons = db.session.scalars(sa.select(ScheduleChange.reason).where(
            ScheduleChange.admission_id == away["id"]).order_by(ScheduleChange.id)).all()
    assert missed_away == [at(6, 30)]
    assert any(r.startswith("Paused: planned leave from 03 Mar 10:00") for r in reasons)
    assert any(r.startswith("Restarted on return from leave at 15:30: due now") for r in reasons)


def test_haz_079_a_resident_not_back_when_expected_is_escalated(app, crew, clock):
    """HAZ-079: once the expected return passes, the overdue check (the scheduler) raises an
    urgent escalation routed to the doctor (the visiting GP on a monitored unit), once; the
    board shows the resident NOT BACK in red; a new expected return starts the check again; an
    unplanned leave is escalated at once; the return closes the escalation."""
    clock.set(T0)
    unit = crew("medically_monitored")
    alex = unit.admit(name="Alex Example")
    episode = go(unit.nurse, alex["id"], expected_return_at=at(3).isoformat())
    assert overdue_check(app, at(2, 59)) == []
    board = unit.nurse.get("/").get_data(as_text=True)
    assert 'data-testid="on-leave"' in board and "on leave, back by 03 Mar 12:00" in board
    clock.set(at(3, 10))
    assert overdue_check(app, at(3, 10)) == [episode["id"]]
    assert overdue_check(app, at(3, 11)) == []   # once
    escalated = unit.nurse.get(f"/api/v1/leave/{episode['id']}").get_json()
    escalation = unit.gp.get(f"/api/v1/escalations/{escalated['escalation_id']}").get_json()
    assert (escalation["severity"], escalation["route"], escalation["trigger"], escalation["status"]) == (
        "urgent", "visiting_gp", "leave_overdue", "open")
    assert "not back from planned leave: expected at 03 Mar 12:00, 10 min late" in escalation["reason"]
    board = unit.nurse.get("/").get_data(as_text=True)
    assert 'class="alert danger"' in board and "Alex Example: NOT BACK from leave, expected 12:00" in board
    # The resident phoned: a new expected return; when that passes too, escalated again.
    moved = unit.nurse.post(f"/api/v1/leave/{episode['id']}/extend",
                            json={"expected_return_at": at(5).isoformat(), "reason": "Bus cancelled, phoned"})
    assert moved.status_code == 200 and moved.get_json()["escalated_at"] is None
    assert overdue_check(app, at(4)) == []
    assert overdue_check(app, at(5, 1)) == [episode["id"]]
    clock.set(at(5, 30))
    unit.nurse.post(f"/api/v1/leave/{episode['id']}/return", json={"mg_per_l": 0.0})
    closed = unit.gp.get(f"/api/v1/escalations/{escalation['id']}").get_json()
    assert closed["status"] == "resolved" and closed["outcome"] == "resident back on the unit"

    sam = unit.admit(name="Sam Example")
    gone = go(unit.nurse, sam["id"], kind="unplanned", reason="Not in room at 14:30 check")
    assert gone["escalation_id"] is not None
    unplanned = unit.gp.get(f"/api/v1/escalations/{gone['escalation_id']}").get_json()
    assert unplanned["trigger"] == "unplanned_leave" and "left the unit without agreed leave" in unplanned["reason"]


def test_haz_080_on_return_a_breath_reading_is_asked_for_and_alcohol_is_flagged(app, crew, clock):
    """HAZ-080: back from leave without a breath-alcohol reading, the reading is shown as due
    (board, API) until one is recorded; a reading above zero on return is an unexpected positive
    (alcohol taken on leave is never explained by the admission) flagged for the doctor."""
    clock.set(T0)
    unit = crew()
    alex = unit.admit(name="Alex Example", substances=("alcohol",))
    first = go(unit.nurse, alex["id"], expected_return_at=at(2).isoformat())
    clock.set(at(1))
    unit.nurse.post(f"/api/v1/leave/{first['id']}/return", json={})
    assert 'data-testid="breath-due"' in unit.nurse.get("/").get_data(as_text=True)
    clock.set(at(1, 5))
    reading = unit.nurse.post(f"/api/v1/admissions/{alex['id']}/screens", json={"kind": "breath", "mg_per_l": 0.0})
    assert reading.status_code == 201
    assert 'data-testid="breath-due"' not in unit.nurse.get("/").get_data(as_text=True)
    assert unit.nurse.get(f"/api/v1/leave/{first['id']}").get_json()["breath_mg_per_l"] == 0.0

    clock.set(at(2))
    second = go(unit.nurse, alex["id"], expected_return_at=at(4).isoformat())
    clock.set(at(3))  # within the first day: alcohol on the breath at admission would be expected
    back = unit.nurse.post(f"/api/v1/leave/{second['id']}/return", json={"mg_per_l": 0.21})
    assert back.status_code == 200 and back.get_json()["breath_due"] is False
    (screen,) = [s for s in unit.nurse.get(f"/api/v1/admissions/{alex['id']}/screens").get_json()
                 if s["reason"] == "return_from_leave"]
    assert screen["unexpected"] is True and screen["mg_per_l"] == 0.21
    escalation = unit.nurse.get(f"/api/v1/escalations/{screen['escalation_id']}").get_json()
    assert escalation["trigger"] == "unexpected_positive_screen" and "Breath alcohol 0.21" in escalation["reason"]


def test_leave_input_is_checked_field_by_field(app, crew, clock):
    clock.set(T0)
    unit = crew()
    alex = unit.admit()
    cases = [
        ({"kind": "holiday"}, "kind"),
        ({"reason": "  "}, "reason"),
        ({}, "expected_return_at"),                                                  # planned: required
        ({"expected_return_at": at(-1).isoformat()}, "expected_return_at"),
        ({"expected_return_at": at(100).isoformat()}, "expected_return_at"),
        ({"expected_return_at": "tomorrow"}, "expected_return_at"),
        ({"expected_return_at": at(3).isoformat(), "started_at": at(1).isoformat()}, "started_at"),
        ({"expected_return_at": at(3).isoformat(), "started_at": at(-20).isoformat()}, "started_at"),
    ]
    before = row_counts(app)
    for change, field in cases:
        body = {"kind": "planned", "reason": "Home visit", **change}
        problem = assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/leave", json=body), 422)
        assert field in problem["errors"], (change, problem)
    assert writes_between(before, row_counts(app)) == {}
    episode = go(unit.nurse, alex["id"], expected_return_at=at(3).isoformat())
    assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/leave",
                                   json={"kind": "unplanned", "reason": "again"}), 409, "already-on-leave")
    for body, field in (({"returned_at": at(-1).isoformat()}, "returned_at"),
                        ({"returned_at": at(5).isoformat()}, "returned_at"), ({"mg_per_l": -1}, "mg_per_l")):
        assert field in assert_problem(unit.nurse.post(f"/api/v1/leave/{episode['id']}/return", json=body),
                                       422)["errors"]
    assert "expected_return_at" in assert_problem(unit.nurse.post(
        f"/api/v1/leave/{episode['id']}/extend", json={"expected_return_at": at(-1).isoformat(), "reason": "x y"}),
        422)["errors"]
    assert_problem(unit.inspector.post(f"/api/v1/leave/{episode['id']}/return", json={}), 403)
    assert unit.nurse.post(f"/api/v1/leave/{episode['id']}/return", json={}).status_code == 200
    assert_problem(unit.nurse.post(f"/api/v1/leave/{episode['id']}/return", json={}), 409, "leave-closed")


def test_a_discharge_while_on_leave_ends_it(app, crew, clock):
    clock.set(T0)
    unit = crew()
    alex = unit.admit(name="Alex Example")
    episode = go(unit.nurse, alex["id"], kind="unplanned", reason="Did not come back from the shop")
    clock.set(at(5))
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/discharge",
                    json={"discharge_type": "self-discharged", "note": "Phoned: not coming back"})
    assert unit.nurse.get(f"/api/v1/leave/{episode['id']}").get_json()["status"] == "ended"
    assert overdue_check(app, at(6)) == []
    assert 'data-testid="on-leave"' not in unit.nurse.get("/").get_data(as_text=True)
    summary = unit.nurse.get(f"/api/v1/admissions/{alex['id']}/discharge-summary").get_json()
    leave_lines = next(s for s in summary["sections"] if s["key"] == "leave")["lines"]
    assert leave_lines == ["Unplanned (left without agreement) 03 Mar 09:00, did not return before discharge: "
                           "Did not come back from the shop."]


def test_another_units_leave_is_not_found(crew, clock):
    ours, theirs = crew(), crew()
    resident = theirs.admit()
    episode = go(theirs.nurse, resident["id"], expected_return_at=(clock() + timedelta(hours=2)).isoformat())
    assert_problem(ours.nurse.get(f"/api/v1/leave/{episode['id']}"), 404, "leave-not-found")
    assert_problem(ours.nurse.post(f"/api/v1/leave/{episode['id']}/return", json={}), 404)
    assert_problem(ours.nurse.get(f"/api/v1/admissions/{resident['id']}/leave"), 404)
    assert_problem(ours.nurse.post(f"/api/v1/admissions/{resident['id']}/leave",
                                   json={"kind": "unplanned", "reason": "Gone"}), 404)


def test_leave_through_the_resident_page_and_in_the_handover(crew, clock):
    clock.set(T0)
    unit = crew()
    alex = unit.admit(name="Alex Example")
    form = page_form(unit.nurse, "/", kind="planned", reason="Court appearance",
                     expected_return_at="2025-03-03T13:00")
    response = unit.nurse.post(f"/admissions/{alex['id']}/leave", data=form)
    assert response.status_code == 303 and response.location.endswith("#leave")
    assert flashes(unit.nurse)[-1] == "Alex Example: on leave, back by 03 Mar 13:00. Observations paused."
    page = unit.nurse.get(f"/admissions/{alex['id']}").get_data(as_text=True)
    assert 'data-testid="leave-now"' in page and 'data-testid="leave-return"' in page
    handover = unit.nurse.post("/api/v1/handovers").get_json()
    assert "Alex Example: on leave, back by 03 Mar 13:00; observations paused." in handover["entries"][0]["situation"]
    (episode,) = unit.nurse.get(f"/api/v1/admissions/{alex['id']}/leave").get_json()
    clock.set(at(2))
    back = page_form(unit.nurse, "/", mg_per_l="0.00", returned_at="", note="")
    assert unit.nurse.post(f"/leave/{episode['id']}/return", data=back).status_code == 303
    assert flashes(unit.nurse)[-1] == "Alex Example is back: observations are due now."
    assert unit.nurse.get(f"/api/v1/leave/{episode['id']}").get_json()["breath_mg_per_l"] == 0.0
    inspector = unit.inspector.get(f"/admissions/{alex['id']}").get_data(as_text=True)
    assert "Court appearance" in inspector and "0.00 mg/L" in inspector
