"""Chat Completions translated to Responses and back (codex_lb/proxy/chat.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codex_lb.proxy.chat import DEFAULT_INSTRUCTIONS, ParameterError, chat_to_responses
from codex_lb.proxy.chat_stream import ChatStream
from codex_lb.proxy.sse import SSEEvent
from codex_lb.sim import Fault
from tests.conftest import LB
from tests.proxy.test_relay import prefer

CHAT = "/v1/chat/completions"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chunks_of(raw: bytes) -> list[Any]:
    """The data of each SSE event, parsed ("[DONE]" kept as a string)."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


class TestRequestTranslation:
    def test_messages_become_instructions_and_items(self) -> None:
        """Leading system/developer text is the instructions; the rest are items."""
        plan = chat_to_responses(
            {
                "model": "gpt-5",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "text", "text": "No."}]},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AAAA"},
                            },
                        ],
                    },
                    {"role": "assistant", "content": "A dot."},
                    {"role": "system", "content": "Answer in French now."},
                    user("Encore?"),
                ],
            }
        )

        assert plan.body == {
            "model": "gpt-5",
            "instructions": "Be brief.\n\nNo.",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,AAAA",
                            "detail": "auto",
                        },
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "A dot."}],
                },
                {
                    "type": "message",
                    "role": "developer",
                    "content": [
                        {"type": "input_text", "text": "Answer in French now."}
                    ],
                },
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Encore?"}],
                },
            ],
            "stream": True,
            "store": False,
        }
        assert (plan.stream, plan.include_usage, plan.dropped) == (False, False, ())

    def test_no_system_message_gets_default_instructions(self) -> None:
        """The Codex backend needs instructions: a neutral default is sent."""
        plan = chat_to_responses({"model": "gpt-5", "messages": [user("hi")]})

        assert plan.body["instructions"] == DEFAULT_INSTRUCTIONS

    def test_tools_and_tool_messages(self) -> None:
        """Function tools, tool_choice, assistant calls and tool results."""
        plan = chat_to_responses(
            {
                "model": "gpt-5",
                "messages": [
                    user("weather?"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "wx", "arguments": '{"c":1}'},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "wx",
                            "parameters": {"type": "object", "properties": {}},
                        },
                    }
                ],
                "tool_choice": {"type": "function", "function": {"name": "wx"}},
                "parallel_tool_calls": False,
            }
        )

        assert plan.body["input"][1:] == [
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "wx",
                "arguments": '{"c":1}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]
        assert plan.body["tools"] == [
            {
                "type": "function",
                "name": "wx",
                "description": "",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            }
        ]
        assert plan.body["tool_choice"] == {"type": "function", "name": "wx"}
        assert plan.body["parallel_tool_calls"] is False

    def test_options_translated_and_dropped(self) -> None:
        """Effort, format and cache key go up; token limits and sampling do not."""
        plan = chat_to_responses(
            {
                "model": "gpt-5",
                "messages": [user("hi")],
                "stream": True,
                "stream_options": {"include_usage": True},
                "reasoning_effort": "low",
                "verbosity": "low",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                },
                "prompt_cache_key": "session-1",
                "max_tokens": 100,
                "max_completion_tokens": 100,
                "temperature": 0.2,
                "top_p": 0.9,
                "seed": 7,
                "user": "someone",
                "n": 1,
                "logprobs": False,
                "stop": None,
                "some_vendor_option": True,
            }
        )

        assert plan.body == {
            "model": "gpt-5",
            "instructions": DEFAULT_INSTRUCTIONS,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            ],
            "stream": True,
            "store": False,
            "reasoning": {"effort": "low"},
            "text": {
                "verbosity": "low",
                "format": {
                    "type": "json_schema",
                    "name": "x",
                    "schema": {"type": "object"},
                },
            },
            "prompt_cache_key": "session-1",
        }
        assert (plan.stream, plan.include_usage) == (True, True)
        assert plan.dropped == (
            "max_completion_tokens",
            "max_tokens",
            "seed",
            "some_vendor_option",
            "temperature",
            "top_p",
            "user",
        )

    @pytest.mark.parametrize(
        ("extra", "param"),
        [
            ({"n": 3}, "n"),
            ({"logprobs": True}, "logprobs"),
            ({"top_logprobs": 2}, "top_logprobs"),
            ({"stop": ["\n"]}, "stop"),
            ({"logit_bias": {"50256": -100}}, "logit_bias"),
            ({"modalities": ["text", "audio"]}, "modalities"),
            ({"audio": {"voice": "alloy"}}, "audio"),
            ({"functions": [{"name": "f"}]}, "functions"),
            ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
            ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
            ({"messages": []}, "messages"),
            (
                {"messages": [{"role": "tool", "content": "x"}]},
                "messages[0].tool_call_id",
            ),
            (
                {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
                "messages[0].content[0].type",
            ),
            ({"response_format": {"type": "yaml"}}, "response_format"),
        ],
    )
    def test_refused_parameters_are_named(
        self, extra: dict[str, Any], param: str
    ) -> None:
        """Each unsupported feature is refused, naming its parameter."""
        body = {"model": "gpt-5", "messages": [user("hi")], **extra}

        with pytest.raises(ParameterError) as caught:
            chat_to_responses(body)

        assert caught.value.param == param

    def test_a_json_schema_format_without_its_schema_says_so(self) -> None:
        body = {
            "model": "gpt-5",
            "messages": [user("hi")],
            "response_format": {"type": "json_schema"},
        }

        with pytest.raises(ParameterError) as caught:
            chat_to_responses(body)

        assert caught.value.param == "response_format"
        assert "needs its 'json_schema' object" in str(caught.value)


def event(name: str, **data: Any) -> SSEEvent:
    return SSEEvent(name, {"type": name, **data})


class TestChatStream:
    def test_text_stream_to_chunks(self) -> None:
        """Opening, deltas and completion become role, content, stop and usage."""
        stream = ChatStream("gpt-5", include_usage=True)
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 16,
        }

        raw = stream.translate(
            [
                event(
                    "response.created",
                    response={"id": "resp_abc", "created_at": 1700, "model": "gpt-5"},
                ),
                event("response.output_text.delta", delta="Hel"),
                event("response.output_text.delta", delta="lo"),
                event(
                    "response.completed",
                    response={"id": "resp_abc", "status": "completed", "usage": usage},
                ),
            ]
        )

        chunks = chunks_of(raw)
        assert chunks[-1] == "[DONE]"
        assert [c["choices"][0]["delta"] for c in chunks[:4]] == [
            {"role": "assistant", "content": ""},
            {"content": "Hel"},
            {"content": "lo"},
            {},
        ]
        assert chunks[3]["choices"][0]["finish_reason"] == "stop"
        assert {c["id"] for c in chunks[:5]} == {"chatcmpl-abc"}
        assert chunks[4]["choices"] == []
        assert chunks[4]["usage"] == {
            "prompt_tokens": 10,
            "completion_tokens": 6,
            "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }

    def test_arguments_without_deltas_come_from_item_done(self) -> None:
        """A call whose arguments arrive only whole is still streamed in full."""
        stream = ChatStream("gpt-5", include_usage=False)
        item = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "wx",
            "arguments": "",
        }

        raw = stream.translate(
            [
                event("response.output_item.added", output_index=0, item=item),
                event(
                    "response.output_item.done",
                    output_index=0,
                    item={**item, "arguments": '{"c":1}'},
                ),
                event("response.completed", response={"status": "completed"}),
            ]
        )

        chunks = chunks_of(raw)
        calls = [
            call
            for c in chunks[:-1]
            for call in c["choices"][0]["delta"].get("tool_calls", [])
        ]
        assert calls == [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "wx", "arguments": ""},
            },
            {"index": 0, "function": {"arguments": '{"c":1}'}},
        ]
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert "usage" not in chunks[-2]

    def test_incomplete_is_length(self) -> None:
        """A response cut by its output limit finishes with "length"."""
        stream = ChatStream("gpt-5", include_usage=False)

        raw = stream.translate(
            [
                event(
                    "response.incomplete",
                    response={
                        "status": "incomplete",
                        "incomplete_details": {"reason": "max_output_tokens"},
                    },
                )
            ]
        )

        assert chunks_of(raw)[-2]["choices"][0]["finish_reason"] == "length"


