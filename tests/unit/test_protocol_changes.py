"""Protocol changes with a second signature, inside the safety envelope (issue 14,
docs/clinical-rules.md s2, s3, s5): a manager proposes, the clinical lead approves or rejects,
and no unit's protocol crosses a safety bound.

Bounds and defaults are written out here by hand from docs/clinical-rules.md, never read from
the code under test.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import adopt_protocol, audit_rows, propose_protocol
from tests.unit.helpers import assert_problem, row_counts, writes_between


class SignedIn:
    """A unit's team with every role signed in once (so that a test's row counts see only
    what its requests write)."""

    def __init__(self, team) -> None:
        self.code, self.usernames = team.code, team.usernames
        self.clients = team.clients()

    def client(self, role: str):
        return self.clients[role]


@pytest.fixture
def unit(app, team):
    """A medically monitored unit with a member of staff of every role (clinical lead too),
    signed in for days (the tests move the clock)."""
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=30), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=60))
    return SignedIn(team("medically_monitored"))


def proposed(unit, section: str, values: dict, reason: str = "Local protocol") -> dict:
    response = propose_protocol(unit.client("manager"), section, values, reason)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["proposal"]


def approve(client, proposal_id: int):
    return client.post(f"/api/v1/unit/protocol/proposals/{proposal_id}/approve")


def reject(client, proposal_id: int, reason: str | None = "Not safe for our staffing"):
    return client.post(f"/api/v1/unit/protocol/proposals/{proposal_id}/reject",
                       json={} if reason is None else {"reason": reason})


# --- the second signature -----------------------------------------------------------------------

def test_a_proposal_changes_nothing_until_the_clinical_lead_approves(app, unit):
    """HAZ-031: a manager's proposal is not in force; the clinical lead's approval puts it in
    force as a new version naming both."""
    manager, lead, nurse = unit.client("manager"), unit.client("clinical_lead"), unit.client("nurse")
    proposal = proposed(unit, "escalation", {"targets": {"urgent": 20}}, "Faster urgent reviews")
    assert {key: proposal[key] for key in ("status", "section", "values", "reason")} == {
        "status": "proposed", "section": "escalation", "values": {"targets": {"urgent": 20}},
        "reason": "Faster urgent reviews"}
    assert proposal["proposed_by"]["username"] == unit.usernames["manager"]
    assert proposal["decided_by"] is None and proposal["version"] is None
    in_force = nurse.get("/api/v1/unit/protocol").get_json()
    assert in_force["version"] is None
    assert in_force["sections"]["escalation"]["targets"] == {"emergency": 5, "urgent": 30, "soon": 120}
    assert row_counts(app)["unit_protocols"] == 0

    listed = nurse.get("/api/v1/unit/protocol/proposals?status=proposed").get_json()
    assert [p["id"] for p in listed] == [proposal["id"]]
    assert manager.get("/api/v1/unit/protocol/proposals?status=approved").get_json() == []

    response = approve(lead, proposal["id"])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["version"] == 1 and body["proposal_id"] == proposal["id"]
    assert body["reason"] == "Faster urgent reviews"
    assert body["proposed_by"]["username"] == body["created_by"]["username"] == unit.usernames["manager"]
    assert body["approved_by"]["username"] == unit.usernames["clinical_lead"]
    assert body["sections"]["escalation"]["targets"] == {"emergency": 5, "urgent": 20, "soon": 120}
    assert nurse.get("/api/v1/unit/protocol").get_json() == body
    decided = nurse.get(f"/api/v1/unit/protocol/proposals/{proposal['id']}").get_json()
    assert (decided["status"], decided["version"]) == ("approved", 1)
    assert decided["decided_by"]["username"] == unit.usernames["clinical_lead"]


@pytest.mark.parametrize("role", ["nurse", "doctor", "gp", "manager", "inspector"])
def test_only_the_clinical_lead_approves_or_rejects(app, unit, role):
    """HAZ-031: nobody but the clinical lead decides a proposal (the proposing manager included)."""
    proposal = proposed(unit, "monitoring", {"not_done_retry_minutes": 20})
    before = row_counts(app)
    assert_problem(approve(unit.client(role), proposal["id"]), 403)
    assert_problem(reject(unit.client(role), proposal["id"]), 403)
    assert writes_between(before, row_counts(app)) == {}


def test_a_proposal_is_decided_once(app, unit):
    """HAZ-031: approved or rejected, a proposal is never decided again (409 with its slug)."""
    lead = unit.client("clinical_lead")
    first, second = (proposed(unit, "monitoring", {"not_done_retry_minutes": n}) for n in (20, 25))
    assert approve(lead, first["id"]).status_code == 201
    assert reject(lead, second["id"]).status_code == 200
    before = row_counts(app)
    for response in (approve(lead, first["id"]), reject(lead, first["id"]),
                     approve(lead, second["id"]), reject(lead, second["id"])):
        body = assert_problem(response, 409, "protocol-proposal-decided")
        assert "decided once" in body["detail"]
    assert writes_between(before, row_counts(app)) == {}
    assert unit.client("nurse").get("/api/v1/unit/protocol").get_json()["version"] == 1


def test_the_proposer_cannot_approve_their_own(app, unit):
    """HAZ-031: a manager who has since become the clinical lead cannot approve their own
    proposal: the second signature is a second person's."""
    from unit.models import Staff

    proposal = proposed(unit, "monitoring", {"not_done_retry_minutes": 20})
    with app.app_context():
        staff = db.session.scalars(sa.select(Staff).where(Staff.username == unit.usernames["manager"])).one()
        staff.role = "clinical_lead"
        db.session.commit()
    before = row_counts(app)
    body = assert_problem(approve(unit.client("manager"), proposal["id"]), 403, "protocol-self-approval")
    assert "another clinician" in body["detail"]
    assert writes_between(before, row_counts(app)) == {}
    assert approve(unit.client("clinical_lead"), proposal["id"]).status_code == 201


