"""The `Emulator`: accounts, tokens, faults and the server that exposes them.

Tests drive it in-process (`await emu.start()` inside their event loop) and
reach into it directly: fill a window, queue a fault, revoke a token, jump
the clock, read `emu.requests` to see exactly what the upstream received.
The command line in `__main__` runs the same object as a standalone server.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import attrs
from aiohttp import web

from codex_lb.constants import BUILTIN_PRICES

from .faults import Fault, FaultRoute, check_route
from .state import SimAccount, SimClock, Window
from .tokens import DEFAULT_ACCESS_TOKEN_TTL, TokenBook

# Models served when none are configured: every exact name of the price
# table. A name that is not served gets 400 `model_not_found`.
DEFAULT_MODELS: Final = tuple(name for name in BUILTIN_PRICES if not name.endswith("*"))
DEFAULT_EVENT_DELAY: Final = 0.005
DEFAULT_TEXT_EVENTS: Final = 4


@attrs.frozen
class RecordedRequest:
    """One request as the emulator received it (body already decompressed).

    Header names are lower-cased; `body` is the parsed JSON or form, or None.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@attrs.define
class PendingCode:
    """An authorization code waiting to be exchanged for tokens."""

    email: str
    code_challenge: str
    redirect_uri: str | None
    used: bool = False


@attrs.define
class DeviceAuth:
    """A device login between `usercode` and the user's approval."""

    device_auth_id: str
    user_code: str
    email: str | None = None
    authorization_code: str = ""
    code_verifier: str = ""
    code_challenge: str = ""


