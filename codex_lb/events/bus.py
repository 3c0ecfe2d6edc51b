"""The in-process event bus.

A subscriber is any object; it receives an event by defining a method named
after it (``request_finished``). Handlers may be plain or ``async``. They run
through the bus's ``HookRunner``: a handler that raises is logged once per
kind of failure and skipped, and the publisher never sees the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from codex_lb.events.hooks import HookRunner, collector_name
from codex_lb.events.records import EVENT_NAMES, Event


class EventBus:
    """Delivers each published event to the subscribers that handle it."""

    def __init__(self, hooks: HookRunner | None = None) -> None:
        self.hooks = hooks or HookRunner()
        self._handlers: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            name: [] for name in EVENT_NAMES
        }
        self._subscribers: list[object] = []

    @property
    def subscribers(self) -> tuple[object, ...]:
        return tuple(self._subscribers)

    def subscribe(self, subscriber: object) -> None:
        """Route every event ``subscriber`` has a method for to that method."""
        label = collector_name(subscriber)
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
        self.hooks.call_each(self._handlers[event.name], event.name, event)

    def deliver(self, event: Event, subscribers: Iterable[object]) -> None:
        """Hand ``event`` to these subscribers only (a replay at start-up)."""
        for subscriber in subscribers:
            handler = getattr(subscriber, event.name, None)
            if callable(handler):
                self.hooks.call(collector_name(subscriber), event.name, handler, event)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for async handlers still running (used at shutdown and in
        tests); with ``timeout``, cancel those still running after it."""
        await self.hooks.drain(timeout)
