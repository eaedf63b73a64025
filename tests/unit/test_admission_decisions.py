"""Admission decisions that hold up to an inspector (issue 14, docs/clinical-rules.md s4):
what every unit declines unless a doctor records why, what each kind of referral must say,
and a declined person re-referred with changed figures.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import audit_rows, referral, years_ago
from tests.unit.helpers import assert_problem, row_counts, writes_between

MANAGED, MONITORED = "medically_managed", "medically_monitored"
# Seizure history with severe dependence: hospital is the recommended setting.
HOSPITAL = dict(history_of_seizures=True, sadq=40)
OVERRIDE = "Inpatient bed refused by the acute trust; on-site doctor 24 h, reviewed with the family"


@pytest.fixture(autouse=True)
def long_sessions(app):
    # The tests move the clock by days: sign-ins must outlast that here.
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=60), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=90))


@pytest.fixture
def signed_in(team):
    """signed_in(model) -> (team, {role: client}) with every role signed in already."""

    def make(model: str):
        staff = team(model)
        return staff, staff.clients()

    return make


def codes(criteria: list[dict]) -> list[str]:
    return [c["code"] for c in criteria]


def post(client, body: dict):
    return client.post("/api/v1/admissions", json=body)


# --- declined everywhere unless a doctor records why ----------------------------------------------

@pytest.mark.parametrize("kw, code", [(HOSPITAL, "hospital_recommended"),
                                      (dict(dob=years_ago(15)), "under_16")],
                         ids=["hospital", "under-16"])
def test_a_managed_unit_declines_hospital_setting_or_under_16_without_a_doctors_reason(app, signed_in,
                                                                                         kw, code):
    """HAZ-033: a medically managed unit declines these (it admitted them as high-risk before),
    to a nurse and to a doctor who gives no reason; the decline is kept."""
    staff, clients = signed_in(MANAGED)
    for role in ("nurse", "doctor"):
        before = row_counts(app)
        body = assert_problem(post(clients[role], referral(name=f"Dee {role}", **kw)), 422,
                              "admission-declined")
        assert codes(body["reasons"]) == [code]
        assert body["doctor_may_override"] is True
        assert "unless a doctor records why" in body["detail"]
        assert writes_between(before, row_counts(app)) == {"referrals": 1, "audit_events": 1,
                                                           "idempotency_keys": 1}
    check = clients["nurse"].post("/api/v1/referrals/check", json=referral(**kw)).get_json()
    assert (check["decision"], check["doctor_may_override"]) == ("declined", True)
    assert code in codes(check["reasons"])


@pytest.mark.parametrize("role", ["doctor", "gp", "clinical_lead"])
@pytest.mark.parametrize("kw, code", [(HOSPITAL, "hospital_recommended"),
                                      (dict(dob=years_ago(15)), "under_16")],
                         ids=["hospital", "under-16"])
def test_a_doctor_admits_with_an_override_reason_kept_on_the_admission(app, team, role, kw, code):
    """HAZ-033: a doctor, GP or clinical lead admits with a reason, kept on the admission, in
    the audit, and listed in the report."""
    from unit.models import AuditEvent

    staff = team(MANAGED)
    response = post(staff.client(role), {**referral(name="Ova Ride", **kw), "override_reason": OVERRIDE})
    assert response.status_code == 201, response.get_json()
    admission = response.get_json()
    assert admission["high_risk"] is True
    assert admission["override"]["reason"] == OVERRIDE
    assert admission["override"]["criteria"] == [code]
    assert admission["override"]["by"]["username"] == staff.usernames[role]
    shown = staff.client("inspector").get(f"/api/v1/admissions/{admission['id']}").get_json()
    assert shown["override"] == admission["override"]
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "admission.create")).one()
        assert event.after["override"] == {"reason": OVERRIDE, "criteria": [code]}


def test_a_nurse_or_manager_cannot_record_an_override(app, signed_in):
    """HAZ-033: only a doctor's reason admits: a nurse's or manager's is refused, writing nothing."""
    _, clients = signed_in(MANAGED)
    before = row_counts(app)
    for role in ("nurse", "manager"):
        body = assert_problem(post(clients[role], {**referral(**HOSPITAL), "override_reason": OVERRIDE}),
                              403, "override-not-permitted")
        assert "override_reason" in body["errors"]
        # The preview does not count their reason either.
        check = clients[role].post("/api/v1/referrals/check",
                                   json={**referral(**HOSPITAL), "override_reason": OVERRIDE}).get_json()
        assert check["decision"] == "declined"
    assert writes_between(before, row_counts(app)) == {}


