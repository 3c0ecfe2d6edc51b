"""Relaying one upstream answer to the client.

A streamed answer is relayed byte for byte, or rewritten by a translator;
either way the content-free opening events (``response.created``,
``response.in_progress``) are held back until the first other event, so a
failure right at the start can still move to another account. A stream that
breaks after it started ends with one clear ``response.failed`` event (see
:mod:`codex_lb.proxy.endings`); so does one still open when codex-lb shuts
down past its grace period.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from codex_lb.accounts import Account
from codex_lb.errors import error_response
from codex_lb.proxy.endings import (
    broken,
    broken_code,
    client_gone,
    end_with_failure,
    failure_message,
    shutdown_response,
    stream_outcome,
    usage_of,
)
from codex_lb.proxy.failures import TRANSPORT_ERRORS, early_failure, transport_code
from codex_lb.proxy.outcome import (
    Failure,
    Outcome,
    Progress,
    ProxyRequest,
    StreamTranslator,
)
from codex_lb.proxy.sse import DEFAULT_MAX_EVENT_BYTES, SSEReader
from codex_lb.proxy.upstream import client_headers


@attrs.define
class AnswerRelay:
    """Writes upstream answers to clients.

    ``stopping`` says whether codex-lb is shutting down: an answer cancelled
    then ends with ``server_shutdown`` instead of being left cut. An event
    larger than ``max_event_bytes`` ends the answer with ``event_too_large``.
    (The quota headers of every answer are the pool's: see
    ``routes.pool_quota_headers``.)
    """

    clock: Callable[[], float]
    stopping: Callable[[], bool]
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    async def body(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
    ) -> Outcome | Failure:
        try:
            body = await upstream.read()
        except TRANSPORT_ERRORS as exc:
            return Failure("transport", transport_code(exc))
        usage, model = (None, None)
        if proxied.stream is False:
            usage, model = usage_of(_json_or_none(body))
        response = web.Response(
            status=upstream.status, body=body, headers=client_headers(upstream.headers)
        )
        return Outcome(
            upstream.status,
            None,
            account,
            usage,
            model or proxied.model,
            response,
        )

    async def stream(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
        progress: Progress,
    ) -> Outcome | Failure:
        reader = SSEReader(self.max_event_bytes)
        held: list[bytes] | None = []
        response: web.StreamResponse | None = None
        tail = b""  # the last bytes written, to close a cut event
        delivered = False  # the terminal event was written to the client

        try:
            try:
                async for chunk in upstream.content.iter_any():
                    events = reader.feed(chunk)
                    if held is not None:
                        if reader.overflowed:
                            break
                        held.append(chunk)
                        if not (reader.saw_content or reader.terminal):
                            continue
                        failed = early_failure(events, self.clock())
                        if failed is not None:
                            return failed
                        response = await self._start(request, upstream)
                        chunk, held = b"".join(held), None
                    if (
                        reader.terminal is not None
                        and not reader.overflowed
                        and upstream.content.at_eof()
                    ):
                        # The rest of the answer is all here: one write sends
                        # it and ends the response (with the headers, when
                        # the whole answer came at once).
                        await _write(response, chunk, last=True)
                    else:
                        await _write(response, chunk)
                    tail = (tail + chunk)[-2:]
                    delivered = self._delivered(progress, reader, account, response)
                    if reader.overflowed:
                        break
            except TRANSPORT_ERRORS as exc:
                # After the terminal event the answer is whole: the drop is moot.
                if not delivered:
                    code = broken_code(exc)
                    if response is None:
                        return Failure("transport", code)
                    await end_with_failure(response, tail, code)
                    return broken(code, account, proxied.model, response)

            if reader.overflowed:
                # One event outgrew the cap: whatever was held back goes (it
                # holds the start of that event), the failure says why.
                if response is None:
                    response = await self._start(request, upstream)
                await end_with_failure(response, tail, "event_too_large")
                return broken("event_too_large", account, proxied.model, response)

            last = reader.finish()
            if held is not None and reader.terminal is not None:
                # A whole answer whose last event lacked its blank line.
                failed = early_failure(last, self.clock())
                if failed is not None:
                    return failed
                response = await self._start(request, upstream)
                chunk = b"".join(held)
                await _write(response, chunk)
                tail = chunk[-2:]
                delivered = self._delivered(progress, reader, account, response)
        except _ClientGone:
            return client_gone(reader, account, response, delivered, self.clock())
        except asyncio.CancelledError:
            if not self.stopping():
                raise
            return await self._shut_down(reader, account, response, tail, delivered)

        if response is None:
            # The upstream ended before any content: nothing was sent yet.
            return Failure("transport", "stream_incomplete")
        if reader.terminal is None:
            await end_with_failure(response, tail, "stream_incomplete")
            return broken("stream_incomplete", account, proxied.model, response)
        try:
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return stream_outcome(reader, account, response, self.clock())

    async def translated(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
        translator: StreamTranslator,
        progress: Progress,
    ) -> Outcome | Failure:
        """Like :meth:`stream`, with ``translator`` writing the bytes.

        A streaming translator's output is held back with the opening events
        and sent once content arrives. A buffered translator sends nothing
        before the terminal event, so any failure before it still moves the
        request to another account.
        """
        reader = SSEReader(self.max_event_bytes, parse_all=True)
        held = bytearray()
        response: web.StreamResponse | None = None
        delivered = False  # the terminal event's bytes were written (streaming)

        try:
            try:
                async for chunk in upstream.content.iter_any():
                    events = reader.feed(chunk)
                    if reader.overflowed:
                        break
                    if response is None:
                        failed = early_failure(events, self.clock())
                        if failed is not None:
                            return failed
                    out = translator.translate(events)
                    if response is None:
                        held += out
                        if translator.buffered or not (
                            reader.saw_content or reader.terminal
                        ):
                            continue
                        response = await self._start(request, upstream)
                        out, held = bytes(held), bytearray()
                    if out:
                        await _write(response, out)
                    delivered = self._delivered(progress, reader, account, response)
                if not reader.overflowed:
                    # The last event may lack its blank line: translate it too.
                    events = reader.finish()
                    if response is None:
                        failed = early_failure(events, self.clock())
                        if failed is not None:
                            return failed
                    held += translator.translate(events)
            except TRANSPORT_ERRORS as exc:
                # After the terminal event the answer is whole: the drop is moot.
                if reader.terminal is None:
                    code = broken_code(exc)
                    if response is None:
                        return Failure("transport", code)
                    await _end_translated(
                        response, translator.fail(code, failure_message(code))
                    )
                    return broken(code, account, proxied.model, response)

            if reader.overflowed:
                return await self._overflowed(
                    request, proxied, account, upstream, translator, response, held
                )
            if reader.terminal is None:
                if response is None:
                    return Failure("transport", "stream_incomplete")
                code = "stream_incomplete"
                await _end_translated(
                    response, translator.fail(code, failure_message(code))
                )
                return broken(code, account, proxied.model, response)

            if translator.buffered:
                status, payload = translator.result()
                headers = client_headers(upstream.headers)
                headers.popall("Content-Type", None)
                answer = web.json_response(payload, status=status, headers=headers)
                outcome = stream_outcome(reader, account, answer, self.clock())
                outcome.status_code = status
                return outcome
            if response is None:
                response = await self._start(request, upstream)
        except _ClientGone:
            return client_gone(reader, account, response, delivered, self.clock())
        except asyncio.CancelledError:
            if not self.stopping():
                raise
            return await self._shut_down(
                reader, account, response, b"", delivered, translator
            )

        await _end_translated(response, bytes(held))
        return stream_outcome(reader, account, response, self.clock())

    async def _overflowed(
        self,
        request: web.Request,
        proxied: ProxyRequest,
        account: Account,
        upstream: aiohttp.ClientResponse,
        translator: StreamTranslator,
        response: web.StreamResponse | None,
        held: bytearray,
    ) -> Outcome:
        """A translated answer one of whose events outgrew the cap."""
        code = "event_too_large"
        if translator.buffered:
            answer = error_response(502, code, failure_message(code), "upstream_error")
            return Outcome(
                502,
                code,
                account,
                model=proxied.model,
                response=answer,
                error_class="transport",
            )
        if response is None:
            response = await self._start(request, upstream)
        await _end_translated(
            response, bytes(held) + translator.fail(code, failure_message(code))
        )
        return broken(code, account, proxied.model, response)

    async def _shut_down(
        self,
        reader: SSEReader,
        account: Account,
        response: web.StreamResponse | None,
        tail: bytes,
        delivered: bool,
        translator: StreamTranslator | None = None,
    ) -> Outcome:
        """End an answer that shutdown cancelled: ``server_shutdown``, said once.

        The cancellation is taken back (the handler goes on to finish its
        response); nothing marks the account.
        """
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if delivered:
            return stream_outcome(reader, account, response, self.clock())
        code = "server_shutdown"
        if response is None:
            return Outcome(503, code, account, response=shutdown_response())
        if translator is None:
            await end_with_failure(response, tail, code)
        else:
            await _end_translated(
                response, translator.fail(code, failure_message(code))
            )
        return broken(code, account, None, response)

    async def _start(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = _RelayedResponse(
            status=upstream.status, headers=client_headers(upstream.headers)
        )
        try:
            await response.prepare(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
            raise _ClientGone from exc
        return response

    def _delivered(
        self,
        progress: Progress,
        reader: SSEReader,
        account: Account,
        response: web.StreamResponse | None,
    ) -> bool:
        """True once the terminal event is written; noted in ``progress``."""
        if reader.terminal is None:
            return False
        if progress.served is None:
            progress.served = stream_outcome(reader, account, response, self.clock())
        return True


class _ClientGone(Exception):
    """The client hung up while the relay was writing to it."""


class _RelayedResponse(web.StreamResponse):
    """A streamed answer whose headers go out with its first bytes.

    The relay writes the first bytes right after ``prepare``; aiohttp's
    ``web.Response`` already holds its headers back this way, and a
    ``StreamResponse`` sends them in a write of their own unless told not
    to (a private aiohttp switch: an aiohttp without it sends them at once,
    which is only one more write).
    """

    _send_headers_immediately = False


async def _end_translated(response: web.StreamResponse, last: bytes) -> None:
    """Write a translated stream's last bytes and end it; a gone client is fine."""
    try:
        if last:
            await response.write(last)
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass


async def _write(
    response: web.StreamResponse | None, chunk: bytes, last: bool = False
) -> None:
    """Write ``chunk``; ``last`` also ends the response in the same write."""
    assert response is not None
    try:
        if last:
            await response.write_eof(chunk)
        else:
            await response.write(chunk)
    except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
        raise _ClientGone from exc


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
