"""The collector API in one place: what a collector author and the
application import. Each part lives in a module of its own role:

- ``discovery``: the built-in list, the ``codex_lb.collectors`` entry point
  group and ``CODEX_LB_COLLECTORS``;
- ``registry``: the metrics collectors declare, and their ``ctx``;
- ``state``: the small persisted state a collector may keep;
- ``hooks``: calling collector code so that nothing it raises escapes;
- ``host``: registering, subscribing and running collectors, ``/metrics``.
"""

from __future__ import annotations

from codex_lb.events.discovery import (
    ENTRY_POINT_GROUP,
    discover,
    entry_point_collectors,
    import_collector,
)
from codex_lb.events.hooks import HookRunner, collector_name
from codex_lb.events.host import COLLECTORS_KEY, CollectorHost, metrics_handler
from codex_lb.events.registry import CollectorContext, CollectorError, MetricRegistry
from codex_lb.events.state import STATE_WRITE_SECONDS, CollectorState, StateStore

__all__ = [
    "COLLECTORS_KEY",
    "ENTRY_POINT_GROUP",
    "STATE_WRITE_SECONDS",
    "CollectorContext",
    "CollectorError",
    "CollectorHost",
    "CollectorState",
    "HookRunner",
    "MetricRegistry",
    "StateStore",
    "collector_name",
    "discover",
    "entry_point_collectors",
    "import_collector",
    "metrics_handler",
]
