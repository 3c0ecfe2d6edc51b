"""QuotaForecast: exhaustion, waste, implied dollars and the pool's runway."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import attrs
import pytest

from codex_lb.events import QuotaSnapshot
from codex_lb.events.forecast import WindowHistory
from codex_lb.events.testing import CollectorHarness
from codex_lb.store import Store, open_store
from collectors import quota_forecast
from collectors.quota_forecast import QuotaForecast
from tests.collectors.events import finished, info, roster, weekly

HOUR = 3600.0
DAY = 24 * HOUR
START = 1_800_000_000.0
RESET = START + 5 * DAY
ACC = {"account_id": "acc-1"}
ETA = "codex_lb_secondary_exhaustion_eta_seconds"
WASTE = "codex_lb_secondary_waste_forecast_credits"
IMPLIED = "codex_lb_secondary_implied_quota_usd"
RUNWAY = "codex_lb_pool_runway_seconds"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reading(
    used: float | None,
    at: float,
    reset_at: float | None = RESET,
    account_id: str = "acc-1",
    plan: str = "plus",
    status: str = "active",
) -> QuotaSnapshot:
    event = weekly(used, reset_at, account=info(account_id, plan=plan, status=status))
    return attrs.evolve(event, observed_at=at)


@pytest.fixture
def fast_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's refresh loop ticks every millisecond."""
    monkeypatch.setattr(quota_forecast, "REFRESH_SECONDS", 0.001)


async def redraw(harness: CollectorHarness) -> None:
    """Let the collector's loop run a few ticks, then stop it."""
    harness.host.start()
    await asyncio.sleep(0.02)
    await harness.settle()


async def started(clock: Clock, *accounts: str) -> CollectorHarness:
    harness = await CollectorHarness.start(QuotaForecast, clock=clock)
    harness.feed(roster(*(info(a) for a in accounts or ("acc-1",))))
    return harness


def hourly(
    harness: CollectorHarness,
    clock: Clock,
    hours: int,
    per_hour: float = 1.0,
    first: float = 10.0,
    cost: float = 0.4,
    account_id: str = "acc-1",
) -> None:
    """``hours`` + 1 readings an hour apart, ``per_hour`` percent each hour,
    each hour's request costing ``cost`` USD; the clock ends at the last."""
    start = clock.now
    for hour in range(hours + 1):
        clock.now = start + hour * HOUR
        harness.feed(reading(first + hour * per_hour, clock.now, account_id=account_id))
        if hour < hours:
            harness.feed(finished(account_id=account_id, cost=cost))


class TestTooLittleData:
    async def test_one_reading_forecasts_nothing(self) -> None:
        """One reading: every forecast series is absent, not 0 or NaN."""
        clock = Clock()
        harness = await started(clock)

        harness.feed(reading(10, START))

        for name in (ETA, WASTE, IMPLIED):
            assert harness.sample(name, ACC) is None
        assert harness.sample(RUNWAY) is None
        assert "NaN" not in harness.text()

    async def test_under_an_hour_forecasts_nothing(self) -> None:
        """Readings spanning 40 minutes give no rate yet."""
        clock = Clock()
        harness = await started(clock)

        harness.feed(reading(10, START), reading(12, START + 2400))
        clock.now = START + 2400

        assert harness.sample(ETA, ACC) is None
        assert harness.sample(WASTE, ACC) is None


class TestSteadyUse:
    async def test_forecasts_from_the_burn_rate(self) -> None:
        """1 % an hour from 10 % to 20 %: full in 80 h; the reset in 110 h
        comes after that, so nothing is wasted; 0.4 USD a percent is 40 USD."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10)

        assert harness.sample(ETA, ACC) == pytest.approx(80 * HOUR)
        assert harness.sample(WASTE, ACC) == 0
        assert harness.sample(IMPLIED, ACC) == pytest.approx(40)

    async def test_readings_are_drawn_when_a_scrape_asks(self) -> None:
        """Readings only extend the history (one comes per answer); the
        next scrape draws the forecasts from all of them at once."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)
        collector = harness.collector
        assert isinstance(collector, QuotaForecast)

        hourly(harness, clock, 10)
        undrawn = collector.eta.value(account_id="acc-1")
        scraped = harness.text()

        assert undrawn is None
        assert harness.sample(ETA, ACC) == pytest.approx(80 * HOUR)
        assert "codex_lb_secondary_exhaustion_eta_seconds{" in scraped

    async def test_waste_when_the_reset_comes_first(self) -> None:
        """At 1 % an hour from 20 % with 40 h to the reset, 40 % of a plus
        week is left unused: 3024 credits."""
        clock = Clock(RESET - 50 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10)

        assert harness.sample(WASTE, ACC) == pytest.approx(3024)
        assert harness.sample(ETA, ACC) == pytest.approx(80 * HOUR)

    async def test_a_pro_plan_wastes_pro_credits(self) -> None:
        """The waste is counted in the plan's own weekly credits."""
        clock = Clock(RESET - 50 * HOUR)
        harness = await CollectorHarness.start(QuotaForecast, clock=clock)
        harness.feed(roster(info(plan="pro")))

        for hour in range(11):
            clock.now = RESET - 50 * HOUR + hour * HOUR
            harness.feed(reading(10 + hour, clock.now, plan="pro"))

        assert harness.sample(WASTE, ACC) == pytest.approx(50400 * 0.4)


