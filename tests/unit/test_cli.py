"""The command line: units, staff accounts and the audit check, each calling a service."""
from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from config.extensions import db
from tests.unit.helpers import row_counts, writes_between

STRONG = "a-long-enough-password"


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def run(*args, env=None, input=None):
        return runner.invoke(args=list(args), env=env, input=input)

    return run


def unit_model(app, code):
    from unit.models import Unit
    from unit.services import model_history

    with app.app_context():
        unit = db.session.scalars(sa.select(Unit).where(Unit.code == code)).one()
        return unit.name, [c.model for c in model_history(unit.id)]


def test_unit_create(app, cli):
    for code, given, model in (("NORTH", "managed", "medically_managed"),
                               ("SOUTH", "monitored", "medically_monitored"),
                               ("EAST", "medically_managed", "medically_managed")):
        result = cli("unit", "create", code, "--name", f"{code.title()} House", "--model", given)
        assert result.exit_code == 0, result.output
        assert code in result.output and model in result.output
        assert unit_model(app, code) == (f"{code.title()} House", [model])


def test_unit_create_refuses_a_duplicate_code(app, cli):
    assert cli("unit", "create", "NORTH", "--name", "North", "--model", "managed").exit_code == 0
    before = row_counts(app)
    result = cli("unit", "create", "NORTH", "--name", "Again", "--model", "monitored")
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert writes_between(before, row_counts(app)) == {}


def test_unit_create_usage_errors(app, cli):
    before = row_counts(app)
    for args in (("unit", "create", "X", "--name", "X", "--model", "residential"),
                 ("unit", "create", "X", "--model", "managed"),
                 ("unit", "create", "--name", "X", "--model", "managed")):
        assert cli(*args).exit_code == 2, args
    assert writes_between(before, row_counts(app)) == {}


def test_user_create_with_the_password_from_the_environment(app, cli, make_unit, login):
    code = make_unit()
    result = cli("user", "create", "Dana", "--role", "doctor", "--unit", code, "--name", "Dr Dana",
                 "--email", "dana@example.invalid", env={"NEW_PASSWORD": STRONG})
    assert result.exit_code == 0, result.output
    assert "dana" in result.output and "doctor" in result.output
    assert STRONG not in result.output
    client = login("dana", STRONG)
    who = client.get("/api/v1/auth/session").get_json()
    assert who["staff"] == {**who["staff"], "username": "dana", "role": "doctor", "full_name": "Dr Dana"}
    assert who["unit"] == code

    from unit.models import Staff

    with app.app_context():
        staff = db.session.scalars(sa.select(Staff).where(Staff.username == "dana")).one()
        assert staff.password_hash.startswith("$argon2id$")
        assert staff.email == "dana@example.invalid"


def test_user_create_is_audited(app, cli, make_unit):
    from tests.conftest import audit_rows

    code = make_unit()
    cli("user", "create", "erin", "--role", "nurse", "--unit", code, env={"NEW_PASSWORD": STRONG})
    assert audit_rows(app, code)[-1][1:] == ("staff.create", None)


def test_user_create_refuses_a_duplicate_username(app, cli, make_unit):
    code, other = make_unit(), make_unit()
    env = {"NEW_PASSWORD": STRONG}
    assert cli("user", "create", "sam", "--role", "nurse", "--unit", code, env=env).exit_code == 0
    before = row_counts(app)
    for username, unit in (("sam", code), ("SAM", other)):  # usernames are global, any case
        result = cli("user", "create", username, "--role", "gp", "--unit", unit, env=env)
        assert result.exit_code == 2, result.output
        assert "taken" in result.output
    assert writes_between(before, row_counts(app)) == {}


