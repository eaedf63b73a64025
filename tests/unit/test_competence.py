"""Admission competence (docs/clinical-rules.md s4): what a medically monitored unit declines."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import audit_rows, referral, years_ago
from tests.unit.helpers import assert_problem, row_counts, unit_id_of, writes_between

MANAGED, MONITORED = "medically_managed", "medically_monitored"

# Each criterion on its own (everything else as the fixtures' unremarkable referral).
CRITERIA = {
    "sadq_over_limit": dict(sadq=31),
    "units_over_limit": dict(units_per_day=31),
    "seizure_history": dict(history_of_seizures=True),
    "delirium_tremens_history": dict(history_of_delirium_tremens=True),
    "alcohol_and_benzodiazepines": dict(substances=("alcohol", "benzodiazepines")),
    "comorbidity_with_units": dict(units_per_day=20, significant_comorbidity=True),
    "under_minimum_age": dict(dob=years_ago(17)),
    "pregnant": dict(pregnant=True),
}


def codes(criteria: list[dict]) -> list[str]:
    return [c["code"] for c in criteria]


def referrals(app, code):
    from unit.models import Referral

    with app.app_context():
        return list(db.session.scalars(sa.select(Referral).where(
            Referral.unit_id == unit_id_of(app, code)).order_by(Referral.id)))


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_a_monitored_unit_declines_each_criterion_and_keeps_the_referral(app, team, criterion):
    """HAZ-034: each decline criterion on its own declines on a monitored unit; kept."""
    staff = team(MONITORED)
    nurse = staff.client("nurse")
    before = row_counts(app)
    response = nurse.post("/api/v1/admissions", json=referral(name="Dee Clined", **CRITERIA[criterion]))
    body = assert_problem(response, 422, "admission-declined")
    assert codes(body["reasons"]) == [criterion]
    assert all(r["criterion"] and r["detail"] for r in body["reasons"])
    assert body["recommended_setting"] in ("medically_managed", "hospital")
    assert body["recommended_reasons"]

    # The refusal is a record: the referral (declined) and its audit event; nothing else.
    # The refusal is kept, and so is its Idempotency-Key: a retry replays the same decline.
    assert writes_between(before, row_counts(app)) == {"referrals": 1, "audit_events": 1,
                                                       "idempotency_keys": 1}
    [kept] = referrals(app, staff.code)
    assert kept.id == body["referral_id"]
    assert kept.decision == "declined"
    assert kept.unit_model == MONITORED
    assert codes(kept.reasons) == [criterion]
    assert kept.resident_snapshot["name"] == "Dee Clined"
    assert audit_rows(app, staff.code)[-1][1:] == ("referral.decline", "nurse")
    assert nurse.get("/api/v1/admissions").get_json() == []


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_a_managed_unit_admits_the_same_referral_as_high_risk(app, team, criterion):
    staff = team(MANAGED)
    response = staff.client("doctor").post("/api/v1/admissions",
                                           json=referral(name="Hy Risk", **CRITERIA[criterion]))
    assert response.status_code == 201, response.get_json()
    admission = response.get_json()
    assert admission["high_risk"] is True
    assert codes(admission["risk_reasons"]) == [criterion]
    assert admission["unit_model"] == MANAGED
    [kept] = referrals(app, staff.code)
    assert kept.decision == "admitted"


def test_every_criterion_met_is_listed(team):
    nurse = team(MONITORED).client("nurse")
    everything = referral(substances=("alcohol", "benzodiazepines"), dob=years_ago(16), sadq=50,
                          units_per_day=40, history_of_seizures=True,
                          history_of_delirium_tremens=True, significant_comorbidity=True,
                          pregnant=True)
    body = assert_problem(nurse.post("/api/v1/admissions", json=everything), 422, "admission-declined")
    # 40 units is over 30, so the 15-30-with-comorbidity criterion is not the one met; the
    # recommended setting is hospital, which every unit declines too.
    assert set(codes(body["reasons"])) == set(CRITERIA) - {"comorbidity_with_units"} | {"hospital_recommended"}
    assert body["recommended_setting"] == "hospital"


def test_an_unremarkable_referral_is_admitted_on_a_monitored_unit(team):
    nurse = team(MONITORED).client("nurse")
    response = nurse.post("/api/v1/admissions", json=referral())
    assert response.status_code == 201
    body = response.get_json()
    assert body["high_risk"] is False and body["risk_reasons"] == [] and body["flags"] == []


# --- boundaries -------------------------------------------------------------------------------

BOUNDARIES = [
    (dict(sadq=29), None),
    (dict(sadq=30), None),                      # exactly 30: flagged, not declined
    (dict(sadq=31), "sadq_over_limit"),
    (dict(units_per_day=30), None),
    (dict(units_per_day=30.5), "units_over_limit"),
    (dict(units_per_day=14.5, significant_comorbidity=True), None),
    (dict(units_per_day=15, significant_comorbidity=True), "comorbidity_with_units"),
    (dict(units_per_day=30, significant_comorbidity=True), "comorbidity_with_units"),
    (dict(units_per_day=30.5, significant_comorbidity=True), "units_over_limit"),
    (dict(units_per_day=15), None),             # 15-30 units alone is no criterion
    (dict(dob=years_ago(18)), None),            # 18 today
    (dict(dob=years_ago(18, days=-1)), "under_minimum_age"),  # 18 tomorrow
    (dict(dob=years_ago(17)), "under_minimum_age"),
]


def test_boundaries(team):
    """HAZ-034: each limit declines just past it, and not at it."""
    nurse = team(MONITORED).client("nurse")
    for n, (assessment, declined_by) in enumerate(BOUNDARIES):
        response = nurse.post("/api/v1/admissions", json=referral(name=f"Person {n}", **assessment))
        if declined_by is None:
            assert response.status_code == 201, (assessment, response.get_json())
            assert response.get_json()["high_risk"] is False
        else:
            body = assert_problem(response, 422, "admission-declined")
            assert codes(body["reasons"]) == [declined_by], assessment


def test_sadq_exactly_30_is_flagged_for_clinical_judgement(app, team):
    staff = team(MONITORED)
    response = staff.client("nurse").post("/api/v1/admissions", json=referral(sadq=30))
    assert response.status_code == 201
    assert codes(response.get_json()["flags"]) == ["sadq_at_limit"]
    assert codes(referrals(app, staff.code)[0].flags) == ["sadq_at_limit"]


def test_comorbidity_with_units_unknown_counts_as_over_the_limit(team):
    """HAZ-034: units a day "unknown" counts as over the limit, comorbidity or not."""
    body = assert_problem(team(MONITORED).client("nurse").post(
        "/api/v1/admissions", json=referral(units_per_day="unknown", significant_comorbidity=True)),
        422, "admission-declined")
    assert codes(body["reasons"]) == ["units_over_limit"]


def test_benzodiazepines_alone_are_not_the_combined_criterion(team):
    response = team(MONITORED).client("nurse").post(
        "/api/v1/admissions", json=referral(substances=("benzodiazepines",), sadq=0, units_per_day=None))
    assert response.status_code == 201
    assert response.get_json()["high_risk"] is False


# --- the preview: POST /api/v1/referrals/check --------------------------------------------------

@pytest.mark.parametrize("model", [MONITORED, MANAGED])
def test_the_check_previews_without_writing(app, team, model):
    nurse = team(model).client("nurse")
    before = row_counts(app)
    response = nurse.post("/api/v1/referrals/check", json=referral(sadq=40, pregnant=True))
    assert response.status_code == 200
    body = response.get_json()
    assert writes_between(before, row_counts(app)) == {}
    assert body["unit_model"] == model
    assert set(codes(body["risk_reasons"])) == {"sadq_over_limit", "pregnant"}
    if model == MONITORED:
        assert body["decision"] == "declined"
        assert set(codes(body["reasons"])) == {"sadq_over_limit", "pregnant"}
        assert body["high_risk"] is False
    else:
        assert body["decision"] == "admitted"
        assert body["reasons"] == []
        assert body["high_risk"] is True


RECOMMENDATIONS = [
    (dict(sadq=10, units_per_day=5), "community"),
    (dict(sadq=0, units_per_day=None, substances=("other",)), "community"),
    (dict(sadq=20, units_per_day=12), "residential_medically_monitored"),
    (dict(sadq=5, units_per_day=16), "residential_medically_monitored"),
    (dict(sadq=None, audit=None, units_per_day=None, substances=("opioids",)), "residential_medically_monitored"),
    (dict(sadq=10, units_per_day=10, significant_comorbidity=True), "residential_medically_monitored"),
    (dict(pregnant=True), "medically_managed"),
    (dict(sadq=35), "medically_managed"),
    (dict(dob=years_ago(17)), "medically_managed"),
    (dict(history_of_seizures=True), "medically_managed"),
    (dict(history_of_seizures=True, sadq=35), "hospital"),
    (dict(history_of_delirium_tremens=True, units_per_day=40), "hospital"),
    (dict(history_of_seizures=True, substances=("alcohol", "benzodiazepines")), "hospital"),
]


def test_recommended_setting(team):
    gp = team(MONITORED).client("gp")
    for kw, setting in RECOMMENDATIONS:
        body = gp.post("/api/v1/referrals/check", json=referral(**kw)).get_json()
        assert body["recommended_setting"] == setting, (kw, body)
        assert body["recommended_reasons"] and all(isinstance(r, str) for r in body["recommended_reasons"])


def test_under_18_recommendation_mentions_young_peoples_services(team):
    body = team(MONITORED).client("nurse").post(
        "/api/v1/referrals/check", json=referral(dob=years_ago(16))).get_json()
    assert any("young people" in reason for reason in body["recommended_reasons"])


def test_the_check_uses_the_model_in_force_now(team, clock):
    staff = team(MONITORED)
    manager = staff.client("manager")
    response = manager.post("/api/v1/unit/model", json={"model": MANAGED, "reason": "Doctor on site"})
    assert response.status_code == 201
    body = staff.client("nurse").post("/api/v1/referrals/check", json=referral(sadq=45)).get_json()
    assert (body["unit_model"], body["decision"], body["high_risk"]) == (MANAGED, "admitted", True)


# --- the unit's protocol may tighten the criteria, never loosen them ------------------------

def _member(staff, role: str = "manager"):
    from unit.models import Staff

    return db.session.scalars(sa.select(Staff).where(Staff.username == staff.usernames[role])).one()


def test_a_tightened_protocol_declines_sooner(app, team, clock):
    from unit.protocol import update_protocol

    staff = team(MONITORED)
    staff.usernames["clinical_lead"]
    with app.app_context():
        update_protocol(_member(staff), section="competence",
                        values={"sadq_decline_above": 25, "minimum_age": 21},
                        reason="Local policy", approved_by=_member(staff, "clinical_lead"),
                        now=clock())
    nurse = staff.client("nurse")
    body = assert_problem(nurse.post("/api/v1/admissions", json=referral(name="Sad Q", sadq=26)), 422,
                          "admission-declined")
    assert codes(body["reasons"]) == ["sadq_over_limit"]
    assert "25" in body["reasons"][0]["criterion"]
    body = assert_problem(nurse.post("/api/v1/admissions", json=referral(name="Young", dob=years_ago(20))),
                          422, "admission-declined")
    assert codes(body["reasons"]) == ["under_minimum_age"]
    assert nurse.post("/api/v1/admissions", json=referral(name="Another", sadq=24)).status_code == 201
    assert ("protocol.update", "clinical_lead") in [row[1:] for row in audit_rows(app, staff.code)]


LOOSER = [{"sadq_decline_above": 35}, {"units_decline_above": 40}, {"minimum_age": 16},
          {"comorbidity_units_from": 20}, {"sadq_decline_above": "25"}, {"no_such_limit": 1}]


def test_a_protocol_may_not_loosen_the_criteria(app, team, clock):
    """HAZ-030: the competence limits may be tightened, never loosened."""
    from unit.errors import ProtocolInvalid
    from unit.protocol import propose_protocol_change

    staff = team(MONITORED)
    staff.usernames["manager"]
    before = row_counts(app)
    for values in LOOSER:
        with app.app_context():
            with pytest.raises(ProtocolInvalid) as refused:
                propose_protocol_change(_member(staff), section="competence", values=values,
                                        reason="Looser", now=clock())
        assert set(refused.value.errors) == set(values)
    assert writes_between(before, row_counts(app)) == {}


def test_unit_tests_of_the_age_rule():
    from datetime import date

    from unit.competence import age_on

    assert age_on(date(2000, 2, 29), date(2018, 2, 28)) == 17
    assert age_on(date(2000, 2, 29), date(2018, 3, 1)) == 18
    assert age_on(date(2000, 6, 15), date(2018, 6, 15)) == 18
    assert age_on(date(2000, 6, 15), date(2018, 6, 14)) == 17
