"""The relay: one client request through one or more accounts.

For each request the relay picks an account, sends the request upstream with
that account's credentials, and either relays the answer or, when the attempt
failed before any byte reached the client, marks the account and moves on to
the next one. A request counts as started once its first byte is written;
from then on it stays on its account.

To let a failure right at the start move invisibly, the relay holds back the
content-free opening events (``response.created``, ``response.in_progress``)
until the first other event arrives, and no longer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import attrs
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
    pool_quota,
    quota_headers,
    replace_quota_headers,
)
from codex_lb.accounts.quota import reading_from_headers
from codex_lb.events import (
    AttemptFinished,
    AttemptStarted,
    EventBus,
    RequestFinished,
    RequestStarted,
    Retry,
    UnpricedSuccess,
)
from codex_lb.proxy.errors import error_response
from codex_lb.proxy.pricing import PriceTable, Usage
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.proxy.sse import SSEEvent, SSEReader, encode_event
from codex_lb.proxy.upstream import (
    client_headers,
    error_class,
    error_code,
    error_resets_at,
    parse_error,
    upstream_headers,
)
from codex_lb.store import RequestLogRow

log = structlog.get_logger("codex_lb.proxy")

# Error classes that move a request to another account before its first byte.
FAILOVER_CLASSES = frozenset({"rate_limit", "quota", "upstream", "transport"})


class StreamTranslator(Protocol):
    """Turns one upstream Responses stream into what the client asked for.

    The relay keeps failover, the hold-back of opening events, usage and cost
    accounting and the request events; a translator only decides the bytes
    the client sees. A streaming translator returns client bytes for each
    batch of events; a buffered one returns nothing until the terminal event
    and then gives the whole answer, so its request starts only at the end.
    """

    buffered: bool

    def translate(self, events: Sequence[SSEEvent]) -> bytes:
        """Client bytes for these upstream events (always b"" when buffered)."""
        ...

    def fail(self, code: str, message: str) -> bytes:
        """Client bytes that end a started stream which broke (streaming)."""
        ...

    def result(self) -> tuple[int, dict[str, Any]]:
        """The whole answer after the terminal event: status, JSON (buffered)."""
        ...


@attrs.define
class ProxyRequest:
    """A client request, read and checked, ready to send upstream.

    ``translator``, when set, makes a fresh :class:`StreamTranslator` for
    each attempt; the upstream stream is then rewritten instead of relayed
    byte for byte.
    """

    api: str
    upstream_path: str
    body: bytes
    content_encoding: str | None
    client_headers: Mapping[str, str]
    model: str | None
    stream: bool
    session_key: str | None = None
    api_key_id: str | None = None
    method: str = "POST"
    query: str = ""
    translator: Callable[[], StreamTranslator] | None = None
    request_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    started_at: float = attrs.field(factory=time.time)
    started_mono: float = attrs.field(factory=time.monotonic)


@attrs.define
class Failure:
    """An attempt that failed before anything reached the client."""

    error_class: str
    code: str
    status: int = 502
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    resets_at: float | None = None


@attrs.define
class Outcome:
    """How a request ended, for the log, the events and the metrics."""

    status_code: int
    error_code: str | None = None
    account: Account | None = None
    usage: Usage | None = None
    model: str | None = None
    response: web.StreamResponse | None = None

    @property
    def success(self) -> bool:
        return self.status_code < 400 and self.error_code is None


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
        self._background: set[asyncio.Task[Any]] = set()
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
        attempts = 0
        outcome: Outcome | None = None
        try:
            outcome, attempts = await self._attempts(request, proxied)
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
            outcome = outcome or Outcome(499, "client_disconnected")
            raise
        finally:
            self.inflight -= 1
            if record:
                self._finish(
                    proxied, outcome or Outcome(500, "internal_error"), attempts
                )

    async def _attempts(
        self, request: web.Request, proxied: ProxyRequest
    ) -> tuple[Outcome, int]:
        tried: set[str] = set()
        attempts = 0
        last: Failure | None = None

        while attempts < self._max_attempts:
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

            attempts += 1
            result = await self._attempt(request, proxied, account)
            if isinstance(result, Outcome):
                return result, attempts

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
                return self._pass_back(result, account), attempts
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

        return self._exhausted(last, tried), attempts

    async def _attempt(
        self, request: web.Request, proxied: ProxyRequest, account: Account
    ) -> Outcome | Failure:
        """One account: send, and relay or report the failure."""
        self._bus.publish(AttemptStarted(proxied.request_id, account.id))
        account.inflight += 1
        sent_tokens = account.tokens
        try:
            result = await self._send(request, proxied, account)
            if isinstance(result, Failure) and result.error_class == "auth":
                # A 401: refresh the token and try once more on this account.
                try:
                    await self._refresher.refresh(account, stale=sent_tokens)
                except RefreshError as exc:
                    return Failure("auth", exc.code, 401, result.body, result.headers)
                result = await self._send(request, proxied, account)
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
        self, request: web.Request, proxied: ProxyRequest, account: Account
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
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Failure("transport", _transport_code(exc))

        try:
            self._ingest_headers(account, upstream.headers)
            if upstream.status >= 400:
                return await self._read_failure(upstream)
            content_type = upstream.headers.get("Content-Type", "")
            if proxied.stream and content_type.startswith("text/event-stream"):
                if proxied.translator is not None:
                    return await self._translate_stream(
                        request, proxied, account, upstream, proxied.translator()
                    )
                return await self._relay_stream(request, proxied, account, upstream)
            return await self._relay_body(request, proxied, account, upstream)
        finally:
            upstream.release()

    async def _read_failure(self, upstream: aiohttp.ClientResponse) -> Failure:
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Failure("transport", _transport_code(exc))
        error = parse_error(body)
        code = error_code(error)
        status = upstream.status
        klass = error_class(status, code)
        resets_at = error_resets_at(error, self._clock())
        if resets_at is None and klass in ("rate_limit", "quota"):
            resets_at = _header_reset(upstream.headers, self._clock())
        return Failure(
            klass,
            code or f"http_{status}",
            status,
            body,
            client_headers(upstream.headers),
            resets_at,
        )

    async def _relay_body(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
    ) -> Outcome | Failure:
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Failure("transport", _transport_code(exc))
        usage, model = (
            _usage_of(_json_or_none(body))
            if proxied.stream is False
            else (
                None,
                None,
            )
        )
        response = web.Response(
            status=upstream.status, body=body, headers=self._headers_for(upstream)
        )
        return Outcome(
            upstream.status,
            None,
            account,
            usage,
            model or proxied.model,
            response,
        )

    async def _relay_stream(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
    ) -> Outcome | Failure:
        reader = SSEReader()
        held: list[bytes] | None = []
        response: web.StreamResponse | None = None
        tail = b""

        try:
            async for chunk in upstream.content.iter_any():
                events = reader.feed(chunk)
                if held is not None:
                    held.append(chunk)
                    if not (reader.saw_content or reader.terminal):
                        continue
                    failed = _early_failure(events, self._clock())
                    if failed is not None:
                        return failed
                    response = await self._start_stream(request, upstream)
                    chunk, held = b"".join(held), None
                await _write(response, chunk)
                tail = (tail + chunk)[-2:]
                if reader.overflowed:
                    break
            reader.finish()
        except _ClientGone:
            return self._stream_outcome(
                reader, account, response, "client_disconnected"
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            code = (
                "stream_idle_timeout"
                if isinstance(exc, TimeoutError)
                else "stream_incomplete"
            )
            if response is None:
                return Failure("transport", code)
            await self._end_with_failure(response, tail, code)
            return Outcome(200, code, account, None, proxied.model, response)

        if response is None:
            # The upstream ended before any content: nothing was sent yet.
            return Failure("transport", "stream_incomplete")
        if reader.overflowed:
            await self._end_with_failure(response, tail, "event_too_large")
            return Outcome(
                200, "event_too_large", account, None, proxied.model, response
            )
        if reader.terminal is None:
            await self._end_with_failure(response, tail, "stream_incomplete")
            return Outcome(
                200, "stream_incomplete", account, None, proxied.model, response
            )
        try:
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return self._stream_outcome(reader, account, response, None)

    async def _translate_stream(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
        translator: StreamTranslator,
    ) -> Outcome | Failure:
        """Like :meth:`_relay_stream`, with ``translator`` writing the bytes.

        A streaming translator's output is held back with the opening events
        and sent once content arrives. A buffered translator sends nothing
        before the terminal event, so any failure before it still moves the
        request to another account.
        """
        reader = SSEReader(parse_all=True)
        held = bytearray()
        response: web.StreamResponse | None = None

        try:
            async for chunk in upstream.content.iter_any():
                events = reader.feed(chunk)
                if response is None:
                    failed = _early_failure(events, self._clock())
                    if failed is not None:
                        return failed
                out = translator.translate(events)
                if response is None:
                    held += out
                    if translator.buffered or not (
                        reader.saw_content or reader.terminal
                    ):
                        continue
                    response = await self._start_stream(request, upstream)
                    out, held = bytes(held), bytearray()
                if out:
                    await _write(response, out)
                if reader.overflowed:
                    break
            # The last event may lack its blank line: translate it too.
            events = reader.finish()
            if response is None:
                failed = _early_failure(events, self._clock())
                if failed is not None:
                    return failed
            held += translator.translate(events)
        except _ClientGone:
            # The client left before (or while) its answer started.
            return self._stream_outcome(
                reader,
                account,
                response or web.Response(status=499),
                "client_disconnected",
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            code = (
                "stream_idle_timeout"
                if isinstance(exc, TimeoutError)
                else "stream_incomplete"
            )
            if response is None:
                return Failure("transport", code)
            await _end_translated(response, translator.fail(code, _failure(code)))
            return Outcome(200, code, account, None, proxied.model, response)

        if reader.overflowed or reader.terminal is None:
            code = "event_too_large" if reader.overflowed else "stream_incomplete"
            if response is None:
                return Failure("transport", code)
            await _end_translated(response, translator.fail(code, _failure(code)))
            return Outcome(200, code, account, None, proxied.model, response)

        if translator.buffered:
            status, payload = translator.result()
            headers = self._headers_for(upstream)
            headers.popall("Content-Type", None)
            answer = web.json_response(payload, status=status, headers=headers)
            outcome = self._stream_outcome(reader, account, answer, None)
            outcome.status_code = status
            return outcome
        try:
            if response is None:
                response = await self._start_stream(request, upstream)
        except _ClientGone:
            return Outcome(
                499, "client_disconnected", account, response=web.Response(status=499)
            )
        await _end_translated(response, bytes(held))
        return self._stream_outcome(reader, account, response, None)

    def _stream_outcome(
        self,
        reader: SSEReader,
        account: Account,
        response: web.StreamResponse | None,
        gone: str | None,
    ) -> Outcome:
        terminal = reader.terminal
        if terminal is None:
            # The client left before the end: not served.
            return Outcome(499, gone or "stream_incomplete", account, response=response)
        # A client that leaves after the terminal event has been served.
        data = terminal.data or {}
        usage, model = _usage_of(data.get("response") or data)
        code = None
        if terminal.name in ("response.failed", "error"):
            error = (data.get("response") or {}).get("error") or data.get("error")
            code = error_code(error) if isinstance(error, dict) else None
            code = code or "response_failed"
        return Outcome(200, code, account, usage, model, response)

    async def _start_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, headers=self._headers_for(upstream)
        )
        try:
            await response.prepare(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
            raise _ClientGone from exc
        return response

    async def _end_with_failure(
        self, response: web.StreamResponse, tail: bytes, code: str
    ) -> None:
        """End a started stream with one clear ``response.failed`` event."""
        event = encode_event(
            "response.failed",
            {
                "type": "response.failed",
                "response": {
                    "status": "failed",
                    "error": {"code": code, "message": _failure(code)},
                },
            },
        )
        separator = b"" if tail.endswith(b"\n\n") or not tail else b"\n\n"
        try:
            await response.write(separator + event)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass

    def _pass_back(self, failure: Failure, account: Account) -> Outcome:
        """A client error goes back as it came (headers matching the body)."""
        response = web.Response(
            status=failure.status, body=failure.body, headers=failure.headers
        )
        return Outcome(failure.status, failure.code, account, response=response)

    def _exhausted(self, last: Failure | None, tried: set[str]) -> Outcome:
        """The answer when no account could serve."""
        now = self._clock()
        if last is None or last.error_class in ("rate_limit", "quota"):
            resets_at = self._pool.earliest_reset()
            if last is not None or resets_at is not None:
                resets_at = resets_at or (last.resets_at if last else None) or now
                resets_at = int(max(resets_at, now) + 0.999)
                resets_in = max(0, resets_at - int(now))
                response = error_response(
                    429,
                    "usage_limit_reached",
                    "every account in the pool has reached its usage limit; "
                    f"the first one resets in {resets_in} s",
                    "usage_limit_reached",
                    headers={"Retry-After": str(resets_in)},
                    resets_at=resets_at,
                    resets_in_seconds=resets_in,
                )
                return Outcome(429, "usage_limit_reached", response=response)
            response = error_response(
                503,
                "no_accounts",
                "no account can serve: add one with 'codex-lb accounts import', "
                "or resume a paused one",
                "no_accounts",
            )
            return Outcome(503, "no_accounts", response=response)

        code = (
            "upstream_error"
            if last.error_class == "upstream"
            else ("upstream_unavailable")
        )
        message = (
            f"the upstream failed on every account tried ({last.code})"
            if code == "upstream_error"
            else f"the upstream could not be reached ({last.code})"
        )
        return Outcome(502, code, response=error_response(502, code, message))

    def _headers_for(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        """The client's response headers, quota headers being the pool's."""
        headers = client_headers(upstream.headers)
        quota = pool_quota(self._pool.accounts)
        replace_quota_headers(headers, quota_headers(quota, self._clock()))
        return headers

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
        task = asyncio.create_task(
            self._pool.apply_reading(account, reading), name="quota-from-headers"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self, proxied: ProxyRequest, outcome: Outcome, attempts: int) -> None:
        """Publish the request's events and queue its log row."""
        latency_ms = (time.monotonic() - proxied.started_mono) * 1000
        account = outcome.account
        model = outcome.model or proxied.model
        usage = outcome.usage
        cost = None
        if outcome.success and usage is not None:
            cost = self._prices.cost(model, usage)
        status = "success" if outcome.success else "error"

        if outcome.success and cost is None:
            reason = (
                "missing_model"
                if not model
                else "missing_usage"
                if usage is None
                else "unknown_pricing"
            )
            self._bus.publish(
                UnpricedSuccess(
                    request_id=proxied.request_id,
                    account_id=account.id if account else None,
                    api=proxied.api,
                    model=model,
                    reason=reason,
                )
            )

        tokens: dict[str, int | None] = {
            "input_tokens": usage.input_tokens if usage else None,
            "cached_input_tokens": usage.cached_input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
        }
        self._bus.publish(
            RequestFinished(
                request_id=proxied.request_id,
                api=proxied.api,
                model=model,
                account_id=account.id if account else None,
                status=status,
                status_code=outcome.status_code,
                model_label=self._prices.label(model),
                error_code=outcome.error_code,
                latency_ms=latency_ms,
                attempts=attempts,
                cost_usd=cost,
                api_key_id=proxied.api_key_id,
                **tokens,
            )
        )
        self._request_log.add(
            RequestLogRow(
                request_id=proxied.request_id,
                started_at=proxied.started_at,
                api=proxied.api,
                model=model,
                account_id=account.id if account else None,
                status=status,
                status_code=outcome.status_code,
                error_code=outcome.error_code,
                attempts=attempts,
                latency_ms=round(latency_ms, 3),
                cost_usd=cost,
                api_key_id=proxied.api_key_id,
                **tokens,
            )
        )
        log.info(
            "request_finished",
            request_id=proxied.request_id,
            api=proxied.api,
            model=model,
            account_id=account.id if account else None,
            status=status,
            status_code=outcome.status_code,
            error_code=outcome.error_code,
            attempts=attempts,
            latency_ms=round(latency_ms, 1),
            input_tokens=tokens["input_tokens"],
            output_tokens=tokens["output_tokens"],
            cost_usd=cost,
        )

    async def fetch(self, request: web.Request, proxied: ProxyRequest) -> web.Response:
        """Serve a JSON request through the pool and return the answer unsent.

        For a route that reshapes the upstream's JSON (``GET /v1/models``);
        nothing is recorded, as for :meth:`handle` with ``record`` false.
        """
        outcome, _ = await self._attempts(request, proxied)
        response = outcome.response
        assert isinstance(response, web.Response) and not response.prepared
        return response

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class _ClientGone(Exception):
    """The client hung up while the relay was writing to it."""


