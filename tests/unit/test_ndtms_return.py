"""The commissioners' NDTMS-style return against a generated month: the episodes, their stays
and how they ended, the residents' consent and their return fields are drawn at random (a
fixed seed), made through the API, and the expected rows and counts are computed here from
that plan alone, never read from the code under test."""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.conftest import referral
from tests.medication.conftest import clock, make_ward  # noqa: F401 (fixtures)
from tests.unit.helpers import assert_problem
from unit.models import AuditEvent

LONDON = ZoneInfo("Europe/London")
MONTH = "2025-03"
MONTH_START = datetime(2025, 3, 1, 0, 0, tzinfo=timezone.utc)   # 00:00 GMT
MONTH_END = datetime(2025, 3, 31, 23, 0, tzinfo=timezone.utc)   # 1 April 00:00 BST
TAKEN_AT = datetime(2025, 4, 10, 9, 0, tzinfo=timezone.utc)
# Written out by hand from docs/returns/ndtms.md.
REASONS = {"completed": "treatment_completed", "transferred": "transferred_not_in_custody",
           "self-discharged": "incomplete_dropped_out",
           "withdrawn-by-unit": "incomplete_treatment_withdrawn_by_provider",
           "died": "incomplete_client_died", "other": None}
FULL = {"sex": "male", "gender_identity": "male", "ethnicity": "C", "local_authority": "E08000035",
        "postcode_district": "LS6", "accommodation_need": "no_housing_problem",
        "parental_status": "not_a_parent", "children_living_with": 0, "injecting_status": "never",
        "problem_substances": ["alcohol", "cocaine"], "referral_source": "gp",
        "referral_date": "2025-01-20", "first_contact_date": "2025-02-01"}
FIRST = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
LAST = ("Smith", "o'Neill", "Young", "Khan", "Price", "Lewis")


@dataclass
class Episode:
    name: str
    dob: str
    admitted_at: datetime
    discharge: str | None
    discharged_at: datetime | None
    consent: str | None  # given, refused, withdrawn, or None (never recorded)
    fields: dict
    admission_id: int = 0
    resident_id: int = 0


def plan(seed: int = 18) -> list[Episode]:
    rng = random.Random(seed)
    episodes = []
    for n in range(18):
        admitted = datetime(2025, 2, 1, 8, tzinfo=timezone.utc) + timedelta(hours=rng.randrange(0, 24 * 62))
        discharge = rng.choice([None, "completed", "completed", "self-discharged", "transferred",
                                "withdrawn-by-unit", "died", "other"])
        discharged = admitted + timedelta(hours=rng.randrange(6, 24 * 21)) if discharge else None
        fields = dict(FULL)
        if rng.random() < 0.35:
            for key in rng.sample(sorted(FULL), 2):
                del fields[key]
        episodes.append(Episode(f"{FIRST[n % 8]} {LAST[n % 6]}", f"19{60 + n}-0{1 + n % 9}-1{n % 9}",
                                admitted, discharge, discharged,
                                rng.choice(["given", "given", "given", "refused", "withdrawn", None]),
                                fields))
    # The edges of the month in the unit's time zone (GMT, then BST from 30 March).
    episodes.append(Episode("Iris Late", "1970-01-01", datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc),
                            None, None, "given", dict(FULL)))              # 1 April 00:30 BST: April
    episodes.append(Episode("Jon Early", "1971-01-01", datetime(2025, 2, 28, 23, 30, tzinfo=timezone.utc),
                            "completed", datetime(2025, 3, 1, 0, 10, tzinfo=timezone.utc), "given",
                            dict(FULL)))                                   # ends on 1 March
    episodes.append(Episode("Kit Before", "1972-01-01", datetime(2025, 2, 2, 10, tzinfo=timezone.utc),
                            "completed", datetime(2025, 2, 28, 23, 59, tzinfo=timezone.utc), "given",
                            dict(FULL)))                                   # ends in February
    return episodes


def make_month(ward, clock, episodes: list[Episode]) -> None:
    """Admit and discharge every planned episode at its time, then record the consents."""
    events = sorted([(e.admitted_at, 0, i) for i, e in enumerate(episodes)]
                    + [(e.discharged_at, 1, i) for i, e in enumerate(episodes) if e.discharged_at])
    for at, kind, index in events:
        clock.set(at)
        episode = episodes[index]
        if kind == 0:
            body = {**referral(name=episode.name, dob=episode.dob), "return_fields": episode.fields}
            response = ward.nurse.post("/api/v1/admissions", json=body)
            assert response.status_code == 201, response.get_json()
            episode.admission_id = response.get_json()["id"]
            episode.resident_id = response.get_json()["resident"]["id"]
        else:
            response = ward.nurse.post(f"/api/v1/admissions/{episode.admission_id}/discharge",
                                       json={"discharge_type": episode.discharge})
            assert response.status_code == 200, response.get_json()
    clock.set(TAKEN_AT - timedelta(hours=1))
    for episode in episodes:
        if episode.consent is None:
            continue
        decision = "refused" if episode.consent == "refused" else "given"
        response = ward.nurse.post(f"/api/v1/residents/{episode.resident_id}/consents",
                                   json={"recipient": "ndtms", "decision": decision})
        assert response.status_code == 201
        if episode.consent == "withdrawn":
            ward.nurse.post(f"/api/v1/consents/{response.get_json()['id']}/withdraw",
                            json={"reason": "Resident withdrew consent"})
    clock.set(TAKEN_AT)


