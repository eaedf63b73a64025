"""The report's exports: a ZIP of CSV tables, one CSV table, and the PDF (its text checked and
its first page rendered to a PNG for a person to look at)."""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest

from tests.report.conftest import PERIOD_QUERY, at, audit_event_count, iso, post, problem

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TABLES = {"model_history", "admissions", "treatment_episodes", "declined_referrals", "high_risk_admissions", "observations_by_scale",
          "observations_by_resident", "observations_by_shift", "worst_late_observations", "escalations",
          "escalation_breaches", "doses", "prn_per_resident", "safety_refusals", "uncountersigned_phone_orders",
          "cd_register", "protocol_versions", "doctor_overrides", "re_referrals", "incidents",
          "incidents_by_type_and_severity", "notifications_outstanding", "census_by_day"}


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def zipped(history, ward) -> dict[str, list[list[str]]]:
    response = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}&format=csv")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.testzip() is None
        return {name.removesuffix(".csv"): read_csv(archive.read(name).decode()) for name in archive.namelist()}


def test_csv_zip_holds_every_table(zipped):
    assert set(zipped) == TABLES


def test_csv_tables_hold_the_figures(zipped, history, ward):
    assert zipped["model_history"] == [
        ["model", "effective_at", "changed_by", "reason"],
        ["medically_monitored", iso(at(2, 12)), "", "Unit registered"],
        ["medically_managed", iso(at(3, 14)), ward.usernames["manager"], "On-site doctor employed from 14:00"]]
    admissions = dict(map(tuple, zipped["admissions"][1:]))
    assert zipped["admissions"][0] == ["measure", "value"]
    assert (admissions["admitted"], admissions["declined"], admissions["high_risk_admitted"]) == ("3", "1", "1")
    assert (admissions["declined: sadq_over_limit"], admissions["declined: seizure_history"]) == ("1", "1")
    assert zipped["declined_referrals"][0] == ["referral_id", "resident", "decided_at", "criteria",
                                               "recommended_setting"]
    assert zipped["declined_referrals"][1][1:] == [
        "Dee Declined", iso(at(3, 8, 5)),
        "SADQ over 30; History of epilepsy or withdrawal seizures; Recommended setting: hospital", "hospital"]
    assert zipped["high_risk_admissions"] == [
        ["admission_id", "referral_id", "resident", "decided_at", "unit_model", "criteria", "recommended_setting"],
        [str(history.ids["cara"]), zipped["high_risk_admissions"][1][1], "Cara Cole", iso(at(3, 14, 30)),
         "medically_managed", "SADQ over 30; Over 30 units a day", "medically_managed"]]
    assert zipped["uncountersigned_phone_orders"] == [
        ["order_id", "resident", "drug", "prescriber", "ordered_at", "deadline", "countersigned_at"],
        [str(history.orders["never_countersigned"]), "Ann Abbott", "chlordiazepoxide", ward.usernames["gp"],
         iso(at(3, 12, 30)), iso(at(4, 12, 30)), ""],
        [str(history.orders["countersigned_late"]), "Cara Cole", "chlordiazepoxide", ward.usernames["doctor"],
         iso(at(3, 14, 35)), iso(at(4, 14, 35)), iso(at(4, 15))]]
    assert zipped["doses"] == [["drug", "outcome", "doses", "mg"], ["chlordiazepoxide", "given", "3", "70.0"],
                               ["chlordiazepoxide", "refused", "1", "20.0"]]
    assert zipped["observations_by_scale"][0][:5] == ["scale", "due", "on_time", "late", "missed"]
    assert [row[:5] for row in zipped["observations_by_scale"][1:]] == [["ciwa-ar", "5", "3", "1", "1"],
                                                                        ["news2", "3", "2", "1", "0"]]
    escalations = dict(map(tuple, zipped["escalations"][1:]))
    assert (escalations["total"], escalations["breaches"], escalations["acknowledge_minutes_median"],
            escalations["route: visiting_gp"], escalations["route: on_site_doctor"]) == ("4", "1", "8.0", "2", "1")
    assert zipped["escalation_breaches"][1][:3] == [str(history.escalations["breach"]), "emergency", "Seizure"]
    assert zipped["cd_register"][1] == ["chlordiazepoxide", "500.0", "200.0", "70.0", "70.0", "630.0", "True", "1"]
    assert zipped["safety_refusals"] == [["check", "count"], ["too_soon", "1"]]


