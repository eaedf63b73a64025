"""NHS numbers: 10 digits whose last is the modulus-11 check digit (weights 10..2)."""
from __future__ import annotations

import pytest

from tests.conftest import referral
from tests.unit.helpers import assert_problem, row_counts, writes_between
from unit.schemas import nhs_number_is_valid

VALID = ["9434765919", "4010232137", "9876543210",  # 9876543210: 11 - 0 = 11, so check digit 0
         "1111111111", "4857773457"]
INVALID = [
    "9434765918", "9434765910", "4010232138",       # wrong check digit
    *[f"123456789{d}" for d in range(10)],          # the check digit would be 10: never valid
    "943476591", "94347659190", "",                 # length
    "94347659A9", "943476591X", "+434765919",       # not digits
    "943476591²", "９４３４７６５９１９", "९४३४७६५९१९",  # digits of other scripts
]


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers(number):
    assert nhs_number_is_valid(number)


@pytest.mark.parametrize("number", INVALID)
def test_invalid_numbers(number):
    assert not nhs_number_is_valid(number)


def test_each_single_digit_change_of_a_valid_number_is_caught():
    # The point of the check digit: a mistyped digit is refused.
    number = "9434765919"
    for position in range(10):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1:]
                assert not nhs_number_is_valid(typo), typo


@pytest.fixture
def nurse(make_unit, make_staff, login):
    return login(make_staff(make_unit(), "nurse"))


ACCEPTED = [("9434765919", "9434765919"), ("943 476 5919", "9434765919"),
            ("943-476-5919", "9434765919"), (" 4010232137 ", "4010232137"),
            (None, None), ("", None), ("   ", None)]
REFUSED = ["9434765918", "1234567890", "94347659", "943476591X", "943476591²", "९४३४७६५९१९",
           "9434 765 91 9 0", 9434765919, ["9434765919"]]


def test_the_api_accepts_and_normalises_valid_numbers(nurse):
    for n, (given, stored) in enumerate(ACCEPTED):
        body = referral(name=f"Person {n}")
        body["resident"]["nhs_number"] = given
        response = nurse.post("/api/v1/admissions", json=body)
        assert response.status_code == 201, (given, response.get_json())
        assert response.get_json()["resident"]["nhs_number"] == stored
        discharged = nurse.post(f"/api/v1/admissions/{response.get_json()['id']}/discharge",
                                json={"discharge_type": "completed"})
        assert discharged.status_code == 200


def test_the_api_refuses_invalid_numbers_and_writes_nothing(app, nurse):
    before = row_counts(app)
    for given in REFUSED:
        body = referral()
        body["resident"]["nhs_number"] = given
        problem = assert_problem(nurse.post("/api/v1/admissions", json=body), 422, "validation-error")
        assert "nhs_number" in problem["errors"]["resident"], given
    assert writes_between(before, row_counts(app)) == {}


def test_the_preview_checks_the_number_too(nurse):
    response = nurse.post("/api/v1/referrals/check", json=referral(nhs_number="9434765918"))
    assert "nhs_number" in assert_problem(response, 422)["errors"]["resident"]
