"""The direction of the imports, checked on every module (function-level imports included).

``unit`` <- ``monitoring`` <- ``medication``: a package imports only those before it. ``config``
is infrastructure every package may import, except its composition root (``config.app``, which
assembles the app, and ``config.scheduler``, which lists the jobs): those two alone import the
packages, and no package imports them. See README.md, "Layout".
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"unit": 0, "monitoring": 1, "medication": 2}  # each may import those ranked lower
COMPOSITION_ROOT = ("config.app", "config.scheduler")


def module_name(path: Path) -> str:
    """``monitoring/scales/ciwa.py`` -> ``monitoring.scales.ciwa``; a package's ``__init__`` is
    the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for every import anywhere in ``source``, relative ones resolved; for
    ``from a import b`` both ``a`` and ``a.b`` (``b`` may be a module: ``from config import app``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[:len(parent) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _is_root(target: str) -> bool:
    return any(target == root or target.startswith(root + ".") for root in COMPOSITION_ROOT)


def violations(module: str, imports: Iterator[tuple[int, str]]) -> list[str]:
    """Every import of ``module`` against the direction, in words."""
    top = module.split(".")[0]
    found: dict[int, str] = {}  # one per import statement
    for line, target in imports:
        target_top = target.split(".")[0]
        if line in found:
            continue
        if top in RANK and target_top in RANK and RANK[target_top] > RANK[top]:
            found[line] = f"{module}:{line} imports {target}: {top} may not import {target_top}"
        elif top in RANK and _is_root(target):
            found[line] = (f"{module}:{line} imports {target}: a package never imports the composition "
                           "root (the Job type is config.jobs)")
        elif top == "config" and not _is_root(module) and (target_top in RANK or _is_root(target)):
            found[line] = f"{module}:{line} imports {target}: config's infrastructure imports no package"
    return list(found.values())


def source_files() -> list[Path]:
    return sorted(path for package in ("config", *RANK) for path in (ROOT / package).rglob("*.py"))


def test_every_import_points_the_allowed_way():
    files = source_files()
    assert ROOT / "config" / "app.py" in files and ROOT / "medication" / "views.py" in files
    found = [message for path in files
             for message in violations(module_name(path),
                                       imported(path.read_text(), module_name(path),
                                                is_package=path.name == "__init__.py"))]
    assert not found, "imports against the direction:\n" + "\n".join(found)


@pytest.mark.parametrize("module, source", [
    ("unit.services", "def hook():\n    from monitoring import services\n"),  # function-level
    ("unit.pages", "import medication.pages\n"),
    ("monitoring.board", "from medication.pages import doses\n"),
    ("monitoring.jobs", "from config.scheduler import Job\n"),
    ("medication.cli", "from config import app\n"),
    ("config.views", "from unit.auth import roles_required\n"),
    ("config.jobs", "def jobs():\n    from config.scheduler import jobs\n"),
    ("monitoring.scales.ciwa", "from ...medication import drugs\n"),  # relative
])
def test_an_import_against_the_direction_is_found(module, source):
    assert violations(module, imported(source, module)), source


@pytest.mark.parametrize("module, source", [
    ("medication.services", "from monitoring.outbox import enqueue\nfrom unit.models import Staff\n"),
    ("monitoring.jobs", "from config.jobs import Job\n"),
    ("config.app", "def register():\n    from medication.views import blp\n"),
    ("config.scheduler", "from monitoring.jobs import JOBS\n"),
    ("config.api", "from config.db import end_transaction\nfrom config.extensions import db\n"),
    ("monitoring.scales", "from .ciwa import CIWA\n"),
])
def test_an_import_along_the_direction_is_allowed(module, source):
    assert violations(module, imported(source, module, is_package=module == "monitoring.scales")) == []