USER_CREATE_REFUSALS = [
    (("--role", "nurse", "--unit", "NOPE"), {"NEW_PASSWORD": STRONG}, "NOPE"),
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": "short"}, "too short"),
    # NIST SP 800-63B: a commonly used password, also with digits added, or one holding the
    # username (in any case) is refused, each with its reason.
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": "password123"}, "most commonly used"),
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": "1234567890"}, "most commonly used"),
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": "Sunshine2024!"}, "most commonly used"),
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": "my-NEWBIE-password"}, "may not contain the username"),
    (("--role", "nurse", "--unit", "{code}"), {"NEW_PASSWORD": ""}, "NEW_PASSWORD"),
    (("--role", "janitor", "--unit", "{code}"), {"NEW_PASSWORD": STRONG}, "janitor"),
    (("--unit", "{code}"), {"NEW_PASSWORD": STRONG}, "--role"),
]


def test_user_create_refusals(app, cli, make_unit):
    code = make_unit()
    before = row_counts(app)
    for args, env, message in USER_CREATE_REFUSALS:
        args = [a.replace("{code}", code) for a in args]
        result = cli("user", "create", "newbie", *args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert writes_between(before, row_counts(app)) == {}


def test_the_common_password_list_ships_with_ten_thousand_entries():
    from unit.auth import COMMON_PASSWORDS_FILE, common_passwords

    assert COMMON_PASSWORDS_FILE.is_file()
    assert len(common_passwords()) >= 10_000 - 50  # a few entries differ only in case
    assert {"password", "123456", "qwerty", "letmein", "1234567890"} <= common_passwords()


def test_a_refused_password_names_every_rule_it_breaks(ctx, make_unit):
    from config.errors import ValidationFailed
    from unit import services

    code = make_unit()
    with pytest.raises(ValidationFailed) as refused:
        services.create_staff(unit_code=code, username="letmein", role="nurse", password="letmein",
                              full_name="", email=None, now=ctx.config["CLOCK"](),
                              min_password_length=10)
    assert refused.value.errors["password"] == [
        "At least 10 characters.",
        "This is one of the most commonly used passwords, which are tried first by anyone "
        "guessing: choose another.",
        "The password may not contain the username."]


def test_the_demo_passwords_pass_the_password_rules():
    """The README's demo sign-ins are seeded through create_staff: they must pass its rules."""
    from unit.demo import DEMO_STAFF
    from unit.auth import password_problems

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for username, _role, _name, password in DEMO_STAFF:
        assert password_problems(password, username=username, min_length=10) == [], username
        assert f"`{password}`" in readme, password


def test_demo_seed_creates_the_demo_sign_ins(app, cli, client):
    result = cli("demo", "seed")
    assert result.exit_code == 0, result.output
    from unit.demo import DEMO_STAFF

    for username, _role, _name, password in DEMO_STAFF:
        assert password in result.output
        response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, (username, response.get_json())


def test_audit_verify(app, cli, make_unit, make_staff):
    code = make_unit()
    make_staff(code, "nurse")
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{code}: OK, 2 events verified."


def test_audit_verify_reports_a_broken_chain(app, cli, make_unit):
    from unit.models import AuditChainHead

    code = make_unit()
    with app.app_context():
        # The head claims one more event than the chain holds: the last one was removed.
        head = db.session.scalars(sa.select(AuditChainHead)).one()
        head.seq += 1
        db.session.commit()
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"{code}: BROKEN at event 2:" in result.output


def test_unit_protocol_tightens_the_competence_criteria(app, cli, make_unit, make_staff, tmp_path):
    """HAZ-031: the command line adopts a change only with the clinical lead named as its
    approver (both names on the version); without --approved-by it is a proposal only."""
    code = make_unit()
    manager = make_staff(code, "manager")
    lead = make_staff(code, "clinical_lead")
    doctor = make_staff(code, "doctor")
    values = tmp_path / "competence.json"
    values.write_text('{"sadq_decline_above": 25}')
    # Without --approved-by: proposed, nothing in force.
    result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                 "--reason", "Local policy")
    assert result.exit_code == 0, result.output
    assert "proposed" in result.output and "Nothing changes" in result.output
    with app.app_context():
        from unit.services import effective_protocol, get_unit

        assert effective_protocol(get_unit(code).id)["version"] is None
    result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                 "--reason", "Local policy", "--approved-by", lead)
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output and '"sadq_decline_above": 25' in result.output
    assert f"proposed by {manager}, approved by {lead}" in result.output
    with app.app_context():
        protocol = effective_protocol(get_unit(code).id)
        assert protocol["created_by"].username == manager and protocol["reason"] == "Local policy"
        assert protocol["approved_by"].username == lead
    before = row_counts(app)
    # The approver must be a clinical lead of the unit: a doctor or an unknown name is refused.
    for approver in (doctor, manager, "nobody"):
        result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                     "--reason", "Tighter", "--approved-by", approver)
        assert result.exit_code == 2 and "not an active clinical lead" in result.output
    values.write_text('{"sadq_decline_above": 35}')  # looser: refused
    result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                 "--reason", "Looser", "--approved-by", lead)
    assert result.exit_code == 2 and "sadq_decline_above" in result.output
    make_staff(code, "manager")  # two managers: the CLI must be told which one acts
    values.write_text('{"sadq_decline_above": 24}')
    result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                 "--reason", "Tighter", "--approved-by", lead)
    assert result.exit_code == 2 and "--manager" in result.output
    assert writes_between(before, row_counts(app)) == {"staff": 1, "audit_events": 1}
    result = cli("unit", "protocol", code, "--section", "competence", "--file", str(values),
                 "--reason", "Tighter", "--manager", manager, "--approved-by", lead)
    assert result.exit_code == 0 and "version 2" in result.output


