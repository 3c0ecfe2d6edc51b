"""What both OAuth login flows share: PKCE, the code exchange, token answers.

Also the two helpers every call to the OAuth server needs (token refreshes
included): reading a JSON object from an answer that may not be JSON, or
not even text, and the error code of an OAuth error body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import aiohttp
import attrs

from codex_lb.accounts.identity import identity_from_tokens, token_expiry
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID
from codex_lb.store import NewAccount, TokenSet

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30.0)


class LoginError(Exception):
    """A login that did not produce an account; the message says why."""


@attrs.frozen
class Pkce:
    """A PKCE pair: the secret verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return cls(verifier, challenge)


async def exchange_code(
    session: aiohttp.ClientSession,
    auth_base_url: str,
    code: str,
    verifier: str,
    redirect_uri: str,
) -> dict[str, Any]:
    """Trade an authorization code (and its PKCE verifier) for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CODEX_OAUTH_CLIENT_ID,
        "code_verifier": verifier,
    }
    url = auth_base_url.rstrip("/") + "/oauth/token"
    try:
        async with session.post(url, data=form, timeout=HTTP_TIMEOUT) as response:
            status, payload = response.status, json_object(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoginError(f"cannot reach {url}: {_why(exc)}") from exc
    if status != 200:
        raise LoginError(
            f"the token exchange failed: HTTP {status} {error_text(payload)}"
        )
    return payload


def account_from_token_response(payload: dict[str, Any], now: float) -> NewAccount:
    """The account a token answer signs into, ready for the store."""
    access, refresh = payload.get("access_token"), payload.get("refresh_token")
    id_token = payload.get("id_token")
    if not isinstance(access, str) or not access:
        raise LoginError("the token answer has no access_token")
    if not isinstance(refresh, str) or not refresh:
        raise LoginError("the token answer has no refresh_token (offline access)")
    id_token = id_token if isinstance(id_token, str) else None

    email, chatgpt_account_id, plan = identity_from_tokens(id_token, access)
    if not chatgpt_account_id:
        raise LoginError("the tokens name no ChatGPT account (no chatgpt_account_id)")
    expires_at = token_expiry(access)
    expires_in = payload.get("expires_in")
    if expires_at is None and isinstance(expires_in, (int, float)):
        expires_at = now + float(expires_in)
    return NewAccount(
        email=email or chatgpt_account_id,
        chatgpt_account_id=chatgpt_account_id,
        plan=(plan or "unknown").lower(),
        tokens=TokenSet(
            access_token=access,
            refresh_token=refresh,
            id_token=id_token,
            refreshed_at=now,
            access_expires_at=expires_at,
        ),
    )


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON: the status and the answer's JSON object."""
    try:
        async with session.post(url, json=body, timeout=HTTP_TIMEOUT) as response:
            return response.status, json_object(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoginError(f"cannot reach {url}: {_why(exc)}") from exc


def json_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object in ``raw``; {} for anything else (an HTML error page,
    bytes that are not UTF-8, a JSON array)."""
    try:
        value = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return {}
    return value if isinstance(value, dict) else {}


def error_code(payload: dict[str, Any]) -> str | None:
    """The error code of an OAuth error body, in either shape seen upstream."""
    error = payload.get("error")
    if isinstance(error, str):
        return error or None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    return None


def error_text(payload: dict[str, Any]) -> str:
    """An answer's error code for a message, never its other fields (they may
    echo secrets)."""
    return error_code(payload) or "(no error code)"


def _why(exc: BaseException) -> str:
    """Why the auth server could not be reached, in a few words.

    Only the kind of failure and the system's reason: an exception's own
    text may quote what was being sent.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
        )
    if isinstance(exc, TimeoutError):
        return f"no answer within {HTTP_TIMEOUT.total:g} s"
    return type(exc).__name__
