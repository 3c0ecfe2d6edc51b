"""Collectors that raise in every hook, loaded by tests through
``CODEX_LB_COLLECTORS``: a broken third-party collector at its worst."""

from __future__ import annotations

import asyncio
from typing import Any

from codex_lb.events.collector_api import CollectorContext
from codex_lb.events.records import EVENT_NAMES


class Broken(RuntimeError):
    """What the broken collectors raise."""


def _sync_hook(name: str) -> Any:
    def hook(self: object, event: object) -> None:
        raise Broken(f"sync {name} failed")

    hook.__name__ = name
    return hook


def _async_hook(name: str) -> Any:
    async def hook(self: object, event: object) -> None:
        raise Broken(f"async {name} failed")

    hook.__name__ = name
    return hook


class RaisingSync:
    """Registers a metric, then raises in every plain event handler."""

    def register(self, ctx: CollectorContext) -> None:
        self.seen = ctx.counter("test_raising_sync_total", "Never counts.")


class RaisingAsync:
    """Registers a metric, then raises in every ``async`` event handler."""

    async def register(self, ctx: CollectorContext) -> None:
        self.seen = ctx.counter("test_raising_async_total", "Never counts.")


for _name in EVENT_NAMES:
    setattr(RaisingSync, _name, _sync_hook(_name))
    setattr(RaisingAsync, _name, _async_hook(_name))


class CrashingLoop:
    """Its background loop dies at once."""

    async def run(self) -> None:
        raise Broken("the loop died")


class FailingCollect:
    """Counts, and raises whenever a scrape asks it to collect."""

    def register(self, ctx: CollectorContext) -> None:
        self.scrapes = ctx.counter("test_failing_collect_total", "Scrapes seen.")

    def collect(self) -> None:
        self.scrapes.inc()
        raise Broken("collect failed")


class FailingRegister:
    """Its ``register`` raises, with a message over two lines."""

    def register(self, ctx: CollectorContext) -> None:
        raise Broken("no metrics today\nsecond line")


class NeverReturns:
    """An ``async`` request handler that never returns: shutdown must not
    wait for it past its limit."""

    async def request_finished(self, event: object) -> None:
        await asyncio.Event().wait()


class NeverRegisters:
    """An ``async`` register that never returns: start-up must say so."""

    async def register(self, ctx: CollectorContext) -> None:
        await asyncio.Event().wait()
