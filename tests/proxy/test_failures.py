"""How failures are classed and answered (codex_lb/proxy/failures.py).

Failure events inside a stream are classed as SPEC section 5 classes error
statuses: before any content a server or limit error moves the request to
another account; after it started, a limit benches the account, a server
error or a stream codex-lb had to end marks it, and a client error leaves it
alone. Running out of attempts is told apart from running out of accounts.
Every answer on a proxied route carries the pool's quota headers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from codex_lb.sim import Fault
from codex_lb.store import QuotaReading
from tests.conftest import LB
from tests.proxy.test_faults import RawUpstream, wait_for_rows
from tests.proxy.test_relay import (
    CODEX,
    CREATED,
    delta,
    done,
    events_of,
    only,
    prefer,
    responses_to,
    turn,
)

WEEK_MINUTES = 7 * 24 * 60


def failed(code: str, **error: Any) -> bytes:
    """A ``response.failed`` event with ``code``."""
    data = {
        "type": "response.failed",
        "response": {
            "id": "resp_1",
            "status": "failed",
            "error": {"code": code, "message": "upstream says no", **error},
        },
    }
    return b"event: response.failed\ndata: " + json.dumps(data).encode() + b"\n\n"


Paced = Callable[[list[bytes]], Awaitable[str]]


@pytest.fixture
async def paced() -> AsyncIterator[Paced]:
    """An upstream that sends each chunk of an event stream a moment apart, so
    the relay has written one before the next arrives; gives its base URL."""
    started: list[RawUpstream] = []

    async def start(chunks: list[bytes]) -> str:
        async def script(writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for chunk in chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

        upstream = RawUpstream(script)
        started.append(upstream)
        return await upstream.start()

    yield start
    for upstream in started:
        await upstream.close()


def assert_untouched(lb: LB, email: str) -> None:
    account = lb.pool.get(lb.ids[email])
    assert account is not None
    assert (account.status, account.consecutive_failures) == ("active", 0)
    assert account.cooldown_until == 0.0


class TestFailureAfterTheStart:
    async def test_client_error_event_leaves_the_account_alone(self, lb: LB) -> None:
        """A context_length_exceeded after content is the request's fault:
        three in a row mark nothing and start no cooldown."""
        await only(lb, "a@example.com")
        stream = CREATED + delta("x") + failed("context_length_exceeded")

        for _ in range(3):
            lb.emulator.add_fault("a@example.com", Fault.raw([stream]))
            response = await lb.client.post(CODEX, json=turn())
            assert await response.read() == stream

        rows = await lb.request_logs()
        assert [(r.status, r.error_code) for r in rows] == [
            ("error", "context_length_exceeded")
        ] * 3
        assert lb.recorder.of("account_marked") == []
        assert_untouched(lb, "a@example.com")

    async def test_server_error_event_marks_an_error(
        self, make_lb: Any, emulator: Any, paced: Paced
    ) -> None:
        """A server_error after content marks the account, no bench, and no
        other account is tried."""
        chunks = [CREATED + delta("x"), failed("server_error")]
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=await paced(chunks))
        await only(lb, "a@example.com")

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == b"".join(chunks)
        (row,) = await wait_for_rows(lb, 1)
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.event, mark.code) == ("error", "server_error")
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        assert (a.status, a.consecutive_failures) == ("active", 1)
        assert (row.status, row.error_code, row.attempts) == (
            "error",
            "server_error",
            1,
        )

    async def test_limit_event_benches_until_its_reset(
        self, make_lb: Any, emulator: Any, paced: Paced
    ) -> None:
        """A usage_limit_reached after content benches the account until the
        reset it names; the bytes already sent stay the client's."""
        chunks = [
            CREATED + delta("x"),
            failed("usage_limit_reached", resets_in_seconds=600),
        ]
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=await paced(chunks))
        await prefer(lb, "a@example.com")
        now = lb.emulator.clock.now()

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == b"".join(chunks)
        (row,) = await wait_for_rows(lb, 1)
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None and a.status == "rate_limited"
        assert a.status_until is not None and abs(a.status_until - (now + 600)) < 2
        assert (row.attempts, row.account_id) == (1, a.id)
        assert lb.recorder.of("retry") == []