def test_one_table_as_csv(history, ward):
    response = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}&format=csv&table=high_risk_admissions")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "high_risk_admissions.csv" in response.headers["Content-Disposition"]
    rows = read_csv(response.get_data(as_text=True))
    assert rows[0][0] == "admission_id" and [r[2] for r in rows[1:]] == ["Cara Cole"]


def test_csv_cells_cannot_hold_a_formula(ward, clock):
    """Issue 15 (CSV injection): text a member of staff typed that a spreadsheet would run as a
    formula is written with a leading single quote, in every table; numbers stay numbers."""
    from decimal import Decimal

    from unit.report import to_csv

    evil = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)",
            "\t=1+1", "\r=1+1"]
    rows = read_csv(to_csv(["=header", "n"], [[text, -20.0] for text in evil] + [["plain", -3], ["ok=1", Decimal("-1.5")]]))
    assert rows[0] == ["'=header", "n"]
    assert [row[0] for row in rows[1:]] == ["'" + text for text in evil] + ["plain", "ok=1"]
    assert [row[1] for row in rows[1:]] == ["-20.0"] * len(evil) + ["-3", "-1.5"]
    # Through the export: a reason typed by a manager, in the model_history table.
    clock.set(at(3, 9, 0))
    post(ward.manager, "/api/v1/unit/model", {"model": "medically_managed", "reason": "=1+2 new doctor",
                                              "effective_at": iso(at(3, 14))})
    response = ward.manager.get(f"/api/v1/audit/report?{PERIOD_QUERY}&format=csv&table=model_history")
    assert response.status_code == 200
    assert ["medically_managed", iso(at(3, 14)), ward.usernames["manager"], "'=1+2 new doctor"] in \
        read_csv(response.get_data(as_text=True))


def test_an_unknown_table_is_a_422_problem(ward):
    body = problem(ward.manager.get("/api/v1/audit/report?format=csv&table=passwords"), 422)
    assert "table" in body["errors"]
    assert "uncountersigned_phone_orders" in body["errors"]["table"][0]   # it names the tables


# --- the PDF --------------------------------------------------------------------------------

def pdf_of(client, query: str = PERIOD_QUERY) -> bytes:
    response = client.get(f"/api/v1/audit/report?{query}&format=pdf")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    return response.data


def page_texts(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def render_first_page(data: bytes, name: str) -> Path:
    """The PDF's first page as a PNG under artifacts/screenshots/, for a person to look at."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        image = document[0].render(scale=1.6).to_pil()
    finally:
        document.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    image.save(path)
    return path


def test_pdf_first_page_names_unit_period_time_and_chain(history, ward):
    events = audit_event_count(ward.app, ward.code)
    data = pdf_of(ward.manager)
    pages = page_texts(data)
    first = pages[0]
    assert "Harbour House" in first and f"({ward.code})" in first
    assert "3 Mar 2025 00:00 to 5 Mar 2025 00:00 (Europe/London)" in first       # the period, local
    assert f"5 Mar 2025 00:30 (Europe/London) by {ward.usernames['manager']}" in first  # generated
    assert f"Audit chain: VERIFIED ({events} events)" in first
    assert "at the end of the period: medically managed" in first
    whole = " ".join(pages)
    for words in ("Dee Declined", "SADQ over 30; History of epilepsy or withdrawal seizures",
                  "High-risk admissions", "Cara Cole", "SADQ over 30; Over 30 units a day",
                  "Phone orders not countersigned in time", "4 Mar 2025 12:30", "4 Mar 2025 15:00",
                  "Escalation breaches", "3 Mar 2025 10:30"):
        assert words in whole, words

    path = render_first_page(data, "report-first-page.png")
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        assert height > width > 800                      # A4 portrait
        # Something is drawn on the page (not a blank render).
        assert image.convert("L").getextrema()[0] < 100


def test_pdf_is_rendered_for_an_empty_period_too(ward):
    data = pdf_of(ward.manager, "from=2025-03-02&to=2025-03-02")
    first = page_texts(data)[0]
    assert "Audit chain: VERIFIED" in first
    render_first_page(data, "report-first-page-empty.png")
