"""Upstream failures: how each is read, classed, and answered.

An attempt fails on an error status, a transport error, or a stream whose
first content is a limit error. Each failure has a class (SPEC section 5);
the classes in :data:`FAILOVER_CLASSES` move the request to another account,
the others go back to the client as they came. When no account is left, the
client gets one answer saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from codex_lb.accounts import Account, AccountPool
from codex_lb.accounts.quota import reading_from_headers
from codex_lb.logs import redact_bytes
from codex_lb.proxy.errors import error_response
from codex_lb.proxy.outcome import Failure, Outcome
from codex_lb.proxy.upstream import (
    client_headers,
    error_class,
    error_code,
    error_resets_at,
    parse_error,
)

# Error classes that move a request to another account before its first byte.
FAILOVER_CLASSES = frozenset({"rate_limit", "quota", "upstream", "transport"})

# Exceptions that mean the upstream connection failed (not the client's).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


async def read_failure(
    upstream: aiohttp.ClientResponse, clock: Callable[[], float]
) -> Failure:
    """The failure an error status (400 or more) stands for."""
    try:
        # The body may go back to the client: never with a token it quotes.
        body = redact_bytes(await upstream.read())
    except TRANSPORT_ERRORS as exc:
        return Failure("transport", transport_code(exc))
    error = parse_error(body)
    code = error_code(error)
    status = upstream.status
    klass = error_class(status, code)
    resets_at = error_resets_at(error, clock())
    if resets_at is None and klass in ("rate_limit", "quota"):
        resets_at = header_reset(upstream.headers, clock())
    return Failure(
        klass,
        code or f"http_{status}",
        status,
        body,
        client_headers(upstream.headers),
        resets_at,
    )


def early_failure(events: list[Any], now: float) -> Failure | None:
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


def header_reset(headers: Mapping[str, str], now: float) -> float | None:
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


def transport_code(exc: BaseException) -> str:
    """The error code of a transport failure."""
    if isinstance(exc, TimeoutError):
        return "upstream_timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection_refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection_reset"
    return "transport_error"


def pass_back(failure: Failure, account: Account) -> Outcome:
    """A client error goes back as it came (headers matching the body)."""
    response = web.Response(
        status=failure.status, body=failure.body, headers=failure.headers
    )
    return Outcome(failure.status, failure.code, account, response=response)


def exhausted(last: Failure | None, pool: AccountPool, now: float) -> Outcome:
    """The answer when no account could serve."""
    if last is None or last.error_class in ("rate_limit", "quota"):
        resets_at = pool.earliest_reset()
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
        "upstream_error" if last.error_class == "upstream" else "upstream_unavailable"
    )
    message = (
        f"the upstream failed on every account tried ({last.code})"
        if code == "upstream_error"
        else f"the upstream could not be reached ({last.code})"
    )
    return Outcome(502, code, response=error_response(502, code, message))
