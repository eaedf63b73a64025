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
from unit.audit import verify_all_chains, verify_records
from unit.auth import CLINICAL_LEADS
from unit.models import ROLES, Staff, Unit

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
@click.option("--anchor", "anchor_file", type=click.File("r"), default=None,
              help="An anchor written by `audit anchor` (or the e-mail holding one): prove that "
                   "each chain still reaches its anchored head.")
def verify_command(anchor_file) -> None:
    """Verify every unit's audit chain and every clinical record against its audit event;
    report each break or difference (exit 1)."""
    from unit.anchor import read_anchor, verify_anchor

    try:
        anchor = read_anchor(anchor_file.read()) if anchor_file is not None else None
    except DomainError as error:
        _fail(error)
    broken = False
    codes = {}
    for report in verify_all_chains(now()):
        codes[report.unit_code] = report
        if report.verified:
            click.echo(f"{report.unit_code}: OK, {report.events} events verified.")
        else:
            broken = True
            click.echo(f"{report.unit_code}: BROKEN at event {report.broken_at_seq}: {report.problem}")
    records = verify_records()
    units = dict(db.session.execute(select(Unit.id, Unit.code)).all())
    for finding in records.findings:
        broken = True
        click.echo(f"{units.get(finding.unit_id, '?')}: RECORD {finding.entity_type} "
                   f"{finding.entity_id} {finding.problem}")
    for unit_id in sorted(set(records.checked) | set(records.unchecked), key=lambda u: units.get(u, "")):
        line = f"{units.get(unit_id, '?')}: {records.checked.get(unit_id, 0)} clinical records match their audit events"
        if records.unchecked.get(unit_id):
            line += f" ({records.unchecked[unit_id]} recorded before row hashes, not checked)"
        click.echo(line + ".")
    if anchor is not None:
        try:
            results = verify_anchor(anchor)
        except DomainError as error:
            _fail(error)
        for code, proven, detail in results:
            broken = broken or not proven
            click.echo(f"{code}: {'anchor OK' if proven else 'ANCHOR NOT REACHED'}: {detail}")
    sys.exit(1 if broken else 0)


@audit_cli.command("anchor")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="The file to write (default: standard output).")
def anchor_command(out: str | None) -> None:
    """Write each unit's audit chain head (unit, event, hash, time), signed with
    AUDIT_ANCHOR_KEY, to keep outside the database."""
    from unit.anchor import anchor_text, make_anchor

    try:
        document = make_anchor(now())
    except DomainError as error:
        _fail(error)
    text = anchor_text(document)
    if out is None:
        click.echo(text, nl=False)
        return
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    for head in document["heads"]:
        click.echo(f"{head['unit']}: event {head['seq']} {head['hash'][:16]}... anchored.", err=True)
    click.echo(f"Anchor written to {out}.", err=True)
