"""Calling collector code so that nothing it raises reaches the caller.

Every call into a collector (an event handler, a start-up replay, a ``run``
loop) goes through one ``HookRunner``. A hook that raises, at once or later
inside its ``async`` task, is logged once per collector, hook and exception
type and then skipped: the request, the failover or the start-up that
published the event goes on as if the collector were not there.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from functools import partial
from typing import Any

import structlog

log = structlog.get_logger("codex_lb.collectors")

# Exceptions a hook may raise that never reach its caller. A sync handler
# raising CancelledError is a collector bug, not a cancellation of the caller:
# cancellation reaches a task at an await, never inside a plain call.
HOOK_ERRORS: tuple[type[BaseException], ...] = (Exception, asyncio.CancelledError)


def collector_name(collector: object) -> str:
    """``module:Class``, the name used in messages and for persisted state."""
    cls = collector if isinstance(collector, type) else type(collector)
    return f"{cls.__module__}:{cls.__qualname__}"


class HookRunner:
    """Calls hooks, runs their ``async`` parts as named tasks it keeps, and
    logs each kind of failure once."""

    def __init__(self) -> None:
        self._reported: set[tuple[str, str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(
        self, owner: str, hook: str, function: Callable[..., Any], *args: Any
    ) -> None:
        """``function(*args)``; an awaitable result runs on as a task."""
        try:
            result = function(*args)
        except HOOK_ERRORS as exc:
            self.report(owner, hook, exc)
            return
        # Most handlers are plain and return None: no awaitable to look for.
        if result is not None and inspect.isawaitable(result):
            self.spawn(owner, hook, result)

    def call_each(
        self,
        handlers: Iterable[tuple[str, Callable[[Any], Any]]],
        hook: str,
        arg: Any,
    ) -> None:
        """:meth:`call` for each ``(owner, handler)``, in one loop (the bus
        delivers every event this way: a few per request, each to several
        collectors)."""
        for owner, handler in handlers:
            try:
                result = handler(arg)
            except HOOK_ERRORS as exc:
                self.report(owner, hook, exc)
                continue
            if result is not None and inspect.isawaitable(result):
                self.spawn(owner, hook, result)

    def spawn(self, owner: str, hook: str, awaitable: Awaitable[Any]) -> None:
        """Run ``awaitable`` as a named task whose failure is reported."""
        coroutine: Coroutine[Any, Any, Any] = (
            awaitable if inspect.iscoroutine(awaitable) else _wait(awaitable)
        )
        try:
            task = asyncio.get_running_loop().create_task(
                coroutine, name=f"collector-hook:{owner}.{hook}"
            )
        except RuntimeError as exc:
            # No running loop: the hook cannot run, and must not warn later
            # that it was never awaited.
            coroutine.close()
            self.report(owner, hook, exc)
            return
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, owner, hook))

    def watch(self, owner: str, hook: str, task: asyncio.Task[Any]) -> None:
        """Report ``task``'s failure (a collector's ``run`` loop) when it ends."""
        task.add_done_callback(partial(self._ended, owner, hook))

    def report(self, owner: str, hook: str, exc: BaseException) -> None:
        """Log ``exc`` unless this collector's hook already failed this way."""
        kind = type(exc).__qualname__
        key = (owner, hook, kind)
        if key in self._reported:
            return
        try:
            log.error(
                "collector_failed",
                collector=owner,
                hook=hook,
                error_type=kind,
                error=_describe(exc),
            )
        except Exception:
            # The line was not written: the next failure of this kind tries
            # again rather than being silenced unseen.
            return
        self._reported.add(key)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for hook tasks still running (at shutdown and in tests).

        With ``timeout``, tasks still running after it are cancelled and
        named in one ``collector_hooks_abandoned`` warning: a handler that
        never returns must not hold the server's shutdown.
        """
        if timeout is None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._tasks), timeout=left)
        if self._tasks:
            self._abandon(timeout)
            # Time for the cancellations to land; a task that refuses its
            # cancellation is left to the loop's end.
            await asyncio.wait(list(self._tasks), timeout=1.0)

    def _abandon(self, timeout: float) -> None:
        stuck = sorted({task.get_name().partition(":")[2] for task in self._tasks})
        log.warning(
            "collector_hooks_abandoned",
            hooks=stuck,
            tasks=len(self._tasks),
            waited_seconds=timeout,
        )
        for task in self._tasks:
            task.cancel()

    def _finished(self, owner: str, hook: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._ended(owner, hook, task)

    def _ended(self, owner: str, hook: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.report(owner, hook, exc)


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, even when ``str(exc)`` itself fails."""
    try:
        message = str(exc)
    except Exception:
        message = "(the exception could not be shown)"
    text = f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__
    return " ".join(text.split())