def test_a_rejected_proposal_changes_nothing_and_keeps_its_reason(app, unit):
    """HAZ-031: a rejection needs a reason, is kept and audited, and changes nothing in force."""
    lead = unit.client("clinical_lead")
    proposal = proposed(unit, "monitoring", {"not_done_retry_minutes": 20})
    assert_problem(reject(lead, proposal["id"], reason=None), 422)
    response = reject(lead, proposal["id"], reason="Night staffing cannot keep to it")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()["proposal"]
    assert (body["status"], body["decision_reason"]) == ("rejected", "Night staffing cannot keep to it")
    assert body["decided_by"]["username"] == unit.usernames["clinical_lead"]
    assert unit.client("nurse").get("/api/v1/unit/protocol").get_json()["version"] is None
    assert audit_rows(app, unit.code)[-1][1:] == ("protocol.reject", "clinical_lead")


def test_the_services_refuse_an_approver_who_is_not_the_clinical_lead(app, unit, clock):
    """HAZ-031: the services check the approver too (the command line and any other caller,
    not only the API's role check): a doctor cannot approve or be named as approver."""
    from config.errors import Forbidden
    from unit.models import Staff
    from unit.protocol import approve_protocol_proposal, reject_protocol_proposal, update_protocol

    proposal = proposed(unit, "monitoring", {"not_done_retry_minutes": 20})
    before = row_counts(app)
    with app.app_context():
        manager, doctor = (db.session.scalars(sa.select(Staff).where(Staff.username == unit.usernames[role])).one()
                           for role in ("manager", "doctor"))
        with pytest.raises(Forbidden):
            approve_protocol_proposal(doctor, proposal["id"], now=clock())
        with pytest.raises(Forbidden):
            reject_protocol_proposal(doctor, proposal["id"], reason="Not mine to decide", now=clock())
        with pytest.raises(Forbidden):
            update_protocol(manager, section="monitoring", values={"not_done_retry_minutes": 25},
                            reason="Named a doctor", approved_by=doctor, now=clock())
    assert writes_between(before, row_counts(app)) == {}


def test_another_units_proposal_is_not_found(app, team, unit):
    """HAZ-031: a clinical lead decides only their own unit's proposals."""
    proposal = proposed(unit, "monitoring", {"not_done_retry_minutes": 20})
    other = SignedIn(team("medically_managed"))
    for response in (approve(other.client("clinical_lead"), proposal["id"]),
                     reject(other.client("clinical_lead"), proposal["id"]),
                     other.client("nurse").get(f"/api/v1/unit/protocol/proposals/{proposal['id']}"),
                     approve(other.client("clinical_lead"), 2**31 - 1)):
        assert_problem(response, 404, "protocol-proposal-not-found")
    assert other.client("nurse").get("/api/v1/unit/protocol/proposals").get_json() == []


