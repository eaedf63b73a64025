"""A unit's own protocol (issue 3: "bands and the protocol's action thresholds are per unit"):
what is refused before it is stored, a unit recording, scheduling and escalating by its own
bands, the API and CLI that adopt it, and the tablet form scoring live with the unit's bands.

Bands, totals and intervals are written out here by hand (docs/clinical-rules.md), never read
back from the code under test.
"""
from __future__ import annotations

import html
import json
import re

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.monitoring.escalation_support import (
    NEWS2_HIGH_7,
    NEWS2_HIGH_14,
    ciwa,
    cows,
    observe,
)
from tests.conftest import WARD_ROLES, adopt_protocol, propose_protocol
from tests.monitoring.helpers import assert_problem, row_counts

# docs/clinical-rules.md s1 default bands, as GET /unit/protocol shows them before any change.
CIWA_DEFAULT = [{"code": "minimal", "label": "Minimal", "low": 0, "high": 7},
                {"code": "moderate", "label": "Moderate", "low": 8, "high": 15},
                {"code": "severe", "label": "Severe", "low": 16, "high": 67}]
# A unit's own CIWA-Ar bands (the "minimal up to 10" / US 10-18 / 19+ alternatives of s1).
CIWA_OWN = [{"code": "minimal", "label": "Minimal", "low": 0, "high": 9},
            {"code": "moderate", "label": "Moderate", "low": 10, "high": 18},
            {"code": "severe", "label": "Severe", "low": 19, "high": 67}]
NEWS2_OWN = [{"code": "low", "label": "Low", "low": 0, "high": 4},
             {"code": "medium", "label": "Medium", "low": 5, "high": 7},
             {"code": "high", "label": "High", "low": 8, "high": 20}]


def bands(*spans, codes=("minimal", "moderate", "severe")) -> list[dict]:
    return [{"code": code, "low": low, "high": high} for code, (low, high) in zip(codes, spans)]


@pytest.fixture
def ward(make_ward):
    """A monitored unit with every role signed in, its clinical lead too (who approves)."""
    return make_ward(roles=(*WARD_ROLES, "clinical_lead"))


def adopt(client, section: str, values: dict, reason: str = "Local protocol", key: str | None = None):
    """The manager's proposal (the 422 of a refused one)."""
    return propose_protocol(client, section, values, reason, key)


def adopted(ward, section: str, values: dict) -> dict:
    """Proposed by the manager and approved by the clinical lead: the protocol in force."""
    return adopt_protocol(ward.manager, ward.clinical_lead, section, values)


# --- refusals: nothing is stored that would later fail or mislead -----------------------------

