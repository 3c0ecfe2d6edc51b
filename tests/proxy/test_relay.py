"""The relay end to end: codex-lb in front of the emulator, on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import pytest
import zstandard

from codex_lb.proxy.routes import RELAY_KEY
from codex_lb.sim import Fault
from tests.conftest import LB

CODEX = "/backend-api/codex/responses"


def turn(text: str = "hello", model: str = "gpt-5", **extra: Any) -> dict[str, Any]:
    """A request body shaped like the Codex CLI's."""
    body = {
        "model": model,
        "instructions": "",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }
        ],
        "stream": True,
        "store": False,
    }
    body.update(extra)
    return body


def events_of(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                out.append(json.loads(line[6:]))
    return out


def responses_to(lb: LB, email: str) -> int:
    """How many response requests the emulator got for ``email``'s account."""
    account = lb.emulator.account(email)
    return sum(
        1
        for r in lb.emulator.requests
        if r.path.endswith("/codex/responses")
        and r.headers.get("chatgpt-account-id") == account.chatgpt_account_id
    )


CREATED = (
    b"event: response.created\n"
    b'data: {"type":"response.created","response":{"id":"resp_1",'
    b'"status":"in_progress"}}\n\n'
)


def delta(x: str) -> bytes:
    return (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","delta":"' + x.encode() + b'"}\n\n'
    )


def done(i: int, c: int, o: int, r: int) -> bytes:
    usage = {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": c},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": r},
        "total_tokens": i + o,
    }
    data = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "status": "completed",
            "model": "gpt-5",
            "usage": usage,
        },
    }
    return b"event: response.completed\ndata: " + json.dumps(data).encode() + b"\n\n"


# A small event cap for tests of the cap (the default is 256 MiB).
CAP = 1024 * 1024


def huge_created(size: int) -> bytes:
    """A response.created event whose instructions are ``size`` bytes long."""
    data = {
        "type": "response.created",
        "response": {"id": "resp_1", "instructions": "x" * size},
    }
    return b"event: response.created\ndata: " + json.dumps(data).encode() + b"\n\n"


async def only(lb: LB, email: str) -> None:
    """Pause every account but ``email``'s, so faults land where queued."""
    for account in lb.pool.accounts:
        if account.email != email:
            await lb.pool.pause(account)


async def prefer(lb: LB, email: str) -> None:
    """Make ``email``'s account the first choice (least weekly use)."""
    for account in lb.pool.accounts:
        used = 0.0 if account.email == email else 50.0
        await lb.pool.apply_reading(account, _reading(secondary=used))


