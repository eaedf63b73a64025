"""Each package's JavaScript is served from its own blueprint's static folder (``app.css`` from
the app's), to anyone (it holds no data), under the Content-Security-Policy ('self') that lets
the pages run it; and each page loads its script from its package."""
from __future__ import annotations

import pytest
from flask import url_for

from tests.medication.helpers import order, prn_chlordiazepoxide

SCRIPTS = [("unit_pages", "admit.js", "/static/unit/admit.js"),
           ("unit_pages", "board.js", "/static/unit/board.js"),
           ("monitoring_pages", "observe.js", "/static/monitoring/observe.js"),
           ("medication_pages", "give.js", "/static/medication/give.js"),
           ("static", "app.css", "/static/app.css")]


@pytest.mark.parametrize("endpoint, filename, path", SCRIPTS)
def test_each_packages_assets_are_served_from_its_own_folder_without_a_session(app, client, endpoint,
                                                                               filename, path):
    with app.test_request_context():
        prefix = "" if endpoint == "static" else f"{endpoint}."
        assert url_for(f"{prefix}static", filename=filename) == path
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == ("text/css" if filename.endswith(".css") else "text/javascript")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "no-store" not in response.headers.get("Cache-Control", "")  # static, not clinical data


def test_a_script_is_not_served_from_the_apps_folder_any_more(client):
    assert client.get("/static/admit.js").status_code == 404


def test_every_page_loads_its_script_from_its_package(unit_staff, admit):
    _, clients = unit_staff("medically_managed")
    nurse, doctor = clients["nurse"], clients["doctor"]
    admission = admit(nurse)
    prn = order(doctor, admission["id"], prn_chlordiazepoxide())
    pages = {"/": "/static/unit/board.js",
             "/admissions/new": "/static/unit/admit.js",
             f"/admissions/{admission['id']}/observe/ciwa-ar": "/static/monitoring/observe.js",
             "/escalations": "/static/unit/board.js",
             f"/orders/{prn['id']}/give": "/static/medication/give.js"}
    for path, script in pages.items():
        page = nurse.get(path)
        assert page.status_code == 200, path
        assert f'<script src="{script}" defer></script>' in page.get_data(as_text=True), path
