"""The device login: the user types a short code on another device.

codex-lb asks the OAuth server for a code, shows it, and polls while the
user approves it; the server then hands out an authorization code and its
PKCE verifier, which are exchanged for tokens as in the browser flow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

from codex_lb.accounts.oauth_exchange import (
    LoginError,
    account_from_token_response,
    error_text,
    exchange_code,
    post_json,
)
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID
from codex_lb.store import NewAccount

DEVICE_TIMEOUT_SECONDS = 900.0
# The device endpoint says how often to poll; never faster than this.
MIN_DEVICE_INTERVAL_SECONDS = 0.05


@attrs.frozen
class DeviceCode:
    """What the user needs to approve a device login."""

    user_code: str
    verification_url: str


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
        status, started = await post_json(
            session,
            auth_base_url.rstrip("/") + "/api/accounts/deviceauth/usercode",
            {"client_id": CODEX_OAUTH_CLIENT_ID},
        )
        if status != 200:
            raise LoginError(
                f"cannot start a device login: HTTP {status} {error_text(started)}"
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
            status, answer = await post_json(
                self._session, self._base + "/api/accounts/deviceauth/token", poll
            )
            if status == 200:
                break
            if status not in (403, 404):
                raise LoginError(
                    f"the device login failed: HTTP {status} {error_text(answer)}"
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


def _seconds(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return max(MIN_DEVICE_INTERVAL_SECONDS, seconds)