def _window_row(window: Window | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "used_percent": window.used_percent,
        "window_seconds": window.seconds,
        "dollars": window.dollars,
        "reset_at": int(window.reset_at),
    }


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Emulator:
    """An emulated ChatGPT backend and OAuth server for a set of accounts."""

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        *,
        clock_speed: float = 1.0,
        event_delay: float = DEFAULT_EVENT_DELAY,
        text_events: int = DEFAULT_TEXT_EVENTS,
        access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL,
        models: Iterable[str] = DEFAULT_MODELS,
        device_interval: int = 1,
        auto_approve_device: bool = False,
        whole_percents: bool = False,
    ) -> None:
        self.clock = SimClock(speed=clock_speed)
        self.tokens = TokenBook(access_ttl=access_token_ttl)
        self.event_delay = event_delay
        self.text_events = text_events
        self.models = list(models)
        self.device_interval = device_interval
        self.auto_approve_device = auto_approve_device
        # Report used percents as whole numbers, as the real upstream does
        # (six decimals otherwise, which tests find easier to check).
        self.whole_percents = whole_percents

        self.accounts: dict[str, SimAccount] = {}
        self.requests: list[RecordedRequest] = []
        self.faults: dict[tuple[str, FaultRoute], deque[Fault]] = {}
        self.cache_keys: dict[tuple[str, str], int] = {}
        self.auth_codes: dict[str, PendingCode] = {}
        self.device_auths: dict[str, DeviceAuth] = {}
        self.logged_in: set[str] = set()
        self.login_email: str | None = None

        for account in accounts:
            self.add_account(account)

        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifetime --------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on `host:port` (0 picks a free port) and set `base_url`."""
        from .app import build_app

        # aiohttp would inflate gzip itself and refuse zstd without an extra
        # package; the app decodes every encoding on its own instead. A
        # handler whose client left (a stall, a slow answer) is cancelled,
        # and closing waits a moment, not a minute, for the rest.
        self._runner = web.AppRunner(
            build_app(self),
            access_log=None,
            auto_decompress=False,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()

        # The runner knows the port the OS picked when 0 was asked for.
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def upstream_base_url(self) -> str:
        """What codex-lb's `CODEX_LB_UPSTREAM_BASE_URL` should be."""
        return self.base_url + "/backend-api"

    @property
    def auth_base_url(self) -> str:
        """What codex-lb's `CODEX_LB_AUTH_BASE_URL` should be."""
        return self.base_url

    # -- accounts and tokens --------------------------------------------

    def add_account(self, account: SimAccount) -> SimAccount:
        """Register an account, open its windows now and issue its tokens."""
        if account.email in self.accounts:
            raise ValueError(f"account {account.email!r} already exists")
        now = self.clock.now()
        account.start_windows(now)
        self.tokens.issue(account, now)
        self.accounts[account.email] = account
        return account

    def account(self, which: str | SimAccount) -> SimAccount:
        """Look an account up by email (or pass one through)."""
        email = which.email if isinstance(which, SimAccount) else which
        try:
            return self.accounts[email]
        except KeyError:
            raise KeyError(f"no emulated account {email!r}") from None

    def by_account_id(self, chatgpt_account_id: str) -> SimAccount | None:
        for account in self.accounts.values():
            if account.chatgpt_account_id == chatgpt_account_id:
                return account
        return None

    def set_usage(
        self,
        which: str | SimAccount,
        primary: float | None = None,
        secondary: float | None = None,
    ) -> None:
        """Set used percents; for a weekly-only plan `primary` is ignored."""
        account = self.account(which)
        account.roll(self.clock.now())
        if primary is not None and account.primary is not None:
            account.primary.used_percent = primary
        if secondary is not None:
            account.secondary.used_percent = secondary

    def revoke_access_token(
        self, which: str | SimAccount, token: str | None = None
    ) -> None:
        """Make the account's current (or the given) access token fail with 401."""
        self.tokens.revoke_access(token or self.account(which).access_token)

    def expire_access_token(
        self, which: str | SimAccount, token: str | None = None
    ) -> None:
        """Make the account's current (or the given) access token expire now."""
        token = token or self.account(which).access_token
        self.tokens.expire_access(token, self.clock.now())

    # -- faults ----------------------------------------------------------

    def add_fault(
        self, which: str | SimAccount, fault: Fault, route: str = "responses"
    ) -> None:
        """Queue `fault` for the next request of that account to `route`."""
        checked = check_route(route, fault)
        email = self.account(which).email
        self.faults.setdefault((email, checked), deque()).append(fault)

    def take_fault(self, email: str, route: FaultRoute) -> Fault | None:
        queue = self.faults.get((email, route))
        return queue.popleft() if queue else None

    # -- OAuth -----------------------------------------------------------

    def pick_login_account(self, hint: str | None = None) -> SimAccount:
        """The account an interactive login signs into.

        In order: a `login_hint` naming an account, `login_email`, the first
        account not logged in yet, the first account.
        """
        for email in (hint, self.login_email):
            if email and email in self.accounts:
                return self.accounts[email]
        for email, account in self.accounts.items():
            if email not in self.logged_in:
                return account
        return next(iter(self.accounts.values()))

    def new_auth_code(
        self, email: str, code_challenge: str, redirect_uri: str | None
    ) -> str:
        code = "ac_" + secrets.token_urlsafe(18)
        self.auth_codes[code] = PendingCode(email, code_challenge, redirect_uri)
        self.logged_in.add(email)
        return code

    def approve_device(self, user_code: str, email: str | None = None) -> None:
        """Approve a pending device login as `email` (default: next login)."""
        for device in self.device_auths.values():
            if device.user_code == user_code:
                break
        else:
            raise KeyError(f"no pending device login with code {user_code!r}")

        # The server, not the client, holds the PKCE pair in this flow and
        # hands both halves out with the code, as the real device flow does.
        account = self.pick_login_account(email)
        device.email = account.email
        device.code_verifier = secrets.token_urlsafe(48)
        device.code_challenge = s256(device.code_verifier)
        device.authorization_code = self.new_auth_code(
            account.email, device.code_challenge, None
        )

    # -- files and views -------------------------------------------------

    def auth_json(self, which: str | SimAccount) -> dict[str, Any]:
        """The account's current tokens as a Codex CLI `auth.json`."""
        account = self.account(which)
        stamp = datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC)
        return {
            "OPENAI_API_KEY": None,
            "tokens": {
                "id_token": account.id_token,
                "access_token": account.access_token,
                "refresh_token": account.refresh_token,
                "account_id": account.chatgpt_account_id,
            },
            "last_refresh": stamp.isoformat().replace("+00:00", "Z"),
        }

    def write_auth_files(self, directory: str | Path) -> list[Path]:
        """Write `<dir>/<email>/auth.json` for every account (mode 0600)."""
        root = Path(directory)
        paths = []
        for email in self.accounts:
            path = root / email / "auth.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.auth_json(email), indent=2) + "\n")
            path.chmod(0o600)
            paths.append(path)
        return paths

    def snapshot(self) -> list[dict[str, Any]]:
        """Every account with its windows, as the control API lists them.

        Here `primary` is always the 5 h window (null for weekly-only plans),
        whatever slot the usage endpoint reports it in.
        """
        now = self.clock.now()
        rows = []
        for account in self.accounts.values():
            account.roll(now)
            row: dict[str, Any] = {
                "email": account.email,
                "chatgpt_account_id": account.chatgpt_account_id,
                "plan": account.plan,
                "requests_served": account.requests_served,
                "access_token": account.access_token,
            }
            row["primary"] = _window_row(account.primary)
            row["secondary"] = _window_row(account.secondary)
            rows.append(row)
        return rows
