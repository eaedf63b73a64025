"""A struck observation is corrected once: the service refuses a second correction (409
``observation-already-corrected``), the API and the tablet form refuse it, and the database
refuses one that races past the service (a unique index, added by migration 5c1e2d7a9b40).
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from config.api import STATUS_BY_KIND
from config.extensions import db
from monitoring.models import Observation
from tests.monitoring.helpers import CSRF, IDEMPOTENCY, ciwa, key, record
from tests.unit.helpers import assert_problem
from tests.config.test_migrations import empty_database, keep_logging  # noqa: F401 (fixtures)
from unit.models import Staff


def strike(client, observation_id: int, body: dict):
    return client.post(f"/api/v1/observations/{observation_id}/strike", json=body,
                       headers={"Idempotency-Key": key()})


def corrections_of(app, struck_id: int) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Observation.id).where(Observation.replaces_id == struck_id)))


def corrected_through_the_api(ward) -> tuple[dict, dict, dict]:
    """An admission, a struck observation and its correction (strike with a replacement)."""
    admission = ward.admit()
    wrong = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(21))
    response = strike(ward.nurse, wrong["id"], {"reason": "Scored the wrong resident",
                                                "replacement": {"items": ciwa(6)}})
    assert response.status_code == 200, response.get_json()
    return admission, wrong, response.get_json()["replacement"]


def test_the_service_refuses_a_second_correction_with_its_slug(app, ward, clock):
    from monitoring import services
    from monitoring.errors import ObservationAlreadyCorrected

    admission, wrong, correction = corrected_through_the_api(ward)
    with app.app_context():
        nurse = db.session.scalar(sa.select(Staff).where(Staff.username == ward.usernames["nurse"]))
        struck = db.session.get(Observation, wrong["id"])
        with pytest.raises(ObservationAlreadyCorrected) as refused:
            services.record_observation(nurse, admission["id"], scale="ciwa-ar", items=ciwa(7),
                                        observed_at=struck.observed_at, note=None, now=clock.now,
                                        replaces=struck)
        with pytest.raises(ObservationAlreadyCorrected):
            services.correction_target(nurse, admission["id"], "ciwa-ar", wrong["id"])
    assert refused.value.type == "observation-already-corrected"
    assert STATUS_BY_KIND[refused.value.kind] == 409
    assert f"by observation {correction['id']}" in refused.value.detail
    assert corrections_of(app, wrong["id"]) == [correction["id"]]


def test_the_api_refuses_to_correct_a_corrected_observation_again(app, ward):
    admission, wrong, correction = corrected_through_the_api(ward)
    again = strike(ward.nurse, wrong["id"], {"reason": "Scored it again", "replacement": {"items": ciwa(9)}})
    assert_problem(again, 409, "observation-already-struck")
    assert corrections_of(app, wrong["id"]) == [correction["id"]]
    # The correction itself may be struck and corrected in its turn (a chain, one link each).
    chained = strike(ward.nurse, correction["id"], {"reason": "Tremor was 2, not 1",
                                                    "replacement": {"items": ciwa(7)}})
    assert chained.status_code == 200, chained.get_json()
    assert corrections_of(app, correction["id"]) == [chained.get_json()["replacement"]["id"]]


def test_two_tablet_forms_for_one_struck_observation_save_one_correction(app, ward):
    admission = ward.admit()
    url = f"/admissions/{admission['id']}/observe/ciwa-ar"
    wrong = record(ward.nurse, admission["id"], "ciwa-ar", ciwa(21))
    csrf = CSRF.search(ward.nurse.get(url).get_data(as_text=True)).group(1)
    assert ward.nurse.post(f"/observations/{wrong['id']}/strike",
                           data={"csrf_token": csrf, "reason": "Wrong resident"}).status_code == 302
    # Two nurses open the correction form before either saves.
    forms = [ward.nurse.get(f"{url}?replaces={wrong['id']}").get_data(as_text=True) for _ in range(2)]
    keys = [IDEMPOTENCY.search(form).group(1) for form in forms]
    posted = [ward.nurse.post(f"{url}?replaces={wrong['id']}",
                              data={**{k: str(v) for k, v in ciwa(total).items()}, "csrf_token": csrf,
                                    "idempotency_key": form_key, "replaces": str(wrong["id"])})
              for total, form_key in zip((6, 8), keys)]
    assert [response.status_code for response in posted] == [303, 404]
    (correction,) = corrections_of(app, wrong["id"])
    with app.app_context():
        assert db.session.get(Observation, correction).total == 6


def test_the_database_refuses_a_second_correction(app, ward):
    """The unique index catches a correction written past the service (on both engines)."""
    admission, wrong, correction = corrected_through_the_api(ward)
    with app.app_context():
        row = db.session.get(Observation, correction["id"])
        columns = {c.name: getattr(row, c.name) for c in Observation.__table__.columns if c.name != "id"}
        db.session.rollback()
        with pytest.raises(sa.exc.IntegrityError):
            with db.engine.begin() as conn:
                conn.execute(sa.insert(Observation.__table__), {**columns, "total": 7})
        # Any number of observations replace nothing.
        with db.engine.begin() as conn:
            conn.execute(sa.insert(Observation.__table__), [{**columns, "replaces_id": None}] * 2)
    assert corrections_of(app, wrong["id"]) == [correction["id"]]


# The revision just before the correction index (the schema the app ran on until then).
BEFORE = "f4e0cee55cc0"


@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_the_migration_adds_the_index_and_refuses_a_database_with_two_corrections(
        empty_database, keep_logging):  # noqa: F811 (fixtures)
    """5c1e2d7a9b40: stops, naming the struck observation, when two corrections of one entry
    are already stored (which stands is a clinical decision); then adds the index."""
    import flask_migrate
    from alembic import command
    from flask import current_app

    from config.app import create_app
    from config.db import utcnow
    from config.settings import TestingConfig
    from tests.conftest import PASSWORD, referral
    from unit import services

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        try:
            flask_migrate.upgrade(revision=BEFORE)
            at = utcnow()
            services.create_unit("MIG", "Migrated", "medically_monitored", now=at)
            services.create_staff(unit_code="MIG", username="nurse1", role="nurse", password=PASSWORD,
                                  full_name="Nurse One", email=None, now=at, min_password_length=8)
            db.session.commit()
            client = app.test_client()
            assert client.post("/api/v1/auth/login", json={"username": "nurse1", "password": PASSWORD}).status_code == 200
            admission = client.post("/api/v1/admissions", json=referral(), headers={"Idempotency-Key": key()}).get_json()
            wrong = record(client, admission["id"], "ciwa-ar", ciwa(21))
            corrected = strike(client, wrong["id"], {"reason": "Wrong resident", "replacement": {"items": ciwa(6)}})
            correction = corrected.get_json()["replacement"]
            # A second correction of the same entry, as two forms saved at once could store.
            row = db.session.get(Observation, correction["id"])
            columns = {c.name: getattr(row, c.name) for c in Observation.__table__.columns if c.name != "id"}
            db.session.rollback()
            with db.engine.begin() as conn:
                second = conn.execute(sa.insert(Observation.__table__).returning(Observation.id),
                                      {**columns, "total": 8}).scalar_one()
            db.session.remove()

            config = current_app.extensions["migrate"].migrate.get_config()
            with pytest.raises(RuntimeError, match=f"observation {wrong['id']} \\(2 corrections\\)"):
                command.upgrade(config, "head")
            with db.engine.connect() as conn:
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("observations")}
                assert "uq_observations_one_correction" not in indexes
                assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == BEFORE

            # The clinician decides which stands; the other is unlinked (and kept).
            with db.engine.begin() as conn:
                conn.execute(sa.update(Observation.__table__).where(Observation.id == second)
                             .values(replaces_id=None))
            flask_migrate.upgrade(revision="5c1e2d7a9b40")
            with db.engine.connect() as conn:
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("observations")}
                assert "uq_observations_one_correction" in indexes
            with pytest.raises(sa.exc.IntegrityError):
                with db.engine.begin() as conn:
                    conn.execute(sa.update(Observation.__table__).where(Observation.id == second)
                                 .values(replaces_id=wrong["id"]))

            flask_migrate.downgrade(revision=BEFORE)
            with db.engine.connect() as conn:
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("observations")}
                assert "uq_observations_one_correction" not in indexes
        finally:
            db.session.remove()
            db.engine.dispose()