def test_an_override_does_not_lift_what_a_monitored_unit_declines(team):
    """HAZ-033: on a medically monitored unit the override lifts nothing: the monitored
    criteria still decline (and the everywhere ones are listed with them)."""
    doctor = team(MONITORED).client("doctor")
    body = assert_problem(post(doctor, {**referral(dob=years_ago(15)), "override_reason": OVERRIDE}), 422,
                          "admission-declined")
    assert codes(body["reasons"]) == ["under_minimum_age", "under_16"]
    assert body["doctor_may_override"] is False


def test_sixteen_today_is_not_under_16(team):
    """HAZ-033: the boundary: 16 today is admitted on a managed unit as high-risk (under 18)."""
    response = post(team(MANAGED).client("nurse"), referral(dob=years_ago(16)))
    assert response.status_code == 201, response.get_json()
    assert codes(response.get_json()["risk_reasons"]) == ["under_minimum_age"]


def test_the_report_lists_the_doctors_overrides(app, team, clock):
    """HAZ-033: every override is on the inspector's report, with the doctor and the reason."""
    staff = team(MANAGED)
    admission = post(staff.client("doctor"), {**referral(name="Ova Ride", **HOSPITAL),
                                              "override_reason": OVERRIDE}).get_json()
    post(staff.client("nurse"), referral(name="Plain Admission"))
    clock.advance(minutes=1)
    report = staff.client("inspector").get("/api/v1/audit/report").get_json()
    [listed] = report["admissions"]["doctor_overrides"]
    assert (listed["admission_id"], listed["resident"], listed["criteria"], listed["reason"],
            listed["doctor"]) == (admission["id"], "Ova Ride", ["hospital_recommended"], OVERRIDE,
                                  staff.usernames["doctor"])
    table = staff.client("manager").get("/api/v1/audit/report?format=csv&table=doctor_overrides")
    assert OVERRIDE in table.get_data(as_text=True)


# --- what each referral must say ------------------------------------------------------------------

def test_an_alcohol_referral_needs_units_per_day(app, team):
    """HAZ-034: units a day left out of an alcohol referral is a 422 naming the field, not an
    unknown that slips past the limit."""
    nurse = team(MONITORED).client("nurse")
    before = row_counts(app)
    for body in (referral(units_per_day=None), referral(substances=("alcohol", "opioids"), units_per_day=None)):
        problem = assert_problem(post(nurse, body), 422, "validation-error")
        assert problem["errors"] == {"assessment": {"units_per_day": [
            'Required for an alcohol referral: a number, or "unknown".']}}
    for bad in ("lots", -1, 201, True, "Unknown"):
        problem = assert_problem(post(nurse, referral(units_per_day=bad)), 422)
        assert "units_per_day" in problem["errors"]["assessment"]
    assert writes_between(before, row_counts(app)) == {}


def test_units_unknown_counts_as_over_the_limit(team):
    """HAZ-034: "unknown" is declined by a medically monitored unit as over 30 units a day, and
    admitted as high-risk by a medically managed one."""
    body = assert_problem(post(team(MONITORED).client("nurse"), referral(units_per_day="unknown")), 422,
                          "admission-declined")
    assert codes(body["reasons"]) == ["units_over_limit"]
    assert "not known" in body["reasons"][0]["detail"]
    response = post(team(MANAGED).client("nurse"), referral(units_per_day="unknown"))
    assert response.status_code == 201
    admission = response.get_json()
    assert admission["high_risk"] is True and admission["assessment"]["units_per_day"] == "unknown"