class TestPausesAndResets:
    async def test_flat_readings_drop_the_eta_and_keep_the_waste(self) -> None:
        """A day of polls showing no change: not being used, so no ETA; all
        that is left will be wasted."""
        clock = Clock(RESET - 3 * DAY)
        harness = await started(clock)

        hourly(harness, clock, 24, per_hour=0.0, first=30.0)

        assert harness.sample(ETA, ACC) is None
        assert harness.sample(WASTE, ACC) == pytest.approx(7560 * 0.7)

    async def test_a_stray_reading_changes_no_forecast(self) -> None:
        """A fresh-looking reading from the next week bends nothing (C06)."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 10)
        before = [harness.sample(n, ACC) for n in (ETA, WASTE, IMPLIED)]

        harness.feed(reading(0, clock.now, reset_at=RESET + 7 * DAY))

        assert [harness.sample(n, ACC) for n in (ETA, WASTE, IMPLIED)] == before

    async def test_a_confirmed_reset_starts_over(self) -> None:
        """After a confirmed reset the old window's forecasts are gone until
        the new window has data."""
        clock = Clock(RESET - 10 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 10, first=80.0)

        clock.now = RESET + 60
        harness.feed(reading(0, clock.now, reset_at=RESET + 7 * DAY))
        harness.feed(reading(1, clock.now + 60, reset_at=RESET + 7 * DAY))

        for name in (ETA, WASTE, IMPLIED):
            assert harness.sample(name, ACC) is None

    async def test_a_full_window_is_exhausted(self) -> None:
        """At 100 % the time left is 0."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10, per_hour=10.0)

        assert harness.sample(ETA, ACC) == 0

    async def test_a_passed_reset_without_readings_forecasts_nothing(
        self, fast_loop: None
    ) -> None:
        """Once the reset time passed, the old window forecasts nothing."""
        clock = Clock(RESET - 10 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 5, first=80.0)

        clock.now = RESET + 1
        await redraw(harness)

        assert harness.sample(ETA, ACC) is None
        assert harness.sample(WASTE, ACC) is None


