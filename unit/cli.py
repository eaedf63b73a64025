"""Command-line interface of the unit package; every command calls a service."""
from __future__ import annotations

import json
import os
import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select

from config.clock import now
from config.errors import DomainError
from config.extensions import db
from unit import protocol, services
from unit.audit import verify_all_chains
from unit.auth import CLINICAL_LEADS
from unit.models import ROLES, Staff

MODEL_NAMES = {"managed": "medically_managed", "monitored": "medically_monitored",
               "medically_managed": "medically_managed", "medically_monitored": "medically_monitored"}

unit_cli = AppGroup("unit", help="Units and their care model.")
user_cli = AppGroup("user", help="Staff accounts.")
audit_cli = AppGroup("audit", help="The audit log.")


def _fail(error: DomainError) -> None:
    click.echo(f"Error: {error.detail}", err=True)
    for field, messages in (error.errors or {}).items():
        click.echo(f"  {field}: {messages}", err=True)
    sys.exit(2)


@unit_cli.command("create")
@click.argument("code")
@click.option("--name", required=True, help="The unit's name.")
@click.option("--model", "model", required=True, type=click.Choice(sorted(MODEL_NAMES)),
              help="managed (doctor on site 24 h) or monitored (visiting GP on call).")
def create_unit_command(code: str, name: str, model: str) -> None:
    """Register a unit with its declared care model."""
    try:
        unit = services.create_unit(code, name, MODEL_NAMES[model], now=now())
    except DomainError as error:
        _fail(error)
    click.echo(f"Unit {unit.code} ({unit.name}) created: {MODEL_NAMES[model]}.")


@unit_cli.command("protocol")
@click.argument("code")
@click.option("--section", required=True,
              help="monitoring, escalation, medication or competence.")
@click.option("--file", "values_file", required=True, type=click.File("r"),
              help="A JSON object of the settings to change ('-' for standard input).")
@click.option("--reason", required=True, help="Why the unit adopts these values (audited).")
@click.option("--manager", "manager_username", default=None,
              help="The manager proposing them (default: the unit's only active manager).")
@click.option("--approved-by", "approver_username", default=None,
              help="The unit's clinical lead who approved them: in force at once. Without it "
                   "the change is only proposed, for the clinical lead to approve.")
def protocol_command(code: str, section: str, values_file, reason: str,
                     manager_username: str | None, approver_username: str | None) -> None:
    """Propose the unit's own protocol values for a section; with --approved-by, adopt them
    (a new version naming both, audited)."""
    try:
        values = json.load(values_file)
    except ValueError as error:
        click.echo(f"Error: {values_file.name} is not JSON: {error}", err=True)
        sys.exit(2)
    try:
        unit = services.get_unit(code)
        query = select(Staff).where(Staff.unit_id == unit.id, Staff.role == "manager",
                                    Staff.active.is_(True))
        if manager_username:
            query = query.where(Staff.username == manager_username.strip().lower())
        managers = db.session.scalars(query).all()
        if len(managers) != 1:
            click.echo(f"Error: name the manager of unit {code} with --manager "
                       f"({len(managers)} active managers match).", err=True)
            sys.exit(2)
        if approver_username is None:
            proposal = protocol.propose_protocol_change(managers[0], section=section, values=values,
                                                        reason=reason, now=now())
            click.echo(f"Unit {code}: protocol change proposed ({section}), proposal {proposal.id}. "
                       "Nothing changes until the clinical lead approves it.")
            return
        approver = db.session.scalars(select(Staff).where(
            Staff.unit_id == unit.id, Staff.username == approver_username.strip().lower(),
            Staff.role.in_(CLINICAL_LEADS), Staff.active.is_(True))).first()
        if approver is None:
            click.echo(f"Error: {approver_username} is not an active clinical lead of unit {code}.",
                       err=True)
            sys.exit(2)
        adopted = protocol.update_protocol(managers[0], section=section, values=values,
                                           reason=reason, approved_by=approver, now=now())
    except DomainError as error:
        _fail(error)
    click.echo(f"Unit {code}: protocol version {adopted.version} adopted ({section}), proposed by "
               f"{managers[0].username}, approved by {approver.username}.")
    click.echo(json.dumps(services.effective_protocol(unit.id)["sections"][section],
                          indent=2, sort_keys=True))


@user_cli.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--unit", "unit_code", required=True, help="The unit's code.")
@click.option("--name", "full_name", default="", help="Full name (default: the username).")
@click.option("--email", default=None, help="For escalation e-mails.")
def create_user_command(username: str, role: str, unit_code: str, full_name: str,
                        email: str | None) -> None:
    """Add a member of staff; the password comes from NEW_PASSWORD or a prompt."""
    password = os.environ.get("NEW_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            click.echo("Error: set NEW_PASSWORD or run in a terminal to be asked.", err=True)
            sys.exit(2)
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    from flask import current_app

    try:
        staff = services.create_staff(unit_code=unit_code, username=username, role=role,
                                      password=password, full_name=full_name, email=email,
                                      now=now(),
                                      min_password_length=current_app.config["PASSWORD_MIN_LENGTH"])
    except DomainError as error:
        _fail(error)
    click.echo(f"User {staff.username} ({staff.role}) created on unit {unit_code}.")


@user_cli.command("disable")
@click.argument("username")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
def disable_user_command(username: str, reason: str) -> None:
    """Refuse a user's sign-in from now on and end every session they have open."""
    try:
        staff, revoked = services.disable_staff(username=username, reason=reason, now=now())
    except DomainError as error:
        _fail(error)
    click.echo(f"User {staff.username} disabled; {revoked} open session(s) ended.")


@audit_cli.command("verify")
def verify_command() -> None:
    """Verify every unit's whole audit chain and report the first broken link (exit 1)."""
    broken = False
    for report in verify_all_chains(now()):
        if report.verified:
            click.echo(f"{report.unit_code}: OK, {report.events} events verified.")
        else:
            broken = True
            click.echo(f"{report.unit_code}: BROKEN at event {report.broken_at_seq}: {report.problem}")
    sys.exit(1 if broken else 0)
