"""Browser fixtures: one headless Chromium per session, the test's app served on 127.0.0.1
in a background thread, a fresh page per test, sign-in through the form, and screenshots in
artifacts/screenshots/<test-name>-<label>.png for people to look at."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Note: Debian's chromium here ships only the en-US locale, so <input type=date> renders
# mm/dd/yyyy in the screenshots whatever the context locale; a UK tablet shows dd/mm/yyyy.
DESKTOP = {"width": 1280, "height": 800}
PORTRAIT = {"width": 800, "height": 1280}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def playwright_instance():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class LiveServer:
    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app):
    """The test's app served on 127.0.0.1 at a free port; .url is its base address."""
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_page(browser, live_server):
    """new_page(viewport=DESKTOP) -> a page in a fresh context; closed after the test."""
    contexts = []

    def make(viewport: dict | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP, base_url=live_server.url,
                                      locale="en-GB", timezone_id="Europe/London")
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page) -> Page:
    """A page at 1280x800 in a new browser context."""
    return new_page(DESKTOP)


@pytest.fixture
def sign_in():
    """sign_in(page, username, password=PASSWORD): sign in through the /login form."""

    def do(page: Page, username: str, password: str = PASSWORD) -> None:
        page.goto("/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("form button[type=submit]")
        expect(page).not_to_have_url(re.compile(r"/login"))

    return do


@pytest.fixture
def screenshot(request):
    """screenshot(page, label) -> the path of a full-page PNG named after the test."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # test_x[800x1280] -> test_x-800x1280
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def take(page: Page, label: str) -> Path:
        path = SCREENSHOTS / f"{test_name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
