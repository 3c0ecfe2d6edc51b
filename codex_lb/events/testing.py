"""A harness to test one collector: feed it events, read one sample.

    harness = await CollectorHarness.start(MyCollector)
    harness.feed(RequestFinished(...))
    await harness.drain()  # only needed for ``async`` handlers
    assert harness.sample("my_requests_total", {"model": "gpt-5"}) == 1

``sample`` reads like prometheus_client's ``get_sample_value``: a histogram
``x`` answers for ``x_bucket`` (with ``le``), ``x_count`` and ``x_sum``; a
series that does not exist is None.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import aioprometheus
from aioprometheus.collectors import Collector as PromCollector

from codex_lb.config import IdentityMode
from codex_lb.events.bus import EventBus
from codex_lb.events.collector_api import CollectorHost, StateStore
from codex_lb.events.records import Event


class CollectorHarness:
    """One collector on its own bus and registry."""

    def __init__(self, host: CollectorHost, collector: object) -> None:
        self.host = host
        self.collector = collector

    @classmethod
    async def start(
        cls,
        collector: object,
        store: StateStore | None = None,
        identity_mode: IdentityMode = IdentityMode.EMAIL,
        clock: Callable[[], float] = time.time,
    ) -> CollectorHarness:
        """Register ``collector`` (a class or an instance); ``store`` backs
        its persisted state, none keeps it in memory; ``clock`` is what
        ``ctx.clock`` reads."""
        host = CollectorHost(EventBus(), store, identity_mode, clock)
        added = await host.add(collector)
        return cls(host, added)

    def feed(self, *events: Event) -> None:
        """Publish ``events`` in order; ``async`` handlers start as tasks."""
        for event in events:
            self.host.bus.publish(event)

    async def drain(self) -> None:
        """Wait until every ``async`` handler fed so far has finished."""
        await self.host.bus.drain()

    async def settle(self) -> None:
        """Wait for ``async`` handlers and write the collector's state."""
        await self.host.close()

    def text(self) -> str:
        return self.host.render().decode()

    def sample(
        self, name: str, labels: Mapping[str, str] | None = None
    ) -> float | None:
        """The value of one series, or None when it does not exist, as a
        scrape would show it now (the collector's ``collect`` runs first)."""
        self.host.collect()
        wanted = dict(labels or {})
        collectors = self.host.registry.prometheus.collectors
        metric = collectors.get(name)
        if metric is not None and not isinstance(metric, aioprometheus.Histogram):
            for series, value in metric.get_all():
                if series == wanted:
                    return float(value)  # type: ignore[arg-type]
            return None

        for suffix in ("_bucket", "_count", "_sum"):
            base = name.removesuffix(suffix)
            if base != name and isinstance(
                collectors.get(base), aioprometheus.Histogram
            ):
                return _histogram_sample(collectors[base], suffix, wanted)
        return None


def _histogram_sample(
    metric: PromCollector, suffix: str, wanted: dict[str, str]
) -> float | None:
    le = wanted.pop("le", None)
    for series, data in metric.get_all():
        if series != wanted:
            continue
        values: Any = data
        if suffix == "_count":
            return float(values["count"])
        if suffix == "_sum":
            return float(values["sum"])
        if le is None:
            return None
        bound = math.inf if le == "+Inf" else float(le)
        return float(values[bound]) if bound in values else None
    return None
