"""Fragments of a page (the cells of the ward board) rendered without Flask's per-render work.

``render_template`` runs every context processor (the scheduler banner reads its heartbeats)
and sends signals on each call, and a Jinja render sets up a fresh context; the board has
three cells per resident, so for 300 residents that overhead costs more than the cells
themselves. ``partials(name, **shared)`` loads a template of macros once, bound to the values
every cell shares; each cell is then one macro call. Fragments get the Jinja environment's
globals and filters (``url_for``, ``csrf_token``, ``hm``...) but not ``request``, ``session``
or ``g``: they are given what they show.
"""
from __future__ import annotations

from typing import Any

from flask import current_app


def partials(name: str, **shared: Any):
    """The macros of template ``name`` (call them: ``cells.scores(rows)``), with ``shared``."""
    return current_app.jinja_env.get_template(name).make_module(shared)
