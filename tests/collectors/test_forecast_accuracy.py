"""How close the quota forecasts come to what the emulator actually does.

codex-lb runs in front of the emulator and shares its clock. The clock is
frozen (speed 0) and the test jumps it forward between real requests, so a
week passes in seconds and nothing depends on how fast this machine is: the
same requests at the same emulated times give the same figures on every run.
Each test drives one plus account with a known pattern, reads the forecasts
from ``/metrics`` at 25, 50 and 75 % of the way and compares them with what
the emulator's weekly window did afterwards. The measured errors are
printed, attached to the test report and written to
``test-artifacts/forecast-accuracy.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
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
MARKS = (25, 50, 75)

# One week of this account's window is worth a dollar; its 5 h window is
# made too big to ever fill, so only the weekly window limits it.
WEEKLY_DOLLARS = 1.0
PLUS_CREDITS = PLAN_WEEKLY_CREDITS["plus"]

# About 7 900 input tokens of gpt-5: roughly 1 % of the window a request.
STEADY_CHARS = 31_000

ETA = "codex_lb_secondary_exhaustion_eta_seconds"
WASTE = "codex_lb_secondary_waste_forecast_credits"
IMPLIED = "codex_lb_secondary_implied_quota_usd"

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def one_account() -> AsyncIterator[Emulator]:
    """One plus account worth a dollar a week, on a frozen clock that starts
    on a whole second, so the upstream's whole-second reset times are exact
    and every run gives the same figures."""
    emu = Emulator(clock_speed=0, event_delay=0.0)
    emu.clock.advance(math.ceil(emu.clock.now()) - emu.clock.now())
    emu.add_account(
        SimAccount.make(
            EMAIL, primary_dollars=1_000.0, secondary_dollars=WEEKLY_DOLLARS
        )
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Callable[..., None]:
    """Print, attach to the test report and save one run's measured figures."""

    def save(name: str, **figures: Any) -> None:
        print(f"forecast accuracy {name}: {json.dumps(figures)}")
        for key, value in figures.items():
            record_property(f"{name}.{key}", value)
        ARTIFACT.mkdir(exist_ok=True)
        path = ARTIFACT / "forecast-accuracy.json"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        saved[name] = figures
        path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")

    return save


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
    """Wait until ``count`` events called ``name`` reached the bus.

    Bounded by turns of the event loop, not by time: the events follow the
    response's last byte within a few turns however loaded the machine is.
    """
    for _ in range(10_000):
        if len(lb.recorder.of(name)) >= count:
            return
        await asyncio.sleep(0.001)
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
    """The emulator's own weekly used percent."""
    return lb.emulator.account(EMAIL).secondary.used_percent


def error(predicted: float, actual: float) -> float:
    return abs(predicted - actual) / actual


def rounded(errors: dict[int, float]) -> dict[str, float]:
    return {f"{mark}%": round(value, 4) for mark, value in errors.items()}


class Exhaustion:
    """Exhaustion forecasts taken when the window first reaches 25, 50 and
    75 % used, and the time it really became full."""

    def __init__(self) -> None:
        self.predicted: dict[int, tuple[float, float]] = {}
        self.exhausted_at: float | None = None

    async def look(self, lb: LB) -> None:
        now = lb.emulator.clock.now()
        if used(lb) >= 100.0:
            self.exhausted_at = self.exhausted_at or now
            return
        for mark in MARKS:
            if used(lb) >= mark and mark not in self.predicted:
                eta = await forecast(lb, ETA)
                assert eta is not None
                self.predicted[mark] = (now, now + eta)

    def errors(self) -> dict[int, float]:
        """Per mark: the forecast's error over the time that was really left."""
        assert self.exhausted_at is not None
        return {
            mark: error(full_at - at, self.exhausted_at - at)
            for mark, (at, full_at) in self.predicted.items()
        }

    def errors_from(self, start: float) -> dict[int, float]:
        """Per mark: the same miss over the time from ``start`` (the
        window's start) to the real exhaustion, a more lenient measure."""
        assert self.exhausted_at is not None
        return {
            mark: abs(full_at - self.exhausted_at) / (self.exhausted_at - start)
            for mark, (_at, full_at) in self.predicted.items()
        }


