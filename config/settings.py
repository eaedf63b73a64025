"""Settings objects, chosen by the environment (``DETOX_CONFIG``) and overridden by env vars."""
from __future__ import annotations

import os
from datetime import timedelta


class BaseConfig:
    """Defaults shared by every environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    # None means: an SQLite file in the instance folder (see config.app).
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    SQLITE_BUSY_TIMEOUT_MS = 5000

    # Sessions are held server-side (table staff_sessions); the cookie carries only a token.
    SESSION_IDLE_TIMEOUT = timedelta(minutes=30)
    SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=12)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "0") == "1"
    # Login throttling: this many failed password checks for one username in the window, or
    # many more from one address (a unit's tablets share one address behind its NAT).
    LOGIN_MAX_FAILURES = 5
    LOGIN_MAX_FAILURES_PER_ADDRESS = int(os.environ.get("LOGIN_MAX_FAILURES_PER_ADDRESS", "200"))
    LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
    # How many reverse proxies in front of the app append to X-Forwarded-For (and set
    # X-Forwarded-Proto); 0: the header is ignored and the peer's address is the client's.
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    # Strict-Transport-Security, sent when cookies are HTTPS-only (production); seconds.
    HSTS_MAX_AGE = int(os.environ.get("HSTS_MAX_AGE", str(365 * 24 * 3600)))
    PASSWORD_MIN_LENGTH = 10

    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the server-side session
    # No request of this system comes near 1 MiB; a larger body is refused (413) unread.
    MAX_CONTENT_LENGTH = 1024 * 1024

    API_TITLE = "Detox unit API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"

    TESTING = False

    # SMTP delivery of escalation notifications (the scheduler sends from the outbox).
    MAIL_HOST = os.environ.get("MAIL_HOST", "127.0.0.1")
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USE_TLS = os.environ.get("MAIL_USE_TLS", "0") == "1"   # STARTTLS
    MAIL_USE_SSL = os.environ.get("MAIL_USE_SSL", "0") == "1"   # implicit TLS (port 465)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME", "")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD", "")
    MAIL_FROM = os.environ.get("MAIL_FROM", "detox-unit@localhost")
    MAIL_MESSAGE_ID_DOMAIN = os.environ.get("MAIL_MESSAGE_ID_DOMAIN", "detox-unit.local")
    MAIL_TIMEOUT = float(os.environ.get("MAIL_TIMEOUT", "10"))
    UNIT_TIMEZONE = os.environ.get("UNIT_TIMEZONE", "Europe/London")  # times shown on pages


class DevelopmentConfig(BaseConfig):
    """The embedded default: SQLite in the instance folder, demo friendly."""

    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-secret-change-me")


class TestingConfig(BaseConfig):
    """Used by the test suite; the database URL comes from the test fixtures."""

    TESTING = True
    SECRET_KEY = "testing-secret"
    WTF_CSRF_ENABLED = True
    PASSWORD_MIN_LENGTH = 8
    ARGON2_CHEAP = True  # fast hashes for the suite; production uses the default profile


class ProductionConfig(BaseConfig):
    """Production: PostgreSQL from DATABASE_URL, secure cookies, a real secret."""

    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "1") == "1"
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 5}


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[BaseConfig]:
    """The settings class named by DETOX_CONFIG (default: development)."""
    name = os.environ.get("DETOX_CONFIG", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"DETOX_CONFIG={name!r}: expected one of {sorted(CONFIGS)}") from None