def in_month(e: Episode) -> bool:
    return e.admitted_at < MONTH_END and (e.discharged_at is None or e.discharged_at >= MONTH_START)


def ended_in_month(e: Episode) -> bool:
    return e.discharged_at is not None and e.discharged_at < MONTH_END


def expected_row(e: Episode) -> dict:
    first, last = e.name.split()[0], e.name.split()[1]
    substances = e.fields.get("problem_substances", [])
    ended = ended_in_month(e)
    end_day = e.discharged_at.astimezone(LONDON).date().isoformat() if ended else None
    return {
        "episode_id": e.admission_id, "first_initial": first[0], "surname_initial": last[0].upper(),
        "date_of_birth": e.dob, "sex": e.fields.get("sex"), "gender_identity": e.fields.get("gender_identity"),
        "ethnicity": e.fields.get("ethnicity"), "local_authority": e.fields.get("local_authority"),
        "postcode_district": e.fields.get("postcode_district"), "consent_ndtms": "Y",
        "referral_source": e.fields.get("referral_source"), "referral_date": e.fields.get("referral_date"),
        "first_contact_date": e.fields.get("first_contact_date"),
        "substance_1": substances[0] if substances else None,
        "substance_2": substances[1] if len(substances) > 1 else None, "substance_3": None,
        "injecting_status": e.fields.get("injecting_status"),
        "accommodation_need": e.fields.get("accommodation_need"),
        "parental_status": e.fields.get("parental_status"),
        "children_living_with": e.fields.get("children_living_with"),
        "modality": "inpatient_detoxification",  # a medically managed unit
        "modality_start": e.admitted_at.astimezone(LONDON).date().isoformat(),
        "modality_end": end_day, "discharge_date": end_day,
        "discharge_reason": REASONS[e.discharge] if ended else None,
    }


@pytest.fixture
def month(app, make_ward, clock):
    clock.set(datetime(2025, 1, 31, 8, tzinfo=timezone.utc))
    ward = make_ward("medically_managed")
    app.config.update(SESSION_IDLE_TIMEOUT=timedelta(days=365), SESSION_ABSOLUTE_TIMEOUT=timedelta(days=365))
    episodes = plan()
    make_month(ward, clock, episodes)
    return ward, episodes


def test_the_return_has_one_row_per_consenting_episode_open_in_the_month(month):
    """HAZ-005: only residents whose consent to NDTMS is in force are identified."""
    ward, episodes = month
    response = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}")
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    expected = [expected_row(e) for e in sorted(episodes, key=lambda e: (e.admitted_at, e.admission_id))
                if in_month(e) and e.consent == "given"]
    assert report["rows"] == expected
    assert 3 <= len(expected) < len([e for e in episodes if in_month(e)])  # the plan tests something
    names = {e.admission_id: e.name for e in episodes}
    assert "Iris Late" not in {names[row["episode_id"]] for row in report["rows"]}
    assert "Jon Early" in {names[row["episode_id"]] for row in report["rows"]}
    assert "Kit Before" not in {names[row["episode_id"]] for row in report["rows"]}


def test_the_aggregate_counts_every_episode_whatever_the_consent(month):
    ward, episodes = month
    report = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}").get_json()
    open_ = [e for e in episodes if in_month(e)]
    ended = [e for e in open_ if ended_in_month(e)]
    withheld = [e for e in open_ if e.consent != "given"]
    assert report["aggregate"] == {
        "episodes": len(open_),
        "started": len([e for e in open_ if e.admitted_at >= MONTH_START]),
        "completed": len([e for e in ended if e.discharge == "completed"]),
        "transferred": len([e for e in ended if e.discharge == "transferred"]),
        "incomplete": {"incomplete_dropped_out": len([e for e in ended if e.discharge == "self-discharged"]),
                       "incomplete_treatment_withdrawn_by_provider":
                           len([e for e in ended if e.discharge == "withdrawn-by-unit"]),
                       "incomplete_client_died": len([e for e in ended if e.discharge == "died"])},
        "ended_unmapped": len([e for e in ended if e.discharge == "other"]),
        "open_at_month_end": len(open_) - len(ended),
        "identifiable": len(open_) - len(withheld),
        "withheld_consent": {"refused": len([e for e in withheld if e.consent == "refused"]),
                             "withdrawn": len([e for e in withheld if e.consent == "withdrawn"]),
                             "not_recorded": len([e for e in withheld if e.consent is None])},
    }


