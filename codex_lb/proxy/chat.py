"""Chat Completions requests translated into Responses requests.

The upstream speaks only Responses, streamed. A Chat Completions request is
translated into one (:func:`chat_to_responses`); its stream comes back as
chunks or one completion through the translators in chat_stream.py.

Each Chat parameter is translated, dropped or refused, as the table in
``PARAMETERS`` says; nothing the upstream would reject is sent to fail
there. docs/openai.md gives the same table to users.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from codex_lb.errors import ClientError
from codex_lb.proxy.body import require_model

# What happens to each Chat Completions parameter. Unknown ones are dropped.
TRANSLATED: Final = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "verbosity",
        "prompt_cache_key",
        # Accepted at their single supported value, refused otherwise.
        "n",
        "logprobs",
        "top_logprobs",
        "modalities",
        "stop",
        "logit_bias",
    }
)
# The Codex backend refuses these (max_output_tokens, sampling knobs) or has
# no use for them; a client's harmless default must not fail its request.
DROPPED: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        "safety_identifier",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_retention",
        "prediction",
    }
)
# Features the upstream cannot give: a clear 400 beats a silent change.
REFUSED: Final = {
    "audio": "audio output is not available through the Codex backend",
    "functions": "the deprecated 'functions' parameter is not supported: use 'tools'",
    "function_call": "the deprecated 'function_call' parameter is not supported: "
    "use 'tool_choice'",
    "web_search_options": "web search is not available on /v1/chat/completions",
}


# Sent when a request has no system prompt: the Codex backend answers
# 400 "Instructions are required" to a request without instructions.
DEFAULT_INSTRUCTIONS: Final = "You are a helpful assistant."


class ParameterError(ClientError):
    """A ``/v1`` request codex-lb refuses: a 400 whose ``param`` names the bad
    parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(
            400, "invalid_request_error", message, "invalid_request_error", param
        )


@attrs.frozen
class ChatPlan:
    """A Chat request translated: the upstream body and how to answer."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    dropped: tuple[str, ...]


def chat_to_responses(chat: dict[str, Any]) -> ChatPlan:
    """The Responses request for ``chat``; raises :class:`ParameterError`."""
    for name, reason in REFUSED.items():
        if chat.get(name) is not None:
            raise ParameterError(name, f"'{name}': {reason}")
    _check_single_choice(chat)

    model = require_model(chat)
    stream = chat.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ParameterError("stream", f"'stream' must be a boolean, not {stream!r}")
    options = chat.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ParameterError("stream_options", "'stream_options' must be an object")

    # The Codex backend keeps nothing (store false), only streams, and
    # refuses a request without instructions: the leading system and
    # developer messages become them.
    instructions, items = split_instructions(_input_items(chat.get("messages")))
    body: dict[str, Any] = {
        "model": model,
        "instructions": instructions,
        "input": items,
        "stream": True,
        "store": False,
    }
    tools = chat.get("tools")
    if tools is not None:
        body["tools"] = _tools(tools)
    if chat.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(chat["tool_choice"])
    if chat.get("parallel_tool_calls") is not None:
        body["parallel_tool_calls"] = bool(chat["parallel_tool_calls"])
    if chat.get("reasoning_effort") is not None:
        body["reasoning"] = {"effort": chat["reasoning_effort"]}
    text = _text_options(chat)
    if text:
        body["text"] = text
    if isinstance(chat.get("prompt_cache_key"), str):
        body["prompt_cache_key"] = chat["prompt_cache_key"]

    dropped = tuple(
        sorted(name for name in chat if name not in TRANSLATED and name not in REFUSED)
    )
    return ChatPlan(
        body=body,
        model=model,
        stream=bool(stream),
        include_usage=bool(stream) and options.get("include_usage") is True,
        dropped=dropped,
    )


def split_instructions(
    items: list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """(instructions from the leading developer messages, the other items).

    A developer message later in the conversation stays where it is: its
    place matters. With none leading, :data:`DEFAULT_INSTRUCTIONS` is used.
    """
    texts = []
    start = 0
    for item in items:
        if item.get("type") != "message" or item.get("role") != "developer":
            break
        texts += [part.get("text") or "" for part in item.get("content") or []]
        start += 1
    instructions = "\n\n".join(text for text in texts if text)
    return instructions or DEFAULT_INSTRUCTIONS, items[start:]


def _check_single_choice(chat: dict[str, Any]) -> None:
    """Refuse what would need more than one plain text choice."""
    n = chat.get("n")
    # True == 1 and 1.0 == 1 in Python; neither is the integer the API takes.
    if n is not None and (type(n) is not int or n != 1):
        raise ParameterError("n", f"'n' = {n!r}: only one choice (n = 1) is served")
    if chat.get("logprobs"):
        raise ParameterError(
            "logprobs", "'logprobs': the Codex backend gives no log probabilities"
        )
    if chat.get("top_logprobs"):
        raise ParameterError(
            "top_logprobs",
            "'top_logprobs': the Codex backend gives no log probabilities",
        )
    stop = chat.get("stop")
    if stop:
        raise ParameterError(
            "stop", "'stop': stop sequences are not supported by the Codex backend"
        )
    if chat.get("logit_bias"):
        raise ParameterError(
            "logit_bias", "'logit_bias' is not supported by the Codex backend"
        )
    modalities = chat.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ParameterError(
            "modalities", f"'modalities' = {modalities!r}: only ['text'] is served"
        )


def _input_items(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ParameterError(
            "messages", "'messages' is required and must be a non-empty array"
        )
    items: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ParameterError(where, f"'{where}' must be an object")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            parts = _text_parts(content, f"{where}.content", "input_text")
            items.append(_message("developer", parts))
        elif role == "user":
            items.append(_message("user", _user_parts(content, f"{where}.content")))
        elif role == "assistant":
            items.extend(_assistant_items(message, where))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ParameterError(
                    f"{where}.tool_call_id",
                    f"'{where}.tool_call_id' is required for a tool message",
                )
            output = "".join(
                part["text"] for part in _text_parts(content, f"{where}.content", "")
            )
            items.append(
                {"type": "function_call_output", "call_id": call_id, "output": output}
            )
        else:
            raise ParameterError(
                f"{where}.role",
                f"'{where}.role' = {role!r}: expected system, developer, user, "
                "assistant or tool",
            )
    return items


def _message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": parts}


def _text_parts(content: Any, where: str, kind: str) -> list[dict[str, Any]]:
    """Text-only content (a string or text parts) as parts of ``kind``."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": kind, "text": content}]
    if not isinstance(content, list):
        raise ParameterError(where, f"'{where}' must be a string or an array")
    parts = []
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") not in ("text", "refusal")
            or not isinstance(part.get("text", part.get("refusal")), str)
        ):
            raise ParameterError(
                f"{where}[{index}]", f"'{where}[{index}]' must be a text part here"
            )
        parts.append({"type": kind, "text": part.get("text", part.get("refusal"))})
    return parts


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return _text_parts(content, where, "input_text")
    if not isinstance(content, list):
        raise ParameterError(where, f"'{where}' must be a string or an array")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        here = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise ParameterError(
                    f"{here}.image_url", f"'{here}.image_url.url' is required"
                )
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append(
                {"type": "input_image", "image_url": url, "detail": detail or "auto"}
            )
        elif kind == "file" and isinstance(part.get("file"), dict):
            file = part["file"]
            if not isinstance(file.get("file_data"), str):
                raise ParameterError(
                    f"{here}.file",
                    f"'{here}.file': only inline 'file_data' is served "
                    "(codex-lb has no Files API for 'file_id')",
                )
            translated = {"type": "input_file", "file_data": file["file_data"]}
            if isinstance(file.get("filename"), str):
                translated["filename"] = file["filename"]
            parts.append(translated)
        else:
            raise ParameterError(
                f"{here}.type",
                f"'{here}.type' = {kind!r}: expected text, image_url or file",
            )
    return parts


