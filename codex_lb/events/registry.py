"""Where collectors declare their metrics: one registry for every collector,
and the context each collector gets in ``register``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import aioprometheus

from codex_lb.config import IdentityMode, SettingsError
from codex_lb.events.metrics import Counter, ExpositionRenderer, Gauge, Histogram
from codex_lb.events.records import AccountInfo
from codex_lb.events.state import CollectorState


class CollectorError(SettingsError):
    """A collector could not be loaded or registered; one line per problem."""

    def __init__(self, problem: str) -> None:
        # One line, whatever the message of the exception it reports.
        super().__init__([" ".join(problem.splitlines())])


class MetricRegistry:
    """Every metric of every collector; a name is owned by one collector."""

    def __init__(self) -> None:
        self.prometheus = aioprometheus.Registry()
        self._owners: dict[str, str] = {}
        self._renderer = ExpositionRenderer()

    def owner(self, name: str) -> str | None:
        return self._owners.get(name)

    def _claim(self, owner: str, name: str, kind: str) -> None:
        # A histogram also writes x_bucket, x_count and x_sum.
        names = [name]
        if kind == "histogram":
            names += [f"{name}_bucket", f"{name}_count", f"{name}_sum"]
        for claimed in names:
            holder = self._owners.get(claimed)
            if holder is not None:
                raise CollectorError(
                    f"metric {claimed!r} of collector {owner} is already "
                    f"registered by collector {holder}"
                )
        for claimed in names:
            self._owners[claimed] = owner

    def counter(
        self, owner: str, name: str, doc: str, labels: Sequence[str] = ()
    ) -> Counter:
        self._claim(owner, name, "counter")
        return Counter(
            aioprometheus.Counter(name, doc, registry=self.prometheus), labels
        )

    def gauge(
        self, owner: str, name: str, doc: str, labels: Sequence[str] = ()
    ) -> Gauge:
        self._claim(owner, name, "gauge")
        return Gauge(aioprometheus.Gauge(name, doc, registry=self.prometheus), labels)

    def histogram(
        self,
        owner: str,
        name: str,
        doc: str,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> Histogram:
        self._claim(owner, name, "histogram")
        metric = aioprometheus.Histogram(
            name, doc, registry=self.prometheus, buckets=tuple(buckets)
        )
        return Histogram(metric, labels)

    def render(self) -> bytes:
        return self._renderer.render(self.prometheus)


class CollectorContext:
    """What a collector gets in ``register``: its metrics, state and settings.

    ``clock`` is the application's clock (epoch seconds); a collector that
    ages or forecasts reads the time from it, never from ``time.time``.
    """

    def __init__(
        self,
        name: str,
        registry: MetricRegistry,
        state: CollectorState,
        identity_mode: IdentityMode,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.state = state
        self.identity_mode = identity_mode
        self.clock = clock
        self._registry = registry

    def display(self, account: AccountInfo) -> str:
        """How ``/metrics`` may name ``account``: its email, or in
        ``account_id`` mode its id (no personal data)."""
        if self.identity_mode is IdentityMode.EMAIL:
            return account.email
        return account.account_id

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """Declare a counter; its name ends in ``_total``."""
        if not name.endswith("_total") or name.endswith("_total_total"):
            raise CollectorError(
                f"counter {name!r} of collector {self.name} must end in '_total' once"
            )
        return self._registry.counter(self.name, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._registry.gauge(self.name, name, doc, labels)

    def histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return self._registry.histogram(self.name, name, doc, labels, buckets)
