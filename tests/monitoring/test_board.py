"""The ward board "/": last score and band per scale, next due time, overdue highlighted, and a
constant number of SQL statements whatever the number of residents."""
from __future__ import annotations

import re
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event

from config.extensions import db
from tests.monitoring.helpers import NEWS2_FOUR, ciwa, parse, record


@contextmanager
def counting_statements(app):
    """Count every SQL statement sent to the database while the block runs."""
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def fill_ward(ward, residents: int) -> int:
    """Admit residents with scores on both scales (every third never scored, every fifth
    discharged again); returns how many of them stay on the board."""
    staying = 0
    for _ in range(residents):
        n = len(ward.admitted)
        admission = ward.admit(name=f"Resident {n:02d}", substances=("alcohol", "opioids"))
        if n % 3 != 2:  # minimal, or severe (which raises an escalation), from the first three on
            record(ward.nurse, admission["id"], "ciwa-ar", ciwa((2, 17)[n % 3]))
            record(ward.nurse, admission["id"], "news2", NEWS2_FOUR)
        if n % 5 == 4:
            response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                                       json={"discharge_type": "completed"})
            assert response.status_code == 200
        else:
            staying += 1
    return staying


def board_statements(app, client) -> tuple[int, str]:
    client.get("/")  # warm up: the first request of a client may touch the session once
    with counting_statements(app) as statements:
        response = client.get("/")
    assert response.status_code == 200
    return len(statements), response.get_data(as_text=True)


# One query per table however many residents are on the board (no N+1).
def test_the_board_runs_a_constant_number_of_queries(app, ward):
    on_board = fill_ward(ward, 3)
    few, html = board_statements(app, ward.nurse)
    assert html.count('data-admission="') == on_board == 3
    on_board += fill_ward(ward, 27)
    many, html = board_statements(app, ward.nurse)
    assert html.count('data-admission="') == on_board == 24
    assert many == few, f"{few} statements for 3 residents, {many} for 24 of 30"


def test_open_harm_reduction_checklists_add_no_queries_per_resident(app, ward):
    def self_discharge(n: int) -> None:
        for i in range(n):
            admission = ward.admit(name=f"Left {len(ward.admitted):02d}")
            response = ward.nurse.post(f"/api/v1/admissions/{admission['id']}/discharge",
                                       json={"discharge_type": "self-discharged"})
            assert response.status_code == 200

    self_discharge(1)
    one, html = board_statements(app, ward.nurse)
    assert html.count("Harm-reduction checklist open for") == 1
    self_discharge(4)
    five, html = board_statements(app, ward.nurse)
    assert html.count("Harm-reduction checklist open for") == 5
    assert five == one, f"{one} statements with 1 open checklist, {five} with 5"


def test_the_monitoring_board_cells_run_a_constant_number_of_queries(app, ward, clock):
    """Scores and due times of every resident: one statement for 3 residents or for 30."""
    from monitoring.pages import board_cells
    from unit.models import Admission

    counts = []
    for residents in (3, 27):
        fill_ward(ward, residents)
        with app.test_request_context("/"):
            unit_id = db.session.get(Admission, ward.admitted[0]["id"]).unit_id
            admissions = list(db.session.scalars(sa.select(Admission).where(
                Admission.unit_id == unit_id, Admission.status == "active")))
            with counting_statements(app) as statements:
                cells = board_cells(unit_id, admissions, clock.now)
            assert set(cells) == {a.id for a in admissions}
            counts.append(len(statements))
    assert counts == [1, 1], counts


def test_the_scheduler_banner_is_read_once_per_page(app, ward):
    fill_ward(ward, 10)
    ward.nurse.get("/")
    with counting_statements(app) as statements:
        assert ward.nurse.get("/").status_code == 200
    assert sum("scheduler_heartbeats" in s for s in statements) == 1


