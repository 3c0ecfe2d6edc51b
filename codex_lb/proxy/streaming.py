"""Relaying one upstream answer to the client.

A streamed answer is relayed byte for byte, or rewritten by a translator;
either way the content-free opening events (``response.created``,
``response.in_progress``) are held back until the first other event, so a
failure right at the start can still move to another account. A stream that
breaks after it started ends with one clear ``response.failed`` event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from multidict import CIMultiDict

from codex_lb.accounts import Account
from codex_lb.proxy.failures import TRANSPORT_ERRORS, early_failure, transport_code
from codex_lb.proxy.outcome import (
    Failure,
    Outcome,
    Progress,
    ProxyRequest,
    StreamTranslator,
)
from codex_lb.proxy.pricing import Usage
from codex_lb.proxy.sse import SSEReader, encode_event
from codex_lb.proxy.upstream import error_code


@attrs.define
class AnswerRelay:
    """Writes upstream answers to clients.

    ``headers_for`` gives the client's response headers for an upstream
    answer, read when the answer starts.
    """

    clock: Callable[[], float]
    headers_for: Callable[[aiohttp.ClientResponse], CIMultiDict[str]]

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
        usage, model = (
            usage_of(_json_or_none(body))
            if proxied.stream is False
            else (
                None,
                None,
            )
        )
        response = web.Response(
            status=upstream.status, body=body, headers=self.headers_for(upstream)
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
        reader = SSEReader()
        held: list[bytes] | None = []
        response: web.StreamResponse | None = None
        tail = b""
        delivered = False  # the terminal event was written to the client

        try:
            async for chunk in upstream.content.iter_any():
                events = reader.feed(chunk)
                if held is not None:
                    held.append(chunk)
                    if not (reader.saw_content or reader.terminal):
                        continue
                    failed = early_failure(events, self.clock())
                    if failed is not None:
                        return failed
                    response = await self._start(request, upstream)
                    chunk, held = b"".join(held), None
                await _write(response, chunk)
                tail = (tail + chunk)[-2:]
                delivered = _delivered(progress, reader, account, response)
                if reader.overflowed:
                    break
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
                delivered = _delivered(progress, reader, account, response)
        except _ClientGone:
            return client_gone(reader, account, response, delivered)
        except TRANSPORT_ERRORS as exc:
            # After the terminal event the answer is whole: the drop is moot.
            if not delivered:
                code = _broken_code(exc)
                if response is None:
                    return Failure("transport", code)
                await end_with_failure(response, tail, code)
                return Outcome(200, code, account, None, proxied.model, response)

        if response is None:
            # The upstream ended before any content: nothing was sent yet.
            return Failure("transport", "stream_incomplete")
        if reader.overflowed:
            await end_with_failure(response, tail, "event_too_large")
            return Outcome(
                200, "event_too_large", account, None, proxied.model, response
            )
        if reader.terminal is None:
            await end_with_failure(response, tail, "stream_incomplete")
            return Outcome(
                200, "stream_incomplete", account, None, proxied.model, response
            )
        try:
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return stream_outcome(reader, account, response, None)

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
        reader = SSEReader(parse_all=True)
        held = bytearray()
        response: web.StreamResponse | None = None
        delivered = False  # the terminal event's bytes were written (streaming)

        try:
            async for chunk in upstream.content.iter_any():
                events = reader.feed(chunk)
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
                delivered = _delivered(progress, reader, account, response)
                if reader.overflowed:
                    break
            # The last event may lack its blank line: translate it too.
            events = reader.finish()
            if response is None:
                failed = early_failure(events, self.clock())
                if failed is not None:
                    return failed
            held += translator.translate(events)
        except _ClientGone:
            return client_gone(reader, account, response, delivered)
        except TRANSPORT_ERRORS as exc:
            # After the terminal event the answer is whole: the drop is moot.
            if reader.terminal is None:
                code = _broken_code(exc)
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
            headers = self.headers_for(upstream)
            headers.popall("Content-Type", None)
            answer = web.json_response(payload, status=status, headers=headers)
            outcome = stream_outcome(reader, account, answer, None)
            outcome.status_code = status
            return outcome
        try:
            if response is None:
                response = await self._start(request, upstream)
        except _ClientGone:
            return Outcome(
                499, "client_disconnected", account, response=web.Response(status=499)
            )
        await _end_translated(response, bytes(held))
        return stream_outcome(reader, account, response, None)

    async def _start(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, headers=self.headers_for(upstream)
        )
        try:
            await response.prepare(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
            raise _ClientGone from exc
        return response


class _ClientGone(Exception):
    """The client hung up while the relay was writing to it."""


def client_gone(
    reader: SSEReader,
    account: Account,
    response: web.StreamResponse | None,
    delivered: bool,
) -> Outcome:
    """The client hung up: served if the terminal event had been written."""
    if delivered:
        return stream_outcome(reader, account, response, None)
    return Outcome(
        499,
        "client_disconnected",
        account,
        response=response or web.Response(status=499),
    )


def _delivered(
    progress: Progress,
    reader: SSEReader,
    account: Account,
    response: web.StreamResponse | None,
) -> bool:
    """True once the terminal event is written; noted in ``progress``."""
    if reader.terminal is None:
        return False
    if progress.served is None:
        progress.served = stream_outcome(reader, account, response, None)
    return True


def stream_outcome(
    reader: SSEReader,
    account: Account,
    response: web.StreamResponse | None,
    gone: str | None,
) -> Outcome:
    """How a relayed stream ended; ``gone`` is the code if the client left."""
    terminal = reader.terminal
    if terminal is None:
        # The client left before the end: not served.
        return Outcome(499, gone or "stream_incomplete", account, response=response)
    # A client that leaves after the terminal event has been served.
    data = terminal.data or {}
    usage, model = usage_of(data.get("response") or data)
    code = None
    if terminal.name in ("response.failed", "error"):
        error = (data.get("response") or {}).get("error") or data.get("error")
        code = error_code(error) if isinstance(error, dict) else None
        code = code or "response_failed"
    return Outcome(200, code, account, usage, model, response)


async def end_with_failure(
    response: web.StreamResponse, tail: bytes, code: str
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


_STREAM_FAILURES = {
    "stream_incomplete": "the upstream stream ended without a terminal event",
    "stream_idle_timeout": "the upstream stream went silent past the idle "
    "timeout (CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS)",
    "event_too_large": "an upstream event exceeded the size limit",
}


def _broken_code(exc: BaseException) -> str:
    """The error code of a stream that broke with ``exc``."""
    return (
        "stream_idle_timeout" if isinstance(exc, TimeoutError) else "stream_incomplete"
    )


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


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def usage_of(response: Any) -> tuple[Usage | None, str | None]:
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
