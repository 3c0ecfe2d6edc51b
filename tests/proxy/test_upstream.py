"""Reading what the upstream sends, whatever its shape (codex_lb/proxy/upstream.py).

The upstream's JSON is trusted for nothing: a ``response`` that is a string,
``*_details`` that are lists, token counts that are Infinity, NaN or
absurdly large, resets that are not numbers. Unit tests pin the readers;
Hypothesis then sends terminal and failure events of random shapes through
the whole relay and checks that nothing answers 500 and that each outcome
is the one SPEC section 5 gives for the failure's class.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_lb.accounts import ACTIVE
from codex_lb.proxy.assemble import ResponsesAnswer
from codex_lb.proxy.chat_stream import ChatAnswer, ChatStream
from codex_lb.proxy.pricing import Usage
from codex_lb.proxy.sse import SSEEvent
from codex_lb.proxy.upstream import (
    MAX_RESET_SECONDS,
    MAX_TOKENS,
    client_headers,
    error_class,
    error_code,
    error_resets_at,
    event_error,
    read_usage,
)
from codex_lb.sim import Fault
from codex_lb.store import AccountState
from tests.conftest import LB
from tests.proxy.test_relay import CODEX, CREATED, delta, prefer, turn

NOW = 1_800_000_000.0


class TestHopByHopHeaders:
    async def test_headers_the_client_names_in_connection_stay_here(
        self, lb: LB
    ) -> None:
        """RFC 9110: a header listed in Connection is for this hop only."""
        response = await lb.client.post(
            CODEX,
            json=turn(),
            headers={
                "Connection": "keep-alive, X-Hop, x-other-hop",
                "X-Hop": "for codex-lb only",
                "X-Other-Hop": "also",
                "X-Kept": "end to end",
            },
        )
        await response.read()

        (seen,) = [r for r in lb.emulator.requests if r.path.endswith("/responses")]
        assert "x-hop" not in seen.headers
        assert "x-other-hop" not in seen.headers
        assert seen.headers["x-kept"] == "end to end"

    def test_headers_the_upstream_names_in_connection_stay_there(self) -> None:
        headers = client_headers(
            {
                "Connection": "close, X-Upstream-Hop",
                "X-Upstream-Hop": "1",
                "X-Request-Id": "req_1",
            }
        )

        assert dict(headers) == {"X-Request-Id": "req_1"}

    def test_the_accounts_own_quota_headers_stay_there(self) -> None:
        """The pool's quota headers replace them on every proxied answer."""
        headers = client_headers(
            {
                "x-codex-primary-used-percent": "12",
                "x-codex-secondary-reset-at": "1700000000",
                "Content-Type": "text/event-stream",
            }
        )

        assert dict(headers) == {"Content-Type": "text/event-stream"}


class TestReadUsage:
    def test_a_normal_usage_object(self) -> None:
        """The four counts are read where the Responses API puts them."""
        usage = read_usage(
            {
                "input_tokens": 300,
                "input_tokens_details": {"cached_tokens": 100},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 5},
            }
        )

        assert usage == Usage(300, 100, 20, 5)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ({"input_tokens_details": [1], "output_tokens_details": "x"}, (0, 0)),
            ({"input_tokens": math.inf, "output_tokens": math.nan}, (0, 0)),
            ({"input_tokens": 10**400, "output_tokens": -5}, (MAX_TOKENS, 0)),
            ({"input_tokens": True, "output_tokens": "7"}, (0, 0)),
            ({"input_tokens": 12.9, "output_tokens": 1e300}, (12, MAX_TOKENS)),
        ],
        ids=["list-details", "inf-nan", "huge-negative", "bool-string", "floats"],
    )
    def test_broken_counts_are_whole_and_bounded(
        self, raw: dict[str, Any], expected: tuple[int, int]
    ) -> None:
        """A count is a whole number from 0 to MAX_TOKENS, whatever was sent."""
        usage = read_usage(raw)

        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens) == expected

    @pytest.mark.parametrize("raw", [None, "oops", [1], 42])
    def test_no_object_is_no_usage(self, raw: Any) -> None:
        assert read_usage(raw) is None


