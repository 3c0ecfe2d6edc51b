"""Logins started from the dashboard (re-auth or a new account), with progress.

The OAuth flows themselves (device code, or browser PKCE with a callback on
127.0.0.1:1455) belong to ``codex_lb.accounts.oauth``; this module starts one,
keeps its progress where the dashboard can poll it, and stores the account
it yields (a known ChatGPT account gets its new tokens and leaves
``reauth_required``).

A re-auth is for one account: signing in as another one stores nothing and
says so. A browser login holds the callback port until it ends, so it can be
cancelled, and a new browser login replaces one still waiting.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import attrs
import structlog

from codex_lb.accounts import AccountPool
from codex_lb.accounts.oauth import DEFAULT_CALLBACK_PORT, LoginError, begin_login
from codex_lb.store import NewAccount, Store

log = structlog.get_logger("codex_lb.web")

__all__ = [
    "MODES",
    "LoginError",
    "LoginFinished",
    "LoginFlow",
    "LoginFlows",
    "oauth_starter",
]

MODES = ("device", "browser")
# Flows kept for polling after they ended; older ones are forgotten.
FINISHED_FLOWS_KEPT = 50
# Logins waiting for the operator at once. Each holds a task that polls the
# issuer; an operator adds accounts one or two at a time.
MAX_WAITING_LOGINS = 8
ENDED = ("complete", "failed", "cancelled")


class PendingLogin(Protocol):
    """A login waiting for the operator: what to show, and its outcome."""

    @property
    def verification_url(self) -> str | None: ...
    @property
    def user_code(self) -> str | None: ...

    async def wait(self) -> NewAccount: ...
    async def close(self) -> None: ...


# (mode, login hint, callback port for a browser login) -> a started login
LoginStarter = Callable[[str, "str | None", int], Awaitable[PendingLogin]]


def oauth_starter(session: aiohttp.ClientSession, auth_base_url: str) -> LoginStarter:
    """Start logins with the accounts part's OAuth flows on ``auth_base_url``."""

    async def start(mode: str, login_hint: str | None, port: int) -> PendingLogin:
        return await begin_login(session, auth_base_url, mode, login_hint, port)

    return start


class LoginFinished(Exception):
    """A cancel for a login that has already ended."""


class TooManyLogins(Exception):
    """MAX_WAITING_LOGINS logins are already waiting."""


@attrs.define
class LoginFlow:
    """One login's progress as the dashboard polls it."""

    id: str
    mode: str
    account_id: str | None
    started_at: float
    status: str = "starting"  # starting, waiting, complete, failed, cancelled
    verification_url: str | None = None
    user_code: str | None = None
    email: str | None = None
    result_account_id: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class _Target:
    """The account a re-auth is for, as it was when the login started."""

    email: str
    chatgpt_account_id: str


