"""The controlled-drug register (Misuse of Drugs Regulations 2001, regs 19-20; docs/clinical-rules.md s5):
a running balance through receipts, doses given and witnessed corrections; entries never
altered; stock checks with a witness, and a discrepancy notified to the managers."""
from __future__ import annotations

import sqlalchemy as sa

from config.extensions import db
from monitoring.outbox import OutboxMessage
from medication.models import CDRegisterEntry
from tests.medication.helpers import (
    assert_problem,
    ciwa,
    count,
    cows,
    give,
    key,
    observe,
    order,
    post,
    prn_chlordiazepoxide,
    rows,
)
from unit.models import AuditEvent

METHADONE = {"kind": "induction", "drug": "methadone", "dose_mg": 20, "route": "oral",
             "min_interval_minutes": 1440, "trigger": {"scale": "cows", "min_total": 8}}


def entry(client, drug: str, body: dict, idempotency_key: str | None = None):
    return post(client, f"/api/v1/cd-register/{drug}/entries", body, idempotency_key)


def stock_check(client, drug: str, body: dict):
    return post(client, f"/api/v1/cd-register/{drug}/stock-checks", body)


def register(client, drug: str) -> dict:
    response = client.get(f"/api/v1/cd-register/{drug}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def receive(ward, drug: str, amount: float, supplier: str = "Alliance Healthcare", **kw) -> dict:
    response = entry(ward.nurse, drug, {"kind": "receipt", "amount_mg": amount, "supplier": supplier, **kw})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_balance_through_receipts_doses_and_corrections(ward, clock):
    assert register(ward.nurse, "methadone")["balance_mg"] == 0

    first = receive(ward, "methadone", 500, reference="Invoice 4471")
    assert (first["seq"], first["kind"], first["amount_mg"], first["balance_mg"]) == (1, "receipt", 500, 500)
    assert first["supplier"] == "Alliance Healthcare" and first["recorded_by"] == ward.usernames["nurse"]

    admission = ward.admit(substances=("opioids",))
    methadone = order(ward.doctor, admission["id"], METHADONE)
    observe(ward.nurse, admission["id"], "cows", cows(12))
    dose = give(ward.nurse, methadone["id"], 20, witness=ward.witness())
    assert dose.status_code == 201, dose.get_json()

    clock.advance(hours=1)
    receive(ward, "methadone", 250, supplier="Phoenix")
    correction = entry(ward.nurse, "methadone", {
        "kind": "correction", "amount_mg": -5, "witness": ward.witness(), "corrects_id": first["id"],
        "note": "Receipt 4471 was 495 mg: bottle short-filled"})
    assert correction.status_code == 201, correction.get_json()
    assert correction.get_json()["corrects_id"] == first["id"]
    returned = entry(ward.nurse, "methadone", {"kind": "return", "amount_mg": 100, "witness": ward.witness("doctor"),
                                               "reference": "Returned to pharmacy"})
    assert returned.status_code == 201 and returned.get_json()["amount_mg"] == -100
    destroyed = entry(ward.nurse, "methadone", {"kind": "destruction", "amount_mg": 25,
                                                "witness": ward.witness("manager"), "note": "Spilt dose"})
    assert destroyed.status_code == 201 and destroyed.get_json()["amount_mg"] == -25

    book = register(ward.inspector, "methadone")
    assert book["drug"] == "methadone" and book["cd_schedule"] == 2 and book["name"] == "Methadone"
    # 500 - 20 + 250 - 5 - 100 - 25
    assert book["balance_mg"] == 600
    assert [(e["seq"], e["kind"], e["amount_mg"], e["balance_mg"]) for e in book["entries"]] == [
        (1, "receipt", 500, 500), (2, "administration", -20, 480), (3, "receipt", 250, 730),
        (4, "correction", -5, 725), (5, "return", -100, 625), (6, "destruction", -25, 600)]
    administration = book["entries"][1]
    assert administration["administration_id"] == dose.get_json()["id"]
    assert administration["admission_id"] == admission["id"]
    assert administration["reference"] == f"eMAR {dose.get_json()['id']}"
    assert administration["witness"] == ward.usernames["nurse2"]
    # The corrected receipt itself is untouched: corrections are new dated entries.
    assert book["entries"][0] == first


def test_doses_of_every_register_drug_are_appended(ward):
    receive(ward, "chlordiazepoxide", 1000)
    admission = ward.admit()
    prn = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
    assert give(ward.nurse, prn["id"], 20).status_code == 201
    book = register(ward.nurse, "chlordiazepoxide")
    assert book["balance_mg"] == 980 and book["cd_schedule"] == 4
    assert [e["kind"] for e in book["entries"]] == ["receipt", "administration"]
    # Not given is not taken from stock.
    assert give(ward.nurse, prn["id"], 20, outcome="refused", reason="resident_refused").status_code == 201
    assert register(ward.nurse, "chlordiazepoxide")["balance_mg"] == 980


def test_a_dose_given_with_no_stock_shows_a_negative_balance(ward):
    # A dose given is never refused for paperwork; the register shows the hole to investigate.
    admission = ward.admit()
    prn = order(ward.doctor, admission["id"], prn_chlordiazepoxide())
    observe(ward.nurse, admission["id"], "ciwa-ar", ciwa(10))
    assert give(ward.nurse, prn["id"], 20).status_code == 201
    assert register(ward.nurse, "chlordiazepoxide")["balance_mg"] == -20
    page = ward.nurse.get("/cd-register/chlordiazepoxide").get_data(as_text=True)
    assert 'badge danger">Balance -20 mg' in page


def test_receipt_needs_a_positive_amount_and_the_supplier(ward):
    problem = assert_problem(entry(ward.nurse, "methadone", {"kind": "receipt", "amount_mg": 100}), 422,
                             "cd-register-invalid")
    assert problem["errors"] == {"supplier": ["Required."]}
    problem = assert_problem(entry(ward.nurse, "methadone", {"kind": "receipt", "amount_mg": 0, "supplier": "X"}),
                             422, "cd-register-invalid")
    assert problem["errors"] == {"amount_mg": ["Required."]}
    assert count(ward.app, CDRegisterEntry) == 0


def test_returns_destructions_and_corrections_are_witnessed(ward):
    receive(ward, "methadone", 100)
    for kind in ("return", "destruction", "correction"):
        body = {"kind": kind, "amount_mg": -10 if kind == "correction" else 10, "note": "count"}
        assert_problem(entry(ward.nurse, "methadone", body), 422, "witness-invalid")
        for witness, words in ((ward.witness("nurse"), "cannot be the person"),
                               (ward.witness("inspector"), "Witness not accepted"),
                               (ward.witness(password="not-the-password"), "Witness not accepted")):
            problem = assert_problem(entry(ward.nurse, "methadone", {**body, "witness": witness}), 422,
                                     "witness-invalid")
            assert words in problem["detail"]
    assert count(ward.app, CDRegisterEntry) == 1


def test_a_correction_needs_its_reason_and_an_entry_of_this_register(ward):
    first = receive(ward, "methadone", 100)
    other = receive(ward, "buprenorphine", 56)
    problem = assert_problem(entry(ward.nurse, "methadone", {"kind": "correction", "amount_mg": 5,
                                                             "witness": ward.witness()}), 422)
    assert problem["errors"] == {"note": ["Required."]}
    problem = assert_problem(entry(ward.nurse, "methadone", {"kind": "correction", "amount_mg": 5,
                                                             "witness": ward.witness(), "note": "miscount",
                                                             "corrects_id": other["id"]}), 422)
    assert "corrects_id" in problem["errors"]
    ok = entry(ward.nurse, "methadone", {"kind": "correction", "amount_mg": 5, "witness": ward.witness(),
                                         "note": "miscount", "corrects_id": first["id"]})
    assert ok.status_code == 201 and ok.get_json()["balance_mg"] == 105


def test_stock_cannot_leave_a_register_it_is_not_in(ward):
    receive(ward, "methadone", 50)
    problem = assert_problem(entry(ward.nurse, "methadone", {"kind": "destruction", "amount_mg": 60,
                                                             "witness": ward.witness()}), 422,
                             "cd-register-invalid")
    assert "below zero" in problem["detail"]
    assert register(ward.nurse, "methadone")["balance_mg"] == 50


def test_only_register_drugs_have_a_register(ward):
    problem = assert_problem(entry(ward.nurse, "lofexidine", {"kind": "receipt", "amount_mg": 10,
                                                              "supplier": "X"}), 422, "cd-register-invalid")
    assert "not kept in the controlled-drug register" in problem["detail"]
    assert_problem(stock_check(ward.nurse, "lofexidine", {"counted_mg": 10, "witness": ward.witness()}),
                             422, "cd-register-invalid")
    assert count(ward.app, CDRegisterEntry) == 0
    assert_problem(ward.nurse.get("/api/v1/cd-register/lofexidine"), 422, "cd-register-invalid")
    assert ward.nurse.get("/cd-register/lofexidine").status_code == 404


def test_register_writes_need_clinical_staff_and_a_key(ward):
    assert_problem(entry(ward.inspector, "methadone", {"kind": "receipt", "amount_mg": 10, "supplier": "X"}), 403)
    response = ward.nurse.post("/api/v1/cd-register/methadone/entries",
                               json={"kind": "receipt", "amount_mg": 10, "supplier": "X"}, headers={"Idempotency-Key": ""})
    assert_problem(response, 400, "idempotency-key-missing")
    # Administrations and stock checks are not written by hand.
    for kind in ("administration", "stock_check"):
        assert_problem(entry(ward.nurse, "methadone", {"kind": kind, "amount_mg": -10}), 422)
    same = key()
    body = {"kind": "receipt", "amount_mg": 10, "supplier": "X"}
    assert entry(ward.nurse, "methadone", body, same).status_code == 201
    again = entry(ward.nurse, "methadone", body, same)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert register(ward.nurse, "methadone")["balance_mg"] == 10


def test_each_unit_keeps_its_own_register(ward, make_ward):
    receive(ward, "methadone", 100)
    other = make_ward("medically_monitored")
    assert register(other.nurse, "methadone") == {"drug": "methadone", "name": "Methadone", "cd_schedule": 2,
                                                  "balance_mg": 0, "entries": []}


# --- stock checks ----------------------------------------------------------------------------

def test_a_stock_check_that_matches_notifies_nobody(ward, app):
    receive(ward, "methadone", 500)
    response = stock_check(ward.nurse, "methadone", {"counted_mg": 500, "witness": ward.witness()})
    assert response.status_code == 201, response.get_json()
    check = response.get_json()
    assert (check["kind"], check["amount_mg"], check["counted_mg"], check["balance_mg"]) == (
        "stock_check", 0, 500, 500)
    assert check["witness"] == ward.usernames["nurse2"]
    assert count(app, OutboxMessage) == 0
    assert count(app, AuditEvent, AuditEvent.action == "cd_register.discrepancy") == 0


def test_a_stock_check_needs_a_witness(ward):
    receive(ward, "methadone", 500)
    problem = assert_problem(stock_check(ward.nurse, "methadone", {"counted_mg": 500}), 422)
    assert "witness" in problem["errors"]
    assert_problem(stock_check(ward.nurse, "methadone", {"counted_mg": 500, "witness": ward.witness("nurse")}),
                   422, "witness-invalid")
    assert count(ward.app, CDRegisterEntry) == 1


def test_a_discrepancy_is_notified_to_every_manager_and_audited(ward, app, make_staff, clock):
    second_manager = make_staff(ward.code, "manager", email="second.manager@unit.test")
    receive(ward, "methadone", 500)
    response = stock_check(ward.nurse, "methadone", {"counted_mg": 470, "witness": ward.witness(),
                                                     "note": "Night count"})
    assert response.status_code == 201, response.get_json()
    check = response.get_json()
    # The count is recorded beside the unchanged balance; the register is not silently fixed.
    assert (check["counted_mg"], check["balance_mg"]) == (470, 500)
    assert register(ward.nurse, "methadone")["balance_mg"] == 500

    messages = rows(app, OutboxMessage, order_by=OutboxMessage.id)
    assert sorted(m.recipient_address for m in messages) == sorted(
        [f"manager.{ward.code}@unit.test".lower(), "second.manager@unit.test"])
    for message in messages:
        assert message.subject.startswith("[URGENT] Controlled-drug discrepancy: Methadone counted 470 mg")
        assert "register balance 500 mg" in message.subject
        assert (message.ref_type, message.ref_id, message.status) == ("cd_register_entry", check["id"], "pending")
        assert message.created_at == clock.now
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "cd_register.discrepancy")).one()
        assert event.entity_id == str(check["id"])
        assert event.after["counted_mg"] == 470 and event.after["balance_mg"] == 500
        assert sorted(event.after["escalated_to"]) == sorted([ward.usernames["manager"], second_manager])

    # The page marks the discrepancy; a witnessed correction then brings the balance to the count.
    page = ward.manager.get("/cd-register/methadone").get_data(as_text=True)
    assert 'class="discrepancy"' in page and "counted 470" in page
    fixed = entry(ward.manager, "methadone", {"kind": "correction", "amount_mg": -30, "witness": ward.witness(),
                                              "corrects_id": check["id"], "note": "Investigated: spillage"})
    assert fixed.status_code == 201 and fixed.get_json()["balance_mg"] == 470
    assert stock_check(ward.nurse, "methadone", {"counted_mg": 470, "witness": ward.witness()}).status_code == 201
    assert count(app, OutboxMessage) == 2


