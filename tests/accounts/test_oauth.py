"""OAuth logins against the emulator, the browser played by an HTTP client."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from codex_lb.accounts import ACTIVE, REAUTH_REQUIRED
from codex_lb.accounts.oauth import (
    DEFAULT_CALLBACK_PORT,
    BrowserLogin,
    DeviceLogin,
    LoginError,
    begin_login,
)
from codex_lb.cli import _parser
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID
from codex_lb.sim import Emulator, SimAccount
from codex_lb.sim.emulator import s256
from codex_lb.store import Store, open_store
from tests.conftest import LB


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """a@ (plus) and b@ (pro); device polls every 0 s (floored by codex-lb)."""
    emu = Emulator(
        [SimAccount.make("a@example.com"), SimAccount.make("b@example.com", "pro")],
        event_delay=0.0,
        device_interval=0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def play_browser(url: str) -> tuple[int, str]:
    """Open ``url`` as a browser would, following redirects to the end."""
    async with aiohttp.ClientSession() as browser, browser.get(url) as page:
        return page.status, await page.text()


def requests_to(emu: Emulator, path: str) -> list[Any]:
    return [r for r in emu.requests if r.path == path]


class TestBrowserLogin:
    async def test_pkce_login_yields_the_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Authorize, come back with the code, exchange it with the verifier."""
        login = await BrowserLogin.start(http, emu.auth_base_url, port=0)

        status, page = await play_browser(login.verification_url)
        new = await login.wait()

        sim = emu.account("a@example.com")
        assert (status, "Signed in" in page) == (200, True)
        assert (new.email, new.chatgpt_account_id, new.plan) == (
            "a@example.com",
            sim.chatgpt_account_id,
            "plus",
        )
        assert new.tokens.access_token == sim.access_token
        assert new.tokens.refresh_token == sim.refresh_token
        assert new.tokens.id_token == sim.id_token

        (authorize,) = requests_to(emu, "/oauth/authorize")
        redirect = f"http://localhost:{login.callback_port}/auth/callback"
        assert authorize.query["client_id"] == CODEX_OAUTH_CLIENT_ID
        assert authorize.query["redirect_uri"] == redirect
        assert authorize.query["code_challenge_method"] == "S256"
        (exchange,) = requests_to(emu, "/oauth/token")
        assert exchange.body["grant_type"] == "authorization_code"
        assert exchange.body["redirect_uri"] == redirect
        assert (
            s256(exchange.body["code_verifier"]) == (authorize.query["code_challenge"])
        )

    async def test_callback_with_another_state_is_refused(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A callback not carrying this login's state gets 400; login goes on."""
        login = await BrowserLogin.start(http, emu.auth_base_url, port=0)
        callback = f"http://127.0.0.1:{login.callback_port}/auth/callback"

        forged = await play_browser(callback + "?code=ac_forged&state=guess")
        missing = await play_browser(callback + "?code=ac_forged")
        status, _ = await play_browser(login.verification_url)
        new = await login.wait()

        assert forged[0] == missing[0] == 400
        assert status == 200
        assert new.email == "a@example.com"
        (exchange,) = requests_to(emu, "/oauth/token")
        assert exchange.body["code"] != "ac_forged"

    async def test_refusal_at_the_authorize_page_fails_the_login(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """An ``error`` callback with the right state ends the login."""
        login = await BrowserLogin.start(http, emu.auth_base_url, port=0)
        state = parse_qs(urlsplit(login.verification_url).query)["state"][0]
        callback = f"http://127.0.0.1:{login.callback_port}/auth/callback"

        status, _ = await play_browser(f"{callback}?error=access_denied&state={state}")

        assert status == 400
        with pytest.raises(LoginError, match="access_denied"):
            await login.wait()

    async def test_login_hint_picks_the_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """begin_login passes a hint, as the dashboard's re-login does."""
        login = await begin_login(
            http, emu.auth_base_url, "browser", "b@example.com", callback_port=0
        )

        await play_browser(login.verification_url)
        new = await login.wait()

        assert (new.email, new.plan) == ("b@example.com", "pro")

    async def test_busy_port_is_a_clear_error(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A callback port in use names the port and the option to change it."""
        first = await BrowserLogin.start(http, emu.auth_base_url, port=0)
        try:
            with pytest.raises(LoginError, match=r"127\.0\.0\.1:\d+.*--callback-port"):
                await BrowserLogin.start(
                    http, emu.auth_base_url, port=first.callback_port
                )
        finally:
            await first.close()

    def test_callback_port_defaults_to_1455(self) -> None:
        """The Codex client's registered port is the default."""
        args = _parser().parse_args(["login"])

        assert DEFAULT_CALLBACK_PORT == 1455
        assert (args.callback_port, args.device) == (1455, False)


class TestDeviceLogin:
    async def test_device_code_login_after_approval(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Pending polls get 403 until approval; then the code is exchanged."""
        login = await DeviceLogin.start(http, emu.auth_base_url)
        waiting = asyncio.create_task(login.wait())
        while not requests_to(emu, "/api/accounts/deviceauth/token"):
            await asyncio.sleep(0.01)

        assert login.user_code is not None
        emu.approve_device(login.user_code, "b@example.com")
        new = await asyncio.wait_for(waiting, 5)

        sim = emu.account("b@example.com")
        assert login.verification_url == emu.auth_base_url + "/codex/device"
        assert (new.email, new.plan) == ("b@example.com", "pro")
        assert new.tokens.refresh_token == sim.refresh_token
        (exchange,) = requests_to(emu, "/oauth/token")
        assert exchange.body["grant_type"] == "authorization_code"
        assert exchange.body["redirect_uri"] == (
            emu.auth_base_url + "/deviceauth/callback"
        )

    async def test_unapproved_code_times_out(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A code nobody approves ends the login with a clear error."""
        login = await DeviceLogin.start(http, emu.auth_base_url, timeout=0.2)

        with pytest.raises(LoginError, match="not approved within"):
            await login.wait()

    async def test_an_auth_server_that_is_down_is_named_with_the_reason(
        self, http: aiohttp.ClientSession
    ) -> None:
        """Nothing listens on the port: the URL and the system's reason."""
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]

        with pytest.raises(LoginError) as caught:
            await DeviceLogin.start(http, f"http://127.0.0.1:{port}", timeout=5)

        message = str(caught.value)
        assert message.startswith(f"cannot reach http://127.0.0.1:{port}/")
        assert "cannot connect (" in message


async def _run_login(
    args: list[str], data_dir: Path, emu: Emulator, respond: Any
) -> tuple[int, str, str]:
    """Run ``python -m codex_lb login ARGS``; ``respond`` acts on its output."""
    env = {
        **os.environ,
        "CODEX_LB_DATA_DIR": str(data_dir),
        "CODEX_LB_AUTH_BASE_URL": emu.auth_base_url,
        "CODEX_LB_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "codex_lb",
        "login",
        *args,
        env=env,
        cwd=data_dir.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    seen = ""
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        seen += line
        if await respond(seen) or not line:
            break
    rest, err = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode or 0, seen + rest.decode(), err.decode()


class TestLoginCommand:
    async def test_browser_login_adds_an_account(
        self, emu: Emulator, tmp_path: Path
    ) -> None:
        """`login --callback-port 0 --no-browser`: open the printed address."""

        async def browse(output: str) -> bool:
            found = re.search(r"(http://\S+/oauth/authorize\S+)", output)
            if found:
                status, _ = await play_browser(found.group(1))
                assert status == 200
            return found is not None

        code, out, err = await _run_login(
            ["--callback-port", "0", "--no-browser"], tmp_path / "data", emu, browse
        )

        assert code == 0, err
        store = await open_store(tmp_path / "data")
        try:
            (row,) = await store.list_accounts()
        finally:
            await store.close()
        assert (row.email, row.plan, row.status) == ("a@example.com", "plus", ACTIVE)
        assert row.tokens.refresh_token == emu.account("a@example.com").refresh_token
        assert f"added {row.id} (a@example.com, plus)" in out

    async def test_device_login_adds_an_account(
        self, emu: Emulator, tmp_path: Path
    ) -> None:
        """`login --device` prints a code; approving it adds the account."""

        async def approve(output: str) -> bool:
            found = re.search(r"enter the code (\S+)", output)
            if found:
                emu.approve_device(found.group(1), "b@example.com")
            return found is not None

        code, out, err = await _run_login(["--device"], tmp_path / "data", emu, approve)

        assert code == 0, err
        assert emu.auth_base_url + "/codex/device" in out
        store = await open_store(tmp_path / "data")
        try:
            (row,) = await store.list_accounts()
        finally:
            await store.close()
        assert (row.email, row.plan) == ("b@example.com", "pro")
        assert f"added {row.id} (b@example.com, pro)" in out

    async def test_relogin_clears_reauth_on_a_running_server(
        self, make_lb: Any, emu: Emulator, tmp_path: Path
    ) -> None:
        """Re-login replaces a dead account's tokens; the server uses it again."""
        lb: LB = await make_lb(emu)
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        await lb.pool.require_reauth(a, "refresh_token_reused")
        await lb.pool.pause(lb.pool.get(lb.ids["b@example.com"]))  # type: ignore[arg-type]
        emu.login_email = "a@example.com"

        async def browse(output: str) -> bool:
            found = re.search(r"(http://\S+/oauth/authorize\S+)", output)
            if found:
                await play_browser(found.group(1))
            return found is not None

        code, out, err = await _run_login(
            ["--callback-port", "0", "--no-browser"], tmp_path / "lb-data", emu, browse
        )
        deadline = asyncio.get_running_loop().time() + 2.0
        while a.status == REAUTH_REQUIRED:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        response = await lb.client.post(
            "/backend-api/codex/responses",
            json={"model": "gpt-5", "input": "hi", "stream": False},
        )

        assert code == 0, err
        assert (
            f"replaced the tokens of {a.id} (a@example.com) and cleared "
            "reauth_required" in out
        )
        assert (a.status, a.status_reason) == (ACTIVE, None)
        assert a.tokens.access_token == emu.account("a@example.com").access_token
        assert response.status == 200
        store: Store = lb.store
        assert len(await store.list_accounts()) == 2
