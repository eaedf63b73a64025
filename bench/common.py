"""Shared pieces of the benchmarks: arguments, a fresh database, seeding, a gunicorn server.

Not a benchmark itself. Every benchmark script imports this module, so each can run alone
(``python bench/board.py --quick``) or be called by ``bench/run.py``.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts run as files: make the project importable
    sys.path.insert(0, str(ROOT))

BENCH_SECRET = "bench-only-secret-not-for-production"
PASSWORD = "bench-password-123"
# A referral that a medically monitored unit admits (the tests' ASSESSMENT_OK).
ASSESSMENT_OK = {"sadq": 20, "audit": 25, "units_per_day": 12, "history_of_seizures": False,
                 "history_of_delirium_tremens": False, "significant_comorbidity": False,
                 "pregnant": False}
CIWA_KEYS = ("nausea_vomiting", "tremor", "paroxysmal_sweats", "anxiety", "agitation",
             "tactile_disturbances", "auditory_disturbances", "visual_disturbances", "headache",
             "orientation")
NEWS2_ZERO = {"respiration_rate": 18, "spo2": 97, "spo2_scale": 1, "supplemental_oxygen": False,
              "systolic_bp": 128, "pulse": 88, "consciousness": "A", "temperature": 37.2}


def log(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries only ``name: value`` figures."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def figure(name: str, value) -> None:
    """Print one figure as ``name: value``."""
    if isinstance(value, float):
        value = f"{value:.2f}"
    print(f"{name}: {value}", flush=True)


def parse_args(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (the whole suite in about a minute)")
    parser.add_argument("--db", default=None,
                        help="database URL (default: a fresh SQLite file in a temp dir); a "
                             "PostgreSQL database is emptied: its tables are dropped and recreated")
    return parser.parse_args(argv)


def script_main(run, description: str, argv=None) -> int:
    """A benchmark script's entry point: parse the arguments, run, print each figure."""
    args = parse_args(description, argv)
    for name, value in run(args).items():
        figure(name, value)
    return 0


def ciwa_items(total: int) -> dict[str, int]:
    """CIWA-Ar items adding up to ``total`` (0-67), filled 7 at a time (orientation last, 0-4)."""
    items, left = {}, total
    for key in CIWA_KEYS:
        items[key] = min(4 if key == "orientation" else 7, left)
        left -= items[key]
    return items


# --- the database -----------------------------------------------------------------------------

@contextmanager
def database(url: str | None):
    """Yield a database URL: the one given, or a fresh SQLite file removed afterwards."""
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="detox-bench-")
    try:
        yield f"sqlite:///{folder}/bench.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_app(url: str):
    """The production app on ``url``, as gunicorn would build it, for seeding and in-process runs.

    ARGON2_CHEAP only makes the seeded password hashes cheap (sign-in verifies with the
    parameters stored in each hash); nothing measured hashes a password.
    """
    from config.app import create_app
    from config.settings import ProductionConfig

    return create_app(ProductionConfig, SQLALCHEMY_DATABASE_URI=url, SECRET_KEY=BENCH_SECRET,
                      SESSION_COOKIE_SECURE=False, ARGON2_CHEAP=True)


def reset_schema(app, extra_metadata=()) -> None:
    """Drop and recreate every table (the app's and the bench's own)."""
    import logging

    from config.extensions import db

    with app.app_context():
        for metadata in extra_metadata:
            metadata.drop_all(db.engine)
        db.drop_all()
        db.create_all()
        for metadata in extra_metadata:
            metadata.create_all(db.engine)
        db.session.remove()
    logging.getLogger().setLevel(logging.WARNING)  # the app logs INFO; keep the bench quiet


def dispose(app) -> None:
    from config.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- seeding ------------------------------------------------------------------------------------