def test_an_opioid_only_referral_needs_current_opioids_not_sadq_or_audit(app, team):
    """HAZ-035: a referral for opioids without alcohol is admitted without SADQ or AUDIT, with
    the opioids used now and the last COWS; it cannot leave out what it is using."""
    nurse = team(MONITORED).client("nurse")
    opioid_only = referral(name="Op Ioid", substances=("opioids",), sadq=None, audit=None, units_per_day=None,
                           current_opioids=["heroin", "methadone"], last_cows_total=14)
    response = post(nurse, opioid_only)
    assert response.status_code == 201, response.get_json()
    assessment = response.get_json()["assessment"]
    assert (assessment["current_opioids"], assessment["last_cows_total"]) == (["heroin", "methadone"], 14)
    assert assessment["sadq"] is None and assessment["audit"] is None

    before = row_counts(app)
    without = dict(opioid_only, assessment={k: v for k, v in opioid_only["assessment"].items()
                                            if k != "current_opioids"})
    problem = assert_problem(post(nurse, without), 422)
    assert set(problem["errors"]["assessment"]) == {"current_opioids"}
    for bad in ([], ["heroin", "heroin"], ["cocaine"]):
        problem = assert_problem(post(nurse, dict(opioid_only, assessment={
            **opioid_only["assessment"], "current_opioids": bad})), 422)
        assert "current_opioids" in problem["errors"]["assessment"]
    problem = assert_problem(post(nurse, dict(opioid_only, assessment={
        **opioid_only["assessment"], "last_cows_total": 49})), 422)
    assert "last_cows_total" in problem["errors"]["assessment"]
    # Alcohol with the opioids: SADQ and AUDIT are needed again.
    problem = assert_problem(post(nurse, dict(opioid_only, substances=["alcohol", "opioids"],
                                              assessment={**opioid_only["assessment"], "units_per_day": 10})),
                             422)
    assert set(problem["errors"]["assessment"]) == {"sadq", "audit"}
    # Opioid details on a referral without opioids are refused (they would mislead).
    problem = assert_problem(post(nurse, referral(current_opioids=["heroin"], last_cows_total=3)), 422)
    assert set(problem["errors"]["assessment"]) == {"current_opioids", "last_cows_total"}
    assert writes_between(before, row_counts(app)) == {}


def test_benzodiazepine_or_other_referrals_still_need_sadq_and_audit(team):
    """HAZ-035: only an opioid referral is spared SADQ and AUDIT."""
    problem = assert_problem(post(team(MONITORED).client("nurse"),
                                  referral(substances=("benzodiazepines",), sadq=None, audit=None,
                                           units_per_day=None)), 422)
    assert set(problem["errors"]["assessment"]) == {"sadq", "audit"}


# --- a declined person re-referred -------------------------------------------------------------

SEIZURES_DECLINED = dict(name="Rhys Referral", dob="1976-02-03", sadq=28, history_of_seizures=True)


def test_a_re_referral_is_linked_and_each_changed_figure_needs_a_reason(app, signed_in, clock):
    """HAZ-036: a referral of a person declined in the last 30 days is linked to the decline;
    admitting it needs a reason for each figure that changed (422 naming each), kept on the
    referral, in the audit and on the report."""
    staff, clients = signed_in(MONITORED)
    nurse = clients["nurse"]
    declined = assert_problem(post(nurse, referral(**SEIZURES_DECLINED)), 422, "admission-declined")
    clock.advance(days=3)
    again = referral(**{**SEIZURES_DECLINED, "history_of_seizures": False, "sadq": 22})

    check = nurse.post("/api/v1/referrals/check", json=again).get_json()
    assert check["previous_decline"]["referral_id"] == declined["referral_id"]
    assert [(c["field"], c["before"], c["after"]) for c in check["previous_decline"]["changes"]] == [
        ("sadq", 28, 22), ("history_of_seizures", True, False)]
    assert check["unexplained_changes"] == ["sadq", "history_of_seizures"]

    before = row_counts(app)
    problem = assert_problem(post(nurse, again), 422, "re-referral-changes-unexplained")
    assert set(problem["errors"]) == {"change_reasons.sadq", "change_reasons.history_of_seizures"}
    assert "Was 28 when declined, now 22" in problem["errors"]["change_reasons.sadq"][0]
    assert "Was yes when declined, now no" in problem["errors"]["change_reasons.history_of_seizures"][0]
    assert problem["previous_decline_id"] == declined["referral_id"]
    # One reason of two is not enough.
    problem = assert_problem(post(nurse, {**again, "change_reasons": {"sadq": "Re-scored with the GP"}}),
                             422, "re-referral-changes-unexplained")
    assert set(problem["errors"]) == {"change_reasons.history_of_seizures"}
    assert writes_between(before, row_counts(app)) == {}

    reasons = {"sadq": "Re-scored with the GP after a week's reduction",
               "history_of_seizures": "Hospital letter: the episode was a syncope, not a seizure"}
    response = post(nurse, {**again, "change_reasons": reasons})
    assert response.status_code == 201, response.get_json()
    admission = response.get_json()
    assert admission["previous_decline_id"] == declined["referral_id"]
    assert {c["field"]: c["reason"] for c in admission["changes"]} == reasons
    assert ("admission.create", "nurse") in [row[1:] for row in audit_rows(app, staff.code)]

    clock.advance(minutes=1)
    report = clients["inspector"].get("/api/v1/audit/report").get_json()
    [listed] = report["admissions"]["re_referrals"]
    assert (listed["decision"], listed["admission_id"], listed["previous_decline_id"]) == (
        "admitted", admission["id"], declined["referral_id"])
    assert [(c["field"], c["before"], c["after"], c["reason"]) for c in listed["changes"]] == [
        ("sadq", 28, 22, reasons["sadq"]), ("history_of_seizures", True, False, reasons["history_of_seizures"])]
    table = clients["manager"].get("/api/v1/audit/report?format=csv&table=re_referrals")
    assert "history_of_seizures: True -> False" in table.get_data(as_text=True)


