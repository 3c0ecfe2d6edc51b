"""How a relayed answer ended: its outcome, and the event that ends a broken one.

An answer ends with its terminal event, or breaks: the upstream cut it or
went silent, one of its events outgrew the cap, or codex-lb shut down. A
stream that broke after it started ends with one clear ``response.failed``
event whose code says why. :func:`stream_outcome` reads the terminal event
for the request log and for the mark the account gets.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
from aiohttp import web

from codex_lb.accounts import Account
from codex_lb.errors import error_response
from codex_lb.proxy.outcome import Outcome
from codex_lb.proxy.pricing import Usage
from codex_lb.proxy.sse import SSEReader, encode_event
from codex_lb.proxy.upstream import (
    as_object,
    error_class,
    error_code,
    error_resets_at,
    event_error,
    read_usage,
)

# The codes codex-lb ends a started stream with, and what each means.
STREAM_FAILURES: Final = {
    "stream_incomplete": "the upstream stream ended without a terminal event",
    "stream_idle_timeout": "the upstream stream went silent past the idle "
    "timeout (CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS)",
    "event_too_large": "an upstream event exceeded the size limit",
    "server_shutdown": "codex-lb is shutting down and the stream outlived its "
    "grace period (CODEX_LB_SHUTDOWN_GRACE_SECONDS)",
}
# Of those, the ones the account answers for: a transport failure (SPEC
# section 5). A shutdown is codex-lb's own doing and marks nothing.
TRANSPORT_STREAM_CODES: Final = frozenset(
    {"stream_incomplete", "stream_idle_timeout", "event_too_large"}
)
FAILURE_EVENTS: Final = frozenset({"response.failed", "error"})
# Classes of an upstream failure event that say nothing against the account.
_UNMARKED_CLASSES: Final = frozenset({"client", "auth"})
# How long a client should wait before retrying a request cut by shutdown.
SHUTDOWN_RETRY_AFTER_SECONDS: Final = 5


def stream_outcome(
    reader: SSEReader,
    account: Account,
    response: web.StreamResponse | None,
    now: float,
) -> Outcome:
    """How a relayed stream ended, read from its terminal event."""
    terminal = reader.terminal
    if terminal is None:
        # The client left before the end: not served.
        return Outcome(499, "client_disconnected", account, response=response)

    # A client that leaves after the terminal event has been served.
    data = as_object(terminal.data)
    answer = data.get("response")
    usage, model = usage_of(answer if isinstance(answer, dict) else data)
    if terminal.name not in FAILURE_EVENTS:
        return Outcome(200, None, account, usage, model, response)

    error = event_error(data) or {}
    code = error_code(error) or "response_failed"
    klass = error_class(200, code)
    return Outcome(
        200,
        code,
        account,
        usage,
        model,
        response,
        error_class=None if klass in _UNMARKED_CLASSES else klass,
        resets_at=error_resets_at(error, now),
    )


def client_gone(
    reader: SSEReader,
    account: Account,
    response: web.StreamResponse | None,
    delivered: bool,
    now: float,
) -> Outcome:
    """The client hung up: served if the terminal event had been written."""
    if delivered:
        return stream_outcome(reader, account, response, now)
    return Outcome(
        499,
        "client_disconnected",
        account,
        response=response or web.Response(status=499),
    )


def broken(
    code: str, account: Account, model: str | None, response: web.StreamResponse
) -> Outcome:
    """The outcome of a started stream that codex-lb ended with ``code``."""
    klass = "transport" if code in TRANSPORT_STREAM_CODES else None
    return Outcome(200, code, account, None, model, response, error_class=klass)


def failure_event(code: str) -> bytes:
    """The one ``response.failed`` event that ends a broken stream."""
    return encode_event(
        "response.failed",
        {
            "type": "response.failed",
            "response": {
                "status": "failed",
                "error": {"code": code, "message": failure_message(code)},
            },
        },
    )


async def end_with_failure(
    response: web.StreamResponse, tail: bytes, code: str
) -> None:
    """End a started stream with one clear ``response.failed`` event.

    ``tail`` is the end of what was written so far: an event cut in the
    middle is closed with a blank line first, so the failure stands alone.
    """
    separator = b"" if tail.endswith(b"\n\n") or not tail else b"\n\n"
    try:
        await response.write(separator + failure_event(code))
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass


def broken_code(exc: BaseException) -> str:
    """The error code of a stream that broke with ``exc``."""
    return (
        "stream_idle_timeout" if isinstance(exc, TimeoutError) else "stream_incomplete"
    )


def failure_message(code: str) -> str:
    """The message of a stream that codex-lb ended with ``code``."""
    return STREAM_FAILURES.get(code, code)


def shutdown_response() -> web.Response:
    """The answer to a request that shutdown caught before anything was sent."""
    return error_response(
        503,
        "server_shutdown",
        failure_message("server_shutdown"),
        "server_error",
        headers={"Retry-After": str(SHUTDOWN_RETRY_AFTER_SECONDS)},
    )


def usage_of(response: Any) -> tuple[Usage | None, str | None]:
    """Usage and model from a Responses object (as in ``response.completed``)."""
    if not isinstance(response, dict):
        return None, None
    model = response.get("model")
    return read_usage(response.get("usage")), model if isinstance(model, str) else None
