"""The commissioners' NDTMS-style return."""
from __future__ import annotations

from flask.cli import AppGroup

returns_cli = AppGroup("returns", help="Returns to commissioners.")
