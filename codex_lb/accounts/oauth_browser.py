"""The browser login: an authorization-code flow with PKCE (S256).

A one-shot callback server on 127.0.0.1 (port 1455 by default, the one the
Codex client is registered with) receives the code and refuses any callback
whose ``state`` is not the one this login sent.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlencode

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts.oauth_exchange import (
    LoginError,
    Pkce,
    account_from_token_response,
    exchange_code,
)
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID
from codex_lb.store import NewAccount

log = structlog.get_logger("codex_lb.accounts")

DEFAULT_CALLBACK_PORT = 1455
CALLBACK_PATH = "/auth/callback"
SCOPE = "openid profile email offline_access"
BROWSER_TIMEOUT_SECONDS = 600.0


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