def test_register_page_lists_entries_for_inspectors(ward):
    receive(ward, "buprenorphine", 56, reference="GRN 12")
    page = ward.inspector.get("/cd-register/buprenorphine")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Controlled-drug register: Buprenorphine" in text and "Schedule 3" in text
    assert "Alliance Healthcare GRN 12" in text and "Balance 56 mg" in text


DISCREPANCY = 'data-testid="cd-discrepancy"'


def test_a_discrepancy_stays_on_the_board_until_a_witnessed_correction(ward):
    """E-mail alone may reach nobody (no manager, a mail outage): the board shows it to all."""
    receive(ward, "methadone", 500)
    assert stock_check(ward.nurse, "methadone", {"counted_mg": 500, "witness": ward.witness()}).status_code == 201
    assert DISCREPANCY not in ward.nurse.get("/").get_data(as_text=True)
    short = stock_check(ward.nurse, "methadone", {"counted_mg": 470, "witness": ward.witness()}).get_json()
    board = ward.nurse.get("/").get_data(as_text=True)
    assert board.count(DISCREPANCY) == 1
    assert "Methadone counted 470 mg" in board and "register balance 500 mg" in board
    assert DISCREPANCY in ward.doctor.get("/").get_data(as_text=True)  # every role sees it
    fixed = entry(ward.nurse, "methadone", {"kind": "correction", "amount_mg": -30, "witness": ward.witness(),
                                            "corrects_id": short["id"], "note": "Spillage found on review"})
    assert fixed.status_code == 201, fixed.get_json()
    assert DISCREPANCY not in ward.nurse.get("/").get_data(as_text=True)
    # A later count that does not match raises it again; one that matches clears it.
    stock_check(ward.nurse, "methadone", {"counted_mg": 460, "witness": ward.witness()})
    assert DISCREPANCY in ward.nurse.get("/").get_data(as_text=True)
    stock_check(ward.nurse, "methadone", {"counted_mg": 470, "witness": ward.witness()})
    assert DISCREPANCY not in ward.nurse.get("/").get_data(as_text=True)