def test_a_re_referral_declined_again_is_linked_without_reasons(app, team):
    """HAZ-036: the same figures again are declined again, linked to the first decline."""
    nurse = team(MONITORED).client("nurse")
    first = assert_problem(post(nurse, referral(**SEIZURES_DECLINED)), 422, "admission-declined")
    second = assert_problem(post(nurse, referral(**SEIZURES_DECLINED)), 422, "admission-declined")
    assert second["previous_decline_id"] == first["referral_id"]


@pytest.mark.parametrize("kw, linked", [
    (dict(name="Someone Else", nhs_number="943 476 5919"), True),        # the same NHS number
    (dict(name="  rhys   REFERRAL "), True),                              # the same name and birth date
    (dict(dob="1976-02-04"), False),                                      # another birth date
    (dict(name="Rhys Other"), False),
], ids=["nhs-number", "name-and-dob", "other-dob", "other-name"])
def test_the_same_person_by_nhs_number_or_name_and_date_of_birth(team, kw, linked):
    """HAZ-036: the same person is found by NHS number, or by name and date of birth."""
    nurse = team(MONITORED).client("nurse")
    first = assert_problem(post(nurse, referral(**SEIZURES_DECLINED, nhs_number="9434765919")), 422,
                           "admission-declined")
    body = {**SEIZURES_DECLINED, "history_of_seizures": False, **kw}
    check = nurse.post("/api/v1/referrals/check", json=referral(**body)).get_json()
    if linked:
        assert check["previous_decline"]["referral_id"] == first["referral_id"]
    else:
        assert check["previous_decline"] is None and check["unexplained_changes"] == []


def test_after_30_days_a_referral_is_not_linked(team, clock):
    """HAZ-036: the link covers 30 days from the decline."""
    nurse = team(MONITORED).client("nurse")
    assert_problem(post(nurse, referral(**SEIZURES_DECLINED)), 422, "admission-declined")
    clock.advance(days=30, seconds=-1)
    again = referral(**{**SEIZURES_DECLINED, "history_of_seizures": False})
    assert nurse.post("/api/v1/referrals/check", json=again).get_json()["previous_decline"] is not None
    clock.advance(seconds=1)
    assert nurse.post("/api/v1/referrals/check", json=again).get_json()["previous_decline"] is None
    assert post(nurse, again).status_code == 201


def test_a_changed_date_of_birth_is_a_changed_figure(team, clock):
    """HAZ-036: matched by NHS number, a birth date that changed (an under-18 now 18) needs its
    reason too."""
    nurse = team(MONITORED).client("nurse")
    assert_problem(post(nurse, referral(name="Young Person", dob=years_ago(17), nhs_number="9434765919")),
                   422, "admission-declined")
    clock.advance(hours=2)
    problem = assert_problem(post(nurse, referral(name="Young Person", dob=years_ago(19),
                                                  nhs_number="9434765919")),
                             422, "re-referral-changes-unexplained")
    assert set(problem["errors"]) == {"change_reasons.date_of_birth"}
    unknown = assert_problem(post(nurse, {**referral(name="Young Person", dob=years_ago(19),
                                                     nhs_number="9434765919"),
                                          "change_reasons": {"eye_colour": "x" * 5}}), 422)
    assert "change_reasons" in unknown["errors"]
    response = post(nurse, {**referral(name="Young Person", dob=years_ago(19), nhs_number="9434765919"),
                            "change_reasons": {"date_of_birth": "Birth certificate seen: typo on the referral"}})
    assert response.status_code == 201, response.get_json()


