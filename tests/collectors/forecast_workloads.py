"""The workloads of the forecast accuracy tests: one plus account on the
emulator's frozen clock, driven by real requests and usage polls through
codex-lb, with its forecasts read from ``/metrics`` and compared with what
the emulator's weekly window really did."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from codex_lb.accounts.usage import UsagePoller
from codex_lb.app import SERVER_OPTIONS, USAGE_POLLER_KEY, create_app
from codex_lb.config import load_settings
from codex_lb.events import EventBus
from codex_lb.events.plans import weekly_credits
from codex_lb.sim import Emulator, SimAccount
from codex_lb.store import open_store
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB, EventRecorder, import_accounts, settings_env

EMAIL = "a@example.com"
CODEX = "/backend-api/codex/responses"
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MARKS = (25, 50, 75)

# One week of this account's window is worth a dollar; its 5 h window is
# made too big to ever fill, so only the weekly window limits it.
WEEKLY_DOLLARS = 1.0
PLUS_CREDITS = weekly_credits("plus")

# About 7 900 input tokens of gpt-5: roughly 1 % of the window a request.
STEADY_CHARS = 31_000

ETA = "codex_lb_secondary_exhaustion_eta_seconds"
WASTE = "codex_lb_secondary_waste_forecast_credits"
IMPLIED = "codex_lb_secondary_implied_quota_usd"


def one_account(whole_percents: bool) -> Emulator:
    """One plus account worth a dollar a week, on a frozen clock that starts
    on a whole second, so the upstream's whole-second reset times are exact
    and every run gives the same figures. It reports used percents with six
    decimals, or in whole numbers as the real upstream does."""
    emu = Emulator(clock_speed=0, event_delay=0.0, whole_percents=whole_percents)
    emu.clock.advance(math.ceil(emu.clock.now()) - emu.clock.now())
    emu.add_account(
        SimAccount.make(
            EMAIL, primary_dollars=1_000.0, secondary_dollars=WEEKLY_DOLLARS
        )
    )
    return emu


async def codex_lb_on(
    emu: Emulator, where: Path, aiohttp_client: Any, stack: AsyncExitStack
) -> LB:
    """The emulator started and a codex-lb in front of it, its data in
    ``where``; both close with ``stack``."""
    await emu.start()
    stack.push_async_callback(emu.close)
    store = await open_store(where / "data")
    try:
        ids = await import_accounts(store, emu, where / "auth")
    finally:
        await store.close()

    recorder = EventRecorder()
    bus = EventBus()
    bus.subscribe(recorder)
    settings = load_settings(settings_env(emu, where / "data"), env_file=None)
    app = await create_app(settings, bus=bus, clock=emu.clock.now)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    client = await aiohttp_client(server)
    return LB(client, app, emu, recorder, ids)


@contextlib.asynccontextmanager
async def fresh_runs(
    tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[Callable[[bool], Any]]:
    """A factory of codex-lb instances, each on its own one-account
    emulator and data folder (for workloads run on several seeds)."""
    async with AsyncExitStack() as stack:
        count = 0

        async def make(whole_percents: bool) -> LB:
            nonlocal count
            count += 1
            emu = one_account(whole_percents)
            return await codex_lb_on(
                emu, tmp_path / f"run{count}", aiohttp_client, stack
            )

        yield make


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
    """One successful request, and its reading and cost seen by collectors.

    The reading from the answer's headers is published before the answer's
    first byte (and not at all when it repeats the last one, as whole
    percents often do); the cost follows the last byte.
    """
    finished = len(lb.recorder.of("request_finished"))

    response = await lb.client.post(CODEX, json=body(chars))
    await response.read()

    assert response.status == 200
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
