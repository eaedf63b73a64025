#!/usr/bin/env bash
# Sets up and starts the system on SQLite (instance/detox.db) with a demo unit, demo staff of
# every role and a few residents; prints the URL and the demo sign-ins.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}

if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else sudo apt-get install -y -qq python3-venv; fi
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .

export DETOX_CONFIG=${DETOX_CONFIG:-development}
if [ -z "${SECRET_KEY:-}" ]; then
  mkdir -p instance
  [ -f instance/secret_key ] || .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' > instance/secret_key
  SECRET_KEY=$(cat instance/secret_key); export SECRET_KEY
fi
.venv/bin/flask --app wsgi db upgrade
.venv/bin/flask --app wsgi demo seed

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if .venv/bin/flask --app wsgi scheduler --help >/dev/null 2>&1; then
  # One scheduler process beside the web server (never one per web worker).
  .venv/bin/flask --app wsgi scheduler run & pids+=($!)
fi
echo
echo "The detox unit system is running at http://$HOST:$PORT/  (Ctrl-C stops it)"
.venv/bin/gunicorn -c gunicorn.conf.py --bind "$HOST:$PORT" --workers 2 --threads 4 --access-logfile - wsgi:app & pids+=($!)
wait "${pids[@]}"
