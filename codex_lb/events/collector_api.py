"""The collector API: finding collectors, registering their metrics, and the
small persisted state a collector may keep.

A collector is any class that can be built with no arguments. It receives an
event by defining a method named after it (``def retry(self, event)``, plain
or ``async``), declares its metrics in ``register(self, ctx)`` (plain or
``async``), and may define ``async def run(self)``, a background loop started
with the application and cancelled at shutdown. Collectors come from the
built-in list, then the ``codex_lb.collectors`` entry point group, then
``CODEX_LB_COLLECTORS`` (``module:Class[,module:Class]``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import aioprometheus
import structlog
from aiohttp import web

from codex_lb.config import IdentityMode, SettingsError
from codex_lb.events.bus import EventBus
from codex_lb.events.metrics import (
    CONTENT_TYPE,
    Counter,
    ExpositionRenderer,
    Gauge,
    Histogram,
)
from codex_lb.events.records import EVENT_NAMES, Event

log = structlog.get_logger("codex_lb.collectors")

ENTRY_POINT_GROUP = "codex_lb.collectors"
# A collector state write waits this long, so a burst of changes (one per
# answer under load) is one write of each key's latest value.
STATE_WRITE_SECONDS = 1.0


class CollectorError(SettingsError):
    """A collector could not be loaded or registered; one line per problem."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


class StateStore(Protocol):
    """The part of the store that keeps collector state."""

    async def load_collector_state(self, collector: str) -> dict[str, Any]: ...
    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None: ...


def collector_name(collector: object) -> str:
    """``module:Class``, the name used in messages and for persisted state."""
    cls = collector if isinstance(collector, type) else type(collector)
    return f"{cls.__module__}:{cls.__qualname__}"


class CollectorState:
    """A collector's small persisted key/value state (JSON values).

    Reads come from memory; ``set`` changes memory at once and a writer
    saves the latest value of every changed key in the order they changed,
    so a handler never waits for the disk. The writer starts a moment after
    the first change, so a burst is one write per key. ``flush`` writes now.
    """

    def __init__(
        self,
        owner: str,
        store: StateStore | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        self._owner = owner
        self._store = store
        self._values: dict[str, Any] = dict(values or {})
        self._dirty: dict[str, None] = {}
        self._writer: asyncio.Task[None] | None = None
        self._writer_waiting = False

    @classmethod
    async def load(cls, owner: str, store: StateStore | None) -> CollectorState:
        values = await store.load_collector_state(owner) if store else {}
        return cls(owner, store, values)

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._values.items())

    def set(self, key: str, value: Any | None) -> None:
        """Keep ``value`` under ``key``; None forgets the key."""
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value
        if self._store is None:
            return
        self._dirty.pop(key, None)
        self._dirty[key] = None
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_later(), name=f"collector-state:{self._owner}"
            )

    async def flush(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done() and self._writer_waiting:
            writer.cancel()
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])
        if self._dirty:
            await self._write()

    async def _write_later(self) -> None:
        self._writer_waiting = True
        try:
            await asyncio.sleep(STATE_WRITE_SECONDS)
        finally:
            self._writer_waiting = False
        await self._write()

    async def _write(self) -> None:
        assert self._store is not None
        while self._dirty:
            key = next(iter(self._dirty))
            del self._dirty[key]
            try:
                await self._store.save_collector_state(
                    self._owner, key, self._values.get(key)
                )
            except Exception as exc:
                # Kept in memory and retried with the next change or flush.
                self._dirty[key] = None
                log.error(
                    "collector_state_write_failed",
                    collector=self._owner,
                    key=key,
                    error=str(exc),
                )
                return


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


class CollectorHost:
    """Registers collectors, subscribes them to the bus and runs their loops."""

    def __init__(
        self,
        bus: EventBus,
        store: StateStore | None = None,
        identity_mode: IdentityMode = IdentityMode.EMAIL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.registry = MetricRegistry()
        self._store = store
        self._identity_mode = identity_mode
        self._clock = clock
        self._collectors: list[object] = []
        self._states: list[CollectorState] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._replays: set[asyncio.Future[Any]] = set()

    @property
    def collectors(self) -> tuple[object, ...]:
        return tuple(self._collectors)

    async def add(self, collector: object) -> object:
        """Register ``collector`` (a class or an instance) and subscribe it."""
        if isinstance(collector, type):
            try:
                collector = collector()
            except Exception as exc:
                raise CollectorError(
                    f"collector {collector_name(collector)} could not be built: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        name = collector_name(collector)
        _check_handlers(collector, name)

        state = await CollectorState.load(name, self._store)
        ctx = CollectorContext(
            name, self.registry, state, self._identity_mode, self._clock
        )
        register: Callable[[CollectorContext], Any] | None = getattr(
            collector, "register", None
        )
        if register is not None:
            result = register(ctx)
            if inspect.isawaitable(result):
                await result

        self._states.append(state)
        self._collectors.append(collector)
        self.bus.subscribe(collector)
        return collector

    async def add_all(self, classes: Iterable[type]) -> None:
        for cls in classes:
            await self.add(cls)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to the collectors only (a start-up replay)."""
        for collector in self._collectors:
            handler = getattr(collector, event.name, None)
            if handler is None:
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._replays.add(task)
                    task.add_done_callback(self._replays.discard)
            except Exception as exc:
                log.error(
                    "collector_failed",
                    collector=collector_name(collector),
                    event=event.name,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def start(self) -> None:
        """Start every collector's ``run`` loop (inside the running loop)."""
        for collector in self._collectors:
            run = getattr(collector, "run", None)
            if run is not None and inspect.iscoroutinefunction(run):
                name = f"collector:{collector_name(collector)}"
                self._tasks.append(asyncio.create_task(run(), name=name))

    async def run(self) -> None:
        """Run the collectors' loops until cancelled, then ``close``."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the loops and write every pending state change."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.bus.drain()
        for state in self._states:
            await state.flush()

    def render(self) -> bytes:
        return self.registry.render()


def _check_handlers(collector: object, name: str) -> None:
    """A method that looks like a handler for an unknown event is a typo."""
    for attr in dir(type(collector)):
        if attr.startswith("_") or attr in EVENT_NAMES:
            continue
        if attr in ("register", "run"):
            continue
        close = [e for e in EVENT_NAMES if _near(attr, e)]
        if close:
            raise CollectorError(
                f"collector {name} defines {attr!r}: did you mean {close[0]!r}?"
            )


def _near(a: str, b: str) -> bool:
    """True when ``a`` is ``b`` with one letter added, dropped or changed."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


COLLECTORS_KEY = web.AppKey("collectors", CollectorHost)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: every collector's metrics, text format 0.0.4."""
    body = request.app[COLLECTORS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
