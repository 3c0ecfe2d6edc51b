"""Adding accounts by OAuth, the way the Codex CLI logs in.

Two flows, both against ``CODEX_LB_AUTH_BASE_URL`` and the Codex CLI's
OAuth client:

- browser (``oauth_browser``): an authorization-code flow with PKCE (S256)
  and a one-shot callback server on 127.0.0.1 (port 1455 by default);
- device (``oauth_device``): the user types a short code on another device
  while codex-lb polls.

Either way the code is exchanged at ``/oauth/token`` (``oauth_exchange``)
and the tokens become a :class:`NewAccount`, which the store adds or, for a
known ChatGPT account, uses to replace its tokens (clearing
``reauth_required``). This module gathers the flows for their callers.
"""

from __future__ import annotations

import aiohttp

from codex_lb.accounts.oauth_browser import (
    BROWSER_TIMEOUT_SECONDS,
    CALLBACK_PATH,
    DEFAULT_CALLBACK_PORT,
    BrowserLogin,
    CallbackServer,
    authorize_url,
    browser_login,
)
from codex_lb.accounts.oauth_device import (
    DEVICE_TIMEOUT_SECONDS,
    DeviceCode,
    DeviceLogin,
    device_login,
)
from codex_lb.accounts.oauth_exchange import (
    LoginError,
    Pkce,
    account_from_token_response,
    exchange_code,
)

__all__ = [
    "BROWSER_TIMEOUT_SECONDS",
    "CALLBACK_PATH",
    "DEFAULT_CALLBACK_PORT",
    "DEVICE_TIMEOUT_SECONDS",
    "BrowserLogin",
    "CallbackServer",
    "DeviceCode",
    "DeviceLogin",
    "LoginError",
    "Pkce",
    "account_from_token_response",
    "authorize_url",
    "begin_login",
    "browser_login",
    "device_login",
    "exchange_code",
]


async def begin_login(
    session: aiohttp.ClientSession,
    auth_base_url: str,
    mode: str,
    login_hint: str | None = None,
    callback_port: int = DEFAULT_CALLBACK_PORT,
) -> BrowserLogin | DeviceLogin:
    """Start a login of ``mode`` (``browser`` or ``device``) for a caller that
    shows its address (and code) and later awaits ``wait()``, such as the
    dashboard. Raises LoginError; ValueError for an unknown mode."""
    if mode == "browser":
        return await BrowserLogin.start(
            session, auth_base_url, callback_port, login_hint=login_hint
        )
    if mode == "device":
        return await DeviceLogin.start(session, auth_base_url)
    raise ValueError(f"unknown login mode {mode!r}: expected 'browser' or 'device'")