_STREAM_FAILURES = {
    "stream_incomplete": "the upstream stream ended without a terminal event",
    "stream_idle_timeout": "the upstream stream went silent past the idle "
    "timeout (CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS)",
    "event_too_large": "an upstream event exceeded the size limit",
}


def _failure(code: str) -> str:
    """The message of a stream that broke with ``code``."""
    return _STREAM_FAILURES.get(code, code)


async def _end_translated(response: web.StreamResponse, last: bytes) -> None:
    """Write a translated stream's last bytes and end it; a gone client is fine."""
    try:
        if last:
            await response.write(last)
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass


async def _write(response: web.StreamResponse | None, chunk: bytes) -> None:
    assert response is not None
    try:
        await response.write(chunk)
    except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
        raise _ClientGone from exc


def _early_failure(events: list[Any], now: float) -> Failure | None:
    """A stream whose first content is a limit error fails over invisibly."""
    for event in events:
        if event.name not in ("response.failed", "error") or event.data is None:
            continue
        data = event.data
        error = (data.get("response") or {}).get("error") or data.get("error") or {}
        if not isinstance(error, dict):
            return None
        code = error_code(error)
        klass = error_class(200, code)
        if klass in ("rate_limit", "quota"):
            return Failure(
                klass, code or klass, 429, resets_at=error_resets_at(error, now)
            )
    return None


