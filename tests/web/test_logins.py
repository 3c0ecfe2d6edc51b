"""Dashboard logins: progress, storing the account, and failures.

The OAuth flows belong to the accounts part; here a small stand-in plays the
operator finishing a login at the emulator, so only the dashboard's side
(progress, storing the account, routing) is under test.
"""

from __future__ import annotations

import asyncio

import attrs
import pytest

from codex_lb.accounts.identity import account_from_auth_document
from codex_lb.sim import SimAccount
from codex_lb.store import NewAccount
from codex_lb.web.logins import (
    MAX_WAITING_LOGINS,
    LoginError,
    LoginFlow,
    LoginFlows,
    TooManyLogins,
)
from tests.conftest import LB


@attrs.define
class OperatorLogin:
    """A login that ends when the test says the operator signed in."""

    document: dict[str, object]
    verification_url: str | None = "http://127.0.0.1/device"
    user_code: str | None = "ABCD-1234"
    signed_in: asyncio.Event = attrs.Factory(asyncio.Event)
    failure: Exception | None = None

    async def wait(self) -> NewAccount:
        await self.signed_in.wait()
        if self.failure is not None:
            raise self.failure
        return account_from_auth_document(self.document, "login")

    async def close(self) -> None:
        self.signed_in.set()


class TestLoginFlows:
    async def test_progress_then_the_account_routes(self, lb: LB) -> None:
        """A flow waits with its code, then stores the account the login gave."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        login = OperatorLogin(lb.emulator.auth_json("c@example.com"))
        hints: list[str | None] = []

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            hints.append(hint)
            return login

        flows = LoginFlows(lb.pool, lb.store, starter)
        flow = await flows.start("device")
        waiting = (flow.status, flow.user_code)
        login.signed_in.set()
        await wait_until_done(flow)

        assert hints == [None]
        assert waiting == ("waiting", "ABCD-1234")
        assert (flow.status, flow.email) == ("complete", "c@example.com")
        assert flows.get(flow.id) is flow
        stored = lb.pool.get(flow.result_account_id or "")
        assert stored is not None and stored.email == "c@example.com"
        await flows.close()

    async def test_waiting_logins_are_bounded(self, lb: LB) -> None:
        """Past MAX_WAITING_LOGINS waiting, a new login is refused until one
        ends (60 could once wait at once, each with its polling task)."""
        logins = [OperatorLogin({}) for _ in range(MAX_WAITING_LOGINS + 1)]
        waiting = iter(logins)

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            return next(waiting)

        flows = LoginFlows(lb.pool, lb.store, starter)
        started = [await flows.start("device") for _ in range(MAX_WAITING_LOGINS)]
        with pytest.raises(TooManyLogins, match=f"{MAX_WAITING_LOGINS} logins"):
            await flows.start("device")
        await flows.cancel(started[0].id)
        again = await flows.start("device")

        assert again.status == "waiting"
        await flows.close()

    async def test_reauth_hints_the_account_and_revives_it(self, lb: LB) -> None:
        """A re-auth signs in with the account's email as the hint; the same
        account signing in leaves reauth_required."""
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        await lb.pool.require_reauth(a, "invalid_grant")
        login = OperatorLogin(lb.emulator.auth_json("a@example.com"))
        hints: list[str | None] = []

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            hints.append(hint)
            return login

        flows = LoginFlows(lb.pool, lb.store, starter)
        flow = await flows.start("device", a.id)
        login.signed_in.set()
        await wait_until_done(flow)

        assert hints == ["a@example.com"]
        assert (flow.status, flow.result_account_id) == ("complete", a.id)
        assert a.status == "active"
        await flows.close()

    async def test_reauth_signed_in_as_another_account_is_not_a_success(
        self, lb: LB
    ) -> None:
        """Re-auth of a@ approved as b@: the flow fails saying who signed in,
        a@ still needs its login and nothing is stored for b@."""
        a = lb.pool.get(lb.ids["a@example.com"])
        b = lb.pool.get(lb.ids["b@example.com"])
        assert a is not None and b is not None
        await lb.pool.require_reauth(a, "invalid_grant")
        b_tokens = b.tokens
        lb.emulator.tokens.issue(lb.emulator.account("b@example.com"), 0.0)
        login = OperatorLogin(lb.emulator.auth_json("b@example.com"))

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            return login

        flows = LoginFlows(lb.pool, lb.store, starter)
        flow = await flows.start("device", a.id)
        login.signed_in.set()
        await wait_until_done(flow)

        assert (flow.status, flow.email, flow.result_account_id) == (
            "failed",
            "b@example.com",
            None,
        )
        assert flow.error is not None
        assert flow.error.startswith("signed in as another account (b@example.com)")
        assert (a.status, a.status_reason) == ("reauth_required", "invalid_grant")
        stored_b = await lb.store.get_account(b.id)
        assert stored_b is not None and stored_b.tokens == b_tokens == b.tokens
        await flows.close()

    async def test_a_failed_login_says_why(self, lb: LB) -> None:
        """A refused login ends as failed with the login's own message."""
        refused = LoginError("the sign-in was refused: access_denied")
        login = OperatorLogin({}, failure=refused)

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            return login

        flows = LoginFlows(lb.pool, lb.store, starter)
        flow = await flows.start("browser")
        login.signed_in.set()
        await wait_until_done(flow)

        assert (flow.status, flow.error) == (
            "failed",
            "the sign-in was refused: access_denied",
        )
        assert len(lb.pool.accounts) == 2
        await flows.close()

    async def test_an_unexpected_error_shows_only_its_type(self, lb: LB) -> None:
        """Other errors may echo a server's answer: only their type is shown."""
        login = OperatorLogin({}, failure=KeyError("rt-LEAK"))

        async def starter(mode: str, hint: str | None, port: int) -> OperatorLogin:
            return login

        flows = LoginFlows(lb.pool, lb.store, starter)
        flow = await flows.start("device")
        login.signed_in.set()
        await wait_until_done(flow)

        assert (flow.status, flow.error) == ("failed", "KeyError")
        await flows.close()


async def wait_until_done(flow: LoginFlow) -> None:
    for _ in range(100):
        if flow.status != "waiting":
            return
        await asyncio.sleep(0.01)