def test_both_names_on_the_version_in_the_audit_and_on_the_report(app, unit, clock):
    """HAZ-031: who proposed and who approved each version, in the audit and the report."""
    from unit.models import AuditEvent

    manager, lead = unit.usernames["manager"], unit.usernames["clinical_lead"]
    adopt_protocol(unit.client("manager"), unit.client("clinical_lead"), "monitoring",
                   {"not_done_retry_minutes": 20}, "Busier nights")
    clock.advance(minutes=5)
    adopt_protocol(unit.client("manager"), unit.client("clinical_lead"), "escalation",
                   {"targets": {"soon": 90}}, "Missed checks seen sooner")
    actions = [row[1:] for row in audit_rows(app, unit.code)]
    assert actions[-4:] == [("protocol.propose", "manager"), ("protocol.update", "clinical_lead"),
                            ("protocol.propose", "manager"), ("protocol.update", "clinical_lead")]
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "protocol.update")
                                   .order_by(AuditEvent.id.desc())).first()
        assert (event.after["proposed_by"], event.after["approved_by"]) == (manager, lead)
        assert event.after["escalation"]["targets"]["soon"] == 90

    clock.advance(minutes=1)
    report = unit.client("inspector").get("/api/v1/audit/report").get_json()
    assert [(v["version"], v["sections"], v["reason"], v["proposed_by"], v["approved_by"])
            for v in report["protocol_versions"]] == [
        (1, ["monitoring"], "Busier nights", manager, lead),
        (2, ["escalation"], "Missed checks seen sooner", manager, lead)]
    table = unit.client("manager").get("/api/v1/audit/report?format=csv&table=protocol_versions")
    assert table.status_code == 200
    lines = table.get_data(as_text=True).splitlines()
    assert lines[0] == "version,in_force_from,sections,reason,proposed_by,approved_by"
    assert lines[2].endswith(f",escalation,Missed checks seen sooner,{manager},{lead}")


def test_a_version_in_force_before_the_period_is_on_the_report(app, unit, clock):
    """HAZ-031: the report names the version in force at the start of its period, and its
    approver."""
    adopt_protocol(unit.client("manager"), unit.client("clinical_lead"), "monitoring",
                   {"not_done_retry_minutes": 20}, "Busier nights")
    clock.advance(days=3)
    day = clock.now.date().isoformat()
    report = unit.client("manager").get(f"/api/v1/audit/report?from={day}&to={day}").get_json()
    [version] = report["protocol_versions"]
    assert (version["version"], version["in_force_at_start"], version["approved_by"]) == (
        1, True, unit.usernames["clinical_lead"])


# --- the safety envelope ------------------------------------------------------------------------

# (section, values, the key named, a bound it states) -- docs/clinical-rules.md s2, s3, s5.
OUTSIDE = [
    ("monitoring", {"intervals": {"news2": {"high": 31}}}, "intervals.news2.high", "at most 30 minutes"),
    ("monitoring", {"intervals": {"news2": {"medium": 61}}}, "intervals.news2.medium", "at most 60 minutes"),
    ("monitoring", {"intervals": {"news2": {"low-medium": 61}}}, "intervals.news2.low-medium",
     "at most 60 minutes"),
    ("monitoring", {"intervals": {"ciwa-ar": {"severe": 61}}}, "intervals.ciwa-ar.severe", "at most 60 minutes"),
    ("monitoring", {"intervals": {"cows": {"moderately_severe": 61}}}, "intervals.cows.moderately_severe",
     "at most 60 minutes"),
    ("monitoring", {"intervals": {"cows": {"severe": 61}}}, "intervals.cows.severe", "at most 60 minutes"),
    ("escalation", {"targets": {"emergency": 16}}, "targets.emergency", "at most 15 minutes"),
    ("escalation", {"targets": {"urgent": 61}}, "targets.urgent", "at most 60 minutes"),
    ("escalation", {"ciwa_emergency_total": 26}, "ciwa_emergency_total", "at most 25"),
    ("medication", {"hold_respiration_at_or_below": 7}, "hold_respiration_at_or_below",
     "no looser than the default: at least 8 breaths a minute"),
    ("medication", {"hold_consciousness": ["P", "U"]}, "hold_consciousness",
     "no looser than the default: must include V, P, U"),
]
# The same settings at their bound (or tighter): accepted.
AT_THE_BOUND = [
    ("monitoring", {"intervals": {"news2": {"high": 30, "medium": 60, "low-medium": 60}}}),
    ("monitoring", {"intervals": {"ciwa-ar": {"severe": 60}, "cows": {"moderately_severe": 60, "severe": 60}}}),
    ("escalation", {"targets": {"emergency": 15, "urgent": 60}, "ciwa_emergency_total": 25}),
    ("medication", {"hold_respiration_at_or_below": 10, "hold_consciousness": ["C", "V", "P", "U"]}),
]


@pytest.mark.parametrize("section, values, key, bound", OUTSIDE, ids=[case[2] for case in OUTSIDE])
def test_a_proposal_outside_the_envelope_is_refused_naming_the_key_and_its_bound(app, unit, section,
                                                                                values, key, bound):
    """HAZ-030: each safety bound refuses the proposal (422), naming the key and the bound."""
    before = row_counts(app)
    body = assert_problem(propose_protocol(unit.client("manager"), section, values), 422,
                          "protocol-outside-safety-envelope")
    assert set(body["errors"]) == {key}
    assert bound in body["errors"][key][0], body["errors"]
    assert key in body["detail"]
    assert writes_between(before, row_counts(app)) == {}