def seed_unit(app, code: str, *, nurses: int, now: datetime,
              model: str = "medically_monitored") -> list[str]:
    """A unit (through the service) and its nurses; returns the nurses' usernames."""
    from config.extensions import db
    from unit import services

    with app.app_context():
        services.create_unit(code, f"Bench unit {code}", model, now=now)
        names = []
        for i in range(nurses):
            username = f"{code.lower()}-nurse{i + 1}"
            services.create_staff(unit_code=code, username=username, role="nurse",
                                  password=PASSWORD, full_name=f"Nurse {code} {i + 1}",
                                  email=f"{username}@bench.invalid", now=now)
            names.append(username)
        db.session.remove()
    return names


def admit_many(app, username: str, count: int, now: datetime, *, seed: int = 1) -> list[int]:
    """``count`` alcohol admissions through ``admit_resident`` (schedules: CIWA-Ar and NEWS2)."""
    from sqlalchemy import select

    from config.extensions import db
    from unit import services
    from unit.models import Staff

    rng = random.Random(seed)
    ids = []
    with app.app_context():
        actor = db.session.scalars(select(Staff).where(Staff.username == username)).one()
        for i in range(count):
            dob = date(1960 + rng.randrange(40), 1 + rng.randrange(12), 1 + rng.randrange(28))
            admission = services.admit_resident(
                actor, resident={"name": f"Resident {username} {i + 1}", "date_of_birth": dob,
                                 "nhs_number": None},
                substances=["alcohol"], assessment=dict(ASSESSMENT_OK), now=now)
            ids.append(admission.id)
        db.session.remove()
    return ids


def score_rows(scale_code: str, items: dict, *, age: int = 40) -> dict:
    """Column values of a recorded observation with these items (scored by the app's scale)."""
    from monitoring.scales import get_scale

    result = get_scale(scale_code).score(items, None, age=age, pregnant=False)
    return {"items": result.items, "item_scores": result.item_scores, "total": result.total,
            "band": result.band, "risk": result.risk, "warnings": list(result.warnings) or None}


# --- a gunicorn server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _is_our_worker(pid: int, port: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return f"127.0.0.1:{port}".encode() in handle.read()
    except OSError:
        return False


@contextmanager
def gunicorn(app_module: str, url: str, *, workers: int = 4, log_dir: str | None = None):
    """Serve ``app_module`` with gunicorn (sync workers) on 127.0.0.1; yield the base URL.

    The environment is production's (DETOX_CONFIG=production) except for plain-HTTP cookies.
    Stops the server it started (by pid) however the block ends.
    """
    import requests

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": BENCH_SECRET,
           "DETOX_CONFIG": "production", "SESSION_COOKIE_SECURE": "0",
           "PYTHONPATH": str(ROOT)}
    folder = log_dir or tempfile.mkdtemp(prefix="detox-bench-gunicorn-")
    log_path = os.path.join(folder, f"gunicorn-{port}.log")
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--worker-class", "sync", "--timeout", "60",
               "--graceful-timeout", "10", "--chdir", str(ROOT), app_module]
    with open(log_path, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({process.returncode}); see {log_path}:\n"
                                   + Path(log_path).read_text()[-3000:])
            try:
                requests.get(base + "/login", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer in 60 s; see {log_path}")
                time.sleep(0.2)
        # Every worker has imported the app before the clock starts (warm-up requests also help).
        log(f"gunicorn {app_module} pid {process.pid} on {base}, {workers} sync workers")
        yield base
    finally:
        workers_pids = _children(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the master stops its own workers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                for pid in workers_pids:  # the workers of the master we started, if still there
                    if _is_our_worker(pid, port):
                        os.kill(pid, signal.SIGKILL)
        if log_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def signed_in_session(base: str, username: str):
    """A requests.Session signed in through POST /api/v1/auth/login."""
    import requests

    session = requests.Session()
    response = session.post(base + "/api/v1/auth/login",
                            json={"username": username, "password": PASSWORD}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"sign-in of {username} failed: {response.status_code} {response.text[:300]}")
    return session


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
