"""The process itself: event loop lag and the request-log buffer."""

from __future__ import annotations

import asyncio
import time

from codex_lb.events import RequestLogChanged
from codex_lb.events.collector_api import CollectorContext

LAG_PROBE_SECONDS = 0.5


class ProcessHealth:
    """Event loop lag (a probe loop) and the request-log buffer's fill."""

    def register(self, ctx: CollectorContext) -> None:
        self.lag = ctx.gauge(
            "codex_lb_event_loop_lag_seconds",
            "How late the event loop woke a timer at the last probe.",
        )
        self.buffer_size = ctx.gauge(
            "codex_lb_request_log_buffer_size",
            "Request-log rows waiting to be written.",
        )
        self.dropped = ctx.counter(
            "codex_lb_request_log_buffer_dropped_total",
            "Request-log rows dropped because the buffer was full.",
        )
        self.lag.set(0)
        self.buffer_size.set(0)
        self.dropped.touch()
        self.dropped_seen = 0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            late = time.monotonic() - started - LAG_PROBE_SECONDS
            self.lag.set(max(0.0, late))

    def request_log_changed(self, event: RequestLogChanged) -> None:
        self.buffer_size.set(event.size)
        if event.dropped > self.dropped_seen:
            self.dropped.inc(event.dropped - self.dropped_seen)
            self.dropped_seen = event.dropped
