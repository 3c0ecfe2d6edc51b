"""What crosses to the upstream: headers sent, errors read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

from codex_lb.constants import QUOTA_CODES, RATE_LIMIT_CODES

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
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in client.items():
        if name.lower() not in _DROP_REQUEST:
            headers.add(name, value)
    headers["Authorization"] = f"Bearer {access_token}"
    headers["chatgpt-account-id"] = chatgpt_account_id
    return headers


def client_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """The upstream's response headers safe to pass to the client."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in _DROP_RESPONSE:
            headers.add(name, value)
    return headers


def error_class(status: int, code: str | None) -> str:
    """The class of a failed attempt (SPEC section 5)."""
    if code in RATE_LIMIT_CODES:
        return "rate_limit"
    if code in QUOTA_CODES:
        return "quota"
    if status == 401:
        return "auth"
    if status == 429:
        return "rate_limit"
    if status >= 500:
        return "upstream"
    return "client"


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
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def error_resets_at(error: Mapping[str, Any], now: float) -> float | None:
    """When a limit in an error body ends: ``resets_at``, else ``resets_in``."""
    resets_at = error.get("resets_at")
    if isinstance(resets_at, (int, float)) and not isinstance(resets_at, bool):
        return float(resets_at)
    resets_in = error.get("resets_in_seconds")
    if isinstance(resets_in, (int, float)) and not isinstance(resets_in, bool):
        return now + float(resets_in)
    return None
