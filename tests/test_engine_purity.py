"""The engine room stays pure: no I/O libraries, no asyncio, no store, no wall clock.

Checked on the source (AST), so an import hidden in a function body is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "detector" / "engine"
# What engine modules may import besides the standard library's pure parts.
# detector.native: the package's __init__ asks it whether to load the compiled build; it reads
# files (the build's manifest, the sources' hashes) so that the engine's modules need not.
ALLOWED_DETECTOR = ("detector.engine", "detector.model", "detector.timeutil", "detector.native")
ALLOWED_THIRD_PARTY = ("lark", "yaml")  # the `when` grammar; rule files are parsed from text
FORBIDDEN_STDLIB = (
    "asyncio", "socket", "subprocess", "threading", "multiprocessing", "time", "http",
    "urllib", "sqlite3", "os", "shutil", "random",
)  # fmt: skip
FORBIDDEN_CALLS = {("time", "time"), ("time", "monotonic"), ("datetime", "now")}
FORBIDDEN_CALLS |= {("datetime", "utcnow"), ("date", "today"), ("datetime", "today")}


def problems(source: str, module: str) -> list[str]:
    """Everything impure in one module's source, as `module:line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if not _allowed(name):
                found.append(f"{module}:{getattr(node, 'lineno', 0)}: imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (owner_name, node.func.attr) in FORBIDDEN_CALLS:
                found.append(f"{module}:{node.lineno}: calls {owner_name}.{node.func.attr}()")
    return found


def _allowed(name: str) -> bool:
    top = name.split(".")[0]
    if top == "detector":
        return name.startswith(ALLOWED_DETECTOR)
    if top in ALLOWED_THIRD_PARTY:
        return True
    if top in ("aiohttp", "sqlalchemy", "sqlmodel", "structlog", "prometheus_client"):
        return False
    return top not in FORBIDDEN_STDLIB


def test_every_engine_module_is_pure() -> None:
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) >= 8
    found = [p for path in modules for p in problems(path.read_text(), path.name)]
    assert found == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import asyncio\n", "imports asyncio"),
        ("from detector.store import Store\n", "imports detector.store"),
        ("from detector.daemon import Daemon\n", "imports detector.daemon"),
        ("import sqlmodel\n", "imports sqlmodel"),
        ("from sqlalchemy.orm import Session\n", "imports sqlalchemy.orm"),
        ("def f():\n    import aiohttp\n", "imports aiohttp"),
        ("import time\nx = time.time()\n", "calls time.time()"),
        ("from datetime import datetime\nx = datetime.now()\n", "calls datetime.now()"),
    ],
)
def test_the_checker_catches_impure_source(source: str, what: str) -> None:
    found = problems(source, "bad.py")
    assert any(what in problem for problem in found), found


def test_the_checker_passes_pure_source() -> None:
    source = (
        "from detector.model import Rule\nfrom detector.engine.when import When\nimport bisect\n"
    )
    assert problems(source, "good.py") == []