class Waste:
    """Waste forecasts taken at 25, 50 and 75 % of the window's time, and the
    credits really left just before the reset."""

    def __init__(self, lb: LB) -> None:
        window = lb.emulator.account(EMAIL).secondary
        self.started_at = window.started_at
        self.reset_at = window.reset_at
        self.predicted: dict[int, float] = {}
        self.left: float | None = None

    def running(self, lb: LB) -> bool:
        return lb.emulator.clock.now() < self.reset_at

    async def look(self, lb: LB) -> None:
        """After each request or poll of the window."""
        elapsed = lb.emulator.clock.now() - self.started_at
        for mark in MARKS:
            if elapsed >= WEEK * mark / 100 and mark not in self.predicted:
                waste = await forecast(lb, WASTE)
                assert waste is not None
                self.predicted[mark] = waste
        # The emulator's window as it stands: what is left if nothing follows.
        self.left = PLUS_CREDITS * (100.0 - used(lb)) / 100.0

    def errors(self) -> dict[int, float]:
        """Per mark: the forecast's error over the credits really left."""
        assert self.left is not None
        return {mark: error(p, self.left) for mark, p in self.predicted.items()}

    def window_errors(self) -> dict[int, float]:
        """Per mark: the same error as a share of the whole window."""
        assert self.left is not None
        return {
            mark: abs(p - self.left) / PLUS_CREDITS
            for mark, p in self.predicted.items()
        }


def bursty_day(rng: random.Random, load: float) -> list[tuple[float, int]]:
    """One day as (seconds into the day, characters; 0 for a usage poll):
    eight working hours of requests at random moments and sizes, on average
    ``load`` times a steady request every half hour, then a poll every four
    hours through the idle evening and night."""
    plan = []
    at = 9 * HOUR
    while True:
        at += rng.uniform(10, 50) * 60
        if at >= 17 * HOUR:
            break
        plan.append((at, int(STEADY_CHARS * load * rng.uniform(0.25, 1.75))))
    return plan + [(hour * HOUR, 0) for hour in (18, 22, 26, 30)]


async def bursty_week(
    lb: LB, rng: random.Random, load: float, look: Callable[[], Any]
) -> None:
    """Bursty days from now until the weekly reset, or until ``look`` (run
    after each request and poll) returns True."""
    clock = lb.emulator.clock
    reset_at = lb.emulator.account(EMAIL).secondary.reset_at
    day = clock.now()
    while True:
        for at, chars in bursty_day(rng, load):
            if day + at >= reset_at:
                return
            clock.advance(day + at - clock.now())
            await (spend(lb, chars) if chars else poll(lb))
            if await look():
                return
        day += DAY


class TestSteadyUse:
    async def test_exhaustion_and_implied_quota(
        self, make_lb: Any, one_account: Emulator, report: Callable[..., None]
    ) -> None:
        """Hourly requests of one size: the exhaustion time predicted at 25,
        50 and 75 % used is within 10 %, the implied quota within 5 %."""
        lb: LB = await make_lb(one_account)
        run = Exhaustion()
        start = one_account.clock.now()

        while run.exhausted_at is None:
            await spend(lb, STEADY_CHARS)
            await run.look(lb)
            if run.exhausted_at is None:
                one_account.clock.advance(HOUR)
        implied = await forecast(lb, IMPLIED)

        errors = run.errors()
        assert implied is not None
        report(
            "steady_exhaustion",
            eta_error=rounded(errors),
            eta_error_of_elapsed=rounded(run.errors_from(start)),
            exhausted_after_hours=round((run.exhausted_at - start) / HOUR, 1),
            implied_usd=round(implied, 4),
            implied_error=round(error(implied, WEEKLY_DOLLARS), 4),
        )
        assert run.exhausted_at - start < WEEK
        assert set(errors) == set(MARKS)
        assert max(errors.values()) <= 0.10
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)

    async def test_waste_at_the_reset(
        self, make_lb: Any, one_account: Emulator, report: Callable[..., None]
    ) -> None:
        """A small request every quarter hour fills about 70 % of the week:
        the waste forecast at 25, 50 and 75 % of the window is within 5 % of
        the credits left at the reset."""
        lb: LB = await make_lb(one_account)
        run = Waste(lb)

        while True:
            await spend(lb, STEADY_CHARS // 40)
            await run.look(lb)
            one_account.clock.advance(HOUR / 4)
            if not run.running(lb):
                break
        implied = await forecast(lb, IMPLIED)

        errors = run.errors()
        assert implied is not None and run.left is not None
        report(
            "steady_waste",
            waste_error=rounded(errors),
            waste_error_of_window=rounded(run.window_errors()),
            left_at_reset_credits=round(run.left),
            implied_error=round(error(implied, WEEKLY_DOLLARS), 4),
        )
        assert 0 < run.left < PLUS_CREDITS
        assert set(errors) == set(MARKS)
        assert max(errors.values()) <= 0.05
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)


