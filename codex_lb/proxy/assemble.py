"""A whole Responses object rebuilt from the events of its stream.

The upstream only streams, so a client that asked for one JSON answer gets
it assembled here: the terminal event's ``response`` object, with its
``output`` filled in from the ``output_item`` events when the upstream left
it empty. :class:`ResponsesAnswer` is the relay's buffered translator for a
non-streaming ``POST /v1/responses``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from codex_lb.constants import QUOTA_CODES, RATE_LIMIT_CODES
from codex_lb.errors import error_body
from codex_lb.proxy.sse import SSEEvent

# Upstream failure codes that say the request itself was at fault.
CLIENT_FAILURE_CODES = frozenset(
    {
        "context_length_exceeded",
        "invalid_prompt",
        "invalid_request_error",
        "invalid_image",
        "invalid_image_url",
        "model_not_found",
    }
)


class ResponseAssembler:
    """Feed it a stream's events in order; :meth:`build` gives the object."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}
        self.terminal: str | None = None
        self.error: dict[str, Any] | None = None
        self._items: dict[int, dict[str, Any]] = {}

    def feed(self, event: SSEEvent) -> None:
        data = event.data
        if data is None:
            return
        name = event.name
        if name.startswith("response.") and isinstance(data.get("response"), dict):
            # created, in_progress and the terminal events carry the object.
            self.snapshot = data["response"]
        if name in ("response.completed", "response.incomplete", "response.failed"):
            self.terminal = name
            error = self.snapshot.get("error")
            self.error = error if isinstance(error, dict) else None
        elif name == "error":
            self.terminal = name
            nested = data.get("error")
            self.error = nested if isinstance(nested, dict) else data
        elif name == "response.output_item.added":
            self._put_item(data, in_progress=True)
        elif name == "response.output_item.done":
            self._put_item(data, in_progress=False)
        elif name == "response.content_part.added":
            part = data.get("part")
            content = self._content(data)
            if content is not None and isinstance(part, dict):
                index = _slot(content, _index(data, "content_index", len(content)))
                if index == len(content):
                    content.append({})
                content[index] = copy.deepcopy(part)
        elif name in ("response.output_text.delta", "response.refusal.delta"):
            key = "text" if name == "response.output_text.delta" else "refusal"
            self._append_part_text(data, key)
        elif name == "response.function_call_arguments.delta":
            item = self._items.get(_index(data, "output_index", -1))
            delta = data.get("delta")
            if item is not None and isinstance(delta, str):
                item["arguments"] = str(item.get("arguments") or "") + delta

    def build(self) -> dict[str, Any]:
        """The response object: the last snapshot with its output filled in."""
        response = copy.deepcopy(self.snapshot)
        if not response.get("output") and self._items:
            response["output"] = [self._items[i] for i in sorted(self._items)]
        response.setdefault("object", "response")
        response.setdefault("output", [])
        return response

    def failure(self) -> tuple[int, dict[str, Any]] | None:
        """The client's error answer when the stream ended in a failure."""
        if self.terminal not in ("response.failed", "error"):
            return None
        error = self.error or {}
        code = error.get("code") or error.get("type") or "response_failed"
        code = code if isinstance(code, str) else "response_failed"
        message = error.get("message")
        if not isinstance(message, str) or not message:
            message = f"the upstream response failed ({code})"
        if code in CLIENT_FAILURE_CODES:
            status, kind = 400, "invalid_request_error"
        elif code in RATE_LIMIT_CODES or code in QUOTA_CODES:
            status, kind = 429, code
        else:
            status, kind = 502, "upstream_error"
        return status, error_body(code, message, kind)

    def _put_item(self, data: dict[str, Any], in_progress: bool) -> None:
        item = data.get("item")
        if not isinstance(item, dict):
            return
        index = _index(data, "output_index", len(self._items))
        if in_progress and index in self._items:
            return
        self._items[index] = copy.deepcopy(item)

    def _content(self, data: dict[str, Any]) -> list[Any] | None:
        item = self._items.get(_index(data, "output_index", -1))
        if item is None:
            return None
        content = item.get("content")
        if not isinstance(content, list):
            content = item["content"] = []
        return content

    def _append_part_text(self, data: dict[str, Any], key: str) -> None:
        content = self._content(data)
        delta = data.get("delta")
        if content is None or not isinstance(delta, str):
            return
        index = _slot(content, _index(data, "content_index", 0))
        if index == len(content):
            part_type = "output_text" if key == "text" else "refusal"
            content.append({"type": part_type, key: ""})
        part = content[index]
        if isinstance(part, dict):
            part[key] = str(part.get(key) or "") + delta


def _slot(parts: list[Any], index: int) -> int:
    """Where part ``index`` goes: its place, or the end for an index past it.

    The upstream numbers parts from 0 with no gaps; an index out of that
    range (negative, or a billion) goes to the end rather than growing the
    list to it.
    """
    return index if 0 <= index <= len(parts) else len(parts)


def _index(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class ResponsesAnswer:
    """The buffered translator of a non-streaming ``POST /v1/responses``."""

    buffered = True

    def __init__(self) -> None:
        self.assembler = ResponseAssembler()

    def translate(self, events: Sequence[SSEEvent]) -> bytes:
        for event in events:
            self.assembler.feed(event)
        return b""

    def fail(self, code: str, message: str) -> bytes:
        return b""  # never called: a buffered answer has not started

    def result(self) -> tuple[int, dict[str, Any]]:
        failure = self.assembler.failure()
        if failure is not None:
            return failure
        return 200, self.assembler.build()
