"""The pool's quota for the Codex CLI: the usage route and x-codex headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from codex_lb.accounts import PAUSED, RATE_LIMITED
from codex_lb.accounts.account import Account
from codex_lb.accounts.aggregate import (
    pool_quota,
    quota_headers,
    replace_quota_headers,
    usage_payload,
)
from codex_lb.app import USAGE_POLLER_KEY
from codex_lb.sim import Emulator, Fault, SimAccount
from codex_lb.store import QuotaReading, TokenSet
from tests.conftest import LB
from tests.proxy.test_relay import CREATED, delta, done

T = 1_800_000_000.0


def member(
    name: str,
    plan: str = "plus",
    status: str = "active",
    primary: tuple[float | None, float | None] | None = None,
    secondary: tuple[float | None, float | None] | None = None,
    credits: float | None = None,
) -> Account:
    """An account with (used, reset_at) per window, as routing holds it."""
    quota = None
    if primary is not None or secondary is not None:
        quota = QuotaReading(
            T,
            "poll",
            primary_used_percent=primary[0] if primary else None,
            primary_window_minutes=300 if primary else None,
            primary_reset_at=primary[1] if primary else None,
            secondary_used_percent=secondary[0] if secondary else None,
            secondary_window_minutes=10080 if secondary else None,
            secondary_reset_at=secondary[1] if secondary else None,
            credits_balance=credits,
        )
    return Account(
        id=f"acc_{name}",
        email=f"{name}@example.com",
        chatgpt_account_id=f"cg-{name}",
        plan=plan,
        status=status,
        status_reason=None,
        status_until=None,
        pinned=False,
        tokens=TokenSet("at", "rt", None, T),
        quota=quota,
        last_used_at=None,
    )


class TestPoolQuota:
    def test_capacity_weighted_mean_and_earliest_reset(self) -> None:
        """A pro account weighs 50400 credits to a plus account's 7560."""
        accounts = [
            member("a", "plus", primary=(20, T + 100), secondary=(10, T + 9000)),
            member("b", "pro", primary=(50, T + 50), secondary=(40, T + 8000)),
            member("c", "plus", PAUSED, primary=(0, T + 1), secondary=(0, T + 1)),
        ]

        quota = pool_quota(accounts)

        assert quota.primary is not None and quota.secondary is not None
        weights = 7560 + 50400
        assert quota.primary.used_percent == round(
            (20 * 7560 + 50 * 50400) / weights, 2
        )
        assert quota.secondary.used_percent == round(
            (10 * 7560 + 40 * 50400) / weights, 2
        )
        assert (quota.primary.reset_at, quota.secondary.reset_at) == (T + 50, T + 8000)
        assert (quota.primary.window_minutes, quota.secondary.window_minutes) == (
            300,
            10080,
        )
        assert (quota.limit_reached, quota.plan) == (False, "pro")

    def test_resets_already_past_are_left_out(self) -> None:
        """A window whose reset time has passed says nothing about when
        capacity comes back: the next reset ahead is reported, and with none
        ahead no reset at all (never reset_after_seconds 0)."""
        accounts = [
            member("a", primary=(30, T - 60), secondary=(10, T - 5)),
            member("b", primary=(40, T + 900), secondary=(20, None)),
        ]

        quota = pool_quota(accounts, now=T)
        payload = usage_payload(quota, T)

        assert quota.primary is not None and quota.secondary is not None
        assert (quota.primary.reset_at, quota.secondary.reset_at) == (T + 900, None)
        assert payload["rate_limit"]["primary_window"]["reset_after_seconds"] == 900
        assert payload["rate_limit"]["secondary_window"]["reset_after_seconds"] is None
        assert "x-codex-secondary-reset-at" not in quota_headers(quota, T)

    async def test_the_usage_route_leaves_past_resets_out(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """Through /api/codex/usage: a's 5 h window reset a minute ago, b's
        is ahead; the route reports b's."""
        lb = await polled_lb(make_lb, frozen)
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        await lb.pool.apply_reading(
            a,
            QuotaReading(T, "poll", primary_used_percent=5, primary_reset_at=T - 60),
        )

        payload = await (await lb.client.get("/api/codex/usage")).json()

        window = payload["rate_limit"]["primary_window"]
        assert (window["reset_at"], window["reset_after_seconds"]) == (
            int(T) + 18000,
            18000,
        )

    def test_unknown_use_is_left_out_not_zero(self) -> None:
        """An account without a reading does not pull the mean down."""
        accounts = [member("a", secondary=(60, T + 10)), member("b")]

        quota = pool_quota(accounts)

        assert quota.secondary is not None
        assert quota.secondary.used_percent == 60
        assert quota.primary is None

    def test_benched_pool_reports_the_limit_reached(self) -> None:
        """With nobody active, the benched accounts are shown, limit reached."""
        accounts = [
            member("a", status=RATE_LIMITED, secondary=(100, T + 500)),
            member("b", status=PAUSED, secondary=(5, T + 100)),
        ]

        quota = pool_quota(accounts)
        payload = usage_payload(quota, T)

        assert payload["rate_limit"] == {
            "allowed": False,
            "limit_reached": True,
            "primary_window": None,
            "secondary_window": {
                "used_percent": 100,
                "limit_window_seconds": 604800,
                "reset_after_seconds": 500,
                "reset_at": int(T) + 500,
            },
        }

    def test_empty_pool(self) -> None:
        """No account: null windows, no plan, nothing allowed."""
        payload = usage_payload(pool_quota([]), T)

        assert payload == {
            "plan_type": None,
            "rate_limit": {
                "allowed": False,
                "limit_reached": True,
                "primary_window": None,
                "secondary_window": None,
            },
            "credits": None,
        }

    def test_headers_leave_unknowns_out(self) -> None:
        """Only known values become headers; nothing is sent as 0 or empty."""
        quota = pool_quota([member("a", secondary=(12.5, None))])

        headers = quota_headers(quota, T)

        assert headers == {
            "x-codex-secondary-used-percent": "12.5",
            "x-codex-secondary-window-minutes": "10080",
        }

    def test_account_headers_are_replaced_by_the_pool(self) -> None:
        """Every x-codex quota header of the account goes, whatever its case."""
        headers = {
            "X-Codex-Primary-Used-Percent": "99",
            "x-codex-secondary-reset-at": "1",
            "x-request-id": "r1",
        }

        replace_quota_headers(headers, {"x-codex-primary-used-percent": "20"})

        assert headers == {"x-request-id": "r1", "x-codex-primary-used-percent": "20"}


@pytest.fixture
async def frozen() -> AsyncIterator[Emulator]:
    """Plus accounts a@ and b@ on a clock frozen at T."""
    emu = Emulator(clock_speed=0, event_delay=0.0)
    emu.clock.advance(T - emu.clock.now())
    emu.add_account(SimAccount.make("a@example.com"))
    emu.add_account(SimAccount.make("b@example.com"))
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


async def polled_lb(make_lb: Any, emu: Emulator) -> LB:
    """codex-lb with a@ at 10 / 20 % and b@ at 30 / 40 %, both polled."""
    lb: LB = await make_lb(emu)
    emu.set_usage("a@example.com", primary=10, secondary=20)
    emu.set_usage("b@example.com", primary=30, secondary=40)
    assert await lb.app[USAGE_POLLER_KEY].poll_all() == 2
    return lb


class TestForTheCodexCli:
    async def test_usage_route_shows_the_pool(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """GET /api/codex/usage: the two accounts as one, in wham/usage shape."""
        lb = await polled_lb(make_lb, frozen)

        response = await lb.client.get("/api/codex/usage")

        assert response.status == 200
        assert await response.json() == {
            "plan_type": "plus",
            "rate_limit": {
                "allowed": True,
                "limit_reached": False,
                "primary_window": {
                    "used_percent": 20,
                    "limit_window_seconds": 18000,
                    "reset_after_seconds": 18000,
                    "reset_at": int(T) + 18000,
                },
                "secondary_window": {
                    "used_percent": 30,
                    "limit_window_seconds": 604800,
                    "reset_after_seconds": 604800,
                    "reset_at": int(T) + 604800,
                },
            },
            "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
        }

    async def test_usage_route_follows_benches(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A benched account drops out of the pool's figures."""
        lb = await polled_lb(make_lb, frozen)
        b = lb.pool.get(lb.ids["b@example.com"])
        assert b is not None
        await lb.pool.bench(b, RATE_LIMITED, "usage_limit_reached", T + 60)

        payload = await (await lb.client.get("/api/codex/usage")).json()

        limits = payload["rate_limit"]
        assert limits["primary_window"]["used_percent"] == 10
        assert limits["secondary_window"]["used_percent"] == 20
        assert limits["limit_reached"] is False

    async def test_proxied_stream_carries_the_pool_headers(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A relayed stream's x-codex headers are the pool's, not one account's."""
        lb = await polled_lb(make_lb, frozen)
        # A raw stream is not charged, so the account's own headers match its
        # poll and the pool's figures stay exactly the polled ones.
        frozen.add_fault(
            "a@example.com", Fault.raw([CREATED, delta("hi"), done(5, 0, 1, 0)])
        )
        body = {"model": "gpt-5", "input": "hi", "stream": True}

        response = await lb.client.post("/backend-api/codex/responses", json=body)
        await response.read()

        assert response.status == 200
        assert (await lb.request_logs())[-1].account_id == lb.ids["a@example.com"]
        quota = {
            name.lower(): value
            for name, value in response.headers.items()
            if name.lower().startswith("x-codex-")
        }
        assert quota == {
            "x-codex-primary-used-percent": "20",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(int(T) + 18000),
            "x-codex-primary-reset-after-seconds": "18000",
            "x-codex-secondary-used-percent": "30",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": str(int(T) + 604800),
            "x-codex-secondary-reset-after-seconds": "604800",
        }

    async def test_proxied_json_carries_the_pool_headers(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A non-streamed answer's headers show the pool as well."""
        lb = await polled_lb(make_lb, frozen)

        response = await lb.client.post(
            "/backend-api/codex/responses",
            json={"model": "gpt-5", "input": "hi", "stream": False},
        )
        await response.read()

        sim = [frozen.account(e) for e in ("a@example.com", "b@example.com")]
        assert sim[0].primary is not None and sim[1].primary is not None
        expected = round((sim[0].primary.used_percent + 30) / 2, 2)
        assert response.status == 200
        assert float(response.headers["x-codex-primary-used-percent"]) == (
            pytest.approx(expected, abs=0.01)
        )