class TestBurstyUse:
    async def test_exhaustion_and_implied_quota(
        self, make_lb: Any, one_account: Emulator, report: Callable[..., None]
    ) -> None:
        """Working-hour bursts of uneven requests with idle nights and polls:
        the implied quota is within 5 %; the exhaustion errors are measured
        (the goal is set for steady use only; a loose bound guards them)."""
        lb: LB = await make_lb(one_account)
        run = Exhaustion()
        start = one_account.clock.now()

        async def look() -> bool:
            await run.look(lb)
            return run.exhausted_at is not None

        await bursty_week(lb, random.Random(10), 1.25, look)
        implied = await forecast(lb, IMPLIED)

        errors = run.errors()
        assert implied is not None and run.exhausted_at is not None
        report(
            "bursty_exhaustion",
            eta_error=rounded(errors),
            eta_error_of_elapsed=rounded(run.errors_from(start)),
            exhausted_after_hours=round((run.exhausted_at - start) / HOUR, 1),
            implied_usd=round(implied, 4),
            implied_error=round(error(implied, WEEKLY_DOLLARS), 4),
        )
        assert run.exhausted_at - start < WEEK
        assert set(errors) == set(MARKS)
        assert max(errors.values()) <= 0.5
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)

    async def test_waste_at_the_reset(
        self, make_lb: Any, one_account: Emulator, report: Callable[..., None]
    ) -> None:
        """The same bursts at a lighter load leave credits at the reset; the
        waste forecast errors at 25, 50 and 75 % of the window are measured.
        One heavy or light day moves the forecast by a large share of what is
        left, so the loose bound is on the error as a share of the window."""
        lb: LB = await make_lb(one_account)
        run = Waste(lb)

        async def look() -> bool:
            await run.look(lb)
            return False

        await bursty_week(lb, random.Random(11), 0.6, look)
        implied = await forecast(lb, IMPLIED)

        errors = run.errors()
        assert implied is not None and run.left is not None
        report(
            "bursty_waste",
            waste_error=rounded(errors),
            waste_error_of_window=rounded(run.window_errors()),
            left_at_reset_credits=round(run.left),
            implied_error=round(error(implied, WEEKLY_DOLLARS), 4),
        )
        assert 0 < run.left < PLUS_CREDITS
        assert set(errors) == set(MARKS)
        assert max(run.window_errors().values()) <= 0.2
        assert implied == pytest.approx(WEEKLY_DOLLARS, rel=0.05)


class TestSlowdown:
    async def test_waste_forecast(
        self, make_lb: Any, one_account: Emulator, report: Callable[..., None]
    ) -> None:
        """Requests that shrink to a quarter on day 2 leave credits at the
        reset; the waste forecast made on day 4, once a whole day of the new
        pace is behind it, is within 5 % of them."""
        lb: LB = await make_lb(one_account)
        run = Waste(lb)
        start = run.started_at
        made: float | None = None

        while run.running(lb):
            now = one_account.clock.now()
            slow = now >= start + 2 * DAY
            await spend(lb, STEADY_CHARS // 4 if slow else STEADY_CHARS)
            await run.look(lb)
            if made is None and now >= start + 4 * DAY:
                made = await forecast(lb, WASTE)
            one_account.clock.advance(HOUR)

        assert made is not None and run.left is not None
        report(
            "slowdown_waste",
            day4_waste_error=round(error(made, run.left), 4),
            left_at_reset_credits=round(run.left),
        )
        assert 0 < run.left < PLUS_CREDITS
        assert made == pytest.approx(run.left, rel=0.05)
