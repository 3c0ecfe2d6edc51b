"""Responses API objects and the Server-Sent Events that stream them.

The event sequence follows the real backend: `response.created`,
`response.in_progress`, then per output item `output_item.added`, its
content (text parts and deltas, or function-call argument deltas) and
`output_item.done`, and last `response.completed` carrying the whole
response with its usage. Every event's data has `type` and a
`sequence_number`, and each is framed as `event: NAME\\ndata: JSON\\n\\n`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .answers import Answer, Usage

Event = tuple[str, dict[str, Any]]


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    """Frame one event for the wire."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def split_text(text: str, pieces: int) -> list[str]:
    """Cut `text` into at most `pieces` consecutive non-empty deltas."""
    pieces = max(1, min(pieces, len(text) or 1))
    size, extra = divmod(len(text), pieces)
    parts, start = [], 0
    for index in range(pieces):
        end = start + size + (1 if index < extra else 0)
        parts.append(text[start:end])
        start = end
    return [part for part in parts if part] or [""]


def response_ids(seed: str) -> tuple[str, str]:
    """A response id and an output item id derived from `seed`."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return "resp_" + digest[:32], "msg_" + digest[32:64]


def output_item(answer: Answer, item_id: str) -> dict[str, Any]:
    """The finished output item for `answer`."""
    if answer.tool is not None:
        return {
            "type": "function_call",
            "id": "fc_" + item_id.removeprefix("msg_"),
            "status": "completed",
            "name": answer.tool,
            "arguments": answer.arguments,
            "call_id": answer.call_id,
        }
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
    }


def response_object(
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    body: dict[str, Any],
) -> dict[str, Any]:
    """A Responses API response object as the backend returns it."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", False)),
        "reasoning": body.get("reasoning"),
        "store": bool(body.get("store", False)),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "usage": usage.as_json() if usage is not None else None,
    }


def _text_item_events(answer: Answer, item_id: str, deltas: int) -> list[Event]:
    item = output_item(answer, item_id)
    opened = {**item, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}

    events: list[Event] = [
        ("response.output_item.added", {"output_index": 0, "item": opened}),
        ("response.content_part.added", {**where, "part": part}),
    ]
    for delta in split_text(answer.text, deltas):
        events.append(("response.output_text.delta", {**where, "delta": delta}))
    done_part = {**part, "text": answer.text}
    events += [
        ("response.output_text.done", {**where, "text": answer.text}),
        ("response.content_part.done", {**where, "part": done_part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
    ]
    return events


def _call_item_events(answer: Answer, item_id: str, deltas: int) -> list[Event]:
    item = output_item(answer, item_id)
    opened = {**item, "status": "in_progress", "arguments": ""}
    where = {"item_id": item["id"], "output_index": 0}

    events: list[Event] = [
        ("response.output_item.added", {"output_index": 0, "item": opened}),
    ]
    for delta in split_text(answer.arguments, deltas):
        events.append(
            ("response.function_call_arguments.delta", {**where, "delta": delta})
        )
    events += [
        (
            "response.function_call_arguments.done",
            {**where, "arguments": answer.arguments},
        ),
        ("response.output_item.done", {"output_index": 0, "item": item}),
    ]
    return events


def build_events(
    answer: Answer,
    usage: Usage,
    model: str,
    created_at: int,
    body: dict[str, Any],
    seed: str,
    deltas: int,
) -> list[Event]:
    """Every event of a successful streamed answer, numbered in order."""
    response_id, item_id = response_ids(seed)
    pending = response_object(
        response_id, model, created_at, "in_progress", [], None, body
    )
    done = response_object(
        response_id,
        model,
        created_at,
        "completed",
        [output_item(answer, item_id)],
        usage,
        body,
    )

    if answer.tool is not None:
        item_events = _call_item_events(answer, item_id, deltas)
    else:
        item_events = _text_item_events(answer, item_id, deltas)
    events: list[Event] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
        *item_events,
        ("response.completed", {"response": done}),
    ]

    # Number the events the way the backend does; `type` repeats the name.
    return [
        (name, {"type": name, "sequence_number": number, **data})
        for number, (name, data) in enumerate(events)
    ]
