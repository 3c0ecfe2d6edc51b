"""Usage polling against the emulator: readings, failed polls, benches lifted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from codex_lb.accounts import ACTIVE, RATE_LIMITED, REAUTH_REQUIRED
from codex_lb.accounts.account import Account
from codex_lb.accounts.usage import UsagePoller
from codex_lb.app import USAGE_POLLER_KEY
from codex_lb.proxy.routes import RELAY_KEY
from codex_lb.sim import Emulator, Fault, SimAccount
from tests.collectors.scrape import parse, scrape_text, total
from tests.conftest import LB

T = 1_800_000_000.0
WEEK = 604800
CODEX = "/backend-api/codex/responses"


def frozen_emulator(*accounts: SimAccount, **options: Any) -> Emulator:
    """An emulator whose clock stands at T, with windows opened at T."""
    emu = Emulator(clock_speed=0, event_delay=0.0, **options)
    emu.clock.advance(T - emu.clock.now())
    for account in accounts:
        emu.add_account(account)
    return emu


@pytest.fixture
async def frozen() -> AsyncIterator[Emulator]:
    """Plus accounts a@ and b@ on a clock frozen at T."""
    emu = frozen_emulator(
        SimAccount.make("a@example.com"), SimAccount.make("b@example.com")
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def poller(lb: LB) -> UsagePoller:
    return lb.app[USAGE_POLLER_KEY]


def account(lb: LB, email: str) -> Account:
    found = lb.pool.get(lb.ids[email])
    assert found is not None
    return found


def usage_calls(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.path.endswith("/wham/usage"))


async def served_by(lb: LB) -> str | None:
    """Send one non-streaming turn; the id of the account that served it."""
    body = {"model": "gpt-5", "input": "hi", "stream": False}
    response = await lb.client.post(CODEX, json=body)
    assert response.status == 200, await response.text()
    await response.read()
    return (await lb.request_logs())[-1].account_id


class TestReadings:
    async def test_poll_stores_and_publishes_a_snapshot(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A poll's windows reach the account, the store and a quota_snapshot."""
        lb: LB = await make_lb(frozen)
        frozen.set_usage("a@example.com", primary=12.5, secondary=40)

        ok = await poller(lb).poll(account(lb, "a@example.com"))

        assert ok is True
        row = await lb.store.get_account(lb.ids["a@example.com"])
        assert row is not None and row.quota is not None
        quota = row.quota
        assert (quota.primary_used_percent, quota.primary_window_minutes) == (12.5, 300)
        assert quota.primary_reset_at == T + 18000
        assert (quota.secondary_used_percent, quota.secondary_window_minutes) == (
            40,
            10080,
        )
        assert quota.secondary_reset_at == T + WEEK
        (snapshot,) = lb.recorder.of("quota_snapshot")
        assert (snapshot.source, snapshot.observed_at) == ("poll", T)
        assert snapshot.secondary.used_percent == 40
        history = await lb.store.quota_history(lb.ids["a@example.com"])
        assert [(r.source, r.secondary_used_percent) for r in history] == [("poll", 40)]

    async def test_response_headers_update_the_account_between_polls(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A served turn's x-codex headers become a stored ``headers`` reading."""
        lb: LB = await make_lb(frozen)
        await lb.pool.pause(account(lb, "b@example.com"))
        frozen.set_usage("a@example.com", primary=30, secondary=45)

        await served_by(lb)
        await lb.app[RELAY_KEY].close()

        sim = frozen.account("a@example.com")
        assert sim.primary is not None
        a = account(lb, "a@example.com")
        assert a.quota is not None
        assert (a.quota.source, a.quota.observed_at) == ("headers", T)
        assert a.quota.primary_used_percent == pytest.approx(
            sim.primary.used_percent, abs=1e-6
        )
        assert a.quota.secondary_used_percent == pytest.approx(
            sim.secondary.used_percent, abs=1e-6
        )
        assert a.quota.secondary_reset_at == T + WEEK
        (snapshot,) = lb.recorder.of("quota_snapshot")
        assert snapshot.source == "headers"
        history = await lb.store.quota_history(a.id)
        assert [r.source for r in history] == ["headers"]

    async def test_every_account_is_polled_but_reauth_ones(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """poll_all asks once per account that can still log in."""
        lb: LB = await make_lb(frozen)
        await lb.pool.require_reauth(account(lb, "b@example.com"), "invalid_grant")

        polled = await poller(lb).poll_all()

        assert polled == 1
        assert usage_calls(frozen) == 1

    async def test_polls_run_a_few_at_a_time(self, make_lb: Any) -> None:
        """Six slow polls with a concurrency of 2 take three rounds, not one."""
        emu = frozen_emulator(*(SimAccount.make(f"u{n}@example.com") for n in range(6)))
        await emu.start()
        try:
            lb: LB = await make_lb(emu, CODEX_LB_USAGE_REFRESH_CONCURRENCY="2")
            for n in range(6):
                emu.add_fault(f"u{n}@example.com", Fault.timeout(0.3), "usage")

            started = asyncio.get_running_loop().time()
            polled = await poller(lb).poll_all()
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            await emu.close()

        assert polled == 6
        # Bounded at 2: at least 3 x 0.3 s. Parallel at all: well under 6 x 0.3 s.
        assert 0.85 <= elapsed < 1.6

    async def test_polling_runs_on_the_interval(self, make_lb: Any) -> None:
        """With an interval set, the app polls at start and then again."""
        emu = frozen_emulator(SimAccount.make("a@example.com"))
        await emu.start()
        try:
            lb: LB = await make_lb(emu, CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS="0.05")
            deadline = asyncio.get_running_loop().time() + 5
            while usage_calls(emu) < 3:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
        finally:
            await emu.close()

        snapshots = lb.recorder.of("quota_snapshot")
        assert len(snapshots) >= 2
        assert {s.source for s in snapshots} == {"poll"}

    async def test_interval_zero_turns_polling_off(self, make_lb: Any) -> None:
        """At 0 s the poller's task ends at once and nothing is polled."""
        emu = frozen_emulator(SimAccount.make("a@example.com"))
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            await asyncio.wait_for(poller(lb).run(), timeout=1)
            await asyncio.sleep(0.1)
        finally:
            await emu.close()

        assert poller(lb).interval == 0
        assert usage_calls(emu) == 0

    async def test_refused_token_is_refreshed_and_the_poll_retried(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A 401 from the usage endpoint costs one refresh, then succeeds."""
        lb: LB = await make_lb(frozen)
        frozen.revoke_access_token("a@example.com")

        ok = await poller(lb).poll(account(lb, "a@example.com"))

        assert ok is True
        token_calls = [r for r in frozen.requests if r.path == "/oauth/token"]
        assert len(token_calls) == 1
        assert usage_calls(frozen) == 2
        a = account(lb, "a@example.com")
        assert a.tokens.access_token == frozen.account("a@example.com").access_token


class TestFailedPolls:
    async def test_c07_failed_polls_change_nothing(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """(87, R), a 502, a timeout, bad JSON, then (88, R): counter 0 then 1."""
        lb: LB = await make_lb(frozen, CODEX_LB_USAGE_REFRESH_TIMEOUT_SECONDS="0.2")
        a = account(lb, "a@example.com")
        acc = a.id
        frozen.set_usage("a@example.com", secondary=87)
        await poller(lb).poll(a)
        kept = a.quota

        progress, gauges, statuses = [], [], []

        async def observe() -> None:
            samples = parse(await scrape_text(lb))
            progress.append(
                total(
                    samples,
                    "codex_lb_secondary_used_percent_increase_total",
                    account_id=acc,
                )
            )
            gauges.append(
                total(samples, "codex_lb_secondary_used_percent", account_id=acc)
            )
            statuses.append(a.status)

        await observe()
        for fault in (
            Fault.status(502, {"error": {"message": "bad gateway"}}),
            Fault.timeout(1.0),
            Fault.bad_json(),
        ):
            frozen.add_fault("a@example.com", fault, "usage")
            assert await poller(lb).poll(a) is False
            assert a.quota is kept
            await observe()
        frozen.set_usage("a@example.com", secondary=88)
        await poller(lb).poll(a)
        await observe()

        assert progress == [0, 0, 0, 0, 1]
        assert gauges == [87, 87, 87, 87, 88]
        assert statuses == [ACTIVE] * 5
        failures = lb.recorder.of("usage_refresh_failed")
        assert [(f.account_id, f.reason) for f in failures] == [
            (acc, "http_502"),
            (acc, "timeout"),
            (acc, "invalid_json"),
        ]
        samples = parse(await scrape_text(lb))
        assert total(samples, "codex_lb_secondary_resets_total", account_id=acc) == 0
        for reason in ("http_502", "timeout", "invalid_json"):
            assert (
                total(samples, "codex_lb_usage_refresh_failures_total", reason=reason)
                == 1
            )
        snapshots = lb.recorder.of("quota_snapshot")
        assert [s.secondary.used_percent for s in snapshots] == [87, 88]
        history = await lb.store.quota_history(acc)
        assert [r.secondary_used_percent for r in history] == [87, 88]

    async def test_failed_poll_leaves_a_bench_alone(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A 500 from the usage endpoint neither lifts nor moves a bench."""
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        await lb.pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 600)
        frozen.add_fault("a@example.com", Fault.status(500, {}), "usage")

        ok = await poller(lb).poll(a)

        assert ok is False
        assert (a.status, a.status_until) == (RATE_LIMITED, T + 600)

    async def test_answer_without_windows_is_a_failure(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A 200 that reports no window is counted, never read as 0 %."""
        lb: LB = await make_lb(frozen)
        body = {"plan_type": "plus", "rate_limit": None}
        frozen.add_fault("a@example.com", Fault.status(200, body), "usage")

        ok = await poller(lb).poll(account(lb, "a@example.com"))

        assert ok is False
        assert account(lb, "a@example.com").quota is None
        (failure,) = lb.recorder.of("usage_refresh_failed")
        assert failure.reason == "no_windows"

    async def test_dead_login_is_a_token_refresh_failure(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A 401 whose refresh fails for good marks the account for re-login."""
        lb: LB = await make_lb(frozen)
        frozen.revoke_access_token("a@example.com")
        refused = {"error": "invalid_grant", "error_description": "gone"}
        frozen.add_fault("a@example.com", Fault.status(400, refused), "token")

        ok = await poller(lb).poll(account(lb, "a@example.com"))

        assert ok is False
        assert account(lb, "a@example.com").status == REAUTH_REQUIRED
        (failure,) = lb.recorder.of("usage_refresh_failed")
        assert failure.reason == "token_refresh"
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.event, mark.code) == ("permanent_failure", "invalid_grant")


class TestBenchLiftedByPoll:
    async def _bench_a(self, lb: LB, emu: Emulator) -> Account:
        """Bench a@ with a 429 resetting in three days; b@ serves the turn."""
        emu.set_usage("b@example.com", primary=10, secondary=20)
        await poller(lb).poll_all()
        limit = {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "resets_at": int(T) + 259200,
            }
        }
        emu.add_fault("a@example.com", Fault.status(429, limit))
        assert await served_by(lb) == lb.ids["b@example.com"]
        return account(lb, "a@example.com")

    async def test_c12_fresh_poll_with_room_lifts_the_bench(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """An hour into a 3-day bench a poll shows 0 %: A serves again (C12)."""
        lb: LB = await make_lb(frozen)
        a = await self._bench_a(lb, frozen)
        benched = (a.status, a.status_until)

        frozen.clock.advance(3600)
        await poller(lb).poll(a)

        assert benched == (RATE_LIMITED, T + 259200)
        assert (a.status, a.status_until) == (ACTIVE, None)
        row = await lb.store.get_account(a.id)
        assert row is not None and row.status == ACTIVE
        assert await served_by(lb) == a.id

    async def test_c12_poll_showing_the_week_full_keeps_it(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """The same poll with the weekly window at 100 % keeps A benched (C12)."""
        lb: LB = await make_lb(frozen)
        a = await self._bench_a(lb, frozen)

        frozen.clock.advance(3600)
        frozen.set_usage("a@example.com", secondary=100)
        await poller(lb).poll(a)

        assert (a.status, a.status_until) == (RATE_LIMITED, T + 259200)
        assert await served_by(lb) == lb.ids["b@example.com"]

    async def test_bench_survives_a_restart_of_the_app(
        self, make_lb: Any, frozen: Emulator, tmp_path: Any, aiohttp_client: Any
    ) -> None:
        """A new app on the same data keeps the bench, then lifts it on time."""
        from aiohttp.test_utils import TestServer

        from codex_lb.app import SERVER_OPTIONS, create_app
        from codex_lb.config import load_settings
        from codex_lb.web.api import POOL_KEY
        from tests.conftest import settings_env

        lb: LB = await make_lb(frozen)
        a_id = (await self._bench_a(lb, frozen)).id
        await lb.client.close()

        settings = load_settings(
            settings_env(frozen, tmp_path / "lb-data"), env_file=None
        )
        app = await create_app(settings, clock=frozen.clock.now)
        server = TestServer(app)
        await server.start_server(**SERVER_OPTIONS)
        client = await aiohttp_client(server)
        reborn = LB(client, app, frozen, lb.recorder, lb.ids)
        a = app[POOL_KEY].get(a_id)
        assert a is not None

        kept = (a.status, a.status_until)
        during = await served_by(reborn)
        frozen.clock.advance(259200)
        after = await served_by(reborn)

        assert kept == (RATE_LIMITED, T + 259200)
        assert during == lb.ids["b@example.com"]
        assert after == a_id


class TestWeeklyOnlyPlan:
    @pytest.mark.parametrize("window_seconds", [WEEK, 30 * 86400])
    async def test_c14_weekly_window_in_the_primary_slot(
        self, make_lb: Any, window_seconds: int
    ) -> None:
        """A free account's lone long window feeds the weekly metrics (C14)."""
        emu = frozen_emulator(SimAccount.make("f@example.com", plan="free"))
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            f = account(lb, "f@example.com")
            reset = int(T) + 471285
            limit = {"error": {"type": "usage_limit_reached", "message": "limit"}}
            headers = {
                "x-codex-primary-used-percent": "100",
                "x-codex-primary-window-minutes": str(window_seconds // 60),
                "x-codex-primary-reset-at": str(reset),
                "x-codex-secondary-window-minutes": "0",
                "x-codex-secondary-reset-at": "",
            }
            emu.add_fault("f@example.com", Fault.status(429, limit, headers=headers))
            usage = {
                "plan_type": "free",
                "rate_limit": {
                    "limit_reached": True,
                    "primary_window": {
                        "used_percent": 100,
                        "limit_window_seconds": window_seconds,
                        "reset_at": reset,
                    },
                    "secondary_window": None,
                },
            }
            emu.add_fault("f@example.com", Fault.status(200, usage), "usage")

            response = await lb.client.post(
                CODEX, json={"model": "gpt-5", "input": "hi", "stream": False}
            )
            error = (await response.json())["error"]
            benched = (f.status, f.status_until)
            polled = await poller(lb).poll(f)
            samples = parse(await scrape_text(lb))
        finally:
            await emu.close()

        assert response.status == 429
        assert (error["code"], error["resets_at"]) == ("usage_limit_reached", reset)
        assert benched == (RATE_LIMITED, reset)
        assert polled is True
        assert (f.status, f.status_until) == (RATE_LIMITED, reset)
        quota = f.quota
        assert quota is not None
        assert (
            quota.secondary_used_percent,
            quota.secondary_window_minutes,
            quota.secondary_reset_at,
        ) == (100, window_seconds // 60, reset)
        assert (quota.primary_used_percent, quota.primary_reset_at) == (None, None)
        for snapshot in lb.recorder.of("quota_snapshot"):
            assert snapshot.primary is None
            assert snapshot.secondary.reset_at == reset
        acc = f.id
        assert total(samples, "codex_lb_secondary_used_percent", account_id=acc) == 100
        assert (
            total(samples, "codex_lb_secondary_reset_at_seconds", account_id=acc)
            == reset
        )
        assert total(samples, "codex_lb_secondary_window_minutes", account_id=acc) == (
            window_seconds // 60
        )
        assert total(samples, "codex_lb_secondary_resets_total", account_id=acc) == 0

    @pytest.mark.parametrize("window_seconds", [WEEK, 30 * 86400])
    async def test_c14_in_the_case_order_benches_until_the_window_resets(
        self, make_lb: Any, window_seconds: int
    ) -> None:
        """C14 as the case runs it: the poll shows the lone long window full,
        then a 429 whose only reset hints are empty: the account is benched
        until that window resets, not retried every minute for days."""
        emu = frozen_emulator(SimAccount.make("f@example.com", plan="free"))
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            f = account(lb, "f@example.com")
            reset = int(T) + 471285
            emu.add_fault(
                "f@example.com",
                Fault.status(200, _free_full(reset, window_seconds)),
                "usage",
            )
            limit = {"error": {"type": "usage_limit_reached", "message": "limit"}}
            empty = {
                "x-codex-secondary-window-minutes": "0",
                "x-codex-secondary-reset-at": "",
            }
            emu.add_fault("f@example.com", Fault.status(429, limit, headers=empty))

            polled = await poller(lb).poll(f)
            response = await lb.client.post(
                CODEX, json={"model": "gpt-5", "input": "hi", "stream": False}
            )
            error = (await response.json())["error"]
            stored = await lb.store.get_account(f.id)
            samples = parse(await scrape_text(lb))
        finally:
            await emu.close()

        assert polled is True
        assert response.status == 429
        assert (error["code"], error["resets_at"]) == ("usage_limit_reached", reset)
        assert (f.status, f.status_until) == (RATE_LIMITED, reset)
        assert stored is not None and stored.status_until == reset
        acc = f.id
        assert total(samples, "codex_lb_secondary_used_percent", account_id=acc) == 100
        assert total(samples, "codex_lb_secondary_resets_total", account_id=acc) == 0


def _free_full(reset: int, window_seconds: int) -> dict[str, Any]:
    """A free plan's usage answer: one long window, full, in the primary slot."""
    return {
        "plan_type": "free",
        "rate_limit": {
            "limit_reached": True,
            "primary_window": {
                "used_percent": 100,
                "limit_window_seconds": window_seconds,
                "reset_at": reset,
            },
            "secondary_window": None,
        },
    }


def _window(used: float, seconds: int, reset_at: float) -> dict[str, Any]:
    return {"used_percent": used, "limit_window_seconds": seconds, "reset_at": reset_at}


class TestStrayReadingsAndSnapshots:
    """C06: a snapshot carries only the windows its reading reported, so a
    reading that leaves the weekly window out never confirms a stray one."""

    async def test_a_poll_without_the_weekly_window_confirms_no_stray(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """Polls (46,R), stray (0,W), one with no weekly window, (46,R): the
        counter adds nothing and counts no reset."""
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        frozen.set_usage("a@example.com", primary=10, secondary=46)
        assert await poller(lb).poll(a)
        assert a.quota is not None and a.quota.secondary_reset_at is not None
        r = a.quota.secondary_reset_at
        stray = {
            "plan_type": "plus",
            "rate_limit": {
                "primary_window": _window(10, 18000, T + 3600),
                "secondary_window": _window(0, WEEK, r + WEEK),
            },
        }
        short_only = {
            "plan_type": "plus",
            "rate_limit": {
                "primary_window": _window(11, 18000, T + 3600),
                "secondary_window": None,
            },
        }
        frozen.add_fault("a@example.com", Fault.status(200, stray), "usage")
        frozen.add_fault("a@example.com", Fault.status(200, short_only), "usage")

        polled = [await poller(lb).poll(a) for _ in range(3)]
        samples = parse(await scrape_text(lb))

        assert polled == [True, True, True]
        assert _counters(samples, a.id) == (0, 0, 46)
        snapshots = lb.recorder.of("quota_snapshot")
        assert [s.secondary and s.secondary.used_percent for s in snapshots] == [
            46,
            0,
            None,
            46,
        ]
        # Routing keeps the last weekly window it knows for the short reading.
        assert a.quota.secondary_used_percent == 46

    async def test_headers_without_the_weekly_window_confirm_no_stray(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """The same through answers' headers: a poll (46,R), an answer whose
        headers say (0,W), a 429 with only a 5 h window and empty weekly
        values (C14's shape), then a poll (46,R) again: nothing added."""
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        await lb.pool.pause(account(lb, "b@example.com"))
        frozen.set_usage("a@example.com", primary=10, secondary=46)
        assert await poller(lb).poll(a)
        assert a.quota is not None and a.quota.secondary_reset_at is not None
        r = a.quota.secondary_reset_at
        answer = {"id": "resp_1", "status": "completed", "model": "gpt-5", "output": []}
        stray = {
            "x-codex-secondary-used-percent": "0",
            "x-codex-secondary-window-minutes": str(WEEK // 60),
            "x-codex-secondary-reset-at": str(int(r + WEEK)),
        }
        limit = {"error": {"type": "usage_limit_reached", "message": "limit"}}
        short_only = {
            "x-codex-primary-used-percent": "100",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(int(T + 3600)),
            "x-codex-secondary-window-minutes": "0",
            "x-codex-secondary-reset-at": "",
        }
        frozen.add_fault("a@example.com", Fault.status(200, answer, headers=stray))
        frozen.add_fault("a@example.com", Fault.status(429, limit, headers=short_only))

        statuses = []
        for _ in range(2):
            response = await lb.client.post(
                CODEX, json={"model": "gpt-5", "input": "hi", "stream": False}
            )
            await response.read()
            statuses.append(response.status)
        assert await poller(lb).poll(a)
        samples = parse(await scrape_text(lb))

        assert statuses == [200, 429]
        assert _counters(samples, a.id) == (0, 0, 46)
        sources = [
            (s.source, s.secondary and s.secondary.used_percent)
            for s in lb.recorder.of("quota_snapshot")
        ]
        assert sources == [
            ("poll", 46),
            ("headers", 0),
            ("headers", None),
            ("poll", 46),
        ]


def _counters(samples: Any, account_id: str) -> tuple[float, float, float]:
    """(weekly increase, weekly resets, weekly used gauge) of one account."""
    return (
        total(
            samples,
            "codex_lb_secondary_used_percent_increase_total",
            account_id=account_id,
        ),
        total(samples, "codex_lb_secondary_resets_total", account_id=account_id),
        total(samples, "codex_lb_secondary_used_percent", account_id=account_id),
    )
