"""The official ``openai`` SDK against codex-lb and the emulator, on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from codex_lb.app import KEYS_KEY
from codex_lb.clientkeys import create_key
from codex_lb.sim import Fault
from tests.conftest import LB

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def expected_usage(recorded_body: dict[str, Any], text: str) -> tuple[int, int, int]:
    """(input, output, reasoning) tokens the emulator charges for ``text``.

    Its rule: input is the compact JSON of ``input`` over four; output is the
    answer over four plus reasoning at twice that (medium effort).
    """
    encoded = json.dumps(recorded_body["input"], separators=(",", ":"))
    visible = max(1, len(text) // 4)
    return max(1, len(encoded) // 4), visible * 3, visible * 2


def gpt5_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * 1.25 + output_tokens * 10.0) / 1_000_000


@pytest.fixture
async def sdk(lb: LB) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK pointed at codex-lb's /v1 (no key is needed on loopback yet)."""
    base_url = str(lb.client.make_url("/v1"))
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="not-needed", max_retries=0
    ) as client:
        yield client


def served_by(lb: LB, account_id: str | None) -> str:
    return next(email for email, id_ in lb.ids.items() if id_ == account_id)


class TestChatCompletions:
    async def test_non_streaming_answer_usage_and_cost(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """A plain chat completion carries the emulator's answer and usage."""
        completion = await sdk.chat.completions.create(
            model="gpt-5",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
            ],
        )

        [row] = await lb.request_logs()
        email = served_by(lb, row.account_id)
        text = f"Hello from {email}. You said: hi"
        input_tokens, output_tokens, reasoning = expected_usage(
            lb.emulator.requests[-1].body, text
        )
        assert completion.object == "chat.completion"
        assert completion.choices[0].message.content == text
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == input_tokens
        assert completion.usage.completion_tokens == output_tokens
        assert completion.usage.total_tokens == input_tokens + output_tokens
        assert completion.usage.completion_tokens_details is not None
        assert completion.usage.completion_tokens_details.reasoning_tokens == reasoning
        assert (row.api, row.status, row.input_tokens, row.output_tokens) == (
            "chat",
            "success",
            input_tokens,
            output_tokens,
        )
        assert row.cost_usd == pytest.approx(gpt5_cost(input_tokens, output_tokens))

    async def test_streaming_chunks_with_final_usage(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """Streamed chunks join to the answer; include_usage adds a usage chunk."""
        stream = await sdk.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

        [row] = await lb.request_logs()
        text = f"Hello from {served_by(lb, row.account_id)}. You said: stream me"
        input_tokens, output_tokens, _ = expected_usage(
            lb.emulator.requests[-1].body, text
        )
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert content == text
        assert chunks[0].choices[0].delta.role == "assistant"
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens == input_tokens
        assert chunks[-1].usage.completion_tokens == output_tokens
        assert (row.input_tokens, row.output_tokens) == (input_tokens, output_tokens)

    async def test_tool_call_round_trip(self, lb: LB, sdk: openai.AsyncOpenAI) -> None:
        """A streamed tool call, its result sent back, and the model's reply."""
        messages: list[Any] = [
            {"role": "user", "content": 'SIM_TOOL: get_weather {"city": "Paris"}'}
        ]
        stream = await sdk.chat.completions.create(
            model="gpt-5", messages=messages, tools=[WEATHER_TOOL], stream=True
        )
        chunks = [chunk async for chunk in stream]
        deltas = [
            call
            for c in chunks
            if c.choices
            for call in c.choices[0].delta.tool_calls or []
        ]
        call_id = deltas[0].id
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)

        assert deltas[0].function is not None
        assert deltas[0].function.name == "get_weather"
        assert arguments == '{"city": "Paris"}'
        assert len(deltas) > 2  # the arguments came in several deltas
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
        ]
        reply = await sdk.chat.completions.create(
            model="gpt-5", messages=messages, tools=[WEATHER_TOOL]
        )

        rows = await lb.request_logs()
        email = served_by(lb, rows[-1].account_id)
        assert reply.choices[0].message.content == (
            f"Hello from {email}. Tool said: sunny, 21 C"
        )
        assert lb.emulator.requests[-1].body["input"][1:] == [
            {
                "type": "function_call",
                "call_id": call_id,
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": "sunny, 21 C",
            },
        ]

    async def test_non_streaming_tool_call(self, sdk: openai.AsyncOpenAI) -> None:
        """A buffered answer lists the call with content null."""
        completion = await sdk.chat.completions.create(
            model="gpt-5",
            messages=[
                {"role": "user", "content": 'SIM_TOOL: get_weather {"city":"Oslo"}'}
            ],
            tools=[WEATHER_TOOL],
        )

        message = completion.choices[0].message
        assert message.content is None
        assert message.tool_calls is not None
        [call] = message.tool_calls
        assert call.type == "function"
        assert (call.function.name, call.function.arguments) == (
            "get_weather",
            '{"city":"Oslo"}',
        )
        assert completion.choices[0].finish_reason == "tool_calls"