@pytest.mark.parametrize("section, values", AT_THE_BOUND, ids=[s for s, _ in AT_THE_BOUND])
def test_a_proposal_at_the_bound_is_accepted(app, unit, section, values):
    """HAZ-030: the bounds are inclusive, and tightening is always allowed."""
    body = adopt_protocol(unit.client("manager"), unit.client("clinical_lead"), section, values)
    assert body["own"][section]


LENGTHENING = [
    # a more severe band's interval longer than a milder band's (defaults: CIWA-Ar minimal 240,
    # moderate 120, severe 60; NEWS2 low 240, low-medium 60, medium 60, high 15)
    ({"ciwa-ar": {"moderate": 300}}, "intervals.ciwa-ar.moderate", "the interval for minimal"),
    ({"ciwa-ar": {"minimal": 90}}, "intervals.ciwa-ar.moderate", "At most 90 minutes"),
    ({"news2": {"low-medium": 45, "medium": 50}}, "intervals.news2.medium", "the interval for low-medium"),
    ({"gmaws": {"severe": 180}}, "intervals.gmaws.severe", "the interval for mild"),
]


@pytest.mark.parametrize("intervals, key, says", LENGTHENING, ids=[case[1] for case in LENGTHENING])
def test_intervals_never_lengthen_as_severity_rises(app, unit, intervals, key, says):
    """HAZ-030: docs/clinical-rules.md s2, a protocol whose intervals lengthen as severity rises
    is refused, naming the more severe band and the milder band's interval."""
    body = assert_problem(propose_protocol(unit.client("manager"), "monitoring", {"intervals": intervals}),
                          422, "protocol-outside-safety-envelope")
    assert key in body["errors"], body["errors"]
    assert says in body["errors"][key][0] and "never lengthen" in body["errors"][key][0]


def test_targets_never_lengthen_as_severity_rises(app, unit):
    """HAZ-030: an emergency is never given longer than an urgent escalation to be answered."""
    body = assert_problem(propose_protocol(unit.client("manager"), "escalation",
                                           {"targets": {"urgent": 4}}), 422,
                          "protocol-outside-safety-envelope")
    assert set(body["errors"]) == {"targets.emergency"}
    assert "At most 4 minutes, the urgent target" in body["errors"]["targets.emergency"][0]
    body = assert_problem(propose_protocol(unit.client("manager"), "escalation",
                                           {"targets": {"urgent": 150}}), 422,
                          "protocol-outside-safety-envelope")
    assert set(body["errors"]) == {"targets.urgent"}  # and over its own bound of 60
    assert len(body["errors"]["targets.urgent"]) == 2


def test_the_envelope_is_checked_again_at_approval(app, unit):
    """HAZ-030: two proposals each inside the envelope, together outside it: the second's
    approval is refused on the protocol then in force, and nothing changes."""
    lead = unit.client("clinical_lead")
    longer_minimal = proposed(unit, "monitoring", {"intervals": {"ciwa-ar": {"minimal": 150}}})
    longer_moderate = proposed(unit, "monitoring", {"intervals": {"ciwa-ar": {"moderate": 180}}})
    assert approve(lead, longer_moderate["id"]).status_code == 201
    before = row_counts(app)
    body = assert_problem(approve(lead, longer_minimal["id"]), 422, "protocol-outside-safety-envelope")
    assert set(body["errors"]) == {"intervals.ciwa-ar.moderate"}
    assert writes_between(before, row_counts(app)) == {}
    shown = unit.client("nurse").get(f"/api/v1/unit/protocol/proposals/{longer_minimal['id']}").get_json()
    assert shown["status"] == "proposed"  # still the lead's to reject


def test_an_observation_follows_the_approved_protocol_only(app, unit, admit):
    """HAZ-031: an observation is scheduled by what is in force, never by a proposal."""
    from tests.items import ciwa

    proposal = proposed(unit, "monitoring", {"intervals": {"ciwa-ar": {"severe": 30}}})
    nurse = unit.client("nurse")
    admission = admit(nurse, name="Ciwa Severe")

    def interval() -> int:
        reply = nurse.post(f"/api/v1/admissions/{admission['id']}/observations",
                           json={"scale": "ciwa-ar", "items": ciwa(18)})
        assert reply.status_code == 201, reply.get_json()
        return reply.get_json()["interval_minutes"]

    assert interval() == 60
    assert approve(unit.client("clinical_lead"), proposal["id"]).status_code == 201
    assert interval() == 30
