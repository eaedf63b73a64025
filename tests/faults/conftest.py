"""Fault-tolerance and security tests against the real thing: gunicorn serving ``wsgi:app`` with
the production settings, on a database migrated with ``flask db upgrade`` and seeded through
the CLI (a fresh SQLite file, or a fresh PostgreSQL database when TEST_DATABASE_URL is set).

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time; the tests stop only
the processes they started, by pid.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PASSWORD, TEST_DATABASE_URL, referral
from tests.items import CIWA_KEYS, NEWS2_ZERO, ciwa  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's flask and gunicorn
SECRET = "faults-only-secret-not-for-production"
READY_SECONDS = 60
REQUEST_TIMEOUT = 30

# Two units: A is medically managed (PRN benzodiazepines allowed), B medically monitored.
UNIT_A, UNIT_B = "FA", "FB"
STAFF = {
    UNIT_A: [("a-nurse1", "nurse"), ("a-nurse2", "nurse"), ("a-nurse3", "nurse"),
             ("a-nurse4", "nurse"), ("a-nurse5", "nurse"), ("a-doctor", "doctor"),
             ("a-gp", "gp"), ("a-manager", "manager"), ("a-inspector", "inspector")],
    UNIT_B: [("b-nurse1", "nurse"), ("b-gp", "gp"), ("b-doctor", "doctor"), ("b-manager", "manager")],
}
MODELS = {UNIT_A: "managed", UNIT_B: "monitored"}


# Runs in its own process: the CLI commands themselves (``unit create``, ``user create`` with
# NEW_PASSWORD), through click's runner so that seeding costs one interpreter, not fifteen.
# Cheap argon2 parameters only make the seeded hashes cheap; sign-in reads them from the hash.
_SEED_SCRIPT = r"""
import json, sys
from wsgi import app
app.config["ARGON2_CHEAP"] = True
spec = json.loads(sys.argv[1])
runner = app.test_cli_runner()
for code, model in spec["models"].items():
    result = runner.invoke(args=["unit", "create", code, "--name", f"Fault unit {code}",
                                 "--model", model])
    assert result.exit_code == 0, result.output
    for username, role in spec["staff"][code]:
        result = runner.invoke(args=["user", "create", username, "--role", role, "--unit", code,
                                     "--name", username.replace("-", " ").title()],
                               env={"NEW_PASSWORD": spec["password"]})
        assert result.exit_code == 0, result.output
print("seeded")
"""


def new_key() -> str:
    return str(uuid.uuid4())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the database -----------------------------------------------------------------------------

@dataclass
class FaultDatabase:
    """A fresh database for one test (or module), migrated and seeded."""

    url: str
    folder: Path
    _engine: sa.Engine | None = None

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process serving this database (production settings)."""
        env = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
        env.update(DATABASE_URL=self.url, SECRET_KEY=SECRET, DETOX_CONFIG="production",
                   SESSION_COOKIE_SECURE="0", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def flask(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """Run ``flask --app wsgi ARGS`` against this database; returns the finished process."""
        return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                              env=self.env(**env), capture_output=True, text=True, timeout=timeout)

    @property
    def engine(self) -> sa.Engine:
        """An engine of the test's own, to read what the server stored."""
        if self._engine is None:
            self._engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        return self._engine

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _admin_connect():
    """psycopg connected to the ``postgres`` database with TEST_DATABASE_URL's credentials."""
    import psycopg

    url = sa.engine.make_url(TEST_DATABASE_URL)
    return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                           password=url.password, dbname="postgres", autocommit=True,
                           connect_timeout=10)