class TestResponses:
    async def test_non_streaming_is_assembled(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """A non-streaming response is one object with text and usage."""
        response = await sdk.responses.create(model="gpt-5", input="hello")

        [row] = await lb.request_logs()
        text = f"Hello from {served_by(lb, row.account_id)}. You said: hello"
        input_tokens, output_tokens, reasoning = expected_usage(
            lb.emulator.requests[-1].body, text
        )
        assert response.status == "completed"
        assert response.output_text == text
        assert response.usage is not None
        assert (response.usage.input_tokens, response.usage.output_tokens) == (
            input_tokens,
            output_tokens,
        )
        assert response.usage.output_tokens_details.reasoning_tokens == reasoning
        assert (row.api, row.input_tokens, row.output_tokens) == (
            "responses",
            input_tokens,
            output_tokens,
        )
        assert row.cost_usd == pytest.approx(gpt5_cost(input_tokens, output_tokens))

    async def test_streaming_events(self, lb: LB, sdk: openai.AsyncOpenAI) -> None:
        """A streamed response ends with response.completed and its usage."""
        stream = await sdk.responses.create(model="gpt-5", input="hi", stream=True)
        events = [event async for event in stream]

        [row] = await lb.request_logs()
        text = f"Hello from {served_by(lb, row.account_id)}. You said: hi"
        assert events[0].type == "response.created"
        assert events[-1].type == "response.completed"
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == text
        assert row.status == "success"

    async def test_stream_helper(self, lb: LB, sdk: openai.AsyncOpenAI) -> None:
        """``responses.stream()`` gives text deltas and the final response."""
        async with sdk.responses.stream(model="gpt-5", input="helper") as stream:
            deltas = [
                event.delta
                async for event in stream
                if event.type == "response.output_text.delta"
            ]
            final = await stream.get_final_response()

        [row] = await lb.request_logs()
        text = f"Hello from {served_by(lb, row.account_id)}. You said: helper"
        assert "".join(deltas) == text
        assert final.output_text == text

    async def test_tool_call_round_trip(self, lb: LB, sdk: openai.AsyncOpenAI) -> None:
        """A shell call from the emulator, its output, and the reply."""
        tool: Any = {
            "type": "function",
            "name": "exec_command",
            "description": "Run a command.",
            "parameters": {
                "type": "object",
                "properties": {"cmd": {"type": "string"}},
                "required": ["cmd"],
            },
            "strict": False,
        }
        prompt: Any = {"role": "user", "content": "SIM_SHELL: ls -l"}
        first = await sdk.responses.create(model="gpt-5", input=[prompt], tools=[tool])
        [call] = [item for item in first.output if item.type == "function_call"]

        assert (call.name, json.loads(call.arguments)) == (
            "exec_command",
            {"cmd": "ls -l"},
        )

        second = await sdk.responses.create(
            model="gpt-5",
            input=[
                prompt,
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": "total 0",
                },
            ],
            tools=[tool],
        )

        rows = await lb.request_logs()
        email = served_by(lb, rows[-1].account_id)
        assert second.output_text == f"Hello from {email}. Tool said: total 0"


