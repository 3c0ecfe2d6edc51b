"""What crosses to the upstream: headers sent, errors read back."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from multidict import CIMultiDict

from codex_lb.accounts.aggregate import QUOTA_HEADER_PREFIXES
from codex_lb.constants import QUOTA_CODES, RATE_LIMIT_CODES
from codex_lb.proxy.pricing import Usage

# Never forwarded in either direction (RFC 9110 hop-by-hop, plus framing).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_REQUEST = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "chatgpt-account-id",
    "accept-encoding",
    "cookie",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
}
_DROP_RESPONSE = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "set-cookie",
    "server",
    "date",
}


def upstream_headers(
    client: Mapping[str, str], access_token: str, chatgpt_account_id: str
) -> CIMultiDict[str]:
    """The client's headers with its credentials swapped for the account's."""
    drop = _DROP_REQUEST | connection_options(client)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in client.items():
        if name.lower() not in drop:
            headers.add(name, value)
    headers["Authorization"] = f"Bearer {access_token}"
    headers["chatgpt-account-id"] = chatgpt_account_id
    return headers


def client_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """The upstream's response headers safe to pass to the client.

    The account's own quota headers are left out here: every proxied answer
    gets the pool's instead (``routes.pool_quota_headers``), which then has
    nothing to take out.
    """
    drop = _DROP_RESPONSE | connection_options(upstream)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        lowered = name.lower()
        if lowered not in drop and not lowered.startswith(QUOTA_HEADER_PREFIXES):
            headers.add(name, value)
    return headers


def connection_options(headers: Mapping[str, str]) -> frozenset[str]:
    """The header names a ``Connection`` header lists: hop-by-hop as well
    (RFC 9110 section 7.6.1), so they stop at codex-lb like the fixed set."""
    return frozenset(
        option.strip().lower()
        for name, value in headers.items()
        if name.lower() == "connection"
        for option in value.split(",")
        if option.strip()
    )


# Error codes the upstream puts in a failure event (``response.failed``,
# ``error``) when the fault is on its side: the in-stream twins of a 5xx.
SERVER_ERROR_CODES: Final = frozenset(
    {
        "server_error",
        "internal_error",
        "internal_server_error",
        "server_is_overloaded",
        "overloaded",
        "service_unavailable",
        "slow_down",
        "bad_gateway",
        "gateway_timeout",
        "upstream_error",
    }
)

_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

# Tokens counted for one request are at most this (2^53 - 1, the largest
# integer every JSON reader keeps exactly); larger is a broken count.
MAX_TOKENS: Final = 2**53 - 1
# A reset announced further ahead than this is read as this far ahead.
MAX_RESET_SECONDS: Final = 366 * 24 * 3600.0


def error_class(status: int, code: str | None) -> str:
    """The class of a failed attempt (SPEC section 5).

    ``status`` is the HTTP status, 200 for a failure event inside a stream,
    where the code alone says whose fault it was.
    """
    if code in RATE_LIMIT_CODES:
        return "rate_limit"
    if code in QUOTA_CODES:
        return "quota"
    if status == 401:
        return "auth"
    if status == 429:
        return "rate_limit"
    if status >= 500 or (status < 400 and code in SERVER_ERROR_CODES):
        return "upstream"
    return "client"


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one.

    The upstream's JSON can have any shape; every read of a nested object
    goes through here (or an ``isinstance`` check) rather than trusting it.
    """
    return value if isinstance(value, dict) else {}


def event_error(data: Any) -> dict[str, Any] | None:
    """The error object of a failure event, wherever the event put it.

    ``response.failed`` carries it in ``response.error``; an ``error`` event
    in ``error``, or as its own fields (``code``, ``message``).
    """
    data = as_object(data)
    for error in (as_object(data.get("response")).get("error"), data.get("error")):
        if isinstance(error, dict):
            return error
    if isinstance(data.get("code"), str):
        return data
    return None


def read_usage(raw: Any) -> Usage | None:
    """The token counts of a Responses ``usage`` object, if it is one.

    A count that is missing, not a number, not finite or negative is 0; a
    count past :data:`MAX_TOKENS` is capped there, so a broken upstream
    number can neither crash the relay nor poison the request log.
    """
    if not isinstance(raw, dict):
        return None
    input_details = as_object(raw.get("input_tokens_details"))
    output_details = as_object(raw.get("output_tokens_details"))
    return Usage(
        input_tokens=token_count(raw.get("input_tokens")),
        cached_input_tokens=token_count(input_details.get("cached_tokens")),
        output_tokens=token_count(raw.get("output_tokens")),
        reasoning_tokens=token_count(output_details.get("reasoning_tokens")),
    )


def token_count(value: Any) -> int:
    """A token count from JSON: a whole number from 0 to :data:`MAX_TOKENS`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    return min(max(value, 0), MAX_TOKENS)


def parse_error(body: bytes) -> dict[str, Any]:
    """The ``error`` object of an upstream error body ({} if there is none)."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    error = value.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"code": error, "message": value.get("error_description")}
    if "detail" in value and isinstance(value["detail"], dict):
        return value["detail"]
    return {}


def error_code(error: Mapping[str, Any]) -> str | None:
    """The code (else the type) of an upstream error object.

    Only a code-like word counts: the code lands in the request log, in
    log lines and in a metric label, where an upstream's free text or a
    megabyte of junk must not.
    """
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and _CODE.fullmatch(value):
            return value
    return None


def error_resets_at(error: Mapping[str, Any], now: float) -> float | None:
    """When a limit in an error body ends: ``resets_at``, else ``resets_in``.

    Only finite numbers count; a reset more than :data:`MAX_RESET_SECONDS`
    ahead is read as that far ahead, so no stray number benches an account
    for ever.
    """
    resets_at = _finite(error.get("resets_at"))
    if resets_at is None:
        resets_in = _finite(error.get("resets_in_seconds"))
        resets_at = None if resets_in is None else now + resets_in
    if resets_at is None:
        return None
    return min(resets_at, now + MAX_RESET_SECONDS)


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, if it is a JSON number that has one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None
