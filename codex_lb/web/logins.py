"""Logins started from the dashboard (re-auth or a new account), with progress.

The OAuth flows themselves (device code, or browser PKCE with a callback on
127.0.0.1:1455) belong to ``codex_lb.accounts.oauth``; this module starts one,
keeps its progress where the dashboard can poll it, and stores the account
it yields (a known ChatGPT account gets its new tokens and leaves
``reauth_required``).
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
from codex_lb.accounts.oauth import LoginError, begin_login
from codex_lb.store import NewAccount, Store

log = structlog.get_logger("codex_lb.web")

__all__ = ["MODES", "LoginError", "LoginFlow", "LoginFlows", "oauth_starter"]

MODES = ("device", "browser")
# Flows kept for polling after they ended; older ones are forgotten.
FINISHED_FLOWS_KEPT = 50


class PendingLogin(Protocol):
    """A login waiting for the operator: what to show, and its outcome."""

    @property
    def verification_url(self) -> str | None: ...
    @property
    def user_code(self) -> str | None: ...

    async def wait(self) -> NewAccount: ...
    async def close(self) -> None: ...


LoginStarter = Callable[[str, "str | None"], Awaitable[PendingLogin]]


def oauth_starter(session: aiohttp.ClientSession, auth_base_url: str) -> LoginStarter:
    """Start logins with the accounts part's OAuth flows on ``auth_base_url``."""

    async def start(mode: str, login_hint: str | None) -> PendingLogin:
        return await begin_login(session, auth_base_url, mode, login_hint)

    return start


@attrs.define
class LoginFlow:
    """One login's progress as the dashboard polls it."""

    id: str
    mode: str
    account_id: str | None
    started_at: float
    status: str = "starting"  # starting, waiting, complete, failed
    verification_url: str | None = None
    user_code: str | None = None
    email: str | None = None
    result_account_id: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class LoginFlows:
    """The logins in progress and the last few finished ones, by id."""

    def __init__(
        self,
        pool: AccountPool,
        store: Store,
        starter: LoginStarter,
    ) -> None:
        self._pool = pool
        self._store = store
        self._starter = starter
        self._flows: dict[str, LoginFlow] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, flow_id: str) -> LoginFlow | None:
        return self._flows.get(flow_id)

    async def start(self, mode: str, account_id: str | None = None) -> LoginFlow:
        """Begin a login; for a re-auth, hint the account's email to the issuer.

        Raises LoginError when the flow cannot start (issuer unreachable, the
        callback port taken) and ValueError for an unknown mode.
        """
        if mode not in MODES:
            raise ValueError(f"login mode {mode!r} is not one of {', '.join(MODES)}")
        account = self._pool.get(account_id) if account_id else None
        flow = LoginFlow(
            id="login_" + secrets.token_hex(8),
            mode=mode,
            account_id=account_id,
            started_at=self._pool.now(),
        )
        pending = await self._starter(mode, account.email if account else None)
        flow.verification_url = pending.verification_url
        flow.user_code = pending.user_code
        flow.status = "waiting"
        self._keep(flow)

        # The flow outlives this request: a named task, referenced until done.
        task = asyncio.create_task(self._finish(flow, pending), name=f"{flow.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("login_started", flow=flow.id, mode=mode, account_id=account_id)
        return flow

    async def close(self) -> None:
        """Give up the logins still waiting (a browser login stops listening)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _finish(self, flow: LoginFlow, pending: PendingLogin) -> None:
        try:
            new = await pending.wait()
            flow.result_account_id = await self._store.add_account(new)
            await self._pool.sync(force=True)
        except asyncio.CancelledError:
            flow.status, flow.error = "failed", "codex-lb is stopping"
            await pending.close()
            raise
        except Exception as exc:
            # LoginError messages are written for the operator; anything else
            # is shown by its type only, as it may carry a server's answer.
            error = str(exc) if isinstance(exc, LoginError) else type(exc).__name__
            flow.status, flow.error = "failed", error
            await pending.close()
            log.warning("login_failed", flow=flow.id, error=flow.error)
            return
        flow.email, flow.status = new.email, "complete"
        log.info("login_complete", flow=flow.id, account_id=flow.result_account_id)

    def _keep(self, flow: LoginFlow) -> None:
        self._flows[flow.id] = flow
        finished = [
            f for f in self._flows.values() if f.status in ("complete", "failed")
        ]
        for old in finished[: max(0, len(finished) - FINISHED_FLOWS_KEPT)]:
            del self._flows[old.id]
