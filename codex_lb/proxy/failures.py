"""Upstream failures: how each is read, classed, and answered.

An attempt fails on an error status, a transport error, a token that cannot
be refreshed, or a stream whose first event past the opening ones is a
failure. Each failure has a class (SPEC section 5); the classes in
:data:`FAILOVER_CLASSES` move the request to another account, and so does an
``auth`` failure once its one retry on the same account is spent. Client
errors go back to the client as they came. When the request runs out of
accounts or attempts, the client gets one answer saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp
from aiohttp import web

from codex_lb.accounts import ACTIVE, PAUSED, REAUTH_REQUIRED, Account, AccountPool
from codex_lb.accounts.quota import reading_from_headers
from codex_lb.errors import error_response
from codex_lb.logs import redact_bytes, redact_text
from codex_lb.proxy.outcome import Failure, Outcome
from codex_lb.proxy.upstream import (
    client_headers,
    error_class,
    error_code,
    error_resets_at,
    event_error,
    parse_error,
)

# Error classes that move a request to another account before its first byte.
FAILOVER_CLASSES: Final = frozenset({"rate_limit", "quota", "upstream", "transport"})
# What moves a request on: the above, and an account whose token could not
# be refreshed after a 401 (a client reads a 401 as its own login failing).
MOVES_ON: Final = FAILOVER_CLASSES | {"auth"}
LIMIT_CLASSES: Final = frozenset({"rate_limit", "quota"})

# Exceptions that mean the upstream connection failed (not the client's).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

# How soon a client may retry when the request ran out of attempts while
# accounts with room remain.
ATTEMPTS_RETRY_AFTER_SECONDS: Final = 1


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
    if resets_at is None and klass in LIMIT_CLASSES:
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
    """A failure event before any content, when it moves the request.

    A limit error benches the account and a server error marks it, and
    either moves the request to another account as a 429 or a 5xx before
    the stream would have (SPEC section 5); a client error is relayed.
    """
    for event in events:
        if event.name not in ("response.failed", "error"):
            continue
        error = event_error(event.data) or {}
        code = error_code(error)
        klass = error_class(200, code)
        if klass in LIMIT_CLASSES:
            return Failure(
                klass, code or klass, 429, resets_at=error_resets_at(error, now)
            )
        if klass == "upstream":
            return Failure(klass, code or "server_error", 502)
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


def exhausted(
    failures: Sequence[Failure], tried: set[str], pool: AccountPool, now: float
) -> Outcome:
    """The answer when the request ran out of accounts or attempts.

    ``failures`` are the failed attempts in order, ``tried`` the accounts
    they were made on. The 429 ``usage_limit_reached`` that makes a Codex
    CLI stop is the answer only when every account tried was limited and
    no account is left (SPEC section 3); anything temporary is a 502 the
    client retries, and running out of attempts with usable accounts left
    is a plain 429 ``rate_limit_exceeded`` with a short ``Retry-After``.
    """
    temporary = [f for f in failures if f.error_class not in LIMIT_CLASSES]
    if temporary:
        return _upstream_failed(temporary[-1])

    if failures and any(
        a.status == ACTIVE and a.id not in tried for a in pool.accounts
    ):
        response = error_response(
            429,
            "rate_limit_exceeded",
            f"the {len(failures)} accounts tried (CODEX_LB_MAX_ATTEMPTS) were "
            "limited; others in the pool have room: retry",
            "rate_limit_exceeded",
            headers={"Retry-After": str(ATTEMPTS_RETRY_AFTER_SECONDS)},
        )
        return Outcome(429, "rate_limit_exceeded", response=response)

    resets_at = pool.earliest_reset()
    if failures or resets_at is not None:
        known = [f.resets_at for f in failures if f.resets_at is not None]
        resets_at = resets_at or (min(known) if known else None) or now
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

    response = error_response(503, "no_accounts", _why_no_account(pool), "no_accounts")
    return Outcome(503, "no_accounts", response=response)


def _upstream_failed(last: Failure) -> Outcome:
    """The 502 for a request whose last temporary failure was ``last``."""
    # A refresh failure's code is the token endpoint's word, which may
    # quote what it was sent.
    shown = redact_text(last.code)[:100]
    if last.error_class == "upstream":
        code = "upstream_error"
        message = f"the upstream failed on every account tried ({shown})"
    elif last.error_class == "auth":
        code = "upstream_unavailable"
        message = (
            "no account tried could authenticate upstream, and the token "
            f"endpoint could not renew its access ({shown})"
        )
    else:
        # Transport failures: no connection, or one lost mid-answer.
        code = "upstream_unavailable"
        message = f"the upstream could not be reached or stopped answering ({shown})"
    return Outcome(502, code, response=error_response(502, code, message))


def _why_no_account(pool: AccountPool) -> str:
    """The 503 message: what the operator can do about an empty pool."""
    statuses = {a.status for a in pool.accounts}
    if not statuses:
        return (
            "no account is configured: add one with 'codex-lb accounts import' "
            "or 'codex-lb login'"
        )
    if statuses == {PAUSED}:
        return "every account is paused: resume one with 'codex-lb accounts resume'"
    if statuses == {REAUTH_REQUIRED}:
        return "every account needs a new login: run 'codex-lb login'"
    return (
        "no account can serve: each is paused or needs a new login "
        "('codex-lb accounts list' shows which)"
    )
