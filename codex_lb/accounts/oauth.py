"""Adding accounts by OAuth, the way the Codex CLI logs in.

Two flows, both against ``CODEX_LB_AUTH_BASE_URL`` and the Codex CLI's
OAuth client:

- browser: an authorization-code flow with PKCE (S256). A one-shot callback
  server on 127.0.0.1 (port 1455 by default, the one the Codex client is
  registered with) receives the code and refuses any callback whose
  ``state`` is not the one this login sent;
- device: the user types a short code on another device while codex-lb
  polls; the server hands out the code and its PKCE verifier once approved.

Either way the code is exchanged at ``/oauth/token`` and the tokens become
a :class:`NewAccount`, which the store adds or, for a known ChatGPT account,
uses to replace its tokens (clearing ``reauth_required``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
import structlog
from aiohttp import web

from codex_lb.accounts.identity import identity_from_tokens, token_expiry
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID
from codex_lb.store import NewAccount, TokenSet

log = structlog.get_logger("codex_lb.accounts")

DEFAULT_CALLBACK_PORT = 1455
CALLBACK_PATH = "/auth/callback"
SCOPE = "openid profile email offline_access"
BROWSER_TIMEOUT_SECONDS = 600.0
DEVICE_TIMEOUT_SECONDS = 900.0
# The device endpoint says how often to poll; never faster than this.
MIN_DEVICE_INTERVAL_SECONDS = 0.05
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


@attrs.frozen
class DeviceCode:
    """What the user needs to approve a device login."""

    user_code: str
    verification_url: str


# Browser flow


class CallbackServer:
    """The local page the browser is sent back to with the code.

    It answers only on 127.0.0.1 and only accepts the ``state`` it was made
    with; a mismatched or stray callback is refused and the login goes on
    waiting for the right one.
    """

    def __init__(self, state: str) -> None:
        self._state = state
        self._result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_get(CALLBACK_PATH, self._callback)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            raise LoginError(
                f"cannot listen on 127.0.0.1:{port} for the login callback "
                f"({exc.strerror}); is another login running? "
                "Choose another port with --callback-port"
            ) from exc
        self.port = int(self._runner.addresses[0][1])

    async def wait(self, timeout: float) -> str:
        """The authorization code, once the browser brings it."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError:
            raise LoginError(
                f"no login callback within {timeout:.0f} s: was the page opened?"
            ) from None

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _callback(self, request: web.Request) -> web.Response:
        query = request.query
        if not hmac.compare_digest(query.get("state", ""), self._state):
            log.warning("login_callback_refused", reason="state_mismatch")
            return _page(400, "This sign-in link is not the one codex-lb started.")
        if self._result.done():
            return _page(400, "This sign-in has already finished.")

        error = query.get("error")
        if error:
            description = query.get("error_description", "")
            self._result.set_exception(
                LoginError(f"the sign-in was refused: {error} {description}".strip())
            )
            return _page(400, f"Sign-in failed: {error}.")
        code = query.get("code")
        if not code:
            return _page(400, "The callback carries no authorization code.")
        self._result.set_result(code)
        return _page(200, "Signed in to codex-lb. You can close this tab.")


def _page(status: int, message: str) -> web.Response:
    html = f"<!doctype html><title>codex-lb login</title><p>{message}</p>\n"
    return web.Response(status=status, text=html, content_type="text/html")


def authorize_url(
    auth_base_url: str,
    redirect_uri: str,
    pkce: Pkce,
    state: str,
    login_hint: str | None = None,
) -> str:
    """The page to open in a browser to sign in, as the Codex CLI builds it."""
    params = {
        "response_type": "code",
        "client_id": CODEX_OAUTH_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": "codex_cli_rs",
    }
    if login_hint:
        params["login_hint"] = login_hint
    return f"{auth_base_url.rstrip('/')}/oauth/authorize?{urlencode(params)}"


