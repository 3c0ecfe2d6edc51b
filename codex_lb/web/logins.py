"""Logins started from the dashboard (re-auth or a new account), with progress.

The OAuth flows themselves (device code, or browser PKCE with a callback on
127.0.0.1:1455) belong to the accounts part; this module starts one through
:func:`begin_oauth_login`, keeps its progress where the dashboard can poll
it, and stores the account it yields.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import structlog

from codex_lb.accounts import AccountPool
from codex_lb.store import NewAccount, Store

log = structlog.get_logger("codex_lb.web")

MODES = ("device", "browser")
# Flows kept for polling after they ended; older ones are forgotten.
FINISHED_FLOWS_KEPT = 50


class LoginUnavailable(RuntimeError):
    """No OAuth login can be started in this build or configuration."""


class PendingLogin(Protocol):
    """A login waiting for the operator: what to show, and its outcome."""

    verification_url: str | None
    user_code: str | None

    async def wait(self) -> NewAccount: ...


LoginStarter = Callable[[str, "str | None"], Awaitable[PendingLogin]]


async def begin_oauth_login(mode: str, login_hint: str | None) -> PendingLogin:
    """Start an OAuth login of the accounts part (device code or browser).

    Known shortcoming: the OAuth flows of ``codex_lb.accounts.oauth`` were
    being written beside the dashboard; until that module exposes a way to
    start a flow and await its tokens, this raises :class:`LoginUnavailable`
    and the dashboard says so. Wiring it is a change to this function only.
    """
    raise LoginUnavailable(
        f"the {mode} login flow is not available in this build yet: "
        "use `python -m codex_lb login` or import an auth.json"
    )


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
        starter: LoginStarter = begin_oauth_login,
    ) -> None:
        self._pool = pool
        self._store = store
        self._starter = starter
        self._flows: dict[str, LoginFlow] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, flow_id: str) -> LoginFlow | None:
        return self._flows.get(flow_id)

    async def start(self, mode: str, account_id: str | None = None) -> LoginFlow:
        """Begin a login; for a re-auth, hint the account's email to the issuer."""
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
            raise
        except Exception as exc:
            flow.status, flow.error = "failed", str(exc) or type(exc).__name__
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
