"""An example collector: counts requests slower than a threshold, by API.

Load it with ``CODEX_LB_COLLECTORS=examples.slow_requests:SlowRequests``.
"""

from __future__ import annotations

from codex_lb.events import RequestFinished
from codex_lb.events.collector_api import CollectorContext

SLOW_MS = 30_000.0


class SlowRequests:
    """Requests that took longer than 30 s from arrival to last byte."""

    def register(self, ctx: CollectorContext) -> None:
        self.slow = ctx.counter(
            "codex_lb_example_slow_requests_total",
            "Requests slower than 30 s, by API.",
            ("api",),
        )

    def request_finished(self, event: RequestFinished) -> None:
        if event.latency_ms > SLOW_MS:
            self.slow.inc(api=event.api)
