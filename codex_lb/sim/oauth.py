"""The OAuth routes: token endpoint, browser (PKCE) login and device login.

- `POST /oauth/token`, form or JSON, with `client_id` set to the Codex CLI's
  client. `grant_type=refresh_token` spends the refresh token (single use:
  a second use gets 401 `refresh_token_reused`, an unknown one 400
  `invalid_grant`, both as `{"error": ..., "error_description": ...}`).
  `grant_type=authorization_code` checks `code_verifier` against the S256
  challenge the code was issued for. Both return a whole new token set; old
  access tokens stay valid until they expire or a test revokes them.
- `GET /oauth/authorize` logs straight in (no page) and redirects to
  `redirect_uri?code=...&state=...`; which account it signs into is
  `Emulator.pick_login_account` (a `login_hint` email wins).
- Device login, as the Codex CLI does it: `POST
  /api/accounts/deviceauth/usercode` gives `device_auth_id`, `user_code` and
  `interval` (a string of seconds); `POST /api/accounts/deviceauth/token`
  with both answers 403 while pending, then, once approved (by
  `Emulator.approve_device`, the control API or `auto_approve_device`),
  `authorization_code`, `code_verifier` and `code_challenge`; the client
  exchanges the code at `/oauth/token` with that verifier and
  `redirect_uri={base}/deviceauth/callback` (not checked).
"""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from codex_lb.constants import CODEX_OAUTH_CLIENT_ID

from .app import EMULATOR, RECORD
from .backend import simple_fault
from .emulator import DeviceAuth, Emulator, s256

routes = web.RouteTableDef()


def oauth_error(status: int, error: str, description: str) -> web.Response:
    """An RFC 6749 error body, the shape auth.openai.com answers with."""
    payload = {"error": error, "error_description": description}
    return web.json_response(payload, status=status)


def _fields(request: web.Request) -> dict[str, str]:
    body = request[RECORD].body
    if not isinstance(body, dict):
        return {}
    return {key: str(value) for key, value in body.items() if value is not None}


@routes.post("/oauth/token")
async def token(request: web.Request) -> web.Response:
    """Exchange a refresh token or an authorization code for new tokens."""
    emulator = request.app[EMULATOR]
    fields = _fields(request)
    if fields.get("client_id") != CODEX_OAUTH_CLIENT_ID:
        return oauth_error(401, "invalid_client", "Unknown or missing client_id.")

    grant = fields.get("grant_type")
    if grant == "refresh_token":
        return await _refresh(emulator, fields.get("refresh_token", ""))
    if grant == "authorization_code":
        return await _exchange_code(emulator, fields)
    return oauth_error(
        400, "unsupported_grant_type", f"Grant {grant!r} is not supported."
    )


async def _faulted(emulator: Emulator, email: str) -> web.Response | None:
    # Token faults act before the grant is spent, like a server that failed
    # before it got to the database.
    return await simple_fault(emulator.take_fault(email, "token"))


async def _refresh(emulator: Emulator, refresh_token: str) -> web.Response:
    grant = emulator.tokens.refresh.get(refresh_token)
    if grant is not None:
        faulted = await _faulted(emulator, grant.email)
        if faulted is not None:
            return faulted

    email, problem = emulator.tokens.redeem_refresh(refresh_token)
    if problem == "refresh_token_reused":
        return oauth_error(
            401,
            problem,
            "Your refresh token has already been used to generate a new access "
            "token. Please try signing in again.",
        )
    if email is None:
        return oauth_error(400, "invalid_grant", "Unknown refresh token.")

    account = emulator.account(email)
    issued = emulator.tokens.issue(account, emulator.clock.now())
    return web.json_response(issued.as_json())


async def _exchange_code(emulator: Emulator, fields: dict[str, str]) -> web.Response:
    pending = emulator.auth_codes.get(fields.get("code", ""))
    if pending is None or pending.used:
        return oauth_error(400, "invalid_grant", "Unknown or used authorization code.")
    faulted = await _faulted(emulator, pending.email)
    if faulted is not None:
        return faulted

    if s256(fields.get("code_verifier", "")) != pending.code_challenge:
        return oauth_error(400, "invalid_grant", "code_verifier does not match.")
    redirect = fields.get("redirect_uri")
    if pending.redirect_uri is not None and redirect != pending.redirect_uri:
        return oauth_error(400, "invalid_grant", "redirect_uri does not match.")

    pending.used = True
    account = emulator.account(pending.email)
    issued = emulator.tokens.issue(account, emulator.clock.now())
    return web.json_response(issued.as_json())