class TestFailureBeforeContent:
    async def test_server_error_first_moves_to_another_account(self, lb: LB) -> None:
        """CREATED then a server_error: nothing reached the client, so the
        request moves on and the client sees only the next account's answer."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.raw([CREATED + failed("server_error")])
        )

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        events = events_of(raw)
        assert [e["type"] for e in events].count("response.created") == 1
        assert events[-1]["type"] == "response.completed"
        assert b"upstream says no" not in raw
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        (retry,) = lb.recorder.of("retry")
        assert (retry.error_class, retry.error_code) == ("upstream", "server_error")
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.account_id, mark.event) == (lb.ids["a@example.com"], "error")

    async def test_error_event_with_its_own_code_moves_on(self, lb: LB) -> None:
        """An ``error`` event carrying its code at the top level counts too."""
        await prefer(lb, "a@example.com")
        overloaded = (
            b"event: error\n"
            b'data: {"type":"error","code":"server_is_overloaded",'
            b'"message":"busy"}\n\n'
        )
        lb.emulator.add_fault("a@example.com", Fault.raw([CREATED + overloaded]))

        response = await lb.client.post(CODEX, json=turn())

        assert events_of(await response.read())[-1]["type"] == "response.completed"
        (retry,) = lb.recorder.of("retry")
        assert retry.error_code == "server_is_overloaded"

    async def test_server_error_first_on_every_account_is_502(self, lb: LB) -> None:
        """With no account left, the 5xx rule applies: 502 upstream_error."""
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(email, Fault.raw([CREATED + failed("server_error")]))

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_error"
        (row,) = await lb.request_logs()
        assert (row.error_code, row.attempts) == ("upstream_error", 2)

    async def test_client_error_first_is_relayed(self, lb: LB) -> None:
        """A client error right at the start goes back as it came."""
        await prefer(lb, "a@example.com")
        stream = CREATED + failed("context_length_exceeded")
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == stream
        assert lb.recorder.of("retry") == []
        assert lb.recorder.of("account_marked") == []
        assert responses_to(lb, "b@example.com") == 0


class TestOutOfAttempts:
    async def test_attempts_spent_with_accounts_left_is_a_retryable_429(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """CODEX_LB_MAX_ATTEMPTS=1 and a full first account, another with room:
        a 429 the Codex CLI retries (not usage_limit_reached), and the retry
        is served."""
        lb = await make_lb(emulator, CODEX_LB_MAX_ATTEMPTS="1")
        lb.emulator.set_usage("a@example.com", primary=100.0)
        await prefer(lb, "a@example.com")

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert body["error"]["type"] != "usage_limit_reached"
        response = await lb.client.post(CODEX, json=turn())
        assert events_of(await response.read())[-1]["type"] == "response.completed"
        first, second = await lb.request_logs()
        assert (first.status_code, first.error_code) == (429, "rate_limit_exceeded")
        assert second.account_id == lb.ids["b@example.com"]

    async def test_no_account_left_is_usage_limit_reached(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """The same with the other account paused: the pool is limited."""
        lb = await make_lb(emulator, CODEX_LB_MAX_ATTEMPTS="1")
        lb.emulator.set_usage("a@example.com", primary=100.0)
        await only(lb, "a@example.com")

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 429
        assert body["error"]["type"] == "usage_limit_reached"

    async def test_a_limit_and_a_server_error_is_a_temporary_502(self, lb: LB) -> None:
        """One account limited, the other failing for now: not the pool's
        limit, so not the answer that makes a Codex CLI stop."""
        await prefer(lb, "a@example.com")
        lb.emulator.set_usage("a@example.com", primary=100.0)
        lb.emulator.add_fault("b@example.com", Fault.status(500, {}))

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_error"


def reading(used: float, reset_at: float) -> QuotaReading:
    return QuotaReading(
        0.0,
        "poll",
        secondary_used_percent=used,
        secondary_window_minutes=WEEK_MINUTES,
        secondary_reset_at=reset_at,
    )


class TestPoolQuotaHeaders:
    async def _two_readings(self, lb: LB) -> float:
        """a at 20 %, b at 60 % of the week (both plus): the pool is at 40 %."""
        reset_at = float(int(lb.emulator.clock.now()) + 86_400)
        for email, used in (("a@example.com", 20.0), ("b@example.com", 60.0)):
            account = lb.pool.get(lb.ids[email])
            assert account is not None
            await lb.pool.apply_reading(account, reading(used, reset_at))
        return reset_at

    async def test_a_passed_back_error_has_the_pools_headers(self, lb: LB) -> None:
        """A 400 passed back carries the pool's quota, not its account's."""
        reset_at = await self._two_readings(lb)
        error = {"error": {"code": "bad_thing", "message": "no"}}
        own = {
            "x-codex-secondary-used-percent": "90",
            "x-codex-secondary-window-minutes": str(WEEK_MINUTES),
            "x-codex-secondary-reset-at": str(int(reset_at)),
        }
        lb.emulator.add_fault("a@example.com", Fault.status(400, error, headers=own))

        response = await lb.client.post(CODEX, json=turn())

        assert response.status == 400
        assert await response.json() == error
        # a's reading is now 90 %: the pool is (90 + 60) / 2.
        assert response.headers["x-codex-secondary-used-percent"] == "75"
        assert response.headers["x-codex-secondary-reset-at"] == str(int(reset_at))

    async def test_codex_lbs_own_errors_have_the_pools_headers(self, lb: LB) -> None:
        """502, 429 and a refused body all carry the pool's quota headers."""
        reset_at = await self._two_readings(lb)
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(email, Fault.status(500, {}))
        upstream_error = await lb.client.post(CODEX, json=turn())
        refused = await lb.client.post(CODEX, data=b"{not json")
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(
                email,
                Fault.status(429, {"error": {"type": "usage_limit_reached"}}),
            )
        limited = await lb.client.post(CODEX, json=turn())

        for response, status in ((upstream_error, 502), (refused, 400), (limited, 429)):
            assert response.status == status
            assert response.headers["x-codex-secondary-used-percent"] == "40"
            assert response.headers["x-codex-secondary-window-minutes"] == str(
                WEEK_MINUTES
            )
            assert response.headers["x-codex-secondary-reset-at"] == str(int(reset_at))

    async def test_every_proxied_answer_has_them(self, lb: LB) -> None:
        """/v1 routes and the compact route carry the pool's headers too."""
        await self._two_readings(lb)
        await only(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.raw([CREATED + delta("x") + done(1, 0, 1, 0)])
        )

        answers = [
            await lb.client.post(CODEX, json=turn()),
            await lb.client.post("/v1/responses", json={"model": "gpt-5"}),
            await lb.client.post("/v1/chat/completions", json={"model": "gpt-5"}),
        ]

        for response in answers:
            await response.read()
            assert "x-codex-secondary-used-percent" in response.headers