REFUSED = [
    # (section, values, the keys the 422 must name)
    ("monitoring", {"no_such_setting": 1}, {"no_such_setting"}),
    # renamed bands: the 500 of the review (No default interval for ciwa-ar band 'high')
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 67), codes=("low", "high"))}}, {"bands.ciwa-ar"}),
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 15), (16, 67), codes=("minimal", "moderate", "high"))}},
     {"bands.ciwa-ar"}),
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 67))}}, {"bands.ciwa-ar"}),  # one missing
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (9, 15), (16, 67))}}, {"bands.ciwa-ar"}),  # gap at 8
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 8), (8, 15), (16, 67))}}, {"bands.ciwa-ar"}),  # overlap
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 15), (16, 60))}}, {"bands.ciwa-ar"}),  # stops at 60
    ("monitoring", {"bands": {"ciwa-ar": bands((1, 7), (8, 15), (16, 67))}}, {"bands.ciwa-ar"}),  # from 1
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 15), (16, 70))}}, {"bands.ciwa-ar"}),  # past 67
    ("monitoring", {"bands": {"ciwa-ar": bands((16, 67), (8, 15), (0, 7))}}, {"bands.ciwa-ar"}),  # order
    ("monitoring", {"bands": {"ciwa-ar": bands((0, "7"), (8, 15), (16, 67))}}, {"bands.ciwa-ar"}),
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7.5), (8, 15), (16, 67))}}, {"bands.ciwa-ar"}),
    ("monitoring", {"bands": {"ciwa-ar": "minimal 0-7"}}, {"bands.ciwa-ar"}),
    ("monitoring", {"bands": {"ciwa": bands((0, 7), (8, 15), (16, 67))}}, {"bands.ciwa"}),
    ("monitoring", {"bands": []}, {"bands"}),
    ("monitoring", {"intervals": {"ciwa-ar": {"high": 60}}}, {"intervals.ciwa-ar.high"}),
    ("monitoring", {"intervals": {"ciwa-ar": {"severe": "60"}}}, {"intervals.ciwa-ar.severe"}),
    ("monitoring", {"intervals": {"ciwa-ar": {"severe": 0}}}, {"intervals.ciwa-ar.severe"}),
    ("monitoring", {"intervals": {"ciwa-ar": {"severe": 5000}}}, {"intervals.ciwa-ar.severe"}),
    ("monitoring", {"intervals": {"news2": {"severe": 60}}}, {"intervals.news2.severe"}),
    ("monitoring", {"intervals": {"sows": 240}}, {"intervals.sows"}),
    ("monitoring", {"not_done_retry_minutes": "30"}, {"not_done_retry_minutes"}),
    ("monitoring", {"not_done_retry_minutes": 0}, {"not_done_retry_minutes"}),
    ("monitoring", {"refusals_to_escalate": True}, {"refusals_to_escalate"}),
    ("monitoring", {"initial_interval_minutes": 60.0}, {"initial_interval_minutes"}),
    ("escalation", {"ciwa_emergency_total": 0}, {"ciwa_emergency_total"}),
    ("escalation", {"ciwa_emergency_total": 68}, {"ciwa_emergency_total"}),  # above CIWA-Ar's 67
    ("escalation", {"ciwa_emergency_total": "20"}, {"ciwa_emergency_total"}),
    ("escalation", {"ciwa_emergency_total": 20.5}, {"ciwa_emergency_total"}),
    ("escalation", {"targets": {"urgent": 0}}, {"targets.urgent"}),
    ("escalation", {"targets": {"critical": 5}}, {"targets.critical"}),
    ("escalation", {"levels": ["the_cleaner"]}, {"levels"}),
    ("escalation", {"levels": []}, {"levels"}),
    ("escalation", {"emergency_total": 20}, {"emergency_total"}),
    ("medication", {"countersign_hours": 0}, {"countersign_hours"}),
    ("medication", {"countersign_hours": "12"}, {"countersign_hours"}),
    ("medication", {"prn_benzodiazepines_on_monitored": "yes"}, {"prn_benzodiazepines_on_monitored"}),
    ("medication", {"hold_consciousness": ["A"]}, {"hold_consciousness"}),
    ("medication", {"hold_respiration_at_or_below": 40}, {"hold_respiration_at_or_below"}),
    ("medication", {"max_dose": 1}, {"max_dose"}),
    ("competence", {"sadq_decline_above": 35}, {"sadq_decline_above"}),  # loosening
    ("nursing", {"anything": 1}, {"section"}),
    ("monitoring", {}, {"values"}),
    # every bad key is named at once
    ("monitoring", {"bands": {"ciwa-ar": bands((0, 7), (8, 67), codes=("low", "high")),
                              "cows": bands((0, 4), (5, 12), (13, 24), (25, 36), (37, 48),
                                            codes=("none", "mild", "moderate", "moderately_severe", "severe"))},
                    "intervals": {"cows": {"extreme": 30}}, "colour": "red"},
     {"bands.ciwa-ar", "intervals.cows.extreme", "colour"}),
]


@pytest.mark.parametrize("section, values, named", REFUSED,
                         ids=[f"{i}-{s}-{'+'.join(sorted(n))}" for i, (s, _, n) in enumerate(REFUSED)])
def test_a_protocol_that_would_fail_or_mislead_is_refused(app, ward, section, values, named):
    """HAZ-037: a value the scales cannot use is refused, naming each key; nothing stored."""
    before = row_counts(app)
    body = assert_problem(adopt(ward.manager, section, values), 422, "protocol-invalid")
    assert set(body["errors"]) == named, body["errors"]
    assert all(body["errors"][key] for key in named)
    assert row_counts(app)["unit_protocols"] == before["unit_protocols"] == 0
    assert row_counts(app)["protocol_proposals"] == before["protocol_proposals"] == 0
    assert row_counts(app)["audit_events"] == before["audit_events"]