@routes.get("/oauth/authorize")
async def authorize(request: web.Request) -> web.Response:
    """Sign in at once and send the browser back with a code."""
    emulator = request.app[EMULATOR]
    query = request.query
    missing = [
        name
        for name in ("client_id", "redirect_uri", "code_challenge")
        if not query.get(name)
    ]
    if missing:
        return oauth_error(400, "invalid_request", f"Missing {', '.join(missing)}.")
    if query.get("response_type", "code") != "code":
        return oauth_error(400, "unsupported_response_type", "Only code is supported.")
    if query.get("code_challenge_method", "S256") != "S256":
        return oauth_error(
            400, "invalid_request", "Only S256 challenges are supported."
        )
    if query["client_id"] != CODEX_OAUTH_CLIENT_ID:
        return oauth_error(400, "invalid_client", "Unknown client_id.")
    if not emulator.accounts:
        return oauth_error(400, "access_denied", "The emulator has no accounts.")

    account = emulator.pick_login_account(query.get("login_hint"))
    redirect_uri = query["redirect_uri"]
    code = emulator.new_auth_code(account.email, query["code_challenge"], redirect_uri)

    # Keep any query the redirect URI already has; add code and state.
    parts = urlsplit(redirect_uri)
    params: dict[str, Any] = {"code": code}
    if "state" in query:
        params["state"] = query["state"]
    joined = "&".join(filter(None, [parts.query, urlencode(params)]))
    raise web.HTTPFound(urlunsplit(parts._replace(query=joined)))


def _user_code() -> str:
    alphabet = string.ascii_uppercase + string.digits
    half = ["".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(2)]
    return "-".join(half)


@routes.post("/api/accounts/deviceauth/usercode")
async def device_usercode(request: web.Request) -> web.Response:
    """Start a device login."""
    emulator = request.app[EMULATOR]
    if (
        _fields(request).get("client_id", CODEX_OAUTH_CLIENT_ID)
        != CODEX_OAUTH_CLIENT_ID
    ):
        return oauth_error(400, "invalid_client", "Unknown client_id.")
    if not emulator.accounts:
        return oauth_error(400, "access_denied", "The emulator has no accounts.")

    device = DeviceAuth("deviceauth_" + secrets.token_hex(12), _user_code())
    emulator.device_auths[device.device_auth_id] = device
    if emulator.auto_approve_device:
        emulator.approve_device(device.user_code)
    payload = {
        "device_auth_id": device.device_auth_id,
        "user_code": device.user_code,
        "interval": str(emulator.device_interval),
    }
    return web.json_response(payload)


@routes.post("/api/accounts/deviceauth/token")
async def device_token(request: web.Request) -> web.Response:
    """Poll a device login: 403 while pending, the code once approved."""
    emulator = request.app[EMULATOR]
    fields = _fields(request)
    device = emulator.device_auths.get(fields.get("device_auth_id", ""))
    if device is None or device.user_code != fields.get("user_code"):
        return oauth_error(
            400, "invalid_request", "Unknown device_auth_id or user_code."
        )

    if not device.authorization_code:
        payload = {"error": {"code": "deviceauth_authorization_pending"}}
        return web.json_response(payload, status=403)
    return web.json_response(
        {
            "authorization_code": device.authorization_code,
            "code_verifier": device.code_verifier,
            "code_challenge": device.code_challenge,
        }
    )


@routes.get("/codex/device")
async def device_page(request: web.Request) -> web.Response:
    """Where a person would type the user code; here, how to approve it."""
    text = (
        "codex-lb emulator: approve a device login with\n"
        '  POST /_sim/device/approve {"user_code": "XXXX-XXXX", "email": ...}\n'
    )
    return web.Response(text=text)