def test_the_referral_check_keeps_its_contract(team):
    """HAZ-036: POST /referrals/check answers every key it did before, and the new ones."""
    body = team(MONITORED).client("nurse").post("/api/v1/referrals/check", json=referral()).get_json()
    assert {"unit_model", "decision", "reasons", "high_risk", "risk_reasons", "flags",
            "recommended_setting", "recommended_reasons"} <= set(body)
    assert (body["doctor_may_override"], body["previous_decline"], body["unexplained_changes"]) == (
        False, None, [])


# --- the admission form -----------------------------------------------------------------------------

def _form(client, **fields) -> dict:
    from tests.unit.helpers import csrf_token

    return {"csrf_token": csrf_token(client), "idempotency_key": fields.pop("key", "form-1"),
            "name": "Form Person", "date_of_birth": "1970-01-01", "substances": "alcohol",
            "sadq": "12", "audit": "20", "units_per_day": "10", **fields}


def test_the_form_takes_units_unknown_and_an_opioid_referral(app, signed_in):
    """HAZ-035: on the form, units a day may be ticked as not known (declined as over the limit
    on a monitored unit), and an opioid referral is admitted with its opioids and no SADQ."""
    _, clients = signed_in(MONITORED)
    nurse = clients["nurse"]
    page = nurse.post("/admissions/new", data=_form(nurse, units_per_day="", units_unknown="yes"))
    assert page.status_code == 422
    assert "Units a day not known: counted as over 30" in page.get_data(as_text=True)
    page = nurse.post("/admissions/new", data=_form(nurse, key="form-2", units_per_day=""))
    assert page.status_code == 422 and "Required for an alcohol referral" in page.get_data(as_text=True)
    form = _form(nurse, key="form-3", name="Opi Form", substances="opioids", sadq="", audit="",
                 units_per_day="", current_opioids=["heroin", "methadone"], last_cows_total="11")
    response = nurse.post("/admissions/new", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    shown = nurse.get(response.location).get_data(as_text=True)
    assert "heroin, methadone" in shown and "not needed" in shown


def test_the_form_offers_the_override_to_doctors_only_and_asks_each_changed_figures_reason(app, signed_in):
    """HAZ-036: the form asks for a reason for each changed figure of a re-referral and keeps
    them; a doctor's override box is shown to doctors only, and admits with the reason."""
    _, clients = signed_in(MANAGED)
    nurse, doctor = clients["nurse"], clients["doctor"]
    assert 'name="override_reason"' not in nurse.get("/admissions/new").get_data(as_text=True)
    assert 'name="override_reason"' in doctor.get("/admissions/new").get_data(as_text=True)

    declined = nurse.post("/admissions/new", data=_form(nurse, key="f-1", sadq="40", history_of_seizures="yes"))
    assert declined.status_code == 422 and "Recommended setting: hospital" in declined.get_data(as_text=True)
    again = nurse.post("/admissions/new", data=_form(nurse, key="f-2", sadq="20"))
    text = again.get_data(as_text=True)
    assert again.status_code == 422 and 'data-testid="change-reasons"' in text
    assert 'name="change_reason.sadq"' in text and 'name="change_reason.history_of_seizures"' in text
    partly = nurse.post("/admissions/new", data=_form(nurse, key="f-3", sadq="20",
                                                       **{"change_reason.sadq": "Re-scored"}))
    text = partly.get_data(as_text=True)
    assert partly.status_code == 422 and ">Re-scored</textarea>" in text
    admitted = nurse.post("/admissions/new", data=_form(
        nurse, key="f-4", sadq="20", **{"change_reason.sadq": "Re-scored with the GP",
                                        "change_reason.history_of_seizures": "Syncope, not a seizure"}))
    assert admitted.status_code == 302, admitted.get_data(as_text=True)[:500]
    assert "Syncope, not a seizure" in nurse.get(admitted.location).get_data(as_text=True)

    overridden = doctor.post("/admissions/new", data=_form(
        doctor, key="f-5", name="Ova Form", sadq="40", history_of_seizures="yes", override_reason=OVERRIDE))
    assert overridden.status_code == 302, overridden.get_data(as_text=True)[:500]
    assert OVERRIDE in doctor.get(overridden.location).get_data(as_text=True)