class BrowserLogin:
    """A browser login in progress: open ``verification_url``, then ``wait``.

    Start it with :meth:`start`; the callback server listens until ``wait``
    returns or :meth:`close` is called.
    """

    user_code: str | None = None

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth_base_url: str,
        server: CallbackServer,
        pkce: Pkce,
        redirect_uri: str,
        verification_url: str,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._auth_base_url = auth_base_url
        self._server = server
        self._pkce = pkce
        self._redirect_uri = redirect_uri
        self.verification_url = verification_url
        self._timeout = timeout
        self._clock = clock

    @classmethod
    async def start(
        cls,
        session: aiohttp.ClientSession,
        auth_base_url: str,
        port: int = DEFAULT_CALLBACK_PORT,
        login_hint: str | None = None,
        timeout: float = BROWSER_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> BrowserLogin:
        """Listen for the callback and make the sign-in address."""
        pkce = Pkce.new()
        state = secrets.token_urlsafe(32)
        server = CallbackServer(state)
        await server.start(port)
        # The Codex client is registered with "localhost", not the address.
        redirect_uri = f"http://localhost:{server.port}{CALLBACK_PATH}"
        url = authorize_url(auth_base_url, redirect_uri, pkce, state, login_hint)
        return cls(
            session, auth_base_url, server, pkce, redirect_uri, url, timeout, clock
        )

    @property
    def callback_port(self) -> int:
        return self._server.port

    async def wait(self) -> NewAccount:
        """The account, once the browser came back. Raises LoginError."""
        try:
            code = await self._server.wait(self._timeout)
        finally:
            await self._server.close()
        payload = await exchange_code(
            self._session,
            self._auth_base_url,
            code,
            self._pkce.verifier,
            self._redirect_uri,
        )
        return account_from_token_response(payload, self._clock())

    async def close(self) -> None:
        """Give up: stop listening for the callback."""
        await self._server.close()


async def browser_login(
    session: aiohttp.ClientSession,
    auth_base_url: str,
    open_url: Callable[[str], None],
    port: int = DEFAULT_CALLBACK_PORT,
    timeout: float = BROWSER_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> NewAccount:
    """Sign in through a browser; ``open_url`` shows the user the page.

    Raises LoginError.
    """
    login = await BrowserLogin.start(
        session, auth_base_url, port, timeout=timeout, clock=clock
    )
    try:
        open_url(login.verification_url)
    except BaseException:
        await login.close()
        raise
    return await login.wait()


# Device flow


class DeviceLogin:
    """A device login in progress: show ``user_code`` and
    ``verification_url``, then ``wait`` while the user approves it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth_base_url: str,
        device_auth_id: str,
        user_code: str,
        interval: float,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._base = auth_base_url.rstrip("/")
        self._device_auth_id = device_auth_id
        self.user_code: str | None = user_code
        self.verification_url = self._base + "/codex/device"
        self._interval = interval
        self._timeout = timeout
        self._clock = clock

    @classmethod
    async def start(
        cls,
        session: aiohttp.ClientSession,
        auth_base_url: str,
        timeout: float = DEVICE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> DeviceLogin:
        """Ask for a user code. Raises LoginError."""
        started = await _post_json(
            session,
            auth_base_url.rstrip("/") + "/api/accounts/deviceauth/usercode",
            {"client_id": CODEX_OAUTH_CLIENT_ID},
            "start a device login",
        )
        device_id = started.get("device_auth_id")
        user_code = started.get("user_code") or started.get("usercode")
        if not isinstance(device_id, str) or not isinstance(user_code, str):
            raise LoginError(
                "the device login answer lacks device_auth_id or user_code"
            )
        interval = _seconds(started.get("interval"), default=5.0)
        return cls(
            session, auth_base_url, device_id, user_code, interval, timeout, clock
        )

    async def wait(self) -> NewAccount:
        """Poll until the code is approved, then log in. Raises LoginError."""
        # 403 and 404 mean "not approved yet".
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        poll = {"device_auth_id": self._device_auth_id, "user_code": self.user_code}
        while True:
            status, answer = await _post(
                self._session, self._base + "/api/accounts/deviceauth/token", poll
            )
            if status == 200:
                break
            if status not in (403, 404):
                raise LoginError(
                    f"the device login failed: HTTP {status} {_error_text(answer)}"
                )
            if loop.time() + self._interval > deadline:
                raise LoginError(
                    f"the device code was not approved within {self._timeout:.0f} s"
                )
            await asyncio.sleep(self._interval)

        code, verifier = answer.get("authorization_code"), answer.get("code_verifier")
        if not isinstance(code, str) or not isinstance(verifier, str):
            raise LoginError("the approved device login lacks a code or its verifier")
        payload = await exchange_code(
            self._session,
            self._base,
            code,
            verifier,
            self._base + "/deviceauth/callback",
        )
        return account_from_token_response(payload, self._clock())

    async def close(self) -> None:
        """Nothing listens for a device login; here for symmetry."""


async def device_login(
    session: aiohttp.ClientSession,
    auth_base_url: str,
    show_code: Callable[[DeviceCode], None],
    timeout: float = DEVICE_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> NewAccount:
    """Sign in with a code typed on another device. Raises LoginError."""
    login = await DeviceLogin.start(session, auth_base_url, timeout, clock)
    assert login.user_code is not None
    show_code(DeviceCode(login.user_code, login.verification_url))
    return await login.wait()


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


# Shared


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
            status, text = response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoginError(f"cannot reach {url}: {type(exc).__name__}") from exc
    payload = _json_object(text)
    if status != 200:
        raise LoginError(
            f"the token exchange failed: HTTP {status} {_error_text(payload)}"
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


async def _post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    try:
        async with session.post(url, json=body, timeout=HTTP_TIMEOUT) as response:
            return response.status, _json_object(await response.text())
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoginError(f"cannot reach {url}: {type(exc).__name__}") from exc


async def _post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], what: str
) -> dict[str, Any]:
    status, payload = await _post(session, url, body)
    if status != 200:
        raise LoginError(f"cannot {what}: HTTP {status} {_error_text(payload)}")
    return payload


def _seconds(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return max(MIN_DEVICE_INTERVAL_SECONDS, seconds)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_text(payload: dict[str, Any]) -> str:
    """The error code of an answer, never its other fields (they may echo
    secrets)."""
    error = payload.get("error")
    if isinstance(error, dict):
        error = error.get("code") or error.get("type")
    return str(error) if error else "(no error code)"
