"""The forecasts and the snapshot age in front of the emulator, through
failed polls (C07) and a stray reading from the upstream (C06).

The emulator's clock is frozen and jumped by hand; the collectors' own
redraw loops run in real time, so a value that waits for one is scraped
until it shows, with a generous bound.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from codex_lb.accounts.usage import UsagePoller
from codex_lb.app import USAGE_POLLER_KEY
from codex_lb.sim import Emulator, Fault, SimAccount
from tests.collectors.scrape import Samples, scrape_text, scrape_until
from tests.collectors.test_forecast_accuracy import STEADY_CHARS, spend
from tests.conftest import LB

EMAIL = "a@example.com"
HOUR = 3600.0
ETA = "codex_lb_secondary_exhaustion_eta_seconds"
WASTE = "codex_lb_secondary_waste_forecast_credits"
IMPLIED = "codex_lb_secondary_implied_quota_usd"
AGE = "codex_lb_quota_snapshot_age_seconds"
USED = "codex_lb_secondary_used_percent"
FORECASTS = (ETA, WASTE, IMPLIED)


@pytest.fixture
async def one_account() -> AsyncIterator[Emulator]:
    """One plus account worth a dollar a week, on a frozen clock."""
    emu = Emulator(
        [SimAccount.make(EMAIL, primary_dollars=1_000.0, secondary_dollars=1.0)],
        clock_speed=0,
        event_delay=0.0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def of(samples: Samples, lb: LB, name: str) -> float | None:
    return samples.get((name, (("account_id", lb.ids[EMAIL]),)))


async def ten_hours(lb: LB) -> None:
    """A request an hour for ten hours: enough for every forecast."""
    for _ in range(10):
        await spend(lb, STEADY_CHARS)
        lb.emulator.clock.advance(HOUR)
    await spend(lb, STEADY_CHARS)


async def showing(lb: LB, name: str, value: float) -> Samples:
    """Scrape until the account's ``name`` reads ``value``."""
    return await scrape_until(
        lb, lambda s: of(s, lb, name) == pytest.approx(value), seconds=60.0
    )


class TestFailedPolls:
    async def test_failures_leave_the_forecasts_and_age_on(
        self, make_lb: Any, one_account: Emulator
    ) -> None:
        """C07: polls that fail (502, a timeout, invalid JSON) read nothing:
        the forecasts stay, the age keeps growing from the last real
        reading, the used percent never reads 0; the next good poll reads
        the account again and the age starts over."""
        lb: LB = await make_lb(
            one_account, CODEX_LB_USAGE_REFRESH_TIMEOUT_SECONDS="0.3"
        )
        poller: UsagePoller = lb.app[USAGE_POLLER_KEY]
        await ten_hours(lb)
        before = await showing(lb, AGE, 0.0)
        readings = len(lb.recorder.of("quota_snapshot"))
        used = of(before, lb, USED)
        assert used is not None and used > 0
        assert all(of(before, lb, name) is not None for name in FORECASTS)

        for fault in (Fault.status(502, {}), Fault.timeout(10.0), Fault.bad_json()):
            one_account.add_fault(EMAIL, fault, "usage")
            one_account.clock.advance(HOUR)
            assert await poller.poll_all() == 0
        after = await showing(lb, AGE, 3 * HOUR)

        assert len(lb.recorder.of("quota_snapshot")) == readings
        assert of(after, lb, USED) == used
        assert all(of(after, lb, name) is not None for name in FORECASTS)
        assert of(after, lb, IMPLIED) == of(before, lb, IMPLIED)

        assert await poller.poll_all() == 1
        await showing(lb, AGE, 0.0)


class TestStrayReading:
    async def test_a_stray_poll_bends_no_forecast(
        self, make_lb: Any, one_account: Emulator
    ) -> None:
        """C06: one poll shows a window that looks freshly reset, the next
        the old values again: the forecasts are as if it never came."""
        lb: LB = await make_lb(one_account)
        poller: UsagePoller = lb.app[USAGE_POLLER_KEY]
        await ten_hours(lb)
        assert await poller.poll_all() == 1
        before = await showing(lb, AGE, 0.0)

        window = one_account.account(EMAIL).secondary
        stray = {
            "plan_type": "plus",
            "rate_limit": {
                "allowed": True,
                "limit_reached": False,
                "secondary_window": {
                    "used_percent": 0,
                    "limit_window_seconds": window.seconds,
                    "reset_at": int(window.reset_at + window.seconds),
                },
            },
        }
        readings = len(lb.recorder.of("quota_snapshot"))
        one_account.add_fault(EMAIL, Fault.status(200, stray), "usage")
        assert await poller.poll_all() == 1
        stray_seen = lb.recorder.of("quota_snapshot")[-1].secondary
        assert await poller.poll_all() == 1
        after = await showing(lb, AGE, 0.0)

        assert len(lb.recorder.of("quota_snapshot")) == readings + 2
        assert stray_seen.used_percent == 0

        for name in (*FORECASTS, USED):
            assert of(after, lb, name) == of(before, lb, name), name


class TestExposition:
    @pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
    async def test_types_labels_and_lint(
        self, make_lb: Any, one_account: Emulator
    ) -> None:
        """With data, each forecast series is a gauge labelled by account_id
        alone (the runway by nothing), no value is NaN, and promtool finds
        nothing about them."""
        lb: LB = await make_lb(one_account)
        await ten_hours(lb)
        runway = "codex_lb_pool_runway_seconds"
        samples = await scrape_until(lb, lambda s: (runway, ()) in s, seconds=60.0)
        text = await scrape_text(lb)

        assert samples[(runway, ())] > 0
        for name in (*FORECASTS, AGE):
            assert f"# TYPE {name} gauge" in text
            keys = [labels for (n, labels) in samples if n == name]
            assert keys == [(("account_id", lb.ids[EMAIL]),)], name
        assert f"# TYPE {runway} gauge" in text
        assert "NaN" not in text
        done = subprocess.run(
            ["promtool", "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
        )
        findings = (done.stdout + done.stderr).decode().strip().splitlines()
        # Lint findings only (no parse error), none about these series.
        assert done.returncode == 3, findings
        for name in (*FORECASTS, AGE, runway):
            assert not [f for f in findings if f.startswith(name)], findings