class TestStreaming:
    async def test_stream_passes_through_and_is_logged_with_cost(self, lb: LB) -> None:
        """A normal turn reaches the client and is logged with usage and cost."""
        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = events_of(raw)
        assert events[0]["type"] == "response.created"
        assert events[-1]["type"] == "response.completed"
        usage = events[-1]["response"]["usage"]
        (row,) = await lb.request_logs()
        assert (row.status, row.status_code, row.api, row.attempts) == (
            "success",
            200,
            "codex",
            1,
        )
        assert row.input_tokens == usage["input_tokens"]
        assert row.output_tokens == usage["output_tokens"]
        cached = usage["input_tokens_details"]["cached_tokens"]
        expected = (
            (usage["input_tokens"] - cached) * 1.25
            + cached * 0.125
            + usage["output_tokens"] * 10.0
        ) / 1e6
        assert row.cost_usd is not None
        assert abs(row.cost_usd - expected) < 1e-12

    async def test_bytes_are_relayed_unchanged(self, lb: LB) -> None:
        """Odd chunking upstream reaches the client byte for byte."""
        stream = CREATED + delta("hi") + done(300, 0, 2, 0)
        chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw(chunks))

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == stream

    async def test_last_event_without_blank_line(self, lb: LB) -> None:
        """C02: a final event missing its blank line is still a success."""
        await only(lb, "a@example.com")
        for cut in (2, 1):
            stream = (CREATED + delta("hi") + done(300, 0, 2, 0))[:-cut]
            lb.emulator.add_fault("a@example.com", Fault.raw([stream]))

            response = await lb.client.post(CODEX, json=turn())

            assert await response.read() == stream
        rows = await lb.request_logs()
        assert [(r.status, r.error_code) for r in rows] == [("success", None)] * 2
        assert [(r.input_tokens, r.output_tokens) for r in rows] == [(300, 2)] * 2
        assert rows[0].cost_usd is not None
        assert abs(rows[0].cost_usd - (300 * 1.25 + 2 * 10.0) / 1e6) < 1e-12

    @pytest.mark.parametrize("mib", [1, 3])
    async def test_huge_event_line(self, lb: LB, mib: int) -> None:
        """C01: a 1 MiB and a 3 MiB event line are relayed whole, usage kept."""
        stream = huge_created(mib * 1024 * 1024) + delta("ok") + done(5000, 0, 3, 0)
        chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw(chunks))

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == stream
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code, row.input_tokens, row.output_tokens) == (
            "success",
            None,
            5000,
            3,
        )
        assert lb.recorder.of("account_marked") == []

    async def test_event_past_the_cap_before_content_is_one_failure(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """An opening event past CODEX_LB_MAX_EVENT_BYTES while it is held back:
        the client gets one response.failed event_too_large, the relay stops
        reading (it does not hold the rest), and no other account is tried."""
        lb = await make_lb(emulator, CODEX_LB_MAX_EVENT_BYTES=str(CAP))
        await prefer(lb, "a@example.com")
        stream = huge_created(3 * CAP) + delta("ok") + done(5, 0, 1, 0)
        chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
        lb.emulator.add_fault("a@example.com", Fault.raw(chunks))

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert response.status == 200
        (event,) = events_of(raw)
        assert event["type"] == "response.failed"
        assert event["response"]["error"]["code"] == "event_too_large"
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code, row.attempts, row.account_id) == (
            "error",
            "event_too_large",
            1,
            lb.ids["a@example.com"],
        )
        assert responses_to(lb, "b@example.com") == 0
        marks = lb.recorder.of("account_marked")
        assert [(m.event, m.code) for m in marks] == [("error", "event_too_large")]

    async def test_event_past_the_cap_mid_stream_ends_it(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """Past the cap after content: the bytes so far, then one failure."""
        lb = await make_lb(emulator, CODEX_LB_MAX_EVENT_BYTES=str(CAP))
        await only(lb, "a@example.com")
        head = CREATED + delta("ok")
        stream = head + delta("y" * 3 * CAP) + done(5, 0, 1, 0)
        chunks = [head] + [
            stream[i : i + 4096] for i in range(len(head), len(stream), 4096)
        ]
        lb.emulator.add_fault("a@example.com", Fault.raw(chunks))

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert raw.startswith(head)
        failures = [e for e in events_of(raw[len(head) :].split(b"\n\n", 1)[1])]
        assert [e["type"] for e in failures] == ["response.failed"]
        assert failures[0]["response"]["error"]["code"] == "event_too_large"
        assert b"response.completed" not in raw
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code) == ("error", "event_too_large")

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            (
                "/v1/chat/completions",
                {"stream": True, "messages": [{"role": "user", "content": "hi"}]},
            ),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
            ("/v1/responses", {"input": "hi"}),
        ],
        ids=["chat-stream", "chat", "responses"],
    )
    async def test_event_past_the_cap_in_a_translated_answer(
        self, make_lb: Any, emulator: Any, path: str, body: dict[str, Any]
    ) -> None:
        """Translated answers end the same way: a streamed one with one error
        chunk, a buffered one with a 502 event_too_large; never a failover."""
        lb = await make_lb(emulator, CODEX_LB_MAX_EVENT_BYTES=str(CAP))
        await prefer(lb, "a@example.com")
        stream = huge_created(3 * CAP) + delta("ok") + done(5, 0, 1, 0)
        chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
        lb.emulator.add_fault("a@example.com", Fault.raw(chunks))

        response = await lb.client.post(path, json={"model": "gpt-5", **body})
        raw = await response.read()

        if body.get("stream"):
            assert response.status == 200
            errors = [e for e in events_of(raw) if "error" in e]
            assert [e["error"]["code"] for e in errors] == ["event_too_large"]
        else:
            assert response.status == 502
            assert json.loads(raw)["error"]["code"] == "event_too_large"
        (row,) = await lb.request_logs()
        assert (row.error_code, row.attempts) == ("event_too_large", 1)
        assert responses_to(lb, "b@example.com") == 0

    async def test_cut_mid_stream_ends_with_one_failed_event(self, lb: LB) -> None:
        """C03: a stream cut after bytes were sent ends with stream_incomplete."""
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.cut(after_events=3))

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert response.status == 200
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["code"] == "stream_incomplete"
        assert [e["type"] for e in events].count("response.failed") == 1
        assert "response.completed" not in [e["type"] for e in events]
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code, row.attempts) == (
            "error",
            "stream_incomplete",
            1,
        )
        marks = lb.recorder.of("account_marked")
        assert [(m.event, m.code) for m in marks] == [("error", "stream_incomplete")]

    async def test_cut_never_moves_to_another_account(self, lb: LB) -> None:
        """C03: once bytes were sent, the other account is not tried."""
        lb.emulator.add_fault("a@example.com", Fault.cut(after_events=3))
        lb.emulator.add_fault("b@example.com", Fault.cut(after_events=3))

        response = await lb.client.post(CODEX, json=turn())
        await response.read()

        assert (
            responses_to(lb, "a@example.com") + responses_to(lb, "b@example.com") == 1
        )

    async def test_silence_past_idle_timeout(self, make_lb: Any, emulator: Any) -> None:
        """C03 variant: an upstream gone silent ends with stream_idle_timeout."""
        lb = await make_lb(emulator, CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="0.5")
        await prefer(lb, "a@example.com")
        emulator.add_fault("a@example.com", Fault.stall(after_events=3, seconds=3))

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert response.status == 200
        types = [e["type"] for e in events]
        assert types.count("response.failed") == 1
        assert "response.completed" not in types
        assert events[-1]["response"]["error"]["code"] == "stream_idle_timeout"
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code, row.attempts, row.account_id) == (
            "error",
            "stream_idle_timeout",
            1,
            lb.ids["a@example.com"],
        )
        # Bytes were sent: the other account is never tried.
        assert responses_to(lb, "b@example.com") == 0
        assert lb.recorder.of("retry") == []
        # An error mark on the account, and nothing else: no bench.
        marks = lb.recorder.of("account_marked")
        assert [(m.account_id, m.event, m.code) for m in marks] == [
            (lb.ids["a@example.com"], "error", "stream_idle_timeout")
        ]
        assert all(a.status == "active" for a in lb.pool.accounts)

    async def test_a_slow_client_is_not_upstream_silence(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """The idle timeout counts only waiting for the upstream: a client
        that reads nothing for three idle timeouts, while codex-lb has 16 MiB
        of events to write to it, still gets all of them."""
        lb = await make_lb(emulator, CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="0.3")
        await prefer(lb, "a@example.com")
        deltas = b"".join(delta("x" * (64 << 10)) for _ in range(256))
        stream = CREATED + deltas + done(10, 0, 1, 0)
        emulator.add_fault("a@example.com", Fault.raw([stream]))

        response = await lb.client.post(CODEX, json=turn())
        await asyncio.sleep(0.9)
        body = await response.read()

        assert body == stream
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code) == ("success", None)

    async def test_cut_before_content_fails_over_invisibly(self, lb: LB) -> None:
        """A stream cut after only the opening events moves to the next account."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw([CREATED], then="reset"))

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert [e["type"] for e in events].count("response.created") == 1
        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts) == ("success", 2)
        assert row.account_id == lb.ids["b@example.com"]
        (retry,) = lb.recorder.of("retry")
        assert retry.error_class == "transport"

    async def test_client_gone_after_terminal_event_is_success(self, lb: LB) -> None:
        """A client hanging up after response.completed has been served."""
        stream = CREATED + delta("hi") + done(10, 0, 1, 0)
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))

        response = await lb.client.post(CODEX, json=turn())
        await response.content.readexactly(len(stream))
        response.close()

        (row,) = await lb.request_logs()
        assert row.status == "success"


class TestFailover:
    async def test_full_account_fails_over_and_is_benched(self, lb: LB) -> None:
        """A 429 before any byte marks the account and the next one serves."""
        lb.emulator.set_usage("a@example.com", primary=100.0)
        await prefer(lb, "a@example.com")

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert (row.account_id, row.attempts) == (lb.ids["b@example.com"], 2)
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None and a.status == "rate_limited"
        reset = lb.emulator.account("a@example.com").primary.reset_at  # type: ignore[union-attr]
        assert a.status_until is not None and abs(a.status_until - reset) < 1
        (retry,) = lb.recorder.of("retry")
        assert (retry.account_id, retry.error_class) == (
            lb.ids["a@example.com"],
            "rate_limit",
        )

    async def test_server_error_fails_over(self, lb: LB) -> None:
        """A 500 before any byte moves the request; the retry is classed."""
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(email, Fault.status(500, {"error": {"message": "x"}}))
        lb.emulator.add_fault("a@example.com", Fault.status(500, {}))

        response = await lb.client.post(CODEX, json=turn())

        assert response.status == 502
        body = await response.json()
        assert body["error"]["code"] == "upstream_error"
        # Two accounts tried, one move between them: one retry.
        assert [r.error_class for r in lb.recorder.of("retry")] == ["upstream"]

    async def test_server_error_then_success(self, lb: LB) -> None:
        """One 503 then a good account: the client sees only the good stream."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.status(503, {"error": {"message": "down"}})
        )

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert response.status == 200
        events = events_of(raw)
        assert [e["type"] for e in events].count("response.created") == 1
        assert events[-1]["type"] == "response.completed"
        assert b"down" not in raw
        assert "Hello from b@example.com" in raw.decode()
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        assert (
            responses_to(lb, "a@example.com"),
            responses_to(lb, "b@example.com"),
        ) == (
            1,
            1,
        )
        (retry,) = lb.recorder.of("retry")
        assert (retry.account_id, retry.error_class, retry.error_code) == (
            lb.ids["a@example.com"],
            "upstream",
            "http_503",
        )
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.account_id, mark.event) == (lb.ids["a@example.com"], "error")

    async def test_compressed_429_is_read_and_benches(self, lb: LB) -> None:
        """C04: a gzip 429 body is decoded; what the client gets is coherent."""
        await only(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com",
            Fault.status(
                429,
                {
                    "error": {
                        "type": "usage_limit_reached",
                        "message": "limit",
                        "resets_in_seconds": 60,
                    }
                },
                gzip=True,
            ),
        )
        now = lb.emulator.clock.now()

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert response.status == 429
        assert "Content-Encoding" not in response.headers
        assert int(response.headers["Content-Length"]) == len(raw)
        body = json.loads(raw)
        assert body["error"]["code"] == "usage_limit_reached"
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None and a.status == "rate_limited"
        assert a.status_until is not None and abs(a.status_until - (now + 60)) < 2

    async def test_compressed_client_error_is_passed_back_coherent(
        self, lb: LB
    ) -> None:
        """C04 for a passed-back 4xx: a gzip 400 reaches the client decoded,
        with no stale Content-Encoding and a Content-Length that fits."""
        error = {"error": {"type": "invalid_request_error", "code": "bad_thing"}}
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.status(400, error, gzip=True))

        response = await lb.client.post(
            CODEX, json=turn(), headers={"Accept-Encoding": "identity"}
        )
        raw = await response.read()

        assert response.status == 400
        assert "Content-Encoding" not in response.headers
        assert int(response.headers["Content-Length"]) == len(raw)
        assert json.loads(raw) == error

    async def test_compressed_compact_answer_is_coherent(self, lb: LB) -> None:
        """C04 for a JSON answer: a gzip compact answer reaches the client
        decoded, headers matching the body, and its usage is recorded."""
        answer = {
            "output": [{"type": "compaction", "encrypted_content": "x" * 500}],
            "usage": {"input_tokens": 700, "output_tokens": 40},
        }
        await only(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.status(200, answer, gzip=True), "compact"
        )

        response = await lb.client.post(
            "/backend-api/codex/responses/compact",
            json=turn(stream=False),
            headers={"Accept-Encoding": "identity"},
        )
        raw = await response.read()

        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert int(response.headers["Content-Length"]) == len(raw)
        assert json.loads(raw) == answer
        (row,) = await lb.request_logs()
        assert (row.status, row.input_tokens, row.output_tokens) == ("success", 700, 40)

    async def test_whole_pool_limited_gives_earliest_reset(self, lb: LB) -> None:
        """C11: every account limited: 429 with the earliest resets_at."""
        now = int(lb.emulator.clock.now())
        for email, seconds in (("a@example.com", 600), ("b@example.com", 3600)):
            lb.emulator.add_fault(
                email,
                Fault.status(
                    429,
                    {
                        "error": {
                            "type": "usage_limit_reached",
                            "code": "usage_limit_reached",
                            "resets_at": now + seconds,
                        }
                    },
                ),
            )

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 429
        assert body["error"]["type"] == "usage_limit_reached"
        assert body["error"]["code"] == "usage_limit_reached"
        assert body["error"]["resets_at"] == now + 600
        assert abs(body["error"]["resets_in_seconds"] - 600) <= 2

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()
        assert response.status == 429
        assert body["error"]["resets_at"] == now + 600
        assert responses_to(lb, "a@example.com") == 1

    async def test_all_paused_is_no_accounts(self, lb: LB) -> None:
        """C11: with every account paused, 503 no_accounts."""
        for account in lb.pool.accounts:
            await lb.pool.pause(account)

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 503
        assert body["error"]["code"] == "no_accounts"
        assert lb.emulator.requests == []

    async def test_client_error_goes_back_unmarked(self, lb: LB) -> None:
        """A 400 is returned as it came, with no failover and no mark."""
        error = {"error": {"type": "invalid_request_error", "code": "bad_thing"}}
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(email, Fault.status(400, error))

        response = await lb.client.post(CODEX, json=turn())

        assert response.status == 400
        assert await response.json() == error
        assert lb.recorder.of("retry") == []
        assert lb.recorder.of("account_marked") == []
        assert all(a.status == "active" for a in lb.pool.accounts)

    async def test_401_refreshes_and_retries_same_account(self, lb: LB) -> None:
        """A revoked access token is refreshed once and the turn succeeds."""
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.revoke_access_token(email)
        old = {a.id: a.tokens.refresh_token for a in lb.pool.accounts}

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert row.attempts == 1
        stored = await lb.store.get_account(row.account_id)  # type: ignore[arg-type]
        assert stored is not None
        assert stored.tokens.refresh_token != old[row.account_id]  # type: ignore[index]
        sim = lb.emulator.by_account_id(stored.chatgpt_account_id)
        assert sim is not None and stored.tokens.refresh_token == sim.refresh_token


