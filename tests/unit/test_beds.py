"""Beds, the waiting list (referrals accepted with a planned date), the census and occupancy,
expected admissions and discharges: API and pages."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa

from config.extensions import db
from tests.conftest import referral
from tests.stay_helpers import ZONE, crew, flashes, key, page_form, today  # noqa: F401
from tests.unit.helpers import assert_problem, row_counts, writes_between


def planned_body(clock, days_ahead: int = 0, **kw) -> dict:
    extra = {name: kw.pop(name) for name in ("planned_stay_days", "bed_id", "referrer", "gp", "note")
             if name in kw}
    return {**referral(**kw), "planned_date": (today(clock) + timedelta(days=days_ahead)).isoformat(),
            **extra}


def add_beds(manager, *names) -> list[dict]:
    made = []
    for name in names:
        response = manager.post("/api/v1/beds", json={"name": name})
        assert response.status_code == 201, response.get_json()
        made.append(response.get_json())
    return made


# --- beds -------------------------------------------------------------------------------------

def test_a_manager_puts_beds_in_service_and_takes_a_free_one_out(crew):
    unit = crew()
    room1, room2 = add_beds(unit.manager, "Room 1", " Room  2 ")
    assert room2["name"] == "Room 2"
    assert_problem(unit.nurse.post("/api/v1/beds", json={"name": "Room 3"}), 403)
    problem = assert_problem(unit.manager.post("/api/v1/beds", json={"name": "Room 1"}), 422, "bed-invalid")
    assert "name" in problem["errors"]
    closed = unit.manager.post(f"/api/v1/beds/{room1['id']}/close", json={"reason": "Broken window"})
    assert closed.status_code == 200 and closed.get_json()["closed_at"]
    # Its name is free again: a bed brought back into service is a new bed.
    assert add_beds(unit.manager, "Room 1")[0]["id"] != room1["id"]
    listed = unit.inspector.get("/api/v1/beds").get_json()
    assert [b["bed"]["name"] for b in listed] == ["Room 1", "Room 2"]


def test_an_occupied_bed_cannot_be_closed_and_a_taken_bed_cannot_be_given(crew):
    unit = crew()
    room1, room2 = add_beds(unit.manager, "Room 1", "Room 2")
    alex, sam = unit.admit(name="Alex Example"), unit.admit(name="Sam Example")
    assert unit.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json={"bed_id": room1["id"]}).status_code == 200
    assert_problem(unit.manager.post(f"/api/v1/beds/{room1['id']}/close", json={"reason": "Repairs"}),
                   409, "bed-occupied")
    taken = assert_problem(unit.nurse.post(f"/api/v1/admissions/{sam['id']}/bed", json={"bed_id": room1["id"]}),
                           409, "bed-occupied")
    assert taken["errors"] == {"bed_id": ["Occupied."]}
    # A move frees the first bed; a discharge frees the second.
    moved = unit.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json={"bed_id": room2["id"]})
    assert moved.get_json()["bed"]["name"] == "Room 2"
    assert unit.nurse.post(f"/api/v1/admissions/{sam['id']}/bed", json={"bed_id": room1["id"]}).status_code == 200
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/discharge", json={"discharge_type": "completed"})
    beds = {b["bed"]["name"]: b["occupant"] for b in unit.nurse.get("/api/v1/beds").get_json()}
    assert beds["Room 2"] is None and beds["Room 1"]["resident"] == "Sam Example"


def test_bed_input_is_checked_field_by_field(crew):
    unit = crew()
    alex = unit.admit()
    for body, field in (({"name": ""}, "name"), ({"name": "x" * 61}, "name"), ({}, "name"),
                        ({"name": "   "}, "name")):
        assert field in assert_problem(unit.manager.post("/api/v1/beds", json=body), 422)["errors"]
    for body in ({"bed_id": "1"}, {"bed_id": 0}, {"bed_id": 2**31}, {}):
        assert "bed_id" in assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json=body),
                                          422)["errors"]
    assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json={"bed_id": 987654}), 404,
                   "bed-not-found")


# --- the waiting list -------------------------------------------------------------------------

def test_a_referral_is_accepted_with_a_planned_date_and_admitted_into_a_bed(crew, clock):
    unit = crew()
    add_beds(unit.manager, "Room 1", "Room 2")
    body = planned_body(clock, days_ahead=2, name="Jordan Carter", nhs_number="943 476 5919",
                        planned_stay_days=10,
                        referrer={"name": "Pat Lee", "organisation": "Northside Recovery Team",
                                  "contact": "0161 496 0000"},
                        gp={"name": "Dr Amina Shah", "organisation": "Canal Street Surgery",
                            "address": "1 Canal Street, M1 1AA"})
    accepted = unit.nurse.post("/api/v1/waiting-list", json=body)
    assert accepted.status_code == 201, accepted.get_json()
    planned = accepted.get_json()
    assert planned["status"] == "waiting" and planned["planned_stay_days"] == 10
    assert planned["acceptance"]["unit_model"] == "medically_monitored"
    assert planned["gp"]["organisation"] == "Canal Street Surgery"
    assert planned["accepted_by"]["username"] == unit.usernames["nurse"]
    # Expected on its planned date, not before.
    assert unit.nurse.get("/api/v1/census").get_json()["expected_admissions"] == []
    on_day = unit.nurse.get(f"/api/v1/census?date={planned['planned_date']}").get_json()
    assert [p["id"] for p in on_day["expected_admissions"]] == [planned["id"]]

    clock.advance(days=2)
    admitted = unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={})
    assert admitted.status_code == 201, admitted.get_json()
    admission = admitted.get_json()
    assert admission["resident"]["name"] == "Jordan Carter" and admission["status"] == "active"
    entry = unit.nurse.get(f"/api/v1/waiting-list/{planned['id']}").get_json()
    assert entry["status"] == "admitted" and entry["admission_id"] == admission["id"]
    census = unit.nurse.get("/api/v1/census").get_json()
    assert census["census"] == 1 and census["beds_in_service"] == 2 and census["occupancy"] == 0.5
    assert [b["occupant"]["admission_id"] if b["occupant"] else None for b in census["beds"]] == [admission["id"], None]
    # Expected to leave after the planned stay.
    expected_on = (today(clock) + timedelta(days=10)).isoformat()
    out = unit.nurse.get(f"/api/v1/census?date={expected_on}").get_json()["expected_discharges"]
    assert out == [{"admission_id": admission["id"], "resident": "Jordan Carter",
                    "expected_on": expected_on, "reason": "Planned stay of 10 days"}]
    # Once admitted, the entry is closed.
    assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={}), 409,
                   "planned-admission-closed")


def test_a_referral_the_unit_cannot_take_is_declined_at_acceptance_and_kept(app, crew, clock):
    unit = crew("medically_monitored")
    declined = assert_problem(unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, sadq=35)),
                              422, "admission-declined")
    assert [r["code"] for r in declined["reasons"]] == ["sadq_over_limit"]
    assert declined["detail"].startswith("Declined on the waiting list")
    assert unit.nurse.get("/api/v1/waiting-list").get_json() == []
    clock.advance(minutes=1)
    report = unit.manager.get("/api/v1/audit/report").get_json()
    assert report["admissions"]["declined"] == 1


def test_haz_070_the_competence_check_runs_again_on_the_day_of_admission(app, crew, clock):
    """HAZ-070: a referral accepted on a medically managed unit (SADQ 35: high risk) is
    declined on the day of admission once the unit has become medically monitored; one
    accepted with SADQ 20 and assessed at 35 on the day is declined too. Both are kept."""
    unit = crew("medically_managed")
    accepted = unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, days_ahead=1, sadq=35,
                                                                         name="High Risk"))
    assert accepted.status_code == 201 and accepted.get_json()["acceptance"]["high_risk"] is True
    waiting_id = accepted.get_json()["id"]
    changed = unit.manager.post("/api/v1/unit/model", json={"model": "medically_monitored",
                                                            "reason": "Doctor cover ends"})
    assert changed.status_code == 201
    clock.advance(days=1)
    before = row_counts(app)
    refused = assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{waiting_id}/admit", json={}),
                             422, "admission-declined")
    assert refused["detail"].startswith("Declined on the day of admission")
    assert writes_between(before, row_counts(app)) == {"referrals": 1, "audit_events": 1,
                                                       "idempotency_keys": 1}
    entry = unit.nurse.get(f"/api/v1/waiting-list/{waiting_id}").get_json()
    assert entry["status"] == "declined" and entry["declined_reasons"][0]["code"] == "sadq_over_limit"

    second = unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, name="Worse On The Day"))
    assert second.status_code == 201
    worse = {**referral()["assessment"], "sadq": 35}
    assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{second.get_json()['id']}/admit",
                                   json={"assessment": worse}), 422, "admission-declined")
    assert unit.nurse.get("/api/v1/admissions").get_json() == []


def test_haz_071_nobody_is_admitted_when_every_bed_is_taken(app, crew, clock):
    """HAZ-071: on a unit with beds, admitting from the waiting list needs a free bed; with
    every bed taken it is refused (409 no-bed-free) and nothing is written."""
    unit = crew()
    (room,) = add_beds(unit.manager, "Room 1")
    first = unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, name="First One")).get_json()
    second = unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, name="Second One")).get_json()
    assert unit.nurse.post(f"/api/v1/waiting-list/{first['id']}/admit", json={}).status_code == 201
    before = row_counts(app)
    problem = assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{second['id']}/admit", json={}), 409,
                             "no-bed-free")
    assert "Every bed is taken" in problem["detail"]
    assert writes_between(before, row_counts(app)) == {}
    assert unit.nurse.get(f"/api/v1/waiting-list/{second['id']}").get_json()["status"] == "waiting"


def test_the_planned_bed_is_taken_when_free(crew, clock):
    unit = crew()
    room1, room2 = add_beds(unit.manager, "Room 1", "Room 2")
    planned = unit.nurse.post("/api/v1/waiting-list",
                              json=planned_body(clock, bed_id=room2["id"])).get_json()
    assert planned["bed"]["name"] == "Room 2"
    admission = unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={}).get_json()
    beds = {b["bed"]["name"]: b["occupant"] for b in unit.nurse.get("/api/v1/beds").get_json()}
    assert beds["Room 2"]["admission_id"] == admission["id"] and beds["Room 1"] is None


def test_waiting_list_input_is_checked_field_by_field(crew, clock):
    unit = crew()
    cases = [
        (planned_body(clock, days_ahead=-1), "planned_date"),
        ({**planned_body(clock), "planned_date": "tomorrow"}, "planned_date"),
        (planned_body(clock, planned_stay_days=29), "planned_stay_days"),
        (planned_body(clock, planned_stay_days="7"), "planned_stay_days"),
        (planned_body(clock, bed_id=-3), "bed_id"),
        (planned_body(clock, referrer={"organisation": "No name"}), "referrer"),
        (planned_body(clock, gp={"name": "   "}), "gp"),
        ({k: v for k, v in planned_body(clock).items() if k != "planned_date"}, "planned_date"),
    ]
    for body, field in cases:
        problem = assert_problem(unit.nurse.post("/api/v1/waiting-list", json=body), 422)
        assert field in problem["errors"], (field, problem)
    assert unit.nurse.get("/api/v1/waiting-list").get_json() == []
    assert_problem(unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, bed_id=987654)), 404,
                   "bed-not-found")


def test_the_same_person_is_not_waiting_twice_nor_waiting_while_here(crew, clock):
    unit = crew()
    body = planned_body(clock, nhs_number="9434765919")
    assert unit.nurse.post("/api/v1/waiting-list", json=body).status_code == 201
    problem = assert_problem(unit.nurse.post("/api/v1/waiting-list", json=body), 422,
                             "planned-admission-invalid")
    assert problem["errors"] == {"resident": {"nhs_number": ["Already waiting."]}}
    here = crew()
    here.admit(nhs_number="9434765919")
    assert_problem(here.nurse.post("/api/v1/waiting-list", json=body), 409, "already-admitted")


def test_a_waiting_list_entry_is_cancelled_with_a_reason(crew, clock):
    unit = crew()
    planned = unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock)).get_json()
    assert "reason" in assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/cancel",
                                                      json={"reason": "  "}), 422)["errors"]
    cancelled = unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/cancel",
                                json={"reason": "Did not attend"}).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["close_reason"] == "Did not attend"
    assert unit.nurse.get("/api/v1/waiting-list?status=waiting").get_json() == []
    assert [p["id"] for p in unit.nurse.get("/api/v1/waiting-list?status=cancelled").get_json()] == [planned["id"]]
    assert_problem(unit.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={}), 409)


def test_a_retried_acceptance_accepts_once(crew, clock):
    unit = crew()
    body, same = planned_body(clock), key()
    first = unit.nurse.post("/api/v1/waiting-list", json=body, headers={"Idempotency-Key": same})
    again = unit.nurse.post("/api/v1/waiting-list", json=body, headers={"Idempotency-Key": same})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(unit.nurse.get("/api/v1/waiting-list").get_json()) == 1
    assert_problem(unit.nurse.post("/api/v1/waiting-list", json=body, headers={"Idempotency-Key": ""}), 400,
                   "idempotency-key-missing")


def test_another_units_beds_and_waiting_list_are_not_found(crew, clock):
    ours, theirs = crew(), crew()
    (bed,) = add_beds(theirs.manager, "Room 1")
    planned = theirs.nurse.post("/api/v1/waiting-list", json=planned_body(clock)).get_json()
    alex = ours.admit()
    assert_problem(ours.nurse.get(f"/api/v1/waiting-list/{planned['id']}"), 404, "planned-admission-not-found")
    assert_problem(ours.nurse.post(f"/api/v1/waiting-list/{planned['id']}/admit", json={}), 404)
    assert_problem(ours.manager.post(f"/api/v1/beds/{bed['id']}/close", json={"reason": "Not ours"}), 404)
    assert_problem(ours.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json={"bed_id": bed["id"]}), 404)
    assert ours.nurse.get("/api/v1/waiting-list").get_json() == []
    assert ours.nurse.get("/api/v1/beds").get_json() == []


def test_inspectors_read_the_census_but_write_nothing(crew, clock):
    unit = crew()
    assert unit.inspector.get("/api/v1/census").status_code == 200
    assert_problem(unit.inspector.post("/api/v1/waiting-list", json=planned_body(clock)), 403)
    assert_problem(unit.inspector.post("/api/v1/beds", json={"name": "Room 9"}), 403)


# --- census, occupancy and expected discharges --------------------------------------------------

def test_the_census_counts_residents_beds_and_who_has_no_bed(crew, clock):
    unit = crew()
    room1, room2, room3, room4 = add_beds(unit.manager, "Room 1", "Room 2", "Room 3", "Room 4")
    residents = [unit.admit(name=f"Resident {n}") for n in range(3)]
    unit.nurse.post(f"/api/v1/admissions/{residents[0]['id']}/bed", json={"bed_id": room3["id"]})
    census = unit.nurse.get("/api/v1/census").get_json()
    assert (census["census"], census["beds_in_service"], census["occupancy"], census["over_capacity"]) == (
        3, 4, 0.75, False)
    assert [r["admission_id"] for r in census["without_bed"]] == [residents[1]["id"], residents[2]["id"]]
    for bed in (room1, room2):
        unit.manager.post(f"/api/v1/beds/{bed['id']}/close", json={"reason": "Refurbishment"})
    census = unit.nurse.get("/api/v1/census").get_json()
    assert (census["census"], census["beds_in_service"], census["occupancy"], census["over_capacity"]) == (
        3, 2, 1.5, True)


def test_a_unit_without_beds_has_a_census_but_no_occupancy(crew):
    unit = crew()
    unit.admit()
    census = unit.nurse.get("/api/v1/census").get_json()
    assert (census["census"], census["beds_in_service"], census["occupancy"], census["over_capacity"]) == (
        1, 0, None, False)


def test_expected_discharges_are_set_moved_and_checked(crew, clock):
    unit = crew()
    alex = unit.admit(name="Alex Example")
    in_five = (today(clock) + timedelta(days=5)).isoformat()
    set_ = unit.nurse.post(f"/api/v1/admissions/{alex['id']}/expected-discharge",
                           json={"expected_on": in_five, "reason": "Detox on plan"})
    assert set_.status_code == 200 and set_.get_json()["expected_on"] == in_five
    assert unit.nurse.get("/api/v1/census").get_json()["expected_discharges"] == []
    clock.advance(days=6)
    late = unit.nurse.get("/api/v1/census").get_json()["expected_discharges"]
    assert [e["admission_id"] for e in late] == [alex["id"]]  # still here after the date
    for body, field in (({"expected_on": "2001-01-01", "reason": "Typo"}, "expected_on"),
                        ({"expected_on": in_five, "reason": "x"}, "reason"),
                        ({"expected_on": (today(clock) + timedelta(days=90)).isoformat(), "reason": "Long"},
                         "expected_on")):
        assert field in assert_problem(unit.nurse.post(f"/api/v1/admissions/{alex['id']}/expected-discharge",
                                                       json=body), 422)["errors"]
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/discharge", json={"discharge_type": "completed"})
    assert unit.nurse.get("/api/v1/census").get_json()["expected_discharges"] == []


def test_a_census_figure_per_day(app, crew, clock):
    monday = datetime.combine(today(clock) - timedelta(days=10), time(9), tzinfo=ZONE).astimezone(timezone.utc)
    clock.set(monday)
    unit = crew()
    add_beds(unit.manager, "Room 1", "Room 2")
    first = unit.admit(name="First One")
    clock.advance(days=1)
    second = unit.admit(name="Second One")
    clock.advance(days=1, hours=3)  # day 3, 12:00
    unit.nurse.post(f"/api/v1/admissions/{first['id']}/discharge", json={"discharge_type": "completed"})
    start_day = monday.astimezone(ZONE).date()
    days = unit.manager.get(f"/api/v1/census/daily?from={start_day}&to={start_day + timedelta(days=3)}").get_json()
    assert [(d["date"], d["census"], d["beds"], d["occupancy"], d["admitted"], d["discharged"], d["complete"])
            for d in days] == [
        (str(start_day), 1, 2, 0.5, 1, 0, True),
        (str(start_day + timedelta(days=1)), 2, 2, 1.0, 1, 0, True),
        (str(start_day + timedelta(days=2)), 1, 2, 0.5, 0, 1, False),  # today: the figure now
    ]
    assert second["status"] == "active"
    from config.extensions import db as database
    from unit.beds import census_section, census_tables
    from unit.models import Unit

    with app.app_context():
        unit_row = database.session.scalars(sa.select(Unit).where(Unit.code == unit.code)).one()
        start = datetime.combine(start_day, time(0), tzinfo=ZONE).astimezone(timezone.utc)
        section = census_section(unit_row, start, start + timedelta(days=3), ZONE, clock())
    assert (section["max_census"], section["mean_census"], section["days_over_capacity"]) == (2, 1.33, 0)
    assert census_tables(section)["census_by_day"][1][1][:3] == [str(start_day + timedelta(days=1)), 2, 2]
    assert "from" in assert_problem(unit.manager.get(
        f"/api/v1/census/daily?from={start_day}&to={start_day - timedelta(days=1)}"), 422)["errors"]
    for query, field in (("to=0001-01-01", "to"), ("from=9999-12-31&to=9999-12-31", "from"),
                         ("from=2001-01-01&to=2003-01-01", "from")):
        assert field in assert_problem(unit.manager.get(f"/api/v1/census/daily?{query}"), 422)["errors"], query


# --- pages ------------------------------------------------------------------------------------

def test_the_beds_page_shows_the_census_and_the_waiting_list(crew, clock):
    unit = crew()
    (room,) = add_beds(unit.manager, "Room 1")
    alex = unit.admit(name="Alex Example")
    unit.nurse.post(f"/api/v1/admissions/{alex['id']}/bed", json={"bed_id": room["id"]})
    unit.nurse.post("/api/v1/waiting-list", json=planned_body(clock, name="Jordan Carter"))
    page = unit.nurse.get("/beds")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="census-count">1<' in html and "100%" in html
    assert "Jordan Carter" in html and "Admit now" in html
    board = unit.nurse.get("/").get_data(as_text=True)
    assert 'data-testid="census"' in board and "1 of 1 beds taken" in board and "1 expected in today" in board
    inspector = unit.inspector.get("/beds").get_data(as_text=True)
    assert "Admit now" not in inspector and "Jordan Carter" in inspector


def test_accept_and_admit_through_the_pages(app, crew, clock):
    unit = crew()
    (room,) = add_beds(unit.manager, "Room 1")
    assert unit.nurse.get("/waiting-list/new").status_code == 200
    form = page_form(unit.nurse, "/waiting-list/new", name="Jordan Carter", date_of_birth="1980-05-17",
                     substances="alcohol", sadq="20", audit="25", units_per_day="12",
                     planned_date=today(clock).isoformat(), planned_stay_days="7",
                     gp_name="Dr Amina Shah", gp_organisation="Canal Street Surgery")
    response = unit.nurse.post("/waiting-list/new", data=form)
    assert response.status_code == 303 and response.location.endswith("/beds")
    again = unit.nurse.post("/waiting-list/new", data=form)  # a double tap
    assert again.status_code == 303
    (planned,) = unit.nurse.get("/api/v1/waiting-list").get_json()
    assert planned["gp"] == {"name": "Dr Amina Shah", "organisation": "Canal Street Surgery",
                             "address": None, "contact": None}
    admit = unit.nurse.post(f"/waiting-list/{planned['id']}/admit", data=page_form(unit.nurse, "/beds"))
    assert admit.status_code == 303 and "/admissions/" in admit.location
    resident = unit.nurse.get(admit.location).get_data(as_text=True)
    assert "Room 1" in resident and 'data-testid="resident-bed"' in resident


def test_the_accept_page_names_the_fields_in_error_and_keeps_what_was_typed(crew, clock):
    unit = crew()
    form = page_form(unit.nurse, "/waiting-list/new", name="Jordan Carter", date_of_birth="1980-05-17",
                     substances="alcohol", sadq="20", audit="25", units_per_day="12", planned_date="",
                     gp_organisation="Practice without a name")
    response = unit.nurse.post("/waiting-list/new", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Jordan Carter" in html and html.count('class="fielderror"') == 2  # the date, the GP's name
    declined = page_form(unit.nurse, "/waiting-list/new", name="Too Severe", date_of_birth="1980-05-17",
                         substances="alcohol", sadq="35", audit="25", units_per_day="12",
                         planned_date=today(clock).isoformat())
    response = unit.nurse.post("/waiting-list/new", data=declined)
    assert response.status_code == 422
    assert any(m.startswith("Not accepted: Declined on the waiting list") for m in
               flashes(unit.nurse)) or "Declined on the waiting list" in response.get_data(as_text=True)


def test_bed_forms_need_their_csrf_token_and_a_manager(crew):
    unit = crew()
    assert unit.manager.post("/beds/new", data={"name": "Room 1", "idempotency_key": key()}).status_code == 400
    assert unit.nurse.post("/beds/new", data=page_form(unit.nurse, "/beds", name="Room 1")).status_code == 403
    made = unit.manager.post("/beds/new", data=page_form(unit.manager, "/beds", name="Room 1"))
    assert made.status_code == 303
    assert [b["bed"]["name"] for b in unit.nurse.get("/api/v1/beds").get_json()] == ["Room 1"]