def _assistant_items(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = []
    parts = _text_parts(message.get("content"), f"{where}.content", "output_text")
    parts = [part for part in parts if part["text"]]
    if parts:
        items.append(_message("assistant", parts))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ParameterError(f"{where}.tool_calls", "'tool_calls' must be an array")
    for index, call in enumerate(calls):
        here = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
        ):
            raise ParameterError(
                here, f"'{here}' needs an 'id' and a 'function' with a 'name'"
            )
        arguments = function.get("arguments", "")
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": function["name"],
                "arguments": arguments if isinstance(arguments, str) else "",
            }
        )
    return items


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise ParameterError("tools", "'tools' must be an array")
    translated = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise ParameterError(
                f"{where}.type",
                f"'{where}.type' = {kind!r}: only function tools are served",
            )
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ParameterError(
                f"{where}.function", f"'{where}.function.name' is required"
            )
        # Responses makes function tools strict by default; Chat does not.
        translated.append(
            {
                "type": "function",
                "name": function["name"],
                "description": function.get("description") or "",
                "parameters": function.get("parameters")
                or {"type": "object", "properties": {}},
                "strict": bool(function.get("strict", False)),
            }
        )
    return translated


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    function = choice.get("function") if isinstance(choice, dict) else None
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(function, dict)
        and isinstance(function.get("name"), str)
    ):
        return {"type": "function", "name": function["name"]}
    raise ParameterError(
        "tool_choice",
        f"'tool_choice' = {choice!r}: expected none, auto, required or "
        '{"type": "function", "function": {"name": ...}}',
    )


def _text_options(chat: dict[str, Any]) -> dict[str, Any]:
    text: dict[str, Any] = {}
    if chat.get("verbosity") is not None:
        text["verbosity"] = chat["verbosity"]
    response_format = chat.get("response_format")
    if response_format is None:
        return text
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        text["format"] = {"type": "json_object"}
    elif kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        schema = response_format["json_schema"]
        text["format"] = {
            "type": "json_schema",
            **{
                key: schema[key]
                for key in ("name", "schema", "strict", "description")
                if key in schema
            },
        }
    elif kind == "json_schema":
        raise ParameterError(
            "response_format",
            "'response_format' of type json_schema needs its 'json_schema' "
            "object (with 'name' and 'schema')",
        )
    elif kind != "text":
        raise ParameterError(
            "response_format",
            f"'response_format' = {response_format!r}: expected type text, "
            "json_object or json_schema",
        )
    return text
