"""How close the quota forecasts come to what the emulator actually does.

codex-lb runs in front of the emulator on a frozen clock; each test drives
one account with a known pattern of real requests, jumping the clock
between them, reads the forecasts from ``/metrics`` and compares them with
the emulator's own windows afterwards.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from codex_lb.accounts.usage import UsagePoller
from codex_lb.app import USAGE_POLLER_KEY
from codex_lb.constants import PLAN_WEEKLY_CREDITS
from codex_lb.sim import Emulator, SimAccount
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB

EMAIL = "a@example.com"
CODEX = "/backend-api/codex/responses"
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY

# One week of this account's window is worth a dollar; its 5 h window is
# made too big to ever fill, so only the weekly window limits it.
WEEKLY_DOLLARS = 1.0
PLUS_CREDITS = PLAN_WEEKLY_CREDITS["plus"]

# About 7 900 input tokens of gpt-5: roughly 1 % of the window a request.
STEADY_CHARS = 31_000

ETA = "codex_lb_secondary_exhaustion_eta_seconds"
WASTE = "codex_lb_secondary_waste_forecast_credits"
IMPLIED = "codex_lb_secondary_implied_quota_usd"


@pytest.fixture
async def one_account() -> AsyncIterator[Emulator]:
    """One plus account worth a dollar a week, on a frozen clock."""
    emu = Emulator(
        [
            SimAccount.make(
                EMAIL, primary_dollars=1_000.0, secondary_dollars=WEEKLY_DOLLARS
            )
        ],
        clock_speed=0,
        event_delay=0.0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def body(chars: int) -> dict[str, Any]:
    """A Codex-style request whose input is ``chars`` characters long."""
    return {
        "model": "gpt-5",
        "instructions": "",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x" * chars}],
            }
        ],
        "reasoning": {"effort": "minimal"},
        "stream": True,
        "store": False,
    }


async def landed(lb: LB, name: str, count: int) -> None:
    """Wait until ``count`` events called ``name`` reached the bus."""
    for _ in range(500):
        if len(lb.recorder.of(name)) >= count:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"only {len(lb.recorder.of(name))} {name} events")


async def spend(lb: LB, chars: int) -> None:
    """One successful request, and its reading and cost seen by collectors."""
    readings = len(lb.recorder.of("quota_snapshot"))
    finished = len(lb.recorder.of("request_finished"))

    response = await lb.client.post(CODEX, json=body(chars))
    await response.read()

    assert response.status == 200
    await landed(lb, "quota_snapshot", readings + 1)
    await landed(lb, "request_finished", finished + 1)


async def poll(lb: LB) -> None:
    """One usage poll of every account, as the timer would do it."""
    poller: UsagePoller = lb.app[USAGE_POLLER_KEY]
    readings = len(lb.recorder.of("quota_snapshot"))
    assert await poller.poll_all() == 1
    await landed(lb, "quota_snapshot", readings + 1)


async def forecast(lb: LB, name: str) -> float | None:
    """One of the account's forecasts as ``/metrics`` shows it now."""
    samples = parse(await scrape_text(lb))
    return samples.get((name, (("account_id", lb.ids[EMAIL]),)))


def used(lb: LB) -> float:
    return lb.emulator.account(EMAIL).secondary.used_percent


def error(predicted: float, actual: float) -> float:
    return abs(predicted - actual) / actual


class Run:
    """Exhaustion forecasts taken at 25, 50 and 75 % of one window."""

    def __init__(self) -> None:
        self.predicted: dict[int, tuple[float, float]] = {}
        self.exhausted_at: float | None = None

    async def look(self, lb: LB) -> None:
        now = lb.emulator.clock.now()
        if used(lb) >= 100.0:
            self.exhausted_at = self.exhausted_at or now
            return
        for mark in (25, 50, 75):
            if used(lb) >= mark and mark not in self.predicted:
                eta = await forecast(lb, ETA)
                assert eta is not None
                self.predicted[mark] = (now, now + eta)

    def errors(self) -> dict[int, float]:
        """Per mark: forecast error over the time that was actually left."""
        assert self.exhausted_at is not None
        return {
            mark: error(full_at - at, self.exhausted_at - at)
            for mark, (at, full_at) in self.predicted.items()
        }


class TestSteadyUse:
    async def test_exhaustion_and_implied_quota(
        self, make_lb: Any, one_account: Emulator
    ) -> None:
        """Hourly requests of one size: the exhaustion time predicted at 25,
        50 and 75 % is within 10 %, the implied quota within 5 %."""
        lb: LB = await make_lb(one_account)
        run = Run()
        start = one_account.clock.now()

        while run.exhausted_at is None:
            await spend(lb, STEADY_CHARS)
            await run.look(lb)
            if run.exhausted_at is None:
                one_account.clock.advance(HOUR)
        implied = await forecast(lb, IMPLIED)

        assert run.exhausted_at - start < WEEK
        errors = run.errors()
        print(f"steady: eta errors {errors}, implied {implied}")
        assert set(errors) == {25, 50, 75}
        assert max(errors.values()) <= 0.10
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)


class TestBurstyUse:
    async def test_exhaustion_and_implied_quota(
        self, make_lb: Any, one_account: Emulator
    ) -> None:
        """Working-hours bursts of uneven requests with idle nights and
        polls: implied quota within 5 %; exhaustion errors are reported."""
        lb: LB = await make_lb(one_account)
        rng = random.Random(10)
        run = Run()
        start = one_account.clock.now()

        # Eight working hours a day at random moments and sizes, then the
        # night with a poll every four hours.
        while run.exhausted_at is None:
            day_start = one_account.clock.now()
            while one_account.clock.now() < day_start + 8 * HOUR:
                await spend(lb, int(STEADY_CHARS * rng.uniform(0.5, 2.0)))
                await run.look(lb)
                if run.exhausted_at is not None:
                    break
                one_account.clock.advance(rng.uniform(10, 50) * 60)
            if run.exhausted_at is not None:
                break
            await poll(lb)
            for _ in range(4):
                one_account.clock.advance(
                    (day_start + DAY - one_account.clock.now()) / (4 - _)
                )
                await poll(lb)
        implied = await forecast(lb, IMPLIED)

        assert run.exhausted_at - start < WEEK
        errors = run.errors()
        print(f"bursty: eta errors {errors}, implied {implied}")
        assert set(errors) == {25, 50, 75}
        assert max(errors.values()) <= 0.5
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)


class TestSlowdown:
    async def test_waste_forecast(self, make_lb: Any, one_account: Emulator) -> None:
        """Requests that shrink to a quarter on day 2 leave credits at the reset;
        the waste forecast made on day 4 is within 5 % of them."""
        lb: LB = await make_lb(one_account)
        start = one_account.clock.now()
        reset_at = one_account.account(EMAIL).secondary.reset_at

        # A request an hour throughout, a quarter the size from day 2 on.
        forecast_made: float | None = None
        while one_account.clock.now() < reset_at:
            now = one_account.clock.now()
            slow = now >= start + 2 * DAY
            await spend(lb, STEADY_CHARS // 4 if slow else STEADY_CHARS)
            if forecast_made is None and now >= start + 4 * DAY:
                forecast_made = await forecast(lb, WASTE)
            one_account.clock.advance(HOUR)
        one_account.clock.advance(-HOUR)
        left = PLUS_CREDITS * (100.0 - used(lb)) / 100.0

        assert forecast_made is not None
        assert 0 < left < PLUS_CREDITS
        print(f"slowdown: waste forecast {forecast_made:.0f}, left {left:.0f}")
        assert forecast_made == pytest.approx(left, rel=0.05)
