"""The in-process event bus.

A subscriber is any object; it receives an event by defining a method named
after it (``request_finished``). Handlers may be plain or ``async``. A
handler that raises is logged once per kind of failure and skipped: the
publisher never sees the error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import structlog

from codex_lb.events.records import EVENT_NAMES, Event

log = structlog.get_logger("codex_lb.events")


class EventBus:
    """Delivers each published event to the subscribers that handle it."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            name: [] for name in EVENT_NAMES
        }
        self._subscribers: list[object] = []
        self._reported: set[tuple[str, str, str]] = set()
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def subscribers(self) -> tuple[object, ...]:
        return tuple(self._subscribers)

    def subscribe(self, subscriber: object) -> None:
        """Route every event ``subscriber`` has a method for to that method."""
        label = type(subscriber).__qualname__
        for name in EVENT_NAMES:
            handler = getattr(subscriber, name, None)
            if callable(handler):
                self._handlers[name].append((label, handler))
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: object) -> None:
        for handlers in self._handlers.values():
            handlers[:] = [
                (label, h)
                for label, h in handlers
                if getattr(h, "__self__", None) is not subscriber
            ]
        self._subscribers = [s for s in self._subscribers if s is not subscriber]

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every handler now; async handlers run as tasks."""
        for label, handler in self._handlers[event.name]:
            try:
                result = handler(event)
            except Exception as exc:
                self._report(label, event.name, exc)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(self._make_done(label, event.name))

    async def drain(self) -> None:
        """Wait for async handlers still running (used at shutdown and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _make_done(
        self, label: str, event_name: str
    ) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            self._pending.discard(task)
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                assert exc is not None
                self._report(label, event_name, exc)

        return done

    def _report(self, label: str, event_name: str, exc: BaseException) -> None:
        # Once per collector, event and exception type: a collector failing on
        # every request must not flood the log.
        key = (label, event_name, type(exc).__name__)
        if key in self._reported:
            return
        self._reported.add(key)
        log.error(
            "collector_failed",
            collector=label,
            event=event_name,
            error=f"{type(exc).__name__}: {exc}",
        )
