"""``POST /v1/responses`` and ``GET /v1/models`` (codex_lb/proxy/openai_api.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codex_lb.proxy.chat import DEFAULT_INSTRUCTIONS
from codex_lb.proxy.openai_api import responses_upstream_body
from codex_lb.sim import Fault
from tests.conftest import LB
from tests.proxy.test_relay import events_of, prefer

V1 = "/v1/responses"
SERVER_FAILED = (
    b"event: response.created\n"
    b'data: {"type":"response.created","response":{"id":"r"}}\n\n'
    b"event: response.failed\n"
    b'data: {"type":"response.failed","response":{"id":"r",'
    b'"status":"failed","error":{"code":"server_error",'
    b'"message":"boom"}}}\n\n'
)


class TestUpstreamBody:
    def test_string_input_and_missing_instructions(self) -> None:
        """A string input becomes a user message; instructions get a default."""
        body, dropped = responses_upstream_body(
            {"model": "gpt-5", "input": "hi", "max_output_tokens": 50, "top_p": 1}
        )

        assert body == {
            "model": "gpt-5",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            ],
            "instructions": DEFAULT_INSTRUCTIONS,
            "stream": True,
            "store": False,
        }
        assert dropped == ["max_output_tokens", "top_p"]

    def test_native_fields_pass_unchanged(self) -> None:
        """Tools, reasoning, text, include and instructions go up as given."""
        given = {
            "model": "gpt-5",
            "instructions": "Be terse.",
            "input": [{"type": "message", "role": "user", "content": "x"}],
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "reasoning": {"effort": "high"},
            "text": {"verbosity": "low"},
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "k",
            "stream": False,
            "store": True,
        }

        body, dropped = responses_upstream_body(given)

        assert body == {**given, "stream": True, "store": False}
        assert dropped == ["store"]

    @pytest.mark.parametrize(
        "name", ["previous_response_id", "conversation", "background", "prompt"]
    )
    def test_stateful_features_are_refused(self, name: str) -> None:
        """What needs a stored response cannot work with store false."""
        from codex_lb.proxy.chat import ParameterError

        with pytest.raises(ParameterError) as caught:
            responses_upstream_body({"model": "gpt-5", "input": "hi", name: "x"})

        assert caught.value.param == name


class TestResponsesRoute:
    async def test_non_streaming_matches_streaming_accounting(self, lb: LB) -> None:
        """The assembled object has the stream's output and usage, priced alike."""
        await prefer(lb, "a@example.com")
        streamed = await lb.client.post(
            V1, json={"model": "gpt-5", "input": "same", "stream": True}
        )
        completed = events_of(await streamed.read())[-1]["response"]

        response = await lb.client.post(V1, json={"model": "gpt-5", "input": "same"})
        body = await response.json()

        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert body["object"] == "response"
        assert body["status"] == "completed"
        assert [item["content"] for item in body["output"]] == [
            [
                {
                    "type": "output_text",
                    "text": "Hello from a@example.com. You said: same",
                    "annotations": [],
                }
            ]
        ]
        assert [item["content"] for item in completed["output"]] == [
            item["content"] for item in body["output"]
        ]
        assert body["usage"] == completed["usage"]
        first, second = await lb.request_logs()
        assert (second.api, second.input_tokens, second.output_tokens) == (
            first.api,
            first.input_tokens,
            first.output_tokens,
        )
        assert second.cost_usd == first.cost_usd
        finished = lb.recorder.of("request_finished")
        assert [(e.api, e.status, e.cost_usd) for e in finished] == [
            ("responses", "success", first.cost_usd),
            ("responses", "success", first.cost_usd),
        ]

    async def test_upstream_always_streams_and_stores_nothing(self, lb: LB) -> None:
        """Whatever the client asks, the upstream gets stream true, store false."""
        await lb.client.post(
            V1, json={"model": "gpt-5", "input": "hi", "stream": False, "store": True}
        )

        sent = lb.emulator.requests[-1].body
        assert (sent["stream"], sent["store"]) == (True, False)

    async def test_refused_parameter_is_400(self, lb: LB) -> None:
        """previous_response_id is refused by name before any account."""
        response = await lb.client.post(
            V1,
            json={"model": "gpt-5", "input": "hi", "previous_response_id": "resp_1"},
        )
        error = (await response.json())["error"]

        assert response.status == 400
        assert (error["code"], error["param"]) == (
            "invalid_request_error",
            "previous_response_id",
        )
        assert lb.emulator.requests == []

    async def test_server_failure_in_a_buffered_answer_moves_on(self, lb: LB) -> None:
        """A non-streaming answer whose stream ends in a server error was never
        sent: the request moves to the next account, the first is marked."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw([SERVER_FAILED]))

        response = await lb.client.post(V1, json={"model": "gpt-5", "input": "hi"})
        body: dict[str, Any] = await response.json()

        assert response.status == 200
        assert body["status"] == "completed"
        assert "Hello from b@example.com" in json.dumps(body["output"])
        [row] = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        (retry,) = lb.recorder.of("retry")
        assert (retry.account_id, retry.error_class, retry.error_code) == (
            lb.ids["a@example.com"],
            "upstream",
            "server_error",
        )
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.account_id, mark.event, mark.code) == (
            lb.ids["a@example.com"],
            "error",
            "server_error",
        )

    async def test_server_failure_on_every_account_is_502(self, lb: LB) -> None:
        """With every account failing so, the client gets 502 upstream_error."""
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(email, Fault.raw([SERVER_FAILED]))

        response = await lb.client.post(V1, json={"model": "gpt-5", "input": "hi"})
        body: dict[str, Any] = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_error"
        assert "server_error" in body["error"]["message"]
        [row] = await lb.request_logs()
        assert (row.status, row.status_code, row.error_code, row.attempts) == (
            "error",
            502,
            "upstream_error",
            2,
        )

    async def test_client_failure_in_a_buffered_answer_is_400(self, lb: LB) -> None:
        """A stream failing for the request's own fault is the client's 400,
        with its code, on the first account, which is not marked."""
        await prefer(lb, "a@example.com")
        failed = SERVER_FAILED.replace(b"server_error", b"context_length_exceeded")
        lb.emulator.add_fault("a@example.com", Fault.raw([failed]))

        response = await lb.client.post(V1, json={"model": "gpt-5", "input": "hi"})
        body: dict[str, Any] = await response.json()

        assert response.status == 400
        assert body["error"]["code"] == "context_length_exceeded"
        assert body["error"]["message"] == "boom"
        [row] = await lb.request_logs()
        assert (row.status_code, row.error_code, row.account_id) == (
            400,
            "context_length_exceeded",
            lb.ids["a@example.com"],
        )
        assert lb.recorder.of("retry") == []
        assert lb.recorder.of("account_marked") == []

    async def test_streaming_is_relayed_byte_for_byte(self, lb: LB) -> None:
        """A streaming /v1/responses passes the upstream's events through."""
        await prefer(lb, "a@example.com")
        stream = (
            b"event: response.created\n"
            b'data: {"type":"response.created","response":{"id":"r"}}\n\n'
            b"event: response.output_text.delta\n"
            b'data: {"type":"response.output_text.delta","delta":"x"}\n\n'
            b"event: response.completed\n"
            b'data: {"type":"response.completed","response":{"id":"r",'
            b'"status":"completed","model":"gpt-5"}}\n\n'
        )
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))

        response = await lb.client.post(
            V1, json={"model": "gpt-5", "input": "hi", "stream": True}
        )

        assert await response.read() == stream


class TestModels:
    async def test_catalog_unavailable_falls_back_to_prices(self, lb: LB) -> None:
        """With every account paused, the price table still lists models."""
        for account in lb.pool.accounts:
            await lb.pool.pause(account)

        response = await lb.client.get("/v1/models")
        body = await response.json()

        assert response.status == 200
        assert body["object"] == "list"
        assert [m["id"] for m in body["data"]] == sorted(lb.emulator.models)

    async def test_one_model_and_unknown_model(self, lb: LB) -> None:
        """``/v1/models/{id}`` gives one model or 404 model_not_found."""
        known = await lb.client.get("/v1/models/gpt-5")
        unknown = await lb.client.get("/v1/models/nope")

        assert await known.json() == {
            "id": "gpt-5",
            "object": "model",
            "created": 0,
            "owned_by": "openai",
        }
        assert unknown.status == 404
        assert (await unknown.json())["error"]["code"] == "model_not_found"
