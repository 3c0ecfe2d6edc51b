"""What the emulated model says, and how many tokens that takes.

Answers are deterministic and name the account that served them, so a test
can tell which account a proxy picked from the text alone:

- a plain prompt gets `Hello from <email>. You said: <prompt>`;
- a prompt holding `SIM_SHELL: <command>` gets a call of the shell tool the
  request offers (`shell_command`, `exec_command` or `shell`), unless the
  tool's output already follows it in `input`;
- a prompt holding `SIM_TOOL: <name> <json arguments>` gets a call of the
  function tool `<name>` with those arguments (`{}` when none), when the
  request offers that tool, unless its output already follows it;
- an `input` ending in a `function_call_output` gets
  `Hello from <email>. Tool said: <output>`.

Token counts are rough but exact for a given request: input is the length
of `input` as compact JSON over four, cached input is whatever the previous
request with the same `prompt_cache_key` on the same account sent, output is
the answer's length over four, plus reasoning tokens that grow with the
requested effort.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

import attrs

SHELL_MARKER: Final = re.compile(r"SIM_SHELL:[ \t]*(.+)")
TOOL_MARKER: Final = re.compile(r"SIM_TOOL:[ \t]*(\S+)[ \t]*(.*)")

# Reasoning tokens per visible output token, by `reasoning.effort`.
REASONING_FACTOR: Final[dict[str, int]] = {
    "none": 0,
    "minimal": 0,
    "low": 1,
    "medium": 2,
    "high": 4,
    "xhigh": 8,
}

# Shell tools the Codex CLI may offer, most specific first, with the
# argument object each one expects for a command line.
SHELL_TOOLS: Final = ("shell_command", "exec_command", "shell")

MAX_ECHO_CHARS: Final = 200


@attrs.frozen
class Answer:
    """What to reply: text, or a single function call when `tool` is set."""

    text: str = ""
    tool: str | None = None
    arguments: str = ""
    call_id: str = ""


@attrs.frozen
class Usage:
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int

    def as_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def _content_text(content: Any) -> str:
    # Message content is either a string or a list of typed parts.
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        part.get("text", "")
        for part in content
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts)


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        return []
    return [item for item in raw if isinstance(item, dict)]


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _tool_names(body: dict[str, Any]) -> set[str]:
    names = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            names.add(tool["name"])
    return names


def _shell_arguments(tool: str, command: str) -> dict[str, Any]:
    if tool == "shell":
        return {"command": ["bash", "-lc", command]}
    if tool == "exec_command":
        return {"cmd": command}
    return {"command": command}


def plan_answer(body: dict[str, Any], email: str) -> Answer:
    """Decide the reply to a Responses request served by `email`."""
    items = _items(body)
    greeting = f"Hello from {email}."

    # A tool result at the end means the model is hearing back from its call.
    if items and items[-1].get("type") == "function_call_output":
        output = items[-1].get("output")
        text = output if isinstance(output, str) else _content_text(output)
        return Answer(text=f"{greeting} Tool said: {text.strip()[:MAX_ECHO_CHARS]}")

    last_user = -1
    for index, item in enumerate(items):
        if _is_user_message(item):
            last_user = index
    prompt = _content_text(items[last_user].get("content")) if last_user >= 0 else ""

    # Ask for a shell command only once per prompt: an output after the
    # prompt (not at the end, so more turns followed) means it already ran.
    marker = SHELL_MARKER.search(prompt)
    answered = any(
        item.get("type") == "function_call_output" for item in items[last_user + 1 :]
    )
    tool_marker = TOOL_MARKER.search(prompt)
    if tool_marker and not answered:
        name, arguments = tool_marker.group(1), tool_marker.group(2).strip()
        if name not in _tool_names(body):
            return Answer(text=f"{greeting} No tool named {name} was offered.")
        digest = hashlib.sha256(f"{email}:{name}:{arguments}:{len(items)}".encode())
        return Answer(
            tool=name,
            arguments=arguments or "{}",
            call_id="call_" + digest.hexdigest()[:24],
        )

    if marker and not answered:
        command = marker.group(1).strip()
        offered = _tool_names(body)
        tool = next((name for name in SHELL_TOOLS if name in offered), None)
        if tool is not None:
            digest = hashlib.sha256(f"{email}:{command}:{len(items)}".encode())
            return Answer(
                tool=tool,
                arguments=json.dumps(_shell_arguments(tool, command)),
                call_id="call_" + digest.hexdigest()[:24],
            )
        return Answer(text=f"{greeting} No shell tool was offered.")

    if prompt.strip():
        return Answer(text=f"{greeting} You said: {prompt.strip()[:MAX_ECHO_CHARS]}")
    return Answer(text=greeting)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a request: its `input` as compact JSON over four."""
    encoded = json.dumps(body.get("input", ""), separators=(",", ":"))
    return max(1, len(encoded) // 4)


def count_usage(body: dict[str, Any], answer: Answer, cached_tokens: int) -> Usage:
    """Token usage of answering `body` with `answer`."""
    input_tokens = estimate_input_tokens(body)
    visible = max(1, len(answer.text or answer.arguments) // 4)

    reasoning = body.get("reasoning")
    effort = "medium"
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        effort = reasoning["effort"]
    reasoning_tokens = visible * REASONING_FACTOR.get(effort, 2)

    return Usage(
        input_tokens=input_tokens,
        cached_tokens=min(cached_tokens, input_tokens),
        output_tokens=visible + reasoning_tokens,
        reasoning_tokens=reasoning_tokens,
    )