class TestPoolRunway:
    """The runway is redrawn by the collector's loop, not on each reading."""

    async def test_one_account_runs_out(self, fast_loop: None) -> None:
        """At 1 % an hour with 80 % left and the reset later, 80 h."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10)
        await redraw(harness)

        assert harness.sample(RUNWAY) == pytest.approx(80 * HOUR)

    async def test_a_second_account_takes_over(self, fast_loop: None) -> None:
        """An idle account with 50 % left adds its credits at the same burn:
        80 h plus 50 h."""
        clock = Clock(RESET - 200 * HOUR)
        harness = await started(clock, "acc-1", "acc-2")
        harness.feed(reading(50, clock.now, account_id="acc-2"))

        hourly(harness, clock, 10)
        await redraw(harness)

        assert harness.sample(RUNWAY) == pytest.approx(130 * HOUR)

    async def test_a_paused_account_offers_no_capacity(self, fast_loop: None) -> None:
        """A paused account's credits are not counted."""
        clock = Clock(RESET - 200 * HOUR)
        harness = await started(clock)
        harness.feed(roster(info(), info("acc-2", status="paused")))
        harness.feed(reading(50, clock.now, account_id="acc-2", status="paused"))

        hourly(harness, clock, 10)
        await redraw(harness)

        assert harness.sample(RUNWAY) == pytest.approx(80 * HOUR)

    async def test_resets_that_keep_up_last_forever(self, fast_loop: None) -> None:
        """A week's use under a week's credits, refilled at the reset: +Inf."""
        clock = Clock(RESET - 20 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10, per_hour=0.5, first=50.0)
        await redraw(harness)

        assert harness.sample(RUNWAY) == math.inf

    async def test_a_reading_alone_does_not_redraw_the_pool(
        self, fast_loop: None
    ) -> None:
        """Between two redraws the runway keeps its last value."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 10)
        await redraw(harness)

        clock.now += HOUR
        harness.feed(reading(30, clock.now))

        assert harness.sample(RUNWAY) == pytest.approx(80 * HOUR)


class TestRoster:
    async def test_a_removed_account_loses_its_series_and_state(self) -> None:
        """pool_changed without the account drops its forecasts and history."""
        clock = Clock(RESET - 50 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 10)

        harness.feed(roster(info("acc-2")))

        for name in (ETA, WASTE, IMPLIED):
            assert harness.sample(name, ACC) is None
        assert harness.sample(RUNWAY) is None
        assert harness.collector.state.get("acc-1") is None  # type: ignore[attr-defined]

    async def test_unknown_accounts_are_ignored(self) -> None:
        """Readings and costs of an account not in the roster are dropped."""
        clock = Clock(RESET - 50 * HOUR)
        harness = await started(clock)

        hourly(harness, clock, 10, account_id="acc-9")

        assert harness.sample(WASTE, {"account_id": "acc-9"}) is None


class TestRestart:
    async def test_history_survives_a_restart(self, tmp_path: Path) -> None:
        """The window's readings and costs come back from the store, and the
        forecasts with them."""
        clock = Clock(RESET - 50 * HOUR)
        store = await open_store(tmp_path / "data")
        try:
            first = await CollectorHarness.start(QuotaForecast, store, clock=clock)
            first.feed(roster(info()))
            hourly(first, clock, 10)
            await first.settle()

            again = await CollectorHarness.start(QuotaForecast, store, clock=clock)
            again.feed(roster(info()))

            assert again.sample(ETA, ACC) == pytest.approx(80 * HOUR)
            assert again.sample(WASTE, ACC) == pytest.approx(3024)
            assert again.sample(IMPLIED, ACC) == pytest.approx(40)
        finally:
            await store.close()


class CountingStore:
    """A real store that counts the collector-state writes it is asked for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0

    async def load_collector_state(self, collector: str) -> dict[str, Any]:
        return await self.store.load_collector_state(collector)

    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None:
        self.writes += 1
        await self.store.save_collector_state(collector, key, value)


class TestPersistenceCost:
    async def test_priced_requests_serialise_nothing_until_the_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A busy account's 500 priced requests and 500 readings build the
        history's JSON once, when the state writer saves it, not per request;
        what it saves brings the forecasts back."""
        made = 0
        to_json = WindowHistory.to_json

        def counted(self: WindowHistory) -> dict[str, Any]:
            nonlocal made
            made += 1
            return to_json(self)

        monkeypatch.setattr(WindowHistory, "to_json", counted)
        clock = Clock(RESET - 50 * HOUR)
        store = await open_store(tmp_path / "data")
        try:
            counting = CountingStore(store)
            harness = await CollectorHarness.start(QuotaForecast, counting, clock=clock)
            harness.feed(roster(info()))
            for i in range(500):
                clock.now += 60
                harness.feed(reading(10 + i * 0.02, clock.now))
                harness.feed(finished(cost=0.01, request_id=f"r{i}"))
            made_before_write = made
            await harness.settle()
            again = await CollectorHarness.start(QuotaForecast, store, clock=clock)
            again.feed(roster(info()))
        finally:
            await store.close()

        assert made_before_write == 0
        assert made == 1 and counting.writes == 1
        assert again.sample(IMPLIED, ACC) == pytest.approx(50.0)
        eta = harness.sample(ETA, ACC)
        assert eta is not None
        assert again.sample(ETA, ACC) == pytest.approx(eta)


class TestLoop:
    async def test_the_loop_redraws_with_the_clock(self, fast_loop: None) -> None:
        """Two silent days: the rate falls to 0, so no ETA and all that is
        left is wasted; no reading was needed for that."""
        clock = Clock(RESET - 120 * HOUR)
        harness = await started(clock)
        hourly(harness, clock, 10)

        clock.now += 2 * DAY
        await redraw(harness)

        assert harness.sample(ETA, ACC) is None
        assert harness.sample(WASTE, ACC) == pytest.approx(7560 * 0.8)
