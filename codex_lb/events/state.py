"""The small persisted key/value state a collector may keep (JSON values)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from codex_lb.logs import FailureStreak

log = structlog.get_logger("codex_lb.collectors")

# A background state write waits this long, so a burst of changes (one per
# answer under load) is one write of each key's latest value.
STATE_WRITE_SECONDS = 1.0


class StateStore(Protocol):
    """The part of the store that keeps collector state."""

    async def load_collector_state(self, collector: str) -> dict[str, Any]: ...
    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None: ...


class _Deferred:
    """A value made only when it is read or written (see ``set_later``)."""

    __slots__ = ("produce",)

    def __init__(self, produce: Callable[[], Any]) -> None:
        self.produce = produce


class CollectorState:
    """A collector's persisted key/value state.

    Reads come from memory. ``set`` and ``set_later`` change memory at once
    and leave the disk to a background writer, which saves the latest value
    of every changed key a moment after the first change, so a burst is one
    write per key and a handler never waits for the disk. ``save`` writes one
    key now, for state that must be on disk before the collector acts on it.
    ``flush`` writes every pending change.
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
        self._failures = FailureStreak(
            log, "collector_state_write", collector=self._owner
        )

    @classmethod
    async def load(cls, owner: str, store: StateStore | None) -> CollectorState:
        values = await store.load_collector_state(owner) if store else {}
        return cls(owner, store, values)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._values:
            return default
        return _made(self._values[key])

    def keys(self) -> list[str]:
        return list(self._values)

    def items(self) -> list[tuple[str, Any]]:
        return [(key, _made(value)) for key, value in self._values.items()]

    def set(self, key: str, value: Any | None) -> None:
        """Keep ``value`` under ``key``; None forgets the key."""
        self._remember(key, value)
        self._mark(key)

    def set_later(self, key: str, produce: Callable[[], Any]) -> None:
        """Keep ``produce()`` under ``key``, called only when the value is
        read or written: a value that changes with every request (a history
        of readings) costs nothing until the writer saves it."""
        self._values[key] = _Deferred(produce)
        self._mark(key)

    async def save(self, key: str, value: Any | None) -> None:
        """``set``, and write the key now; returns once it is on disk.

        A failed write is logged and left to the background writer to retry.
        """
        self._remember(key, value)
        if self._store is None:
            return
        self._dirty.pop(key, None)
        try:
            await self._store.save_collector_state(self._owner, key, value)
        except Exception as exc:
            self._failed(key, exc)
            self._mark(key)
        else:
            self._failures.succeeded()

    async def flush(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done() and self._writer_waiting:
            writer.cancel()
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])
        if self._dirty:
            await self._write()

    def _remember(self, key: str, value: Any | None) -> None:
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def _mark(self, key: str) -> None:
        if self._store is None:
            return
        self._dirty.pop(key, None)
        self._dirty[key] = None
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_later(), name=f"collector-state:{self._owner}"
            )

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
                value = self.get(key)
                await self._store.save_collector_state(self._owner, key, value)
            except Exception as exc:
                # Kept in memory and retried with the next change or flush.
                self._dirty[key] = None
                self._failed(key, exc)
                return
            self._failures.succeeded()

    def _failed(self, key: str, exc: Exception) -> None:
        # Logged once per streak: a full disk fails every write until it
        # has room again.
        self._failures.failed(key=key, error=f"{type(exc).__name__}: {exc}")


def _made(value: Any) -> Any:
    return value.produce() if isinstance(value, _Deferred) else value
