"""Token refresh against a token endpoint that hangs, fails or answers junk.

One refresh per account is in flight at a time and every caller that needs
it meanwhile takes its outcome; a token that still works is used while its
refresh runs in the background; after a failure the account backs off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog

from codex_lb.accounts import ACTIVE, TokenRefresher
from codex_lb.accounts import tokens as tokens_module
from codex_lb.app import REFRESHER_KEY
from codex_lb.sim import Emulator, Fault
from codex_lb.store import QuotaReading
from tests.accounts.test_tokens import (
    TURN,
    account,
    burst,
    frozen_emulator,
    only_a,
    responses_with,
    token_calls,
)
from tests.conftest import LB

CODEX = "/backend-api/codex/responses"


@pytest.fixture
async def frozen() -> AsyncIterator[Emulator]:
    emu = frozen_emulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def calls_with(emu: Emulator, refresh_token: str) -> int:
    """Calls to the token endpoint that offered ``refresh_token``."""
    return sum(
        1 for r in token_calls(emu) if r.body.get("refresh_token") == refresh_token
    )


def refresher_of(lb: LB) -> TokenRefresher:
    return lb.app[REFRESHER_KEY]


async def timed_burst(lb: LB, n: int) -> tuple[list[int], list[float]]:
    """``n`` turns at once: their statuses and how long each took."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one() -> tuple[int, float]:
        response = await lb.client.post(CODEX, json=TURN)
        await response.read()
        return response.status, loop.time() - started

    results = await asyncio.gather(*(one() for _ in range(n)))
    return [s for s, _ in results], [t for _, t in results]


class TestHangingEndpoint:
    async def test_a_working_token_is_served_while_the_refresh_hangs(
        self, make_lb: Any, frozen: Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An old but valid token: six requests go out at once with it while
        one refresh hangs in the background; none waits for the endpoint."""
        monkeypatch.setattr(
            tokens_module, "REFRESH_TIMEOUT", aiohttp.ClientTimeout(total=3.0)
        )
        lb: LB = await make_lb(frozen, CODEX_LB_TOKEN_REFRESH_AGE_SECONDS="1000")
        a = await only_a(lb)
        old = a.tokens
        frozen.clock.advance(1001)
        for _ in range(10):
            frozen.add_fault("a@example.com", Fault.timeout(4.0), "token")

        statuses, took = await timed_burst(lb, 6)
        calls_meanwhile = len(token_calls(frozen))
        with structlog.testing.capture_logs() as logs:
            await refresher_of(lb).wait_idle(a)

        assert statuses == [200] * 6
        assert max(took) < 2.0
        assert calls_meanwhile == 1
        assert responses_with(frozen, old.access_token) == 6
        (failed,) = [e for e in logs if e["event"] == "token_refresh_failed"]
        assert failed["code"].startswith("transport") and not failed["permanent"]
        assert (a.status, a.tokens) == (ACTIVE, old)

    async def test_requests_queued_behind_a_refresh_share_its_failure(
        self, make_lb: Any, frozen: Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An expired token and a hanging endpoint: six requests wait for the
        one refresh together and fail with it, once, not one after another."""
        monkeypatch.setattr(
            tokens_module, "REFRESH_TIMEOUT", aiohttp.ClientTimeout(total=1.0)
        )
        lb: LB = await make_lb(frozen)
        a = await only_a(lb)
        frozen.clock.advance(10 * 86400 + 1)
        for _ in range(10):
            frozen.add_fault("a@example.com", Fault.timeout(3.0), "token")

        statuses, took = await timed_burst(lb, 6)

        assert len(token_calls(frozen)) == 1
        assert max(took) < 2.5
        assert max(took) - min(took) < 0.5
        # The token endpoint is down, not the pool empty: 502, not 503.
        assert statuses == [502] * 6
        assert a.status == ACTIVE

    async def test_after_a_failure_the_account_backs_off_then_retries(
        self, make_lb: Any, frozen: Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refresh failed for now: for the back-off the next requests skip
        the account without calling the endpoint; after it, one call heals."""
        monkeypatch.setattr(
            tokens_module, "REFRESH_TIMEOUT", aiohttp.ClientTimeout(total=0.5)
        )
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        b = account(lb, "b@example.com")
        before = a.tokens
        await lb.pool.apply_reading(b, _weekly(50))
        await lb.pool.pause(b)
        frozen.clock.advance(10 * 86400 + 1)
        frozen.add_fault("a@example.com", Fault.timeout(2.0), "token")
        await burst(lb, 1)
        await lb.pool.resume(b)

        during = await burst(lb, 3)
        calls_during = calls_with(frozen, before.refresh_token)
        frozen.clock.advance(tokens_module.RETRY_AFTER_FAILURE_SECONDS)
        await lb.pool.pause(b)
        after = await burst(lb, 1)

        assert during == [200] * 3
        assert calls_during == 1
        assert after == [200]
        assert calls_with(frozen, before.refresh_token) == 2
        new = frozen.account("a@example.com").access_token
        assert a.tokens.access_token == new
        rows = await lb.request_logs()
        assert [r.account_id for r in rows] == [None, b.id, b.id, b.id, a.id]


class TestOddAnswers:
    @pytest.mark.parametrize("status", [502, 200])
    async def test_a_body_that_is_not_text_is_a_temporary_failure(
        self, make_lb: Any, frozen: Emulator, status: int
    ) -> None:
        """An HTML page in bytes that are not UTF-8: no 500, the account is
        skipped for now and keeps its tokens, the other one serves."""
        lb: LB = await make_lb(frozen)
        a = account(lb, "a@example.com")
        b = account(lb, "b@example.com")
        await lb.pool.apply_reading(b, _weekly(50))
        before = a.tokens
        frozen.clock.advance(10 * 86400 + 1)
        frozen.add_fault("a@example.com", Fault.garbage(status), "token")

        with structlog.testing.capture_logs() as logs:
            statuses = await burst(lb, 1)

        assert statuses == [200]
        (failed,) = [e for e in logs if e["event"] == "token_refresh_failed"]
        code = "http_502" if status == 502 else "malformed_token_response"
        assert (failed["account_id"], failed["code"]) == (a.id, code)
        assert failed["permanent"] is False
        assert (a.status, a.tokens) == (ACTIVE, before)
        (row,) = await lb.request_logs()
        assert row.account_id == b.id

    async def test_an_unrotated_refresh_token_costs_one_refresh(
        self, make_lb: Any, frozen: Emulator
    ) -> None:
        """An endpoint that keeps the refresh token: callers that queued
        behind the refresh still see it done and do not refresh again."""
        lb: LB = await make_lb(frozen)
        refresher = refresher_of(lb)
        a = account(lb, "a@example.com")
        stale = a.tokens
        same_refresh = {"access_token": "at-UNROTATED", "expires_in": 3600}
        frozen.add_fault("a@example.com", Fault.status(200, same_refresh), "token")

        results = await asyncio.gather(*(refresher.refresh(a, stale) for _ in range(5)))
        late = await refresher.refresh(a, stale)

        assert len(token_calls(frozen)) == 1
        assert {r.access_token for r in [*results, late]} == {"at-UNROTATED"}
        assert a.tokens.refresh_token == stale.refresh_token
        stored = await lb.store.get_account(a.id)
        assert stored is not None and stored.tokens.access_token == "at-UNROTATED"


def _weekly(used: float) -> QuotaReading:
    return QuotaReading(0.0, "poll", secondary_used_percent=used)
