#!/usr/bin/env bash
# Sets up and runs every test on a fresh machine: Debian's PostgreSQL and Chromium, a
# virtual environment with the project and its test extras, then the whole suite twice:
# on SQLite (the embedded default) and on PostgreSQL (the scale-out engine).
# Extra arguments go to pytest (e.g. scripts/test.sh -k audit).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages (Debian) ---------------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Python environment ---------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# --- PostgreSQL -----------------------------------------------------------------------------
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main"' | grep -q .; then
    as_root pg_createcluster "$pg_version" main >/dev/null
  fi
  as_root pg_ctlcluster "$pg_version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do as_root su postgres -c "pg_isready -q" && break; sleep 1; done
  as_root su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'detox') THEN
    CREATE ROLE detox LOGIN PASSWORD 'detox' SUPERUSER;
  END IF;
  -- The app's role in production owns nothing (flask db grant); tests/unit/test_privileges.py
  -- connects as it to show what it may not do.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'detox_app') THEN
    CREATE ROLE detox_app LOGIN PASSWORD 'detox_app' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
SELECT 'CREATE DATABASE detox_test OWNER detox ENCODING ''UTF8'' LC_COLLATE ''C.UTF-8'' LC_CTYPE ''C.UTF-8'' TEMPLATE template0' WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = 'detox_test')\gexec
SQL
  export PG_URL=postgresql+psycopg://detox:detox@127.0.0.1:5432/detox_test
else
  export PG_URL=$TEST_DATABASE_URL
fi

# --- the suite, on both engines -------------------------------------------------------------
status=0
echo "== tests on SQLite"
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q "$@" || status=1
echo "== tests on PostgreSQL"
TEST_DATABASE_URL=$PG_URL .venv/bin/python -m pytest -q "$@" || status=1
exit $status
