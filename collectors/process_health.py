"""The process itself: event loop lag and the request-log buffer.

The lag probe wakes every 25 ms and measures how late it woke; the gauge
shows the longest lag since the previous scrape, so a stall between two
scrapes is seen whenever it happened, not only when it covered a scrape.
With several scrapers, each sees the longest since the last scrape by any.
"""

from __future__ import annotations

import asyncio
import time

from codex_lb.events import RequestLogChanged
from codex_lb.events.collector_api import CollectorContext

LAG_PROBE_SECONDS = 0.025


class ProcessHealth:
    """Event loop lag (a probe loop) and the request-log buffer's fill."""

    def register(self, ctx: CollectorContext) -> None:
        self.lag = ctx.gauge(
            "codex_lb_event_loop_lag_seconds",
            "The longest the event loop was late to wake a timer (probed every "
            "25 ms) since the previous scrape.",
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
        # The longest lag since the last scrape; the gauge shows it.
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            late = max(0.0, time.monotonic() - started - LAG_PROBE_SECONDS)
            if late >= self.worst:
                self.worst = late
                self.lag.set(late)

    def collect(self) -> None:
        """A scrape shows the longest lag so far; the next period starts."""
        self.worst = 0.0

    def request_log_changed(self, event: RequestLogChanged) -> None:
        self.buffer_size.set(event.size)
        if event.dropped > self.dropped_seen:
            self.dropped.inc(event.dropped - self.dropped_seen)
            self.dropped_seen = event.dropped