class TestErrors:
    async def test_wrong_key_is_authentication_error(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """Once a key exists, a wrong one is a 401 AuthenticationError."""
        await create_key(lb.store, "ci")
        await lb.app[KEYS_KEY].load()

        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "hi"}]
            )

        assert caught.value.status_code == 401
        assert lb.emulator.requests == []

    async def test_a_key_of_another_kind_is_named_as_such(self, lb: LB) -> None:
        """A bearer that is no codex-lb key is told so, not that none was sent."""
        await create_key(lb.store, "ci")
        await lb.app[KEYS_KEY].load()
        chat = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}

        foreign = await lb.client.post(
            "/v1/chat/completions",
            json=chat,
            headers={"Authorization": "Bearer sk-proj-an-openai-key"},
        )
        missing = await lb.client.post("/v1/chat/completions", json=chat)

        assert foreign.status == missing.status == 401
        foreign_error = (await foreign.json())["error"]
        assert foreign_error["message"].startswith(
            "the bearer token sent is not a codex-lb API key: codex-lb keys start "
            "with sk-clb-"
        )
        assert "sk-proj" not in foreign_error["message"]
        assert (await missing.json())["error"]["message"] == (
            "a codex-lb API key is required (Authorization: Bearer sk-clb-...)"
        )

    async def test_right_key_is_served_and_logged(self, lb: LB) -> None:
        """A created key is accepted and the request log names it."""
        key, row = await create_key(lb.store, "ci")
        await lb.app[KEYS_KEY].load()
        base_url = str(lb.client.make_url("/v1"))

        async with openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0
        ) as client:
            await client.responses.create(model="gpt-5", input="hi")

        [logged] = await lb.request_logs()
        assert logged.api_key_id == row.id

    async def test_pool_limited_is_rate_limit_error(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """Every account full: RateLimitError 429 usage_limit_reached."""
        for email in lb.ids:
            lb.emulator.set_usage(email, primary=100.0)

        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "hi"}]
            )

        assert caught.value.status_code == 429
        assert caught.value.code == "usage_limit_reached"

    async def test_refused_parameter_is_bad_request(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """n = 2 is refused with a 400 naming the parameter, before any account."""
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "hi"}], n=2
            )

        assert caught.value.status_code == 400
        assert caught.value.code == "invalid_request_error"
        assert caught.value.param == "n"
        assert lb.emulator.requests == []

    async def test_unknown_model_is_bad_request(self, sdk: openai.AsyncOpenAI) -> None:
        """The upstream's own 400 reaches the SDK as BadRequestError."""
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.responses.create(model="no-such-model", input="hi")

        assert caught.value.code == "model_not_found"

    async def test_no_accounts_is_503(self, lb: LB, sdk: openai.AsyncOpenAI) -> None:
        """Every account paused: APIStatusError 503 no_accounts."""
        for account in lb.pool.accounts:
            await lb.pool.pause(account)

        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.responses.create(model="gpt-5", input="hi")

        assert caught.value.status_code == 503
        assert caught.value.code == "no_accounts"

    async def test_stream_cut_after_content_raises(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """A chat stream cut mid-way ends with an error the SDK raises."""
        for email in lb.ids:
            lb.emulator.add_fault(email, Fault.cut(after_events=5))
        stream = await sdk.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}], stream=True
        )

        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass

        assert caught.value.code == "stream_incomplete"
        [row] = await lb.request_logs()
        assert (row.status, row.error_code) == ("error", "stream_incomplete")


class TestModels:
    async def test_models_list_names_catalog_and_price_table(
        self, lb: LB, sdk: openai.AsyncOpenAI
    ) -> None:
        """The list holds the upstream catalog's models and the priced ones."""
        page = await sdk.models.list()

        ids = [model.id for model in page.data]
        assert ids == list(lb.emulator.models)
        assert all(model.object == "model" for model in page.data)
        assert await lb.request_logs() == []