class TestCredentials:
    async def test_client_credentials_never_reach_upstream(self, lb: LB) -> None:
        """The upstream sees the account's token and id, never the client's."""
        response = await lb.client.post(
            CODEX,
            json=turn(),
            headers={
                "Authorization": "Bearer client-own-token",
                "chatgpt-account-id": "client-account",
                "session_id": "s-1",
            },
        )
        await response.read()

        (seen,) = [r for r in lb.emulator.requests if r.path.endswith("/responses")]
        account = lb.emulator.account("a@example.com")
        other = lb.emulator.account("b@example.com")
        assert seen.headers["authorization"] in (
            f"Bearer {account.access_token}",
            f"Bearer {other.access_token}",
        )
        assert seen.headers["chatgpt-account-id"] in (
            account.chatgpt_account_id,
            other.chatgpt_account_id,
        )
        assert seen.headers["session_id"] == "s-1"
        assert "client-own-token" not in json.dumps(seen.headers)


class TestRequestBodies:
    async def test_compressed_bodies_are_accepted(self, lb: LB) -> None:
        """zstd, gzip and deflate bodies are read and served."""
        raw = json.dumps(turn()).encode()
        for encoding, data in (
            ("zstd", zstandard.ZstdCompressor().compress(raw)),
            ("gzip", gzip.compress(raw)),
            ("deflate", zlib.compress(raw)),
        ):
            response = await lb.client.post(
                CODEX,
                data=data,
                headers={
                    "Content-Encoding": encoding,
                    "Content-Type": "application/json",
                },
            )
            events = events_of(await response.read())
            assert events[-1]["type"] == "response.completed", encoding

    async def test_decompression_bomb_is_refused(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """A small body that inflates past the limit gets 413 while inflating."""
        lb = await make_lb(emulator, CODEX_LB_MAX_REQUEST_BYTES="100000")
        bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}")

        response = await lb.client.post(
            CODEX, data=bomb, headers={"Content-Encoding": "gzip"}
        )

        assert response.status == 413
        assert (await response.json())["error"]["code"] == "request_too_large"
        assert lb.emulator.requests == []

    async def test_bad_json_and_missing_model(self, lb: LB) -> None:
        """Malformed JSON, a non-object and a missing model get 400."""
        for data in (b"{not json", b"[1, 2]", json.dumps({"input": []}).encode()):
            response = await lb.client.post(CODEX, data=data)
            body = await response.json()
            assert response.status == 400
            assert body["error"]["code"] == "invalid_request_error"
        assert lb.emulator.requests == []