def test_the_check_names_what_is_missing_and_who_withheld_consent(month, app):
    ward, episodes = month
    check = ward.manager.get(f"/api/v1/returns/ndtms/check?month={MONTH}").get_json()
    assert "rows" not in check
    expected_missing = {}
    for e in episodes:
        if not (in_month(e) and e.consent == "given"):
            continue
        row = expected_row(e)
        required = ["first_initial", "surname_initial", "date_of_birth", "sex", "gender_identity",
                    "ethnicity", "local_authority", "postcode_district", "referral_source",
                    "referral_date", "first_contact_date", "substance_1", "injecting_status",
                    "accommodation_need", "parental_status", "children_living_with", "modality",
                    "modality_start"]
        if ended_in_month(e):
            required += ["modality_end", "discharge_date", "discharge_reason"]
        lacking = [name for name in required if row[name] in (None, "")]
        if lacking:
            expected_missing[e.admission_id] = lacking
    assert {m["episode_id"]: m["fields"] for m in check["check"]["missing"]} == expected_missing
    assert check["check"]["ready"] is (not expected_missing)
    assert {w["episode_id"]: w["consent"] for w in check["check"]["withheld_consent"]} == {
        e.admission_id: e.consent or "not_recorded" for e in episodes if in_month(e) and e.consent != "given"}
    with app.app_context():  # the check identifies nobody outside the unit: not a disclosure
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "returns.ndtms")) == 0


def test_taking_the_return_is_audited_and_the_csv_holds_the_same_rows(month, app):
    ward, episodes = month
    report = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}").get_json()
    response = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [{key: "" if value is None else str(value) for key, value in row.items()}
                    for row in report["rows"]]
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "returns.ndtms")).all()
        assert len(events) == 2
        assert events[0].after["episodes"] == [row["episode_id"] for row in report["rows"]]


def test_the_inspectors_report_shows_the_same_months_counts(month):
    ward, _episodes = month
    aggregate = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}").get_json()["aggregate"]
    report = ward.inspector.get("/api/v1/audit/report?from=2025-03-10&to=2025-04-05").get_json()
    months = {m["month"]: m for m in report["admissions"]["treatment_episodes"]}
    assert sorted(months) == ["2025-03", "2025-04"]
    march = months["2025-03"]
    assert {key: march[key] for key in ("episodes", "started", "completed", "transferred", "incomplete",
                                        "ended_unmapped", "open_at_month_end")} == \
        {key: aggregate[key] for key in ("episodes", "started", "completed", "transferred", "incomplete",
                                         "ended_unmapped", "open_at_month_end")}
    table = ward.inspector.get("/api/v1/audit/report?from=2025-03-10&to=2025-04-05&format=csv"
                               "&table=treatment_episodes").get_data(as_text=True)
    assert table.splitlines()[1].startswith(f"2025-03,{march['episodes']},{march['started']},")


def test_the_command_line_writes_the_csv_and_checks(month, app):
    ward, _episodes = month
    runner = app.test_cli_runner()
    result = runner.invoke(args=["returns", "ndtms", "--month", MONTH, "--unit", ward.code])
    assert result.exit_code == 0, result.output
    api = ward.manager.get(f"/api/v1/returns/ndtms?month={MONTH}&format=csv").get_data(as_text=True)
    assert result.stdout == api
    assert "without consent to NDTMS" in result.stderr
    check = runner.invoke(args=["returns", "ndtms", "--month", MONTH, "--unit", ward.code, "--check"])
    ready = ward.manager.get(f"/api/v1/returns/ndtms/check?month={MONTH}").get_json()["check"]["ready"]
    assert check.exit_code == (0 if ready else 1)
    assert check.stdout == ""
    bad = runner.invoke(args=["returns", "ndtms", "--month", "2025-13", "--unit", ward.code])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.stderr


@pytest.mark.parametrize("month_text", ["2025-3", "2025-13", "March", "2025-03-01", "", "0000-01", "9999-12"])
def test_a_bad_month_is_a_422(make_ward, clock, month_text):
    ward = make_ward("medically_managed")
    problem = assert_problem(ward.manager.get(f"/api/v1/returns/ndtms?month={month_text}"), 422)
    assert "month" in problem["errors"]


def test_a_month_not_begun_is_refused(make_ward, clock):
    ward = make_ward("medically_managed")
    following = (clock().date().replace(day=1) + timedelta(days=32)).strftime("%Y-%m")
    problem = assert_problem(ward.manager.get(f"/api/v1/returns/ndtms?month={following}"), 422,
                             "return-month-invalid")
    assert "not begun" in problem["detail"]


def test_a_month_under_way_is_returned_so_far(make_ward, clock):
    ward = make_ward("medically_managed")
    ward.admit(name="Now Here")
    report = ward.manager.get(f"/api/v1/returns/ndtms?month={clock().strftime('%Y-%m')}").get_json()
    assert report["aggregate"]["episodes"] == 1
    assert report["aggregate"]["withheld_consent"]["not_recorded"] == 1
    assert report["rows"] == []