def _header_reset(headers: Mapping[str, str], now: float) -> float | None:
    """The reset of the fullest window named in ``x-codex-*`` headers."""
    reading = reading_from_headers(headers, now)
    if reading is None:
        return None
    candidates = [
        (used or 0.0, reset)
        for used, reset in (
            (reading.primary_used_percent, reading.primary_reset_at),
            (reading.secondary_used_percent, reading.secondary_reset_at),
        )
        if reset is not None
    ]
    if not candidates:
        return None
    full = [reset for used, reset in candidates if used >= 100.0]
    return max(full) if full else min(reset for _, reset in candidates)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _usage_of(response: Any) -> tuple[Usage | None, str | None]:
    """Usage and model from a Responses object (as in ``response.completed``)."""
    if not isinstance(response, dict):
        return None, None
    model = response.get("model") if isinstance(response.get("model"), str) else None
    raw = response.get("usage")
    if not isinstance(raw, dict):
        return None, model

    def number(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) else 0

    input_details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    usage = Usage(
        input_tokens=number(raw.get("input_tokens")),
        cached_input_tokens=number(input_details.get("cached_tokens")),
        output_tokens=number(raw.get("output_tokens")),
        reasoning_tokens=number(output_details.get("reasoning_tokens")),
    )
    return usage, model


def _transport_code(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "upstream_timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection_refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection_reset"
    return "transport_error"