class TestFailureEvents:
    @pytest.mark.parametrize(
        ("data", "code"),
        [
            ({"response": {"error": {"code": "server_error"}}}, "server_error"),
            ({"response": "oops", "error": {"code": "slow_down"}}, "slow_down"),
            ({"response": [1], "code": "server_is_overloaded"}, "server_is_overloaded"),
            ({"response": 42}, None),
            ({"error": "a string"}, None),
            ({"error": {"code": "x" * 65}}, None),
            ({"error": {"code": "has spaces in it"}}, None),
        ],
    )
    def test_the_error_is_found_wherever_it_is(
        self, data: dict[str, Any], code: str | None
    ) -> None:
        """response.error, then error, then the event's own code; only a
        code-like word counts as a code."""
        assert error_code(event_error(data) or {}) == code

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            ({"resets_at": NOW + 60}, NOW + 60),
            ({"resets_in_seconds": 30}, NOW + 30),
            ({"resets_at": math.inf, "resets_in_seconds": 30}, NOW + 30),
            ({"resets_at": math.nan}, None),
            ({"resets_at": 10**400}, None),
            ({"resets_at": 1e300}, NOW + MAX_RESET_SECONDS),
            ({"resets_at": "soon"}, None),
        ],
    )
    def test_resets_are_finite_and_bounded(
        self, error: dict[str, Any], expected: float | None
    ) -> None:
        assert error_resets_at(error, NOW) == expected

    @pytest.mark.parametrize(
        ("code", "klass"),
        [
            ("server_error", "upstream"),
            ("server_is_overloaded", "upstream"),
            ("usage_limit_reached", "rate_limit"),
            ("insufficient_quota", "quota"),
            ("context_length_exceeded", "client"),
            (None, "client"),
        ],
    )
    def test_in_stream_codes_are_classed_as_statuses_are(
        self, code: str | None, klass: str
    ) -> None:
        """In a stream (status 200) the code alone gives the class."""
        assert error_class(200, code) == klass

    def test_a_server_code_in_a_4xx_body_stays_a_client_error(self) -> None:
        """For an HTTP answer the status decides; a code does not make a 400
        a server error."""
        assert error_class(400, "server_error") == "client"


# Random JSON, with the keys the relay reads coming up often.
KEYS = st.sampled_from(
    [
        "usage",
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
        "cached_tokens",
        "reasoning_tokens",
        "model",
        "status",
        "output",
        "id",
        "message",
        "resets_at",
        "resets_in_seconds",
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
RATE = ("usage_limit_reached", "rate_limit_exceeded")
QUOTA = ("insufficient_quota", "quota_exceeded", "usage_not_included")
SERVER = ("server_error", "server_is_overloaded", "slow_down")
CLIENT = ("context_length_exceeded", "invalid_prompt", "something_else")
TERMINALS = ("response.completed", "response.incomplete", "response.failed", "error")
# What never is junk: the relay finds the error only where the draw puts it.
RESERVED = {"error", "code", "type", "response"}


def spec_class(code: Any) -> str:
    """SPEC section 5's class of an in-stream failure code, from its lists."""
    if code in RATE:
        return "rate_limit"
    if code in QUOTA:
        return "quota"
    if code in SERVER:
        return "upstream"
    return "client"


@st.composite
def terminal_events(draw: st.DrawFn) -> tuple[str, dict[str, Any], Any]:
    """(event name, its data, the code it carries where the relay looks)."""
    name = draw(st.sampled_from(TERMINALS))
    junk = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))
    data = {k: v for k, v in junk.items() if k not in RESERVED}
    response = draw(
        json_values | st.dictionaries(KEYS, json_values, min_size=1, max_size=5)
    )
    code = draw(
        st.sampled_from(RATE + QUOTA + SERVER + CLIENT)
        | st.text(max_size=8)
        | json_values
    )
    place = draw(st.sampled_from(["response.error", "error", "top", "nowhere"]))
    error = {"code": code, "message": draw(json_values)}
    error.update(draw(st.dictionaries(KEYS, json_values, max_size=2)))
    if place == "response.error":
        response = {**(response if isinstance(response, dict) else {}), "error": error}
    elif place == "error":
        data["error"] = error
    elif place == "top":
        data["code"] = code
    data["type"] = name
    data["response"] = response
    return name, data, code if place != "nowhere" else None


def encode(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def reset(lb: LB) -> None:
    """Every account usable again, a the first choice, the log read."""
    for account in lb.pool.accounts:
        # Straight back to active, whatever the example left (resume only
        # ends an operator's pause, and a bench must not outlive an example).
        await lb.pool._set_state(account, AccountState(ACTIVE, None, None))
        account.consecutive_failures = 0
        account.cooldown_until = 0.0
    await prefer(lb, "a@example.com")
    lb.recorder.events.clear()


CODE_LIKE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


# Events of the kinds the /v1 translators read, with fields of any shape.
EVENT_NAMES = st.sampled_from(
    [
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    ]
)
EVENT_KEYS = st.sampled_from(
    [
        "response",
        "item",
        "part",
        "delta",
        "output_index",
        "content_index",
        "item_id",
        "id",
        "call_id",
        "type",
        "name",
        "arguments",
        "content",
        "text",
        "output",
        "usage",
        "status",
        "model",
        "created_at",
        "error",
        "code",
        "total_tokens",
    ]
)
event_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["message", "function_call", "output_text", "refusal"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(EVENT_KEYS, inner, max_size=5)
    ),
    max_leaves=25,
)


