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
from collections.abc import Callable

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts import (
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    REAUTH_REQUIRED,
    Account,
    AccountPool,
    RefreshError,
    TokenRefresher,
)
from codex_lb.events import (
    AttemptFinished,
    AttemptStarted,
    EventBus,
    RequestStarted,
    Retry,
)
from codex_lb.proxy.endings import shutdown_response
from codex_lb.proxy.failures import (
    MOVES_ON,
    TRANSPORT_ERRORS,
    exhausted,
    pass_back,
    read_failure,
    transport_code,
)
from codex_lb.proxy.finish import finish_request
from codex_lb.proxy.outcome import Failure, Outcome, Progress, ProxyRequest
from codex_lb.proxy.pricing import PriceTable
from codex_lb.proxy.quota import AnswerQuota
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.proxy.sse import DEFAULT_MAX_EVENT_BYTES
from codex_lb.proxy.streaming import AnswerRelay
from codex_lb.proxy.upstream import upstream_headers

log = structlog.get_logger("codex_lb.proxy")


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
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
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
        self._answers = AnswerRelay(clock, self._is_stopping, max_event_bytes)
        self._quota = AnswerQuota(pool, bus, clock)
        # The handler tasks serving requests now, for ending them at shutdown.
        self._serving: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._deadline: asyncio.TimerHandle | None = None
        self.inflight = 0

    async def serve(
        self, request: web.Request, proxied: ProxyRequest, record: bool = True
    ) -> web.StreamResponse:
        """Serve ``proxied`` for ``request``: failover loop, then bookkeeping.

        ``record`` false serves without a request-log row or request events
        (the model catalog is not a model request).
        """
        self.inflight += 1
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        if record:
            self._bus.publish(RequestStarted(proxied.request_id, proxied.api))
        progress = Progress()
        outcome: Outcome | None = None
        try:
            try:
                outcome = await self._attempts(request, proxied, progress)
            except asyncio.CancelledError:
                if not self._stopping or progress.served is not None:
                    raise
                # Shutdown caught it before any answer started: say so.
                if task is not None:
                    task.uncancel()
                outcome = Outcome(
                    503,
                    "server_shutdown",
                    progress.account,
                    response=shutdown_response(),
                )
            response = outcome.response
            assert response is not None
            if not response.prepared:
                # Sent now, so request_finished fires after the last byte.
                try:
                    await response.prepare(request)
                    await response.write_eof()
                except (ConnectionError, aiohttp.ClientConnectionResetError):
                    outcome.error_code = outcome.error_code or "client_disconnected"
            return response
        except asyncio.CancelledError:
            # The client left (aiohttp cancels its handler when configured to),
            # or shutdown cut the request short past its grace period.
            outcome = outcome or progress.cancelled()
            raise
        finally:
            self.inflight -= 1
            if task is not None:
                self._serving.discard(task)
            if record:
                finish_request(
                    proxied,
                    outcome or Outcome(500, "internal_error"),
                    progress.attempts,
                    self._prices,
                    self._bus,
                    self._request_log,
                )

    def stop_streams_after(self, seconds: float) -> None:
        """Call :meth:`stop_streams` once ``seconds`` have passed (shutdown)."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(seconds, self.stop_streams)

    def stop_streams(self) -> None:
        """End every request still being served (shutdown's grace is over).

        Each one ends with ``server_shutdown``: a started stream with one
        ``response.failed`` event, a request not yet answered with a 503.
        """
        self._stopping = True
        if self._serving:
            log.warning("streams_ended_at_shutdown", requests=len(self._serving))
        for task in list(self._serving):
            task.cancel()

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _attempts(
        self, request: web.Request, proxied: ProxyRequest, progress: Progress
    ) -> Outcome:
        tried: set[str] = set()
        failures: list[Failure] = []
        # The move off the last failed account, published once another
        # account is actually tried (SPEC section 6: "leaves for another").
        leaving: Retry | None = None

        while progress.attempts < self._max_attempts:
            selection = await self._pool.select(proxied.session_key, exclude=tried)
            account = selection.account
            if account is None:
                break
            tried.add(account.id)
            try:
                await self._refresher.ensure_fresh(account)
            except RefreshError as exc:
                # Not an attempt on the wire: the account cannot be used now.
                # One that needs a new login has left the pool; one whose
                # token endpoint is down is a temporary failure.
                if account.status != REAUTH_REQUIRED:
                    failures.append(Failure("auth", exc.code))
                continue

            if leaving is not None:
                self._bus.publish(leaving)
                leaving = None
            progress.attempts += 1
            progress.account = account
            result = await self._attempt(request, proxied, account, progress)
            if isinstance(result, Outcome):
                return result

            log.info(
                "attempt_failed",
                request_id=proxied.request_id,
                account_id=account.id,
                error_class=result.error_class,
                code=result.code,
                status=result.status,
            )
            if result.error_class not in MOVES_ON:
                return pass_back(result, account)
            if not (result.error_class == "auth" and account.status == REAUTH_REQUIRED):
                failures.append(result)
            if proxied.session_key is not None:
                self._pool.forget_session(proxied.session_key)
            leaving = Retry(
                request_id=proxied.request_id,
                account_id=account.id,
                api=proxied.api,
                error_class=result.error_class,
                error_code=result.code,
            )

        progress.account = None
        return exhausted(failures, tried, self._pool, self._clock())

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
        """Mark the account by what the attempt says about it (SPEC section 5)."""
        if isinstance(result, Outcome):
            if result.success:
                self._pool.record_success(account)
                return
            klass, code, resets_at = (
                result.error_class,
                result.error_code or "",
                result.resets_at,
            )
        else:
            klass, code, resets_at = result.error_class, result.code, result.resets_at

        if klass in ("rate_limit", "quota"):
            status = RATE_LIMITED if klass == "rate_limit" else QUOTA_EXCEEDED
            # Shielded: a client hanging up now must not leave the account
            # benched in memory but not in the store, nor the mark unannounced.
            await asyncio.shield(self._pool.bench(account, status, code, resets_at))
        elif klass in ("upstream", "transport"):
            self._pool.record_failure(account, klass, code)

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

        take_reading: Callable[[], None] | None = None
        try:
            if upstream.status >= 400:
                # At once: marking the account may read it (a 429 without
                # a reset time benches it until its full window resets).
                self._quota.ingest(account, upstream.headers)
                return await read_failure(upstream, self._clock)
            take_reading = self._quota.ingest_soon(account, upstream.headers)
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
            if take_reading is not None:
                take_reading()
            upstream.release()

    def pool_headers(self) -> dict[str, str]:
        """The pool's ``x-codex-*`` quota headers as of now."""
        return self._quota.pool_headers()

    async def fetch(self, request: web.Request, proxied: ProxyRequest) -> web.Response:
        """Serve a JSON request through the pool and return the answer unsent.

        For a route that reshapes the upstream's JSON (``GET /v1/models``);
        nothing is recorded, as for :meth:`serve` with ``record`` false.
        """
        outcome = await self._attempts(request, proxied, Progress())
        response = outcome.response
        assert isinstance(response, web.Response) and not response.prepared
        return response

    async def close(self) -> None:
        """Drop a pending shutdown deadline; store the readings answers brought."""
        if self._deadline is not None:
            self._deadline.cancel()
        await self._pool.flush_readings()