def test_the_board_shows_last_score_band_and_next_due(app, ward, clock):
    admission = ward.admit(name="Jamie Rivers")
    clock.advance(minutes=5)
    severe = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(17))
    record(ward.nurse, admission["id"], "news2", NEWS2_FOUR)
    html = ward.nurse.get("/").get_data(as_text=True)
    row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % admission["id"], html, re.S).group(1)
    assert "Jamie Rivers" in row
    assert re.search(r'CIWA-Ar</span>\s*<strong class="total">17</strong> <span class="badge band-severe">severe</span>', row)
    assert re.search(r'NEWS2</span>\s*<strong class="total">4</strong> <span class="badge band-low">low</span>', row)
    # Next due in the unit's local time (Europe/London by default).
    from zoneinfo import ZoneInfo

    due = parse(severe["next_due_at"]).astimezone(ZoneInfo("Europe/London")).strftime("%H:%M")
    assert re.search(r'CIWA-Ar</span> %s' % due, row)
    assert "OVERDUE" not in row and "every 1 h" in row


def test_the_score_cells_escape_the_band_they_read(app):
    # The scores macro prints without autoescaping (for speed); what it reads from the
    # database is escaped by hand. A band that is not one of the scales' is printed as text.
    from datetime import datetime, timezone

    from config.partials import partials
    from monitoring.pages import STATE_TEXT, _BoardLine

    at = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    line = _BoardLine("CIWA-Ar", True, 9, '"><script>x</script>', "<b>&", at, at, 60)
    with app.test_request_context():
        cell = str(partials("monitoring/_board_cells.html", state_text=STATE_TEXT)
                   .schedules([(line, "late")]))
    assert "<script>" not in cell and "<b>" not in cell
    assert 'band-&#34;&gt;&lt;script&gt;x&lt;/script&gt;">&lt;b&gt;&amp;</span>' in cell
    assert '<span class="badge warn">LATE</span>' in cell


def test_an_overdue_resident_shows_overdue(app, ward, clock):
    calm = ward.admit(name="Calm Resident")
    late = ward.admit(name="Late Resident")
    clock.advance(minutes=5)
    for admission in (calm, late):
        record(ward.nurse, admission["id"], "news2", NEWS2_FOUR)               # every 4 h
    record(ward.nurse, calm["id"], "ciwa-ar", ciwa(2))                          # every 4 h
    record(ward.nurse, late["id"], "ciwa-ar", ciwa(20))                         # hourly
    clock.advance(minutes=60 + 15)
    html = ward.nurse.get("/").get_data(as_text=True)
    late_row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % late["id"], html, re.S).group(1)
    assert 'data-state="late"' in late_row and "OVERDUE" not in late_row  # in grace still
    clock.advance(minutes=1)
    html = ward.nurse.get("/").get_data(as_text=True)
    late_row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % late["id"], html, re.S).group(1)
    calm_row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % calm["id"], html, re.S).group(1)
    assert re.search(r'class="dueline state-overdue" data-state="overdue"><span class="scale">CIWA-Ar', late_row)
    assert '<span class="badge danger">OVERDUE</span>' in late_row
    assert "OVERDUE" not in calm_row


def test_a_resident_never_scored_shows_no_score_yet_and_is_due(app, ward, clock):
    admission = ward.admit(name="New Arrival")
    html = ward.nurse.get("/").get_data(as_text=True)
    row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % admission["id"], html, re.S).group(1)
    assert row.count("no score yet") == 2
    assert row.count('data-state="due_soon"') == 2


def test_a_not_done_shows_the_last_real_score(app, ward, clock):
    admission = ward.admit()
    record(ward.nurse, admission["id"], "ciwa-ar", ciwa(9))
    clock.advance(minutes=10)
    from tests.monitoring.helpers import post_observation

    post_observation(ward.nurse, admission["id"], {"scale": "ciwa-ar", "not_done_reason": "asleep"})
    html = ward.nurse.get("/").get_data(as_text=True)
    row = re.search(r'<tr data-admission="%d">(.*?)</tr>' % admission["id"], html, re.S).group(1)
    assert re.search(r'<strong class="total">9</strong> <span class="badge band-moderate">moderate', row)
