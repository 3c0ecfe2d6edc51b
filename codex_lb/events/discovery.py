"""Finding collectors: the built-in list, the ``codex_lb.collectors`` entry
point group, then ``CODEX_LB_COLLECTORS`` (``module:Class[,module:Class]``)."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from typing import Any

from codex_lb.events.registry import CollectorError

ENTRY_POINT_GROUP = "codex_lb.collectors"


def import_collector(spec: str, source: str = "CODEX_LB_COLLECTORS") -> type:
    """The class a ``module:Class`` spec names; CollectorError if it cannot."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CollectorError(f"{source}={spec!r}: must be module:Class[,module:Class]")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CollectorError(
            f"{source}={spec!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    found: Any = module
    for part in attr.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type):
        raise CollectorError(
            f"{source}={spec!r}: module {module_name!r} has no class {attr!r}"
        )
    return found


def entry_point_collectors() -> list[type]:
    """Collector classes installed packages offer in the entry point group."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.append(import_collector(entry.value, f"entry point {entry.name!r}"))
    return found


def discover(specs: Iterable[str], builtin: Iterable[type] = ()) -> list[type]:
    """Built-in classes, then entry points, then ``specs``; each class once."""
    classes: list[type] = list(builtin)
    classes += entry_point_collectors()
    classes += [import_collector(spec) for spec in specs]
    unique: list[type] = []
    for cls in classes:
        if cls not in unique:
            unique.append(cls)
    return unique