class LoginFlows:
    """The logins in progress and the last few finished ones, by id.

    ``callback_port`` is where browser logins listen for their callback
    (1455, the port the Codex client is registered with; tests choose a
    free one).
    """

    def __init__(
        self,
        pool: AccountPool,
        store: Store,
        starter: LoginStarter,
        callback_port: int = DEFAULT_CALLBACK_PORT,
    ) -> None:
        self._pool = pool
        self._store = store
        self._starter = starter
        self.callback_port = callback_port
        self._flows: dict[str, LoginFlow] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: dict[str, str] = {}

    def get(self, flow_id: str) -> LoginFlow | None:
        return self._flows.get(flow_id)

    async def start(self, mode: str, account_id: str | None = None) -> LoginFlow:
        """Begin a login; for a re-auth, hint the account's email to the issuer.

        A browser login still waiting is cancelled first: it holds the
        callback port. Raises LoginError when the flow cannot start (issuer
        unreachable, the port taken by another program) and ValueError for
        an unknown mode.
        """
        if mode not in MODES:
            raise ValueError(f"login mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "device" and len(self._running) >= MAX_WAITING_LOGINS:
            raise TooManyLogins(
                f"{len(self._running)} logins are already waiting: finish or "
                "cancel one first"
            )
        account = self._pool.get(account_id) if account_id else None
        target = _Target(account.email, account.chatgpt_account_id) if account else None
        if mode == "browser":
            for older in list(self._flows.values()):
                if older.mode == "browser" and older.status not in ENDED:
                    await self._cancel(older, "replaced by a newer browser login")

        flow = LoginFlow(
            id="login_" + secrets.token_hex(8),
            mode=mode,
            account_id=account_id,
            started_at=self._pool.now(),
        )
        hint = target.email if target else None
        pending = await self._starter(mode, hint, self.callback_port)
        flow.verification_url = pending.verification_url
        flow.user_code = pending.user_code
        flow.status = "waiting"
        self._keep(flow)

        # The flow outlives this request: a named task, referenced until done.
        task = asyncio.create_task(
            self._finish(flow, pending, target), name=f"{flow.id}"
        )
        self._running[flow.id] = task
        task.add_done_callback(lambda _: self._running.pop(flow.id, None))
        log.info("login_started", flow=flow.id, mode=mode, account_id=account_id)
        return flow

    async def cancel(self, flow_id: str) -> LoginFlow | None:
        """Give up a login still waiting (a browser login stops listening).

        None for an unknown login; raises LoginFinished for one that ended.
        """
        flow = self._flows.get(flow_id)
        if flow is None:
            return None
        if flow.status in ENDED or flow.id not in self._running:
            raise LoginFinished(f"login {flow_id!r} has already ended ({flow.status})")
        await self._cancel(flow, "cancelled by the operator")
        return flow

    async def close(self) -> None:
        """Give up the logins still waiting (a browser login stops listening)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cancel(self, flow: LoginFlow, reason: str) -> None:
        task = self._running.get(flow.id)
        if task is None:
            return
        self._cancelled[flow.id] = reason
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _finish(
        self, flow: LoginFlow, pending: PendingLogin, target: _Target | None
    ) -> None:
        try:
            new = await pending.wait()
            if (
                target is not None
                and new.chatgpt_account_id != target.chatgpt_account_id
            ):
                self._signed_in_as_another(flow, new, target)
                return
            saved = await self._store.save_account(new)
            await self._pool.sync(force=True)
        except asyncio.CancelledError:
            await pending.close()
            reason = self._cancelled.pop(flow.id, None)
            if reason is None:
                flow.status, flow.error = "failed", "codex-lb is stopping"
                raise
            flow.status, flow.error = "cancelled", reason
            log.info("login_cancelled", flow=flow.id, reason=reason)
            return
        except Exception as exc:
            # LoginError messages are written for the operator; anything else
            # is shown by its type only, as it may carry a server's answer.
            error = str(exc) if isinstance(exc, LoginError) else type(exc).__name__
            flow.status, flow.error = "failed", error
            await pending.close()
            log.warning("login_failed", flow=flow.id, error=flow.error)
            return
        flow.result_account_id = saved.id
        flow.email, flow.status = new.email, "complete"
        log.info("login_complete", flow=flow.id, account_id=saved.id)

    def _signed_in_as_another(
        self, flow: LoginFlow, new: NewAccount, target: _Target
    ) -> None:
        flow.status, flow.email = "failed", new.email
        flow.error = (
            f"signed in as another account ({new.email}), not {target.email}: "
            f"nothing was stored; sign in as {target.email} to re-authenticate it"
        )
        log.warning("login_wrong_account", flow=flow.id, account_id=flow.account_id)

    def _keep(self, flow: LoginFlow) -> None:
        self._flows[flow.id] = flow
        finished = [f for f in self._flows.values() if f.status in ENDED]
        for old in finished[: max(0, len(finished) - FINISHED_FLOWS_KEPT)]:
            del self._flows[old.id]
