"""The one-way arrows: a collector uses codex_lb.events and nothing else of
codex-lb, and no collector uses another (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

COLLECTORS = Path(__file__).resolve().parents[2] / "collectors"
MODULES = sorted(p for p in COLLECTORS.glob("*.py") if p.name != "__init__.py")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        return True
    return module == "codex_lb.events" or module.startswith("codex_lb.events.")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_collector_imports_only_the_events_package(path: Path) -> None:
    """Outside the standard library, only ``codex_lb.events`` is imported."""
    assert sorted(m for m in imported(path) if not allowed(m)) == []


def test_every_collector_module_is_checked() -> None:
    """The check above sees all ten built-in collectors."""
    assert len(MODULES) == 10
