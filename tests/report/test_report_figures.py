"""The report's figures against a generated unit history whose true figures are known (see
``build_history`` in conftest.py), its period edges, and bad periods."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.report.conftest import (
    PERIOD_END,
    PERIOD_QUERY,
    PERIOD_START,
    at,
    audit_event_count,
    iso,
    problem,
)


def percentile_inclusive(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (the 'inclusive' definition), by hand."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@pytest.fixture
def report(history, ward):
    events = audit_event_count(ward.app, ward.code)
    response = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    body["_events_before"] = events
    return body


def test_top_level_keys_unit_and_period(report, ward):
    assert {"unit", "period", "model_history", "admissions", "observations", "escalations",
            "medication", "audit_chain"} <= set(report)
    assert report["unit"] == {"code": ward.code, "name": "Harbour House"}
    period = report["period"]
    assert (period["from"], period["to"]) == (iso(PERIOD_START), iso(PERIOD_END))
    assert period["generated_at"] == iso(at(5, 0, 30))
    assert period["generated_by"] == ward.usernames["manager"]


def test_model_history_with_every_change_who_and_why(report, ward):
    assert [{k: h[k] for k in ("model", "effective_at", "changed_by", "reason", "in_force_at_start")}
            for h in report["model_history"]] == [
        {"model": "medically_monitored", "effective_at": iso(at(2, 12)), "changed_by": None,
         "reason": "Unit registered", "in_force_at_start": True},
        {"model": "medically_managed", "effective_at": iso(at(3, 14)),
         "changed_by": ward.usernames["manager"], "reason": "On-site doctor employed from 14:00",
         "in_force_at_start": False},
    ]
    assert report["model_history"][1]["recorded_at"] == iso(at(3, 9))


def test_admissions_against_competence(report, history):
    admissions = report["admissions"]
    # Ann, Bob and Cara; Olive (2 March) and Lou (5 March 00:00) are outside the period.
    assert (admissions["admitted"], admissions["declined"], admissions["high_risk_admitted"]) == (3, 1, 1)
    # Seizures with severe dependence: hospital recommended, which every unit declines too.
    assert history.ids["declined_codes"] == ["hospital_recommended", "sadq_over_limit", "seizure_history"]
    assert admissions["declined_reasons"] == {"hospital_recommended": 1, "sadq_over_limit": 1,
                                              "seizure_history": 1}
    (declined,) = admissions["declined_referrals"]
    assert declined["resident"] == "Dee Declined" and declined["decided_at"] == iso(at(3, 8, 5))
    assert declined["unit_model"] == "medically_monitored"
    assert declined["criteria_codes"] == ["sadq_over_limit", "seizure_history", "hospital_recommended"]
    assert declined["criteria"] == ["SADQ over 30", "History of epilepsy or withdrawal seizures",
                                    "Recommended setting: hospital"]
    assert declined["recommended_setting"] == "hospital"
    # Issue 6: each high-risk admission with the criteria met, and the model it was admitted under.
    (high_risk,) = admissions["high_risk_admissions"]
    assert high_risk["admission_id"] == history.ids["cara"]
    assert (high_risk["resident"], high_risk["decided_at"], high_risk["unit_model"]) == (
        "Cara Cole", iso(at(3, 14, 30)), "medically_managed")
    assert high_risk["criteria_codes"] == ["sadq_over_limit", "units_over_limit"]
    assert high_risk["criteria"] == ["SADQ over 30", "Over 30 units a day"]
    # Nobody was admitted against a criterion while the unit was medically monitored.
    assert admissions["admitted_meeting_decline_criteria_while_monitored"] == []
    assert admissions["transferred_out"] == [{
        "admission_id": history.ids["bob"], "resident": "Bob Brown", "at": iso(at(3, 11)),
        "why": "Withdrawal seizure: transferred to hospital"}]
    assert admissions["discharges"] == {"completed": 1, "transferred": 1}


def test_observation_compliance_per_scale_resident_and_shift(report, history):
    obs = report["observations"]

    def figures(due, on_time, late, missed, late_mean=None, late_max=None):
        return {"due": due, "on_time": on_time, "late": late, "missed": missed, "not_done": 0,
                "on_time_rate": round(on_time / due, 4) if due else None,
                "late_minutes_mean": late_mean, "late_minutes_max": late_max}

    # CIWA-Ar: Ann 10 min late, Ann on time, Ann's 16:05 slot missed, Bob and Cara on time.
    # NEWS2: Ann 10 min late, Bob and Cara on time. Olive's 30-minute-late NEWS2 was on 2 March.
    assert obs["by_scale"] == {"ciwa-ar": figures(5, 3, 1, 1, 10.0, 10.0),
                               "news2": figures(3, 2, 1, 0, 10.0, 10.0)}
    assert obs["by_resident"] == [
        {"admission_id": history.ids["ann"], "resident": "Ann Abbott", **figures(4, 1, 2, 1, 10.0, 10.0)},
        {"admission_id": history.ids["bob"], "resident": "Bob Brown", **figures(2, 2, 0, 0)},
        {"admission_id": history.ids["cara"], "resident": "Cara Cole", **figures(2, 2, 0, 0)},
    ]
    shift = {k: v for k, v in figures(7, 5, 2, 0).items() if not k.startswith("late_minutes")}
    assert obs["by_shift"]["early"] == shift                       # 07:00-15:00
    assert obs["by_shift"]["late"] == {"due": 1, "on_time": 0, "late": 0, "missed": 1, "not_done": 0,
                                       "on_time_rate": 0.0}        # the 16:05 slot
    assert obs["by_shift"]["night"]["due"] == 0
    assert sorted((w["scale"], w["due_at"], w["observed_at"], w["late_minutes"]) for w in obs["worst_late"]) == [
        ("ciwa-ar", iso(at(3, 8)), iso(at(3, 8, 10)), 10.0), ("news2", iso(at(3, 8)), iso(at(3, 8, 10)), 10.0)]
    assert obs["worst_missed"] == [{"admission_id": history.ids["ann"], "resident": "Ann Abbott",
                                    "scale": "ciwa-ar", "missed": 1, "from": iso(at(3, 16, 5)),
                                    "to": iso(at(3, 16, 5))}]


def test_escalations_routing_by_the_model_then_and_response_times(report, history, ward):
    esc = report["escalations"]
    # In the period: Bob's CIWA-Ar 16 (urgent, monitored -> GP, overridden after 6 min), Bob's
    # seizure (emergency, monitored -> GP, re-escalated, acknowledged after 8 min: a breach),
    # Cara's delirium tremens (emergency, managed since 14:00 -> on-site doctor, 3 min) and
    # Ann's missed CIWA-Ar (soon -> nurse in charge, 60 min). Olive's seizure at 23:59 on
    # 2 March and Lou's at 00:00 on 5 March are outside.
    assert esc["total"] == 4
    assert esc["by_trigger"] == {"ciwa_severe": 1, "delirium_tremens": 1, "missed_observation": 1, "seizure": 1}
    assert esc["by_severity"] == {"emergency": 2, "soon": 1, "urgent": 1}
    assert esc["by_route"] == {"nurse_in_charge": 1, "on_site_doctor": 1, "visiting_gp": 2}
    assert esc["routing_matched_model"] is True and esc["routing_mismatches"] == []
    minutes = [8.0, 3.0, 60.0]
    assert esc["acknowledge_minutes_median"] == 8.0
    assert esc["acknowledge_minutes_p90"] == round(percentile_inclusive(minutes, 0.9), 1) == 49.6
    assert esc["breaches"] == [{"id": history.escalations["breach"], "admission_id": history.ids["bob"],
                                "severity": "emergency", "reason": "Seizure", "raised_at": iso(at(3, 10, 30)),
                                "target_minutes": 5, "minutes_to_acknowledge": 8.0}]
    assert (esc["re_escalations"], esc["re_escalated_escalations"], esc["overridden"]) == (1, 1, 1)
    # The rota: a bank nurse in charge 07:00-19:00 on 3 March and nobody else; the doctor duty
    # follows the model (the visiting GP until 14:00, the on-site doctor after).
    assert sorted((g["duty"], g["from"], g["to"]) for g in esc["rota_gaps"]) == sorted([
        ("nurse_in_charge", iso(at(3, 0)), iso(at(3, 7))),
        ("nurse_in_charge", iso(at(3, 19)), iso(PERIOD_END)),
        ("visiting_gp", iso(at(3, 0)), iso(at(3, 14))),
        ("on_site_doctor", iso(at(3, 14)), iso(PERIOD_END)),
    ])
    # Each escalation kept the route of the model at its moment.
    listed = {e["id"]: e for e in ward.manager.get("/api/v1/escalations").get_json()}
    assert listed[history.escalations["breach"]]["route"] == "visiting_gp"
    assert listed[history.escalations["managed"]]["route"] == "on_site_doctor"


def test_medication_doses_prn_refusals_register_and_phone_orders(report, history, ward):
    med = report["medication"]
    assert med["doses"] == {"given": 3, "refused": 1, "withheld": 0, "omitted": 0}
    assert med["by_drug"] == [{"drug": "chlordiazepoxide", "outcome": "given", "doses": 3, "mg": 70.0},
                              {"drug": "chlordiazepoxide", "outcome": "refused", "doses": 1, "mg": 20.0}]
    assert med["prn_per_resident"] == [{"admission_id": history.ids["cara"], "resident": "Cara Cole",
                                        "drug": "chlordiazepoxide", "doses": 1, "mg": 20.0}]
    assert (med["safety_refusals"], med["safety_refusals_total"]) == ({"too_soon": 1}, 1)
    (register,) = med["cd_register"]
    assert {k: register[k] for k in ("drug", "opening_mg", "received_mg", "administered_mg", "emar_given_mg",
                                     "closing_mg", "register_matches_emar", "entries", "negative_balance")} == {
        "drug": "chlordiazepoxide", "opening_mg": 500.0, "received_mg": 200.0, "administered_mg": 70.0,
        "emar_given_mg": 70.0, "closing_mg": 630.0, "register_matches_emar": True, "entries": 5,
        "negative_balance": False}
    assert [(d["at"], d["counted_mg"], d["balance_mg"]) for d in register["discrepancies"]] == [
        (iso(at(4, 9)), 600.0, 630.0)]
    # Issue 5: phone orders not countersigned within 24 hours are listed: Ann's never signed,
    # Cara's regimen signed 25 minutes late; Cara's PRN, signed in time, is not.
    assert med["uncountersigned_phone_orders"] == [
        {"order_id": history.orders["never_countersigned"], "admission_id": history.ids["ann"],
         "resident": "Ann Abbott", "drug": "chlordiazepoxide", "prescriber": ward.usernames["gp"],
         "ordered_at": iso(at(3, 12, 30)), "deadline": iso(at(4, 12, 30)), "countersigned_at": None},
        {"order_id": history.orders["countersigned_late"], "admission_id": history.ids["cara"],
         "resident": "Cara Cole", "drug": "chlordiazepoxide", "prescriber": ward.usernames["doctor"],
         "ordered_at": iso(at(3, 14, 35)), "deadline": iso(at(4, 14, 35)), "countersigned_at": iso(at(4, 15))},
    ]


def test_phone_order_whose_deadline_has_not_passed_is_not_listed(history, ward, clock):
    # Asked at 12:00 on 4 March, Ann's order (deadline 12:30) is not overdue yet.
    clock.set(at(4, 12))
    report = ward.manager.get("/api/v1/audit/report?from=2025-03-03&to=2025-03-04").get_json()
    assert report["medication"]["uncountersigned_phone_orders"] == []
    clock.set(at(4, 12, 31))
    report = ward.manager.get("/api/v1/audit/report?from=2025-03-03&to=2025-03-04").get_json()
    assert [o["order_id"] for o in report["medication"]["uncountersigned_phone_orders"]] == [
        history.orders["never_countersigned"]]


def test_audit_chain_verified_with_every_event(report, ward):
    chain = report["audit_chain"]
    assert chain["verified"] is True
    assert chain["events"] == report["_events_before"] > 60
    assert (chain["broken_at_seq"], chain["problem"], chain["checked_from_seq"]) == (None, None, 1)
    # The manager's look is not itself an event (only an inspector's is).
    assert audit_event_count(ward.app, ward.code) == report["_events_before"]


def test_after_a_full_verification_the_report_says_when_and_checks_the_rest(history, ward, clock):
    from unit.audit import verify_all_chains

    with ward.app.app_context():
        verify_all_chains(clock())
    total = audit_event_count(ward.app, ward.code)
    chain = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}").get_json()["audit_chain"]
    assert chain["verified"] is True and chain["events"] == total
    assert chain["checked_from_seq"] == total + 1
    assert chain["full_verification_at"] == iso(at(5, 0, 30))


# --- period edges ---------------------------------------------------------------------------

def test_a_wider_period_counts_what_the_day_before_held(history, ward):
    report = ward.manager.get("/api/v1/audit/report?from=2025-03-02&to=2025-03-04").get_json()
    assert report["admissions"]["admitted"] == 4                  # + Olive
    assert report["escalations"]["total"] == 5                    # + Olive's seizure at 23:59
    assert report["observations"]["by_scale"]["news2"]["due"] == 4  # + Olive's late NEWS2
    assert report["model_history"][0]["in_force_at_start"] is False  # registered within it


@pytest.mark.parametrize("end, counted", [("2025-03-03T10:30:00Z", 1), ("2025-03-03T10:30:01Z", 2)])
def test_an_event_at_the_end_of_the_period_is_outside_it(history, ward, end, counted):
    # Bob's urgent escalation was raised at 10:00, his seizure at 10:30: `to` is exclusive.
    report = ward.manager.get(f"/api/v1/audit/report?from=2025-03-03T00:00:00Z&to={end}").get_json()
    assert report["escalations"]["total"] == counted
    assert report["period"]["to"] == iso(at(3, 10, 30) if counted == 1 else at(3, 10, 30).replace(second=1))


@pytest.mark.parametrize("start, counted", [("2025-03-03T08:05:00Z", 1), ("2025-03-03T08:05:01Z", 0)])
def test_an_event_at_the_start_of_the_period_is_inside_it(history, ward, start, counted):
    # Dee was declined at 08:05: `from` is inclusive.
    report = ward.manager.get(f"/api/v1/audit/report?from={start}&to=2025-03-03T09:00:00Z").get_json()
    assert report["admissions"]["declined"] == counted


@pytest.mark.parametrize("query, field", [
    ("from=2025-13-01&to=2025-03-04", "from"),
    ("from=2025-03-03&to=yesterday", "to"),
    ("from=2025-03-05&to=2025-03-03", "from"),                     # empty period
    ("from=2025-03-03T00:00:00&to=2025-03-04", "from"),            # a timestamp without a zone
    ("from=2023-01-01&to=2025-03-04", "from"),                     # over 400 days
])
def test_a_bad_period_is_a_422_problem(ward, query, field):
    body = problem(ward.manager.get(f"/api/v1/audit/report?{query}"), 422)
    assert field in body["errors"], body


def test_an_unknown_format_is_a_422_problem(ward):
    body = problem(ward.manager.get("/api/v1/audit/report?format=xml"), 422)
    assert "format" in str(body["errors"])


def test_default_period_is_the_last_30_days(ward, clock):
    report = ward.manager.get("/api/v1/audit/report").get_json()
    assert report["period"]["to"] == iso(clock())
    assert report["period"]["from"] == iso(clock() - timedelta(days=30))


def test_the_report_page_shows_the_figures(history, ward):
    page = ward.manager.get(f"/audit/report?{PERIOD_QUERY}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Harbour House" in html and "Audit chain verified" in html
    for table in ("model_history", "declined_referrals", "high_risk_admissions", "uncountersigned_phone_orders",
                  "escalation_breaches", "cd_register"):
        assert f'data-table="{table}"' in html, table
    assert "Cara Cole" in html and "Over 30 units a day" in html and "Dee Declined" in html


def test_late_minutes_mean_on_a_half_rounds_alike_on_every_engine(ward, clock):
    # Ten and ten and a half minutes late: a mean of exactly 10.25 minutes. Late minutes are
    # counted exactly (whole milliseconds), so the half rounds as Python rounds every figure
    # (to even), not by the last bits of a float that differ between engines.
    from tests.report.conftest import ciwa, parse, post

    clock.set(at(3, 8))
    ann = ward.admit("Ann Abbott")
    clock.set(at(3, 8, 10))
    first = post(ward.nurse, f"/api/v1/admissions/{ann['id']}/observations",
                 {"scale": "ciwa-ar", "items": ciwa(5)}).get_json()
    clock.set(parse(first["next_due_at"]) + timedelta(minutes=10, seconds=30))
    post(ward.nurse, f"/api/v1/admissions/{ann['id']}/observations", {"scale": "ciwa-ar", "items": ciwa(5)})
    clock.set(at(4, 12))
    observations = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}").get_json()["observations"]
    ciwa_ar = observations["by_scale"]["ciwa-ar"]
    assert (ciwa_ar["late"], ciwa_ar["late_minutes_max"], ciwa_ar["late_minutes_mean"]) == (2, 10.5, 10.2)
    (resident,) = observations["by_resident"]
    assert resident["late_minutes_mean"] == 10.2
