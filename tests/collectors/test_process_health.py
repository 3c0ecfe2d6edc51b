"""ProcessHealth: the request-log buffer and the event loop lag probe."""

from __future__ import annotations

import asyncio
import time

import pytest

from codex_lb.events import RequestLogChanged
from codex_lb.events.testing import CollectorHarness
from collectors import process_health
from collectors.process_health import ProcessHealth


class TestProcessHealth:
    async def test_buffer_size_and_drops(self) -> None:
        """Size follows the last change; drops count the cumulative total."""
        harness = await CollectorHarness.start(ProcessHealth)

        harness.feed(
            RequestLogChanged(size=3, dropped=0),
            RequestLogChanged(size=10, dropped=2),
            RequestLogChanged(size=0, dropped=5),
        )

        assert harness.sample("codex_lb_request_log_buffer_size") == 0
        assert harness.sample("codex_lb_request_log_buffer_dropped_total") == 5

    async def test_lag_probe_measures_a_blocked_loop(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Blocking the loop for 0.1 s shows up as at least that much lag."""
        monkeypatch.setattr(process_health, "LAG_PROBE_SECONDS", 0.01)
        harness = await CollectorHarness.start(ProcessHealth)
        collector = harness.collector
        assert isinstance(collector, ProcessHealth)
        task = asyncio.create_task(collector.run())
        await asyncio.sleep(0)

        time.sleep(0.1)
        for _ in range(3):
            await asyncio.sleep(0)
        lag = harness.sample("codex_lb_event_loop_lag_seconds")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        assert lag is not None and lag >= 0.08

    async def test_the_gauge_keeps_the_longest_lag_until_a_scrape(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 0.1 s stall stays on the gauge while the probe goes on; the
        scrape that shows it starts a new period, which the next probes
        fill with their own (short) lag."""
        monkeypatch.setattr(process_health, "LAG_PROBE_SECONDS", 0.01)
        harness = await CollectorHarness.start(ProcessHealth)
        collector = harness.collector
        assert isinstance(collector, ProcessHealth)
        task = asyncio.create_task(collector.run())
        await asyncio.sleep(0.02)

        time.sleep(0.1)
        await asyncio.sleep(0.05)
        kept = harness.sample("codex_lb_event_loop_lag_seconds")
        scraped = harness.text()
        await asyncio.sleep(0.05)
        after = harness.sample("codex_lb_event_loop_lag_seconds")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        assert kept is not None and kept >= 0.08
        assert f"codex_lb_event_loop_lag_seconds {kept!r}" in scraped
        assert after is not None and after < 0.05