def _create_postgres_database() -> str:
    base = sa.engine.make_url(TEST_DATABASE_URL)
    name = f"{base.database}_fault_{uuid.uuid4().hex[:10]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    deadline = time.monotonic() + 60  # the cluster may be starting again after test_db_down
    while True:
        try:
            with _admin_connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _prepare_database(folder: Path) -> Iterator[FaultDatabase]:
    folder.mkdir(parents=True, exist_ok=True)
    url = _create_postgres_database() if TEST_DATABASE_URL else f"sqlite:///{folder / 'detox.db'}"
    database = FaultDatabase(url, folder)
    try:
        migrated = database.flask("db", "upgrade")
        assert migrated.returncode == 0, f"flask db upgrade failed:\n{migrated.stderr[-3000:]}"
        spec = {"models": MODELS, "staff": STAFF, "password": PASSWORD}
        seeded = subprocess.run([sys.executable, "-c", _SEED_SCRIPT, json.dumps(spec)], cwd=ROOT,
                                env=database.env(), capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, f"seeding failed:\n{seeded.stdout[-2000:]}\n{seeded.stderr[-3000:]}"
        yield database
    finally:
        database.dispose()
        if database.is_postgres:
            _drop_postgres_database(url)


@pytest.fixture
def fault_db(tmp_path) -> Iterator[FaultDatabase]:
    """A fresh migrated and seeded database for this test."""
    yield from _prepare_database(tmp_path / "db")


# --- the server -------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


@dataclass
class Server:
    """gunicorn serving ``wsgi:app`` on 127.0.0.1 (2 workers x 4 threads: 2 cores)."""

    database: FaultDatabase
    log_path: Path
    port: int = field(default_factory=free_port)
    workers: int = 2
    threads: int = 4
    # True: the shipped production settings (gunicorn.conf.py, with ``env`` for its
    # variables) instead of the workers and threads above.
    config_file: bool = False
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    _log_offset: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> Server:
        assert self.process is None or self.process.poll() is not None, "already running"
        if self.config_file:
            command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                       "--bind", f"127.0.0.1:{self.port}", "--chdir", str(ROOT), "wsgi:app"]
        else:
            command = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                       "--workers", str(self.workers), "--threads", str(self.threads),
                       "--timeout", "30", "--graceful-timeout", "5", "--chdir", str(ROOT), "wsgi:app"]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.database.env(**self.env),
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self, seconds: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if requests.get(self.url("/login"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer in {seconds:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The master and its workers (all started by this test)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *_children(self.process.pid)]

    def kill(self) -> None:
        """SIGKILL the master and every worker at once: a crash, not a shutdown."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self._reap_workers()

    def stop(self) -> None:
        """A graceful stop (SIGTERM to the master, which stops its workers); SIGKILL if stuck."""
        if self.process is None or self.process.poll() is not None:
            return
        workers = _children(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reap_workers(workers)

    def _reap_workers(self, workers: list[int] | None = None) -> None:
        # Workers notice a dead master within a second or so; never leave one behind.
        deadline = time.monotonic() + 10
        for pid in workers or []:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-chars:]

    def tracebacks(self) -> list[str]:
        """Tracebacks the server logged, each with the log line before it (for messages)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        found, current, previous = [], None, ""
        for line in text.splitlines():
            if line.startswith("Traceback (most recent call last)"):
                current = [previous, line]
            elif current is not None and (line.startswith((" ", "\t")) or not _LOG_LINE.match(line)):
                current.append(line)
            else:
                if current is not None:
                    found.append("\n".join(current))
                current = None
            previous = line
        if current is not None:
            found.append("\n".join(current))
        return found

    # --- clients ------------------------------------------------------------------------------

    def session(self, username: str, password: str = PASSWORD) -> requests.Session:
        """A requests.Session signed in through POST /api/v1/auth/login."""
        client = requests.Session()
        response = client.post(self.url("/api/v1/auth/login"),
                               json={"username": username, "password": password},
                               timeout=REQUEST_TIMEOUT)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return client

    def admit(self, client: requests.Session, name: str, **kw) -> dict:
        """Admit a resident through POST /api/v1/admissions; returns the admission."""
        response = client.post(self.url("/api/v1/admissions"), json=referral(name=name, **kw),
                               headers={"Idempotency-Key": new_key()}, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 201, (response.status_code, response.text[:500])
        return response.json()

    def post(self, client: requests.Session, path: str, body: dict, key: str | None = None,
             **kw) -> requests.Response:
        """POST JSON with an Idempotency-Key (a fresh one unless given)."""
        return client.post(self.url(path), json=body, headers={"Idempotency-Key": key or new_key()},
                           timeout=kw.pop("timeout", REQUEST_TIMEOUT), **kw)

    def observe(self, client: requests.Session, admission_id: int, scale: str, items: dict) -> dict:
        response = self.post(client, f"/api/v1/admissions/{admission_id}/observations",
                             {"scale": scale, "items": items})
        assert response.status_code == 201, (response.status_code, response.text[:500])
        return response.json()


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d |\[\d{4}-)")  # app or gunicorn log record


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _serve(database: FaultDatabase, folder: Path) -> Iterator[Server]:
    server = Server(database, folder / "gunicorn.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(fault_db, tmp_path) -> Iterator[Server]:
    """gunicorn serving a fresh, seeded database for this test; stopped afterwards."""
    yield from _serve(fault_db, tmp_path)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory) -> Iterator[Server]:
    """One server (and database) shared by the tests of a module that only read or add."""
    folder = tmp_path_factory.mktemp("faults")
    for database in _prepare_database(folder / "db"):
        yield from _serve(database, folder)


def make_app(database: FaultDatabase, **overrides):
    """The production app on the test's database, built in this process (for jobs, url_map)."""
    from config.app import create_app
    from config.settings import ProductionConfig

    return create_app(ProductionConfig, SQLALCHEMY_DATABASE_URI=database.url, SECRET_KEY=SECRET,
                      SESSION_COOKIE_SECURE=False, **overrides)


def stay_records(server, unit: str, nurse, manager, admission_id: int) -> dict:
    """A bed, a waiting-list entry, an incident, a screen, a handover and its entry, a leave,
    and a follow-up task after a signed-off discharge summary, on ``unit``."""
    def made(response, status: int = 201) -> dict:
        assert response.status_code == status, response.text[:500]
        return response.json()

    bed = made(server.post(manager, "/api/v1/beds", {"name": f"Room {unit}"}))
    planned = made(server.post(nurse, "/api/v1/waiting-list", {
        **referral(name=f"Waiting {unit}"), "planned_date": (date.today() + timedelta(days=2)).isoformat()}))
    incident = made(server.post(nurse, "/api/v1/incidents", {
        "type": "fall", "severity": "low", "occurred_at": datetime.now(timezone.utc).isoformat(),
        "admission_id": admission_id, "description": "Slipped", "action_taken": "Checked"}))
    screen = made(server.post(nurse, f"/api/v1/admissions/{admission_id}/screens",
                              {"kind": "urine", "results": {"cocaine": "negative"}}))
    handover = made(server.post(nurse, "/api/v1/handovers", {}))
    away = server.admit(nurse, f"On Leave {unit}")
    leave = made(server.post(nurse, f"/api/v1/admissions/{away['id']}/leave", {
        "kind": "planned", "reason": "Home visit",
        "expected_return_at": (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()}))
    gone = server.admit(nurse, f"Discharged {unit}")
    made(server.post(nurse, f"/api/v1/admissions/{gone['id']}/discharge", {"discharge_type": "completed"}), 200)
    made(server.post(nurse, f"/api/v1/admissions/{gone['id']}/discharge-summary", {
        "aftercare": {"gp_follow_up": "Review in a week"}, "contacts": [{"role": "key worker", "name": "Pat"}],
        "gp": {"name": "Dr Shah"}}), 200)
    summary = made(server.post(nurse, f"/api/v1/admissions/{gone['id']}/discharge-summary/finalise", {}), 200)
    return {"bed_id": bed["id"], "planned_id": planned["id"], "incident_id": incident["id"],
            "screen_id": screen["id"], "handover_id": handover["id"],
            "entry_id": handover["entries"][0]["id"], "leave_id": leave["id"],
            "task_id": summary["follow_ups"][0]["id"]}
