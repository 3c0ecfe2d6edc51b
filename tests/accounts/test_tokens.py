"""Token refresh: when it happens, never twice at once, never losing a token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from codex_lb.accounts import ACTIVE, REAUTH_REQUIRED, AccountPool, TokenRefresher
from codex_lb.accounts.account import Account
from codex_lb.app import REFRESHER_KEY
from codex_lb.events import EventBus
from codex_lb.sim import Emulator, Fault, SimAccount
from codex_lb.store import QuotaReading, open_store
from tests.conftest import LB

T = 1_800_000_000.0
CODEX = "/backend-api/codex/responses"
TURN = {"model": "gpt-5", "input": "hi", "stream": False}


def frozen_emulator(**options: Any) -> Emulator:
    """a@ and b@ on a clock frozen at T."""
    emu = Emulator(clock_speed=0, event_delay=0.0, **options)
    emu.clock.advance(T - emu.clock.now())
    emu.add_account(SimAccount.make("a@example.com"))
    emu.add_account(SimAccount.make("b@example.com"))
    return emu


@pytest.fixture
async def frozen() -> AsyncIterator[Emulator]:
    emu = frozen_emulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def token_calls(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path == "/oauth/token"]


def responses_with(emu: Emulator, access_token: str) -> int:
    return sum(
        1
        for r in emu.requests
        if r.path.endswith("/codex/responses")
        and r.headers.get("authorization") == f"Bearer {access_token}"
    )


def account(lb: LB, email: str) -> Account:
    found = lb.pool.get(lb.ids[email])
    assert found is not None
    return found


async def only_a(lb: LB) -> Account:
    """Pause b@ so every request lands on a@."""
    await lb.pool.pause(account(lb, "b@example.com"))
    return account(lb, "a@example.com")


async def burst(lb: LB, n: int) -> list[int]:
    """``n`` turns at once; their status codes."""

    async def one() -> int:
        response = await lb.client.post(CODEX, json=TURN)
        await response.read()
        return response.status

    return list(await asyncio.gather(*(one() for _ in range(n))))


class TestWhenToRefresh:
    async def test_token_near_expiry_is_refreshed_in_the_background(
        self, make_lb: Any
    ) -> None:
        """Within 5 min of its exp claim the token is replaced, while the
        request that noticed goes out at once with the still valid one."""
        emu = frozen_emulator(access_token_ttl=3600)
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            refresher: TokenRefresher = lb.app[REFRESHER_KEY]
            a = await only_a(lb)
            old = a.tokens
            emu.clock.advance(3600 - 200)

            first = await burst(lb, 1)
            await refresher.wait_idle(a)
            second = await burst(lb, 1)
        finally:
            await emu.close()

        new = emu.account("a@example.com").access_token
        assert first == second == [200]
        assert len(token_calls(emu)) == 1
        assert a.tokens.access_token == new != old.access_token
        assert a.tokens.access_expires_at == T + 3400 + 3600
        assert responses_with(emu, old.access_token) == 1
        assert responses_with(emu, new) == 1

    async def test_token_about_to_expire_is_refreshed_before_use(
        self, make_lb: Any
    ) -> None:
        """With under 30 s left the request waits for the new token rather
        than race the old one's expiry."""
        emu = frozen_emulator(access_token_ttl=3600)
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            a = await only_a(lb)
            old = a.tokens
            emu.clock.advance(3600 - 20)

            statuses = await burst(lb, 1)
        finally:
            await emu.close()

        new = emu.account("a@example.com").access_token
        assert statuses == [200]
        assert len(token_calls(emu)) == 1
        assert responses_with(emu, new) == 1
        assert responses_with(emu, old.access_token) == 0

    async def test_fresh_token_is_left_alone(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """Far from expiry and young, the token is used as it is."""
        lb: LB = await make_lb(frozen)
        await only_a(lb)

        statuses = await burst(lb, 3)

        assert statuses == [200, 200, 200]
        assert token_calls(frozen) == []

    async def test_old_token_is_refreshed_by_age(self, make_lb: Any) -> None:
        """A token older than the refresh age is replaced though still valid."""
        emu = frozen_emulator()
        await emu.start()
        try:
            lb: LB = await make_lb(emu, CODEX_LB_TOKEN_REFRESH_AGE_SECONDS="1000")
            refresher: TokenRefresher = lb.app[REFRESHER_KEY]
            a = await only_a(lb)
            emu.clock.advance(1001)

            statuses = await burst(lb, 1)
            await refresher.wait_idle(a)
        finally:
            await emu.close()

        assert statuses == [200]
        assert len(token_calls(emu)) == 1
        assert a.tokens.refreshed_at == T + 1001

    async def test_failed_refresh_of_a_working_token_is_shrugged_off(
        self, make_lb: Any
    ) -> None:
        """A 503 from the token endpoint for an old but valid token: served."""
        emu = frozen_emulator()
        await emu.start()
        try:
            lb: LB = await make_lb(emu, CODEX_LB_TOKEN_REFRESH_AGE_SECONDS="1000")
            a = await only_a(lb)
            old = a.tokens.access_token
            emu.clock.advance(1001)
            emu.add_fault("a@example.com", Fault.status(503, {}), "token")

            statuses = await burst(lb, 1)
        finally:
            await emu.close()

        assert statuses == [200]
        assert a.status == ACTIVE
        assert responses_with(emu, old) == 1

    async def test_permanent_failure_needs_a_new_login(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """invalid_grant on an expired token: reauth_required, request moves."""
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        frozen.clock.advance(11 * 86400)
        refused = {"error": "invalid_grant", "error_description": "rt-LEAK-3"}
        frozen.add_fault("a@example.com", Fault.status(400, refused), "token")
        await lb.pool.apply_reading(
            account(lb, "b@example.com"),
            QuotaReading(T, "poll", secondary_used_percent=50),
        )

        statuses = await burst(lb, 1)

        assert statuses == [200]
        assert (a.status, a.status_reason) == (REAUTH_REQUIRED, "invalid_grant")
        row = await lb.store.get_account(a.id)
        assert row is not None and row.status == REAUTH_REQUIRED
        marks = [
            (m.account_id, m.event, m.code) for m in lb.recorder.of("account_marked")
        ]
        assert marks == [(a.id, "permanent_failure", "invalid_grant")]
        (log,) = await lb.request_logs()
        assert log.account_id == lb.ids["b@example.com"]


class TestRefreshRace:
    async def test_expired_token_many_requests_one_refresh(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """30 requests at once on an expired token: one call to the endpoint."""
        lb: LB = await make_lb(frozen)
        a = await only_a(lb)
        old = a.tokens.access_token
        frozen.clock.advance(10 * 86400 + 1)

        statuses = await burst(lb, 30)

        new = frozen.account("a@example.com").access_token
        assert statuses == [200] * 30
        assert len(token_calls(frozen)) == 1
        assert responses_with(frozen, new) == 30
        assert responses_with(frozen, old) == 0

    async def test_refused_token_many_requests_one_refresh(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """30 requests at once on a revoked token: 401s, yet one refresh."""
        lb: LB = await make_lb(frozen)
        await only_a(lb)
        frozen.revoke_access_token("a@example.com")

        statuses = await burst(lb, 30)

        new = frozen.account("a@example.com").access_token
        assert statuses == [200] * 30
        assert len(token_calls(frozen)) == 1
        assert responses_with(frozen, new) == 30

    async def test_late_refusal_of_a_replaced_token_costs_nothing(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A refresh asked for tokens already replaced returns the new ones."""
        lb: LB = await make_lb(frozen)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        a = account(lb, "a@example.com")
        sent = a.tokens

        first = await refresher.refresh(a, stale=sent)
        late = await refresher.refresh(a, stale=sent)

        assert late == first == a.tokens
        assert len(token_calls(frozen)) == 1

    async def test_poll_and_requests_share_one_refresh(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """A usage poll racing requests on an expired token: one refresh."""
        from codex_lb.app import USAGE_POLLER_KEY

        lb: LB = await make_lb(frozen)
        a = await only_a(lb)
        frozen.clock.advance(10 * 86400 + 1)

        results = await asyncio.gather(lb.app[USAGE_POLLER_KEY].poll(a), burst(lb, 10))

        assert results == [True, [200] * 10]
        assert len(token_calls(frozen)) == 1


class TestLostUpdate:
    """C13: a refresh and a quota write from a stale copy, in both orders."""

    async def _second_process(self, tmp_path: Path, emu: Emulator) -> Any:
        """Another process's pool on the same store (as a CLI command has)."""
        store = await open_store(tmp_path / "lb-data")
        pool = AccountPool(store, EventBus(), clock=emu.clock.now)
        await pool.load()
        return store, pool

    def _reading(self, used: float) -> QuotaReading:
        return QuotaReading(
            T + 5, "poll", secondary_used_percent=used, secondary_window_minutes=10080
        )

    async def test_stale_copy_written_after_the_rotation(
        self, make_lb: Any, frozen: Emulator, tmp_path: Path
    ) -> None:
        """Copy read, refresh rotates, then the copy's quota write lands."""
        lb: LB = await make_lb(frozen)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        a = account(lb, "a@example.com")
        old = a.tokens
        other_store, other = await self._second_process(tmp_path, frozen)
        try:
            stale_copy = other.get(a.id)
            assert stale_copy is not None

            await refresher.refresh(a, stale=old)
            await other.apply_reading(stale_copy, self._reading(61))
        finally:
            await other_store.close()
        await lb.pool.sync()

        await self._assert_both_kept(lb, frozen, a, old.refresh_token, 61)

    async def test_stale_copy_written_before_the_rotation(
        self, make_lb: Any, frozen: Emulator, tmp_path: Path
    ) -> None:
        """The quota write lands first; the refresh works from an older copy."""
        lb: LB = await make_lb(frozen)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        a = account(lb, "a@example.com")
        old = a.tokens
        other_store, other = await self._second_process(tmp_path, frozen)
        try:
            copy = other.get(a.id)
            assert copy is not None
            await other.apply_reading(copy, self._reading(62))

            await refresher.refresh(a, stale=old)
        finally:
            await other_store.close()
        await lb.pool.sync()

        await self._assert_both_kept(lb, frozen, a, old.refresh_token, 62)

    async def test_sync_during_an_inflight_refresh(
        self, make_lb: Any, frozen: Emulator, tmp_path: Path
    ) -> None:
        """A sync that reads rows mid-refresh does not roll the tokens back."""
        lb: LB = await make_lb(frozen)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        a = account(lb, "a@example.com")
        old = a.tokens
        frozen.add_fault("a@example.com", Fault.timeout(0.3), "token")
        other_store, other = await self._second_process(tmp_path, frozen)
        try:
            refreshing = asyncio.create_task(refresher.refresh(a, stale=old))
            while not token_calls(frozen):
                await asyncio.sleep(0.01)
            copy = other.get(a.id)
            assert copy is not None
            await other.apply_reading(copy, self._reading(63))
            synced_mid_refresh = await lb.pool.sync()
            await refreshing
        finally:
            await other_store.close()
        await lb.pool.sync(force=True)

        assert synced_mid_refresh is True
        await self._assert_both_kept(lb, frozen, a, old.refresh_token, 63)

    async def _assert_both_kept(
        self, lb: LB, emu: Emulator, a: Account, old_refresh: str, used: float
    ) -> None:
        sim = emu.account("a@example.com")
        row = await lb.store.get_account(a.id)
        assert row is not None and row.quota is not None
        assert row.tokens.refresh_token == sim.refresh_token != old_refresh
        assert row.tokens.access_token == sim.access_token
        assert row.quota.secondary_used_percent == used
        assert a.tokens.refresh_token == sim.refresh_token
        assert a.quota is not None and a.quota.secondary_used_percent == used

        # The rotated token is really the live one: it refreshes once more.
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        again = await refresher.refresh(a, stale=a.tokens)
        assert again.refresh_token == sim.refresh_token
        assert a.status == ACTIVE
