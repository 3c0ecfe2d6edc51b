"""The collector host: builds and registers collectors, subscribes them to
the bus, runs their loops and serves their metrics at ``GET /metrics``.

A collector is any class that can be built with no arguments. It receives an
event by defining a method named after it (``def retry(self, event)``, plain
or ``async``), declares its metrics in ``register(self, ctx)`` (plain or
``async``), and may define ``async def run(self)``, a background loop started
with the application and cancelled at shutdown, and ``def collect(self)``,
called just before each scrape of ``/metrics``. A collector that cannot be
built or registered stops start-up with one line; once running, nothing a
collector raises reaches the code that published the event.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from codex_lb.config import IdentityMode
from codex_lb.events.bus import EventBus
from codex_lb.events.hooks import collector_name
from codex_lb.events.metrics import CONTENT_TYPE
from codex_lb.events.records import EVENT_NAMES, Event
from codex_lb.events.registry import CollectorContext, CollectorError, MetricRegistry
from codex_lb.events.state import CollectorState, StateStore

# How long shutdown waits for collectors' async handlers still running;
# those still running then are cancelled and named in the log.
HOOK_DRAIN_SECONDS = 5.0
# How long a collector's ``register`` may take before start-up gives up.
REGISTER_SECONDS = 10.0


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

    @property
    def collectors(self) -> tuple[object, ...]:
        return tuple(self._collectors)

    async def add(self, collector: object) -> object:
        """Register ``collector`` (a class or an instance) and subscribe it."""
        name = collector_name(collector)
        if isinstance(collector, type):
            try:
                collector = collector()
            except Exception as exc:
                raise CollectorError(
                    f"collector {name} could not be built: {type(exc).__name__}: {exc}"
                ) from exc
        _check_handlers(collector, name)

        state = await CollectorState.load(name, self._store)
        ctx = CollectorContext(
            name, self.registry, state, self._identity_mode, self._clock
        )
        await _register(collector, name, ctx)

        self._states.append(state)
        self._collectors.append(collector)
        self.bus.subscribe(collector)
        return collector

    async def add_all(self, classes: Iterable[type]) -> None:
        for cls in classes:
            await self.add(cls)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to the collectors only (a start-up replay)."""
        self.bus.deliver(event, self._collectors)

    def start(self) -> None:
        """Start every collector's ``run`` loop (inside the running loop)."""
        for collector in self._collectors:
            run = getattr(collector, "run", None)
            if run is None or not inspect.iscoroutinefunction(run):
                continue
            name = collector_name(collector)
            task = asyncio.create_task(run(), name=f"collector:{name}")
            # A loop that crashes is logged; the others and the proxy go on.
            self.bus.hooks.watch(name, "run", task)
            self._tasks.append(task)

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
        await self.bus.drain(HOOK_DRAIN_SECONDS)
        for state in self._states:
            await state.flush()

    def collect(self) -> None:
        """Call each collector's ``collect``: what a scrape does first."""
        for collector in self._collectors:
            collect = getattr(collector, "collect", None)
            if collect is not None:
                self.bus.hooks.call(collector_name(collector), "collect", collect)

    def render(self) -> bytes:
        """The exposition, after each collector's ``collect`` (scrape time)."""
        self.collect()
        return self.registry.render()


async def _register(collector: object, name: str, ctx: CollectorContext) -> None:
    """Call ``register``; a failure stops start-up with one line."""
    register: Callable[[CollectorContext], Any] | None = getattr(
        collector, "register", None
    )
    if register is None:
        return
    try:
        result = register(ctx)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, REGISTER_SECONDS)
    except CollectorError:
        raise
    except TimeoutError as exc:
        raise CollectorError(
            f"collector {name} did not finish registering within {REGISTER_SECONDS:g} s"
        ) from exc
    except Exception as exc:
        raise CollectorError(
            f"collector {name} failed to register: {type(exc).__name__}: {exc}"
        ) from exc


# What a collector has besides handlers named after events.
_COLLECTOR_HOOKS = ("register", "run", "collect")


def _check_handlers(collector: object, name: str) -> None:
    """A method that looks like a handler for an unknown event is a typo; a
    class with no handler and no hook is not a collector at all (a wrong
    ``module:Class`` in ``CODEX_LB_COLLECTORS``)."""
    members = set(dir(type(collector)))
    if not members & (set(EVENT_NAMES) | set(_COLLECTOR_HOOKS)):
        raise CollectorError(
            f"collector {name} handles no event and has no register, run or "
            f"collect method: a collector defines at least one of "
            f"{', '.join(sorted(EVENT_NAMES))}"
        )
    for attr in members:
        if attr.startswith("_") or attr in EVENT_NAMES:
            continue
        if attr in _COLLECTOR_HOOKS:
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