def test_the_service_refuses_renamed_bands_so_recording_never_fails(app, ward, clock):
    """HAZ-037: renamed bands never reach the store, so recording keeps working."""
    # The review's 500: renamed bands stored through the service made every CIWA-Ar a crash.
    from unit.errors import ProtocolInvalid
    from unit.models import Staff
    from unit.protocol import update_protocol

    with app.app_context():
        manager, lead = (db.session.scalars(sa.select(Staff).where(Staff.username == ward.usernames[role])).one()
                         for role in ("manager", "clinical_lead"))
        with pytest.raises(ProtocolInvalid) as refused:
            update_protocol(manager, section="monitoring",
                            values={"bands": {"ciwa-ar": bands((0, 9), (10, 67), codes=("low", "high"))}},
                            reason="Renamed", approved_by=lead, now=clock())
    assert set(refused.value.errors) == {"bands.ciwa-ar"}
    admission = ward.admit()
    reply = observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(12))
    assert (reply["total"], reply["band"]) == (12, "moderate")


def test_only_a_manager_proposes_a_protocol_and_a_key_is_required(app, ward):
    for role in ("nurse", "doctor", "gp", "inspector", "clinical_lead"):
        assert_problem(adopt(getattr(ward, role), "monitoring", {"not_done_retry_minutes": 20}), 403)
    assert_problem(adopt(ward.manager, "monitoring", {"not_done_retry_minutes": 20}, key=""), 400,
                   "idempotency-key-missing")
    assert row_counts(app)["unit_protocols"] == row_counts(app)["protocol_proposals"] == 0


# --- a unit with its own bands ---------------------------------------------------------------

def test_a_unit_records_schedules_and_escalates_by_its_own_ciwa_bands(app, ward, clock):
    adopted(ward, "monitoring", {"bands": {"ciwa-ar": CIWA_OWN},
                                         "intervals": {"ciwa-ar": {"severe": 30}}})
    adopted(ward, "escalation", {"ciwa_emergency_total": 25})
    admission = ward.admit()
    aid = admission["id"]

    # 9: moderate by default, minimal here: every 4 hours, nothing raised.
    reply = observe(ward.nurse, aid, "ciwa-ar", ciwa(9))
    assert (reply["band"], reply["interval_minutes"], reply["escalation"]) == ("minimal", 240, None)
    # 17: severe by default (urgent), moderate here: every 2 hours, nothing raised.
    clock.advance(minutes=10)
    reply = observe(ward.nurse, aid, "ciwa-ar", ciwa(17))
    assert (reply["band"], reply["interval_minutes"], reply["escalation"]) == ("moderate", 120, None)
    # 22: severe here, under the unit's emergency total of 25 (an emergency by default at 20).
    clock.advance(minutes=10)
    reply = observe(ward.nurse, aid, "ciwa-ar", ciwa(22))
    assert (reply["band"], reply["interval_minutes"]) == ("severe", 30)  # the unit's own interval
    escalation = reply["escalation"]
    assert (escalation["severity"], escalation["target_minutes"]) == ("urgent", 30)
    assert escalation["reason"] == "CIWA-Ar 22: severe withdrawal (19 or more)"
    # 25: the unit's emergency threshold.
    clock.advance(minutes=10)
    reply = observe(ward.nurse, aid, "ciwa-ar", ciwa(25))
    assert reply["escalation"]["severity"] == "emergency"
    assert reply["escalation"]["reason"] == "CIWA-Ar 25: 25 or more, consider transfer"
    assert reply["escalation"]["call_999"] is True

    schedules = ward.nurse.get(f"/api/v1/admissions/{aid}/schedules").get_json()
    ciwa_schedule = next(s for s in schedules if s["scale"] == "ciwa-ar")
    assert ciwa_schedule["interval_minutes"] == 30


def test_reasons_state_the_units_own_news2_and_cows_ranges(app, ward):
    adopted(ward, "monitoring", {"bands": {"news2": NEWS2_OWN}})
    adopted(ward, "monitoring", {"bands": {"cows": [
        {"code": "none", "low": 0, "high": 4}, {"code": "mild", "low": 5, "high": 12},
        {"code": "moderate", "low": 13, "high": 20}, {"code": "moderately_severe", "low": 21, "high": 30},
        {"code": "severe", "low": 31, "high": 48}]}})
    aid = ward.admit(substances=("opioids",))["id"]
    reply = observe(ward.nurse, aid, "news2", NEWS2_HIGH_7)  # high by default, medium here
    assert (reply["total"], reply["band"]) == (7, "medium")
    assert reply["escalation"]["reason"] == "NEWS2 7: medium risk (5-7)"
    reply = observe(ward.nurse, aid, "news2", NEWS2_HIGH_14)
    assert reply["escalation"]["reason"] == "NEWS2 14: high risk (8 or more)"
    reply = observe(ward.nurse, aid, "cows", cows(22))  # moderate by default
    assert reply["band"] == "moderately_severe"
    assert reply["escalation"]["reason"] == "COWS 22: moderately severe withdrawal (21-30)"
    reply = observe(ward.nurse, aid, "cows", cows(31))
    assert reply["escalation"]["reason"] == "COWS 31: severe withdrawal (31 or more)"


