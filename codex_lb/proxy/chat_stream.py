"""Chat Completions answers from the Responses stream.

:class:`ChatStream` turns the upstream's events into ``chat.completion.chunk``
events as they arrive; :class:`ChatAnswer` assembles one ``chat.completion``
from the whole stream. Both are the relay's translators (see outcome.py); the
request side is in chat.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from codex_lb.proxy.assemble import ResponseAssembler
from codex_lb.proxy.sse import SSEEvent
from codex_lb.proxy.upstream import read_usage, token_count


def chat_usage(raw: Any) -> dict[str, Any] | None:
    """Responses usage in Chat's names (counts read as read_usage reads them)."""
    usage = read_usage(raw)
    if usage is None:
        return None
    total = token_count(raw.get("total_tokens"))
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": total or usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _text(value: Any) -> str:
    """``value`` if the upstream sent a string there, else empty."""
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    """``value`` if the upstream sent a list there, else empty."""
    return value if isinstance(value, list) else []


def finish_reason(response: dict[str, Any], called_tools: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called_tools else "stop"


def _completion_id(response_id: Any) -> str:
    if isinstance(response_id, str) and response_id:
        return "chatcmpl-" + response_id.removeprefix("resp_")
    return "chatcmpl-" + uuid.uuid4().hex


class ChatAnswer:
    """The buffered translator: one ``chat.completion`` from the stream."""

    buffered = True

    def __init__(self, model: str) -> None:
        self._model = model
        self._assembler = ResponseAssembler()

    def translate(self, events: Sequence[SSEEvent]) -> bytes:
        for event in events:
            self._assembler.feed(event)
        return b""

    def fail(self, code: str, message: str) -> bytes:
        return b""  # never called: a buffered answer has not started

    def result(self) -> tuple[int, dict[str, Any]]:
        failure = self._assembler.failure()
        if failure is not None:
            return failure
        response = self._assembler.build()

        texts, refusals, calls = [], [], []
        for item in _list(response.get("output")):
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for part in _list(item.get("content")):
                    if not isinstance(part, dict):
                        continue
                    if part.get("type") == "output_text":
                        texts.append(_text(part.get("text")))
                    elif part.get("type") == "refusal":
                        refusals.append(_text(part.get("refusal")))
            elif item.get("type") == "function_call":
                calls.append(
                    {
                        "id": _text(item.get("call_id")) or _text(item.get("id")),
                        "type": "function",
                        "function": {
                            "name": _text(item.get("name")),
                            "arguments": _text(item.get("arguments")),
                        },
                    }
                )

        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": "".join(refusals) if refusals else None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        created = response.get("created_at")
        completion = {
            "id": _completion_id(response.get("id")),
            "object": "chat.completion",
            "created": created if _is_int(created) else int(time.time()),
            "model": _text(response.get("model")) or self._model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(response, bool(calls)),
                }
            ],
            "usage": chat_usage(response.get("usage")),
            "system_fingerprint": None,
        }
        return 200, completion


class ChatStream:
    """The streaming translator: Responses events to ``chat.completion.chunk``."""

    buffered = False

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = _completion_id(None)
        self._created = int(time.time())
        self._opened = False
        # Function-call items by item id: (tool call index, arguments sent).
        self._calls: dict[str, list[Any]] = {}

    def translate(self, events: Sequence[SSEEvent]) -> bytes:
        out = bytearray()
        for event in events:
            out += self._event(event.name, event.data or {})
        return bytes(out)

    def fail(self, code: str, message: str) -> bytes:
        error = {"message": message, "type": "upstream_error", "code": code}
        return _sse({"error": error})

    def result(self) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError("a streamed answer has no single result")

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        response = data.get("response") if isinstance(data, dict) else None
        if name == "response.created" and isinstance(response, dict):
            self._id = _completion_id(response.get("id"))
            created = response.get("created_at")
            if isinstance(created, int) and not isinstance(created, bool):
                self._created = created
            self._model = _text(response.get("model")) or self._model
            return self._delta({})
        if name == "response.output_text.delta":
            return self._delta({"content": _text(data.get("delta"))})
        if name == "response.refusal.delta":
            return self._delta({"refusal": _text(data.get("delta"))})
        if name in ("response.output_item.added", "response.output_item.done"):
            return self._call_item(data.get("item"))
        if name == "response.function_call_arguments.delta":
            call = self._calls.get(_text(data.get("item_id")))
            delta = data.get("delta")
            if call is None or not isinstance(delta, str) or not delta:
                return b""
            call[1] += delta
            return self._delta(
                {"tool_calls": [{"index": call[0], "function": {"arguments": delta}}]}
            )
        if name in ("response.completed", "response.incomplete"):
            return self._finish(response if isinstance(response, dict) else {})
        if name in ("response.failed", "error"):
            return self._failed(data, response)
        return b""

    def _call_item(self, item: Any) -> bytes:
        """A function call's first chunk, or the arguments no delta carried."""
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return b""
        item_id = _text(item.get("id")) or _text(item.get("call_id"))
        arguments = _text(item.get("arguments"))
        call = self._calls.get(item_id)
        if call is None:
            call = self._calls[item_id] = [len(self._calls), arguments]
            head = {
                "index": call[0],
                "id": _text(item.get("call_id")) or item_id,
                "type": "function",
                "function": {"name": _text(item.get("name")), "arguments": arguments},
            }
            return self._delta({"tool_calls": [head]})
        rest = arguments[len(call[1]) :] if arguments.startswith(call[1]) else ""
        if not rest:
            return b""
        call[1] = arguments
        return self._delta(
            {"tool_calls": [{"index": call[0], "function": {"arguments": rest}}]}
        )

    def _finish(self, response: dict[str, Any]) -> bytes:
        out = self._delta({}, finish_reason(response, bool(self._calls)))
        if self._include_usage:
            out += _sse(self._chunk([], usage=chat_usage(response.get("usage"))))
        return out + b"data: [DONE]\n\n"

    def _failed(self, data: dict[str, Any], response: Any) -> bytes:
        error: Any = response.get("error") if isinstance(response, dict) else None
        if not isinstance(error, dict):
            nested = data.get("error")
            error = nested if isinstance(nested, dict) else data
        code = error.get("code") or error.get("type") or "response_failed"
        message = error.get("message") or f"the upstream response failed ({code})"
        return self.fail(str(code), str(message))

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        out = b""
        if not self._opened:
            # The first chunk names the role, as OpenAI's first chunk does.
            self._opened = True
            out = _sse(self._choice({"role": "assistant", "content": ""}, None))
            if not delta and finish is None:
                return out
        return out + _sse(self._choice(delta, finish))

    def _choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._chunk([choice])

    def _chunk(
        self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return chunk


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