class TestEvents:
    async def test_one_request_one_finished_event(self, lb: LB) -> None:
        """request_finished carries the request's outcome, tokens and cost."""
        response = await lb.client.post(CODEX, json=turn())
        await response.read()

        (finished,) = lb.recorder.of("request_finished")
        (row,) = await lb.request_logs()
        assert finished.status == "success"
        assert finished.api == "codex"
        assert finished.model_label == "gpt-5"
        assert finished.account_id == row.account_id
        assert finished.input_tokens == row.input_tokens
        assert finished.cost_usd == row.cost_usd
        assert finished.attempts == 1
        (selected,) = lb.recorder.of("account_selected")
        assert (selected.pool, selected.outcome) == ("full", "selected")

    async def test_every_header_reading_is_published(self, lb: LB) -> None:
        """Issue 4: each reading is published, the same one twice included, so
        a snapshot's age stays true with polling off; the store keeps one."""
        await only(lb, "a@example.com")
        a = lb.ids["a@example.com"]
        stream = CREATED + delta("hi") + done(10, 0, 1, 0)
        for _ in range(3):
            # A raw answer is not charged: its headers repeat the same windows.
            lb.emulator.add_fault("a@example.com", Fault.raw([stream]))
            response = await lb.client.post(CODEX, json=turn())
            await response.read()
        await lb.app[RELAY_KEY].close()

        snapshots = [
            s for s in lb.recorder.of("quota_snapshot") if s.account.account_id == a
        ]
        assert [s.source for s in snapshots] == ["headers"] * 3
        assert len({(s.primary, s.secondary) for s in snapshots}) == 1
        observed = [s.observed_at for s in snapshots]
        assert observed == sorted(observed)
        assert len(await lb.store.quota_history(a)) == 1

    async def test_the_reading_is_published_before_the_attempt_ends(
        self, lb: LB
    ) -> None:
        """An answer's reading is taken after its first bytes, but always
        before its attempt_finished and request_finished events."""
        await only(lb, "a@example.com")

        for _ in range(3):
            response = await lb.client.post(CODEX, json=turn())
            await response.read()

        names = [
            e.name
            for e in lb.recorder.events
            if e.name in ("quota_snapshot", "attempt_finished", "request_finished")
        ]
        assert names == ["quota_snapshot", "attempt_finished", "request_finished"] * 3

    async def test_unknown_model_is_unpriced(self, lb: LB) -> None:
        """A success on an unpriced model fires unpriced_success."""
        lb.emulator.models.append("house-model")

        response = await lb.client.post(CODEX, json=turn(model="house-model"))
        await response.read()

        (event,) = lb.recorder.of("unpriced_success")
        assert event.reason == "unknown_pricing"
        (row,) = await lb.request_logs()
        assert row.cost_usd is None and row.status == "success"


class TestCompact:
    async def test_compact_is_json_in_json_out(self, lb: LB) -> None:
        response = await lb.client.post(
            "/backend-api/codex/responses/compact", json=turn(stream=False)
        )

        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        await response.json()
        (row,) = await lb.request_logs()
        assert (row.api, row.status) == ("compact", "success")


def _reading(secondary: float) -> Any:
    from codex_lb.store import QuotaReading

    return QuotaReading(0.0, "poll", secondary_used_percent=secondary)
