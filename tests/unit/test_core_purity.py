"""gateway.core stays pure: no I/O libraries, no spyne, no SQLAlchemy, no clock, no environment."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.core

CORE = Path(gateway.core.__file__).parent
FORBIDDEN_MODULES = {
    "spyne",
    "sqlalchemy",
    "alembic",
    "requests",
    "zeep",
    "socket",
    "http",
    "urllib",
    "subprocess",
    "gunicorn",
    "os",
    "pathlib",
    "time",
    "logging",
    "random",
}
FORBIDDEN_CALLS = {"open", "now", "utcnow", "today", "getenv"}


def core_modules():
    return sorted(CORE.glob("*.py"))


def test_core_docstring_states_the_rule():
    assert "no I/O" in gateway.core.__doc__


def test_core_imports_nothing_impure():
    for path in core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
                if top == "gateway":
                    assert name.startswith(("gateway.core", "gateway.errors")), f"{path.name} imports {name}"


def test_core_reads_no_clock_files_or_environment():
    for path in core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in FORBIDDEN_CALLS, f"{path.name} calls {name}()"
            if isinstance(node, ast.Attribute) and node.attr == "environ":
                raise AssertionError(f"{path.name} reads the environment")


def test_only_entry_points_read_the_environment():
    root = CORE.parent
    readers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                if isinstance(node.value, ast.Name) and node.value.id == "os":
                    readers.add(path.relative_to(root).as_posix())
    assert readers <= {"cli.py", "launcher.py"}, readers
