"""The request-log buffer: rows wait here and reach the store in batches.

Writing a row per request on the request path would tie every stream to the
disk. Rows are appended to a bounded buffer and a background task writes them
in one transaction every flush interval. When the store fails (locked, disk
full) rows stay and are retried; when the buffer is full, new rows are
dropped and counted, never silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog

from codex_lb.store import RequestLogRow, Store

log = structlog.get_logger("codex_lb.request_log")

_BATCH = 500


class RequestLogBuffer:
    """Bounded queue of request-log rows with a periodic writer."""

    def __init__(self, store: Store, max_rows: int, flush_seconds: float) -> None:
        self._store = store
        self._rows: deque[RequestLogRow] = deque()
        self._max_rows = max_rows
        self._flush_seconds = flush_seconds
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.dropped = 0
        self.written = 0
        # Told (size, dropped) after every change; app.py turns it into an event.
        self.on_change: Callable[[int, int], None] | None = None

    @property
    def size(self) -> int:
        return len(self._rows)

    def add(self, row: RequestLogRow) -> None:
        if len(self._rows) >= self._max_rows:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("request_log_dropped", dropped_total=self.dropped)
            self._changed()
            return
        self._rows.append(row)
        if len(self._rows) >= _BATCH:
            self._wakeup.set()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(len(self._rows), self.dropped)

    async def flush(self) -> None:
        """Write every buffered row; rows stay buffered if the store fails."""
        async with self._lock:
            while self._rows:
                batch = [self._rows[i] for i in range(min(_BATCH, len(self._rows)))]
                await self._store.write_request_logs(batch)
                for _ in batch:
                    self._rows.popleft()
                self.written += len(batch)
                self._changed()

    def stop(self) -> None:
        """Make :meth:`run` return after its current write.

        Cancelling it instead could land between a batch's insert and its
        commit, or after the commit but before the rows leave the buffer:
        the final flush would then write them twice.
        """
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Flush until stopped (a background task); errors logged and retried."""
        failing = False
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._flush_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception as exc:
                if not failing:
                    log.error(
                        "request_log_write_failed", error=str(exc), buffered=self.size
                    )
                failing = True
            else:
                if failing:
                    log.info("request_log_write_recovered", written=self.written)
                failing = False
