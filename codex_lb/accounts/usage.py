"""Usage polling: every account's ``wham/usage``, on a timer, a few at a time.

Each successful poll becomes a quota reading that the pool stores, publishes
as a ``quota_snapshot`` and uses to lift a bench early. A failed poll (a bad
status, a timeout, a body that is not JSON or reports no window) changes
nothing about the account: it is logged and published as
``usage_refresh_failed`` with a short reason for the metrics.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from codex_lb.accounts.account import REAUTH_REQUIRED, Account
from codex_lb.accounts.pool import AccountPool
from codex_lb.accounts.quota import reading_from_usage
from codex_lb.accounts.tokens import RefreshError, TokenRefresher
from codex_lb.events import EventBus, UsageRefreshFailed
from codex_lb.store import TokenSet

log = structlog.get_logger("codex_lb.accounts")


class UsagePoller:
    """Reads every account's quota from the upstream usage endpoint."""

    def __init__(
        self,
        pool: AccountPool,
        refresher: TokenRefresher,
        session: aiohttp.ClientSession,
        bus: EventBus,
        upstream_base_url: str,
        interval: float,
        concurrency: int = 8,
        timeout: float = 15.0,
    ) -> None:
        self._pool = pool
        self._refresher = refresher
        self._session = session
        self._bus = bus
        self._url = upstream_base_url.rstrip("/") + "/wham/usage"
        self.interval = interval
        self._limit = asyncio.Semaphore(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def run(self) -> None:
        """Poll every account now and then every ``interval`` seconds.

        A background task; with an interval of 0 it returns at once.
        """
        if self.interval <= 0:
            return
        while True:
            try:
                await self.poll_all()
            except Exception as exc:  # one bad round must not end polling
                log.error("usage_poll_round_failed", error=str(exc))
            await asyncio.sleep(self.interval)

    async def poll_all(self) -> int:
        """Poll every account that can log in, a few at a time; the successes."""
        accounts = [a for a in self._pool.accounts if a.status != REAUTH_REQUIRED]
        results = await asyncio.gather(*(self._poll_limited(a) for a in accounts))
        return sum(results)

    async def _poll_limited(self, account: Account) -> bool:
        async with self._limit:
            return await self.poll(account)

    async def poll(self, account: Account) -> bool:
        """Poll one account and apply its reading; False if the poll failed."""
        try:
            tokens = await self._refresher.ensure_fresh(account)
        except RefreshError as exc:
            return self._failed(account, "token_refresh", detail=exc.code)

        status, text = await self._fetch(account, tokens)
        if status == 401:
            # The token was refused: refresh once and ask again, as a request
            # would. A permanent failure marks the account in the refresher.
            try:
                tokens = await self._refresher.refresh(account, stale=tokens)
            except RefreshError as exc:
                return self._failed(account, "token_refresh", detail=exc.code)
            status, text = await self._fetch(account, tokens)

        if isinstance(status, str):
            return self._failed(account, status)
        if status != 200:
            return self._failed(account, f"http_{status}")
        try:
            payload = json.loads(text)
        except ValueError:
            return self._failed(account, "invalid_json")
        reading = reading_from_usage(payload, self._pool.now())
        if reading is None:
            return self._failed(account, "no_windows")

        if self._pool.get(account.id) is not account:
            # Removed while the poll was in flight: nothing to record.
            return False
        await self._pool.apply_reading(
            account, reading, limit_reached=_limit_reached(payload)
        )
        log.debug(
            "usage_polled",
            account_id=account.id,
            primary_used_percent=reading.primary_used_percent,
            secondary_used_percent=reading.secondary_used_percent,
        )
        return True

    async def _fetch(self, account: Account, tokens: TokenSet) -> tuple[int | str, str]:
        """(status, body) of one usage call, or (reason, "") when none came."""
        headers = {
            "Authorization": f"Bearer {tokens.access_token}",
            "chatgpt-account-id": account.chatgpt_account_id,
            "Accept": "application/json",
        }
        try:
            async with self._session.get(
                self._url, headers=headers, timeout=self._timeout
            ) as response:
                return response.status, await response.text()
        except TimeoutError:
            return "timeout", ""
        except (aiohttp.ClientError, OSError, UnicodeDecodeError):
            return "transport", ""

    def _failed(self, account: Account, reason: str, detail: str | None = None) -> bool:
        log.warning(
            "usage_refresh_failed", account_id=account.id, reason=reason, code=detail
        )
        self._bus.publish(UsageRefreshFailed(account_id=account.id, reason=reason))
        return False


def _limit_reached(payload: Any) -> bool | None:
    """The usage answer's own verdict on the limit, if it gave one."""
    if not isinstance(payload, Mapping):
        return None
    limits = payload.get("rate_limit")
    if not isinstance(limits, Mapping):
        return None
    reached = limits.get("limit_reached")
    if isinstance(reached, bool):
        return reached
    allowed = limits.get("allowed")
    return (not allowed) if isinstance(allowed, bool) else None