def test_default_reasons_state_the_clinical_md_ranges(ward):
    aid = ward.admit()["id"]
    assert observe(ward.nurse, aid, "ciwa-ar", ciwa(16))["escalation"]["reason"] == \
        "CIWA-Ar 16: severe withdrawal (16 or more)"
    assert observe(ward.nurse, aid, "ciwa-ar", ciwa(20))["escalation"]["reason"] == \
        "CIWA-Ar 20: 20 or more, consider transfer"
    assert observe(ward.nurse, aid, "news2", NEWS2_HIGH_7)["escalation"]["reason"] == \
        "NEWS2 7: high risk (7 or more)"


def test_a_partial_target_keeps_the_other_defaults(app, ward):
    body = adopted(ward, "escalation", {"targets": {"urgent": 20}})
    assert body["sections"]["escalation"]["targets"] == {"emergency": 5, "urgent": 20, "soon": 120}
    aid = ward.admit()["id"]
    assert observe(ward.nurse, aid, "ciwa-ar", ciwa(17))["escalation"]["target_minutes"] == 20
    assert observe(ward.nurse, aid, "ciwa-ar", ciwa(30))["escalation"]["target_minutes"] == 5


# --- the API ---------------------------------------------------------------------------------

def test_the_protocol_api_round_trip(app, ward, clock):
    from tests.conftest import audit_rows

    first = ward.inspector.get("/api/v1/unit/protocol")
    assert first.status_code == 200
    body = first.get_json()
    assert (body["version"], body["reason"], body["created_by"], body["own"]) == (None, None, None, {})
    assert set(body["sections"]) == {"competence", "escalation", "medication", "monitoring"}
    assert body["sections"]["monitoring"]["bands"]["ciwa-ar"] == CIWA_DEFAULT
    assert body["sections"]["monitoring"]["not_done_retry_minutes"] == 30
    assert body["sections"]["escalation"]["ciwa_emergency_total"] == 20
    assert body["sections"]["escalation"]["targets"] == {"emergency": 5, "urgent": 30, "soon": 120}
    assert body["sections"]["medication"]["countersign_hours"] == 24
    assert body["sections"]["competence"]["sadq_decline_above"] == 30

    values = {"bands": {"ciwa-ar": [{k: v for k, v in band.items() if k != "label"} for band in CIWA_OWN]}}
    response = adopt(ward.manager, "monitoring", values, reason="Clinical lead sign-off 2024-05", key="p-1")
    assert response.status_code == 202, response.get_json()
    proposal = response.get_json()["proposal"]
    response = ward.clinical_lead.post(f"/api/v1/unit/protocol/proposals/{proposal['id']}/approve",
                                       headers={"Idempotency-Key": "a-1"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["version"] == 1 and body["reason"] == "Clinical lead sign-off 2024-05"
    assert body["created_by"]["username"] == ward.usernames["manager"]
    assert body["approved_by"]["username"] == ward.usernames["clinical_lead"]
    assert body["created_at"]
    assert body["sections"]["monitoring"]["bands"]["ciwa-ar"] == CIWA_OWN  # labels filled in
    assert body["sections"]["monitoring"]["bands"]["cows"][0] == \
        {"code": "none", "label": "No active withdrawal", "low": 0, "high": 4}
    assert body["own"] == {"monitoring": {"bands": {"ciwa-ar": CIWA_OWN}}}

    # A retry of either replays the first reply and writes nothing.
    before = row_counts(app)
    retry = adopt(ward.manager, "monitoring", values, reason="Clinical lead sign-off 2024-05", key="p-1")
    assert retry.status_code == 202 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["proposal"] == proposal
    retry = ward.clinical_lead.post(f"/api/v1/unit/protocol/proposals/{proposal['id']}/approve",
                                    headers={"Idempotency-Key": "a-1"})
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == body
    assert row_counts(app) == before

    # Another scale's bands leave these alone; every role reads the result.
    adopted(ward, "monitoring", {"bands": {"news2": NEWS2_OWN}})
    for role in ("nurse", "doctor", "gp", "manager", "inspector", "clinical_lead"):
        seen = getattr(ward, role).get("/api/v1/unit/protocol").get_json()
        assert seen["version"] == 2
        assert seen["sections"]["monitoring"]["bands"]["ciwa-ar"] == CIWA_OWN
        assert seen["sections"]["monitoring"]["bands"]["news2"] == NEWS2_OWN
    # GET /scales shows the unit's bands too.
    scales = {s["code"]: s for s in ward.nurse.get("/api/v1/scales").get_json()}
    assert scales["ciwa-ar"]["bands"] == CIWA_OWN
    actions = [row[1:] for row in audit_rows(app, ward.code)]
    assert actions.count(("protocol.propose", "manager")) == 2
    assert actions.count(("protocol.update", "clinical_lead")) == 2


# --- the command line ------------------------------------------------------------------------

def test_the_protocol_cli_round_trip(app, ward, tmp_path):
    runner = app.test_cli_runner()
    path = tmp_path / "bands.json"
    path.write_text(json.dumps({"bands": {"ciwa-ar": CIWA_OWN}, "intervals": {"ciwa-ar": {"severe": 30}}}))
    result = runner.invoke(args=["unit", "protocol", ward.code, "--section", "monitoring",
                                 "--file", str(path), "--reason", "Adopted by the clinical lead",
                                 "--approved-by", ward.usernames["clinical_lead"]])
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output and '"high": 9' in result.output
    body = ward.nurse.get("/api/v1/unit/protocol").get_json()
    assert body["sections"]["monitoring"]["bands"]["ciwa-ar"] == CIWA_OWN
    assert body["reason"] == "Adopted by the clinical lead"
    assert body["created_by"]["username"] == ward.usernames["manager"]
    assert body["approved_by"]["username"] == ward.usernames["clinical_lead"]
    aid = ward.admit()["id"]
    reply = observe(ward.nurse, aid, "ciwa-ar", ciwa(19))
    assert (reply["band"], reply["interval_minutes"]) == ("severe", 30)

    before = row_counts(app)
    path.write_text(json.dumps({"bands": {"ciwa-ar": bands((0, 9), (10, 67), codes=("low", "high"))}}))
    result = runner.invoke(args=["unit", "protocol", ward.code, "--section", "monitoring",
                                 "--file", str(path), "--reason", "Renamed",
                                 "--approved-by", ward.usernames["clinical_lead"]])
    assert result.exit_code == 2 and "bands.ciwa-ar" in result.output
    path.write_text("{not json")
    result = runner.invoke(args=["unit", "protocol", ward.code, "--section", "monitoring",
                                 "--file", str(path), "--reason", "Broken"])
    assert result.exit_code == 2 and "not JSON" in result.output
    result = runner.invoke(args=["unit", "protocol", "NOWHERE", "--section", "monitoring",
                                 "--file", str(path), "--reason", "No unit"])
    assert result.exit_code == 2
    assert row_counts(app) == before


# --- the tablet form -------------------------------------------------------------------------

DATA_SCALE = re.compile(r"data-scale='([^']*)'")


def form_scale(client, admission_id: int, scale: str) -> dict:
    response = client.get(f"/admissions/{admission_id}/observe/{scale}")
    assert response.status_code == 200
    return json.loads(html.unescape(DATA_SCALE.search(response.get_data(as_text=True)).group(1)))


def test_the_form_scores_live_with_the_units_bands(app, ward):
    aid = ward.admit()["id"]
    assert form_scale(ward.nurse, aid, "ciwa-ar")["bands"] == CIWA_DEFAULT
    adopted(ward, "monitoring", {"bands": {"ciwa-ar": CIWA_OWN}})
    shown = form_scale(ward.nurse, aid, "ciwa-ar")
    assert shown["bands"] == CIWA_OWN
    # What observe.js's bandFor computes from those bands is what the server saves.
    live = next(b["code"] for b in shown["bands"] if b["low"] <= 9 <= b["high"])
    assert live == observe(ward.nurse, aid, "ciwa-ar", ciwa(9))["band"] == "minimal"
    assert [i["key"] for i in shown["items"]][0] == "nausea_vomiting"