class TestChatRoute:
    async def test_refusal_is_400_before_any_account(self, lb: LB) -> None:
        """A refused parameter is a 400 naming it; the upstream sees nothing."""
        response = await lb.client.post(
            CHAT, json={"model": "gpt-5", "messages": [user("hi")], "n": 2}
        )

        assert response.status == 400
        assert (await response.json())["error"] == {
            "message": "'n' = 2: only one choice (n = 1) is served",
            "type": "invalid_request_error",
            "code": "invalid_request_error",
            "param": "n",
        }
        assert lb.emulator.requests == []

    async def test_dropped_parameters_never_reach_upstream(self, lb: LB) -> None:
        """max_tokens and temperature are dropped; the answer still comes."""
        response = await lb.client.post(
            CHAT,
            json={
                "model": "gpt-5",
                "messages": [user("hi")],
                "max_tokens": 5,
                "temperature": 0,
            },
        )

        assert response.status == 200
        sent = lb.emulator.requests[-1].body
        assert sorted(sent) == ["input", "instructions", "model", "store", "stream"]
        assert (sent["stream"], sent["store"]) == (True, False)

    async def test_stream_without_include_usage_has_no_usage(self, lb: LB) -> None:
        """Without stream_options, chunks carry no usage and end with [DONE]."""
        response = await lb.client.post(
            CHAT, json={"model": "gpt-5", "messages": [user("hi")], "stream": True}
        )
        chunks = chunks_of(await response.read())

        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert chunks[-1] == "[DONE]"
        assert all("usage" not in c for c in chunks[:-1])
        [row] = await lb.request_logs()
        assert (row.api, row.status) == ("chat", "success")

    async def test_stream_cut_before_content_fails_over(self, lb: LB) -> None:
        """A cut during the held-back opening moves invisibly to the other account."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.cut(after_events=2))

        response = await lb.client.post(
            CHAT, json={"model": "gpt-5", "messages": [user("hi")], "stream": True}
        )
        chunks = chunks_of(await response.read())

        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks[:-1]
            if c["choices"]
        )
        assert text == "Hello from b@example.com. You said: hi"
        rows = await lb.request_logs()
        assert (rows[-1].status, rows[-1].attempts) == ("success", 2)

    async def test_buffered_answer_fails_over_after_content(self, lb: LB) -> None:
        """Nothing of a buffered answer is sent early, so a late cut fails over."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.cut(after_events=5))

        response = await lb.client.post(
            CHAT, json={"model": "gpt-5", "messages": [user("hi")]}
        )
        body = await response.json()

        assert response.status == 200
        assert body["choices"][0]["message"]["content"] == (
            "Hello from b@example.com. You said: hi"
        )
        [row] = await lb.request_logs()
        assert (row.account_id, row.attempts) == (lb.ids["b@example.com"], 2)
        assert [r.error_class for r in lb.recorder.of("retry")] == ["transport"]