def test_user_create_clinical_lead(app, cli, make_unit, login):
    code = make_unit()
    result = cli("user", "create", "lee", "--role", "clinical_lead", "--unit", code,
                 "--name", "Dr Lee Lead", env={"NEW_PASSWORD": STRONG})
    assert result.exit_code == 0, result.output
    assert "lee (clinical_lead)" in result.output
    who = login("lee", STRONG).get("/api/v1/auth/session").get_json()
    assert who["staff"]["role"] == "clinical_lead"


def test_user_disable_ends_every_session_and_refuses_sign_in(app, cli, make_unit, make_staff, login):
    from tests.conftest import PASSWORD, audit_rows

    code = make_unit()
    name = make_staff(code, "nurse")
    tablet, desk = login(name), login(name)
    assert tablet.get("/api/v1/auth/session").status_code == 200
    result = cli("user", "disable", name, "--reason", "Left the service")
    assert result.exit_code == 0, result.output
    assert "2 open session(s) ended" in result.output
    for client in (tablet, desk):  # at once, not at the next idle timeout
        assert client.get("/api/v1/auth/session").status_code == 401
    again = app.test_client().post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert again.status_code == 401
    assert audit_rows(app, code)[-1][1] == "staff.disable"


def test_user_disable_refusals(app, cli, make_unit, make_staff):
    name = make_staff(make_unit(), "nurse")
    before = row_counts(app)
    assert cli("user", "disable", "nobody", "--reason", "x").exit_code != 0
    assert cli("user", "disable", name, "--reason", "  ").exit_code != 0
    assert cli("user", "disable", name).exit_code == 2  # --reason is required
    assert writes_between(before, row_counts(app)) == {}


def test_demo_seed_admits_its_residents_and_has_a_clinical_lead(app, cli, login):
    """The demo's referrals carry what each kind needs (units a day for alcohol, the opioids
    used now for opioids), so the seed admits all three; its clinical lead signs in."""
    result = cli("demo", "seed")
    assert result.exit_code == 0, result.output
    assert "with 3 residents" in result.output and "ward-lantern-oak" in result.output
    lead = login("lead", "ward-lantern-oak")
    assert lead.get("/api/v1/auth/session").get_json()["staff"]["role"] == "clinical_lead"
    admissions = lead.get("/api/v1/admissions?status=active").get_json()
    assert sorted(a["resident"]["name"] for a in admissions) == ["Alex Morgan", "Jo Evans", "Sam Taylor"]
    again = cli("demo", "seed")
    assert again.exit_code == 0 and "already exists" in again.output
