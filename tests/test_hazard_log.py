"""The clinical hazard log and the tests that guard it stay in step.

``docs/safety/hazard-log.md`` lists every clinical hazard the system controls, each under a
heading ``## HAZ-NNN: title`` with the tests that guard it written as
``tests/<path>.py::test_name`` (or ``::Class::test_name``). This test fails when a hazard
names a test that does not exist, when that test does not name its hazard id (in its name,
as ``haz_nnn``, or in its docstring, as ``HAZ-NNN``), or when a hazard names no test at all.
"""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "safety" / "hazard-log.md"
HEADING = re.compile(r"^## (HAZ-\d{3}):", re.MULTILINE)
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")
FIELDS = ("Cause", "Effect", "Severity", "Likelihood", "Controls", "Tests")


def hazards() -> dict[str, str]:
    """Each hazard id with the text of its section."""
    text = LOG.read_text(encoding="utf-8")
    marks = list(HEADING.finditer(text))
    return {mark.group(1): text[mark.start():(marks[i + 1].start() if i + 1 < len(marks) else len(text))]
            for i, mark in enumerate(marks)}


@cache
def functions_of(path: str) -> dict[str, ast.FunctionDef]:
    """``name`` and ``Class::name`` for every test function of a test module."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}::{item.name}"] = item
    return found


def names_hazard(function: ast.FunctionDef, hazard_id: str) -> bool:
    number = hazard_id.split("-")[1]
    docstring = ast.get_docstring(function) or ""
    return f"haz_{number}" in function.name.lower() or hazard_id in docstring


def test_the_hazard_log_has_hazards_with_every_field():
    found = hazards()
    assert found, "docs/safety/hazard-log.md lists no hazard"
    ids = HEADING.findall(LOG.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids)), f"a hazard id is used twice: {sorted(ids)}"
    for hazard_id, section in found.items():
        missing = [field for field in FIELDS if f"**{field}**" not in section]
        assert not missing, f"{hazard_id} lacks {missing}"


def test_every_hazard_names_tests_that_exist_and_name_it():
    problems = []
    for hazard_id, section in hazards().items():
        refs = TEST_REF.findall(section)
        if not refs:
            problems.append(f"{hazard_id}: names no test")
        for path, name in refs:
            if not (ROOT / path).is_file():
                problems.append(f"{hazard_id}: {path} does not exist")
                continue
            function = functions_of(path).get(name)
            if function is None:
                problems.append(f"{hazard_id}: {path}::{name} does not exist")
            elif not names_hazard(function, hazard_id):
                problems.append(f"{hazard_id}: {path}::{name} does not name {hazard_id} "
                                "in its docstring")
    assert not problems, "\n".join(problems)


def test_a_test_that_claims_a_hazard_is_listed_under_it():
    """A docstring naming HAZ-NNN is listed in that hazard's section (no orphan claims)."""
    listed = {(hazard_id, f"{path}::{name}") for hazard_id, section in hazards().items()
              for path, name in TEST_REF.findall(section)}
    orphans = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for name, function in functions_of(relative).items():
            for hazard_id in re.findall(r"HAZ-\d{3}", ast.get_docstring(function) or ""):
                if (hazard_id, f"{relative}::{name}") not in listed:
                    orphans.append(f"{relative}::{name} claims {hazard_id}")
    assert not orphans, "\n".join(orphans)