class TestTranslatorsReadAnyShape:
    @settings(max_examples=300, deadline=None)
    @given(
        events=st.lists(
            st.tuples(
                EVENT_NAMES, st.dictionaries(EVENT_KEYS, event_values, max_size=6)
            ),
            max_size=8,
        )
    )
    def test_no_event_shape_breaks_a_translator(
        self, events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Any fields of any type in any order: each translator gives an
        answer that serializes, never an exception (a list as an item id, a
        string as content, a billion as a content index)."""
        parsed = [SSEEvent(name, data) for name, data in events]

        for buffered in (ResponsesAnswer(), ChatAnswer("gpt-5")):
            buffered.translate(parsed)
            status, payload = buffered.result()
            assert status in (200, 400, 429, 502)
            json.dumps(payload)
        streamed = ChatStream("gpt-5", include_usage=True)
        out = streamed.translate(parsed) + streamed.fail("x", "y")
        assert out.endswith(b"\n\n")

    def test_a_far_content_index_does_not_grow_the_answer(self) -> None:
        """A content index of a billion puts the part at the end, in O(1)."""
        answer = ResponsesAnswer()
        item = {"type": "message", "content": []}
        answer.translate(
            [
                SSEEvent("response.output_item.added", {"item": item}),
                SSEEvent(
                    "response.output_text.delta",
                    {"output_index": 0, "content_index": 10**9, "delta": "hi"},
                ),
                SSEEvent("response.completed", {"response": {"status": "completed"}}),
            ]
        )

        _, payload = answer.result()

        assert payload["output"][0]["content"] == [
            {"type": "output_text", "text": "hi"}
        ]


class TestAnyShapeThroughTheRelay:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(event=terminal_events(), content_first=st.booleans())
    async def test_codex_stream_outcome_follows_the_class(
        self,
        lb: LB,
        event: tuple[str, dict[str, Any], Any],
        content_first: bool,
    ) -> None:
        """Any terminal or failure event, alone or after a delta in the same
        chunk (so nothing has reached the client yet): no 500; a failure of a
        class that fails over (limit, server error) moves to b and marks a;
        anything else is a's answer byte for byte, a unmarked."""
        await reset(lb)
        name, data, code = event
        stream = CREATED + (delta("x") if content_first else b"") + encode(name, data)
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))
        before = len(await lb.request_logs())

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        rows = await lb.request_logs()
        assert len(rows) == before + 1
        row = rows[-1]
        assert response.status == 200 and row.status_code == 200
        assert row.error_code is None or CODE_LIKE.fullmatch(row.error_code)
        failure = name in ("response.failed", "error")
        klass = spec_class(code) if failure else None
        a, b = lb.ids["a@example.com"], lb.ids["b@example.com"]
        marks = [(m.account_id, m.event) for m in lb.recorder.of("account_marked")]
        account_a = lb.pool.get(a)
        assert account_a is not None

        if klass in ("rate_limit", "quota", "upstream"):
            assert (row.status, row.attempts, row.account_id) == ("success", 2, b)
            assert raw != stream
            if klass == "upstream":
                assert marks == [(a, "error")]
            else:
                assert account_a.status in ("rate_limited", "quota_exceeded")
                assert [m for m in marks if m[1] == "error"] == []
        else:
            assert raw == stream
            assert (row.attempts, row.account_id) == (1, a)
            assert row.status == ("error" if failure else "success")
            assert marks == []
            if failure and code in CLIENT:
                assert row.error_code == code

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        event=terminal_events(),
        route=st.sampled_from(["responses", "responses-stream", "chat", "chat-stream"]),
    )
    async def test_translated_answers_never_fail_with_500(
        self, lb: LB, event: tuple[str, dict[str, Any], Any], route: str
    ) -> None:
        """The /v1 translators read the same events: a clean answer or an
        error in the OpenAI shape, never a 500, and one request-log row."""
        await reset(lb)
        name, data, _ = event
        stream = CREATED + delta("x") + encode(name, data)
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))
        path = "/v1/chat/completions" if route.startswith("chat") else "/v1/responses"
        body: dict[str, Any] = {"model": "gpt-5", "stream": route.endswith("stream")}
        if path.endswith("completions"):
            body["messages"] = [{"role": "user", "content": "hi"}]
        else:
            body["input"] = "hi"
        before = len(await lb.request_logs())

        response = await lb.client.post(path, json=body)
        raw = await response.read()

        assert response.status in (200, 400, 429, 502), raw[:300]
        if response.status != 200:
            error = json.loads(raw)["error"]
            assert {"message", "type", "code"} <= set(error)
        elif not body["stream"]:
            json.loads(raw)
        rows = await lb.request_logs()
        assert len(rows) == before + 1
        assert rows[-1].status_code != 500

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(answer=json_values)
    async def test_any_compact_answer_is_passed_on(self, lb: LB, answer: Any) -> None:
        """A compact answer of any JSON shape goes to the client as sent."""
        await reset(lb)
        lb.emulator.add_fault("a@example.com", Fault.status(200, answer), "compact")

        response = await lb.client.post(
            "/backend-api/codex/responses/compact", json=turn(stream=False)
        )
        raw = await response.read()

        assert response.status == 200
        assert raw == json.dumps(answer).encode()
        row = (await lb.request_logs())[-1]
        assert (row.status, row.status_code) == ("success", 200)
