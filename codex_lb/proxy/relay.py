"""The relay: one client request through one or more accounts.

For each request the relay picks an account, sends the request upstream with
that account's credentials, and either relays the answer or, when the attempt
failed before any byte reached the client, marks the account and moves on to
the next one. A request counts as started once its first byte is written;
from then on it stays on its account.

Writing the answer is :mod:`codex_lb.proxy.streaming`'s part, reading and
classing failures :mod:`codex_lb.proxy.failures`', and recording the request
:mod:`codex_lb.proxy.finish`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from codex_lb.accounts import (
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    Account,
    AccountPool,
    RefreshError,
    TokenRefresher,
)
from codex_lb.accounts.aggregate import (
    PoolQuota,
    pool_quota,
    quota_headers,
    replace_quota_headers,
)
from codex_lb.accounts.quota import reading_from_headers
from codex_lb.events import (
    AttemptFinished,
    AttemptStarted,
    EventBus,
    RequestStarted,
    Retry,
)
from codex_lb.proxy.failures import (
    FAILOVER_CLASSES,
    TRANSPORT_ERRORS,
    exhausted,
    pass_back,
    read_failure,
    transport_code,
)
from codex_lb.proxy.finish import finish_request
from codex_lb.proxy.outcome import Failure, Outcome, Progress, ProxyRequest
from codex_lb.proxy.pricing import PriceTable
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.proxy.streaming import AnswerRelay
from codex_lb.proxy.upstream import client_headers, upstream_headers

log = structlog.get_logger("codex_lb.proxy")

# The pool's quota headers walk every account (0.8 ms at 300): they are kept
# until the pool's version moves (roster, status, poll) and, while only the
# readings that come with answers move them, for at most this long.
POOL_QUOTA_MAX_AGE_SECONDS = 1.0


class Relay:
    """Sends requests upstream through the pool and relays the answers."""

    def __init__(
        self,
        pool: AccountPool,
        refresher: TokenRefresher,
        session: aiohttp.ClientSession,
        prices: PriceTable,
        request_log: RequestLogBuffer,
        bus: EventBus,
        upstream_base_url: str,
        max_attempts: int,
        idle_timeout: float,
        connect_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._refresher = refresher
        self._session = session
        self._prices = prices
        self._request_log = request_log
        self._bus = bus
        self._base = upstream_base_url.rstrip("/")
        self._max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=idle_timeout
        )
        self._clock = clock
        self._answers = AnswerRelay(clock, self._headers_for)
        self._background: set[asyncio.Task[Any]] = set()
        self._pool_quota: tuple[int, float, PoolQuota] | None = None
        self.inflight = 0

    async def handle(
        self, request: web.Request, proxied: ProxyRequest, record: bool = True
    ) -> web.StreamResponse:
        """Serve ``proxied`` for ``request``: failover loop, then bookkeeping.

        ``record`` false serves without a request-log row or request events
        (the model catalog is not a model request).
        """
        self.inflight += 1
        if record:
            self._bus.publish(RequestStarted(proxied.request_id, proxied.api))
        progress = Progress()
        outcome: Outcome | None = None
        try:
            outcome = await self._attempts(request, proxied, progress)
            response = outcome.response
            assert response is not None
            if not response.prepared:
                # Send it now, so request_finished fires after the last byte.
                try:
                    await response.prepare(request)
                    await response.write_eof()
                except (ConnectionError, aiohttp.ClientConnectionResetError):
                    outcome.error_code = outcome.error_code or "client_disconnected"
            return response
        except asyncio.CancelledError:
            # The client left (aiohttp cancels its handler when configured to).
            outcome = outcome or progress.cancelled()
            raise
        finally:
            self.inflight -= 1
            if record:
                finish_request(
                    proxied,
                    outcome or Outcome(500, "internal_error"),
                    progress.attempts,
                    self._prices,
                    self._bus,
                    self._request_log,
                )

    async def _attempts(
        self, request: web.Request, proxied: ProxyRequest, progress: Progress
    ) -> Outcome:
        tried: set[str] = set()
        last: Failure | None = None

        while progress.attempts < self._max_attempts:
            selection = await self._pool.select(proxied.session_key, exclude=tried)
            account = selection.account
            if account is None:
                break
            tried.add(account.id)
            try:
                await self._refresher.ensure_fresh(account)
            except RefreshError:
                # Not an attempt on the wire: the account cannot be used now.
                continue

            progress.attempts += 1
            progress.account = account
            result = await self._attempt(request, proxied, account, progress)
            if isinstance(result, Outcome):
                return result

            last = result
            log.info(
                "attempt_failed",
                request_id=proxied.request_id,
                account_id=account.id,
                error_class=result.error_class,
                code=result.code,
                status=result.status,
            )
            if result.error_class not in FAILOVER_CLASSES:
                return pass_back(result, account)
            if proxied.session_key is not None:
                self._pool.forget_session(proxied.session_key)
            self._bus.publish(
                Retry(
                    request_id=proxied.request_id,
                    account_id=account.id,
                    api=proxied.api,
                    error_class=result.error_class,
                    error_code=result.code,
                )
            )

        progress.account = None
        return exhausted(last, self._pool, self._clock())

    async def _attempt(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        progress: Progress,
    ) -> Outcome | Failure:
        """One account: send, and relay or report the failure."""
        self._bus.publish(AttemptStarted(proxied.request_id, account.id))
        account.inflight += 1
        sent_tokens = account.tokens
        try:
            result = await self._send(request, proxied, account, progress)
            if isinstance(result, Failure) and result.error_class == "auth":
                # A 401: refresh the token and try once more on this account.
                try:
                    await self._refresher.refresh(account, stale=sent_tokens)
                except RefreshError as exc:
                    return Failure("auth", exc.code, 401, result.body, result.headers)
                result = await self._send(request, proxied, account, progress)
            await self._after_attempt(account, result)
            return result
        finally:
            account.inflight -= 1
            self._bus.publish(AttemptFinished(proxied.request_id, account.id))

    async def _after_attempt(self, account: Account, result: Outcome | Failure) -> None:
        if isinstance(result, Outcome):
            if result.success:
                self._pool.record_success(account)
            elif result.error_code is not None and result.status_code == 200:
                # The stream broke after it started: an error mark, no bench.
                self._pool.record_failure(account, "transport", result.error_code)
            return
        if result.error_class in ("rate_limit", "quota"):
            status = (
                RATE_LIMITED if result.error_class == "rate_limit" else (QUOTA_EXCEEDED)
            )
            await self._pool.bench(account, status, result.code, result.resets_at)
        elif result.error_class in ("upstream", "transport"):
            self._pool.record_failure(account, result.error_class, result.code)

    async def _send(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        progress: Progress,
    ) -> Outcome | Failure:
        headers = upstream_headers(
            proxied.client_headers,
            account.tokens.access_token,
            account.chatgpt_account_id,
        )
        if proxied.content_encoding:
            headers["Content-Encoding"] = proxied.content_encoding
        url = self._base + proxied.upstream_path
        if proxied.query:
            url += "?" + proxied.query

        try:
            upstream = await self._session.request(
                proxied.method,
                url,
                data=proxied.body if proxied.method == "POST" else None,
                headers=headers,
                timeout=self._timeout,
            )
        except TRANSPORT_ERRORS as exc:
            return Failure("transport", transport_code(exc))

        try:
            self._ingest_headers(account, upstream.headers)
            if upstream.status >= 400:
                return await read_failure(upstream, self._clock)
            content_type = upstream.headers.get("Content-Type", "")
            if proxied.stream and content_type.startswith("text/event-stream"):
                if proxied.translator is not None:
                    return await self._answers.translated(
                        request,
                        proxied,
                        account,
                        upstream,
                        proxied.translator(),
                        progress,
                    )
                return await self._answers.stream(
                    request, proxied, account, upstream, progress
                )
            return await self._answers.body(request, proxied, account, upstream)
        finally:
            upstream.release()

    def _headers_for(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        """The client's response headers, quota headers being the pool's."""
        headers = client_headers(upstream.headers)
        quota = self._current_pool_quota()
        replace_quota_headers(headers, quota_headers(quota, self._clock()))
        return headers

    def _current_pool_quota(self) -> PoolQuota:
        now = time.monotonic()
        cached = self._pool_quota
        if (
            cached is None
            or cached[0] != self._pool.version
            or now - cached[1] > POOL_QUOTA_MAX_AGE_SECONDS
        ):
            quota = pool_quota(self._pool.accounts, self._clock())
            cached = (self._pool.version, now, quota)
            self._pool_quota = cached
        return cached[2]

    def _ingest_headers(self, account: Account, headers: Mapping[str, str]) -> None:
        reading = reading_from_headers(headers, self._clock())
        if reading is None:
            return
        old = account.quota
        if old is not None and (
            old.primary_used_percent,
            old.secondary_used_percent,
            old.secondary_reset_at,
            old.primary_reset_at,
        ) == (
            reading.primary_used_percent,
            reading.secondary_used_percent,
            reading.secondary_reset_at,
            reading.primary_reset_at,
        ):
            return
        # The store write happens off the request path.
        self._pool.take_reading(account, reading)

    async def fetch(self, request: web.Request, proxied: ProxyRequest) -> web.Response:
        """Serve a JSON request through the pool and return the answer unsent.

        For a route that reshapes the upstream's JSON (``GET /v1/models``);
        nothing is recorded, as for :meth:`handle` with ``record`` false.
        """
        outcome = await self._attempts(request, proxied, Progress())
        response = outcome.response
        assert isinstance(response, web.Response) and not response.prepared
        return response

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._pool.flush_readings()
