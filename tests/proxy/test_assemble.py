"""Rebuilding a Responses object from its stream (codex_lb/proxy/assemble.py)."""

from __future__ import annotations

from typing import Any

from codex_lb.proxy.assemble import ResponseAssembler, ResponsesAnswer
from codex_lb.proxy.sse import SSEEvent


def event(name: str, **data: Any) -> SSEEvent:
    return SSEEvent(name, {"type": name, **data})


MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
PART = {"type": "output_text", "text": "", "annotations": []}
CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "f",
    "arguments": "",
}


class TestResponseAssembler:
    def test_empty_terminal_output_is_filled_from_items(self) -> None:
        """An upstream that leaves ``output`` empty still yields the items."""
        assembler = ResponseAssembler()
        done_call = {**CALL, "arguments": '{"a":1}', "status": "completed"}
        for e in [
            event("response.created", response={"id": "r", "status": "in_progress"}),
            event("response.output_item.added", output_index=0, item=MESSAGE),
            event(
                "response.content_part.added",
                output_index=0,
                content_index=0,
                part=PART,
            ),
            event(
                "response.output_text.delta",
                output_index=0,
                content_index=0,
                delta="Hi",
            ),
            event(
                "response.output_text.delta", output_index=0, content_index=0, delta="!"
            ),
            event("response.output_item.added", output_index=1, item=CALL),
            event("response.function_call_arguments.delta", output_index=1, delta="{"),
            event("response.output_item.done", output_index=1, item=done_call),
            event(
                "response.completed",
                response={"id": "r", "status": "completed", "output": []},
            ),
        ]:
            assembler.feed(e)

        assert assembler.build() == {
            "id": "r",
            "object": "response",
            "status": "completed",
            "output": [
                {**MESSAGE, "content": [{**PART, "text": "Hi!"}]},
                done_call,
            ],
        }

    def test_terminal_output_wins_when_given(self) -> None:
        """The upstream's own final output is kept as it came."""
        assembler = ResponseAssembler()
        final = [{"type": "message", "id": "msg_9", "content": []}]

        assembler.feed(
            event("response.output_item.added", output_index=0, item=MESSAGE)
        )
        assembler.feed(
            event("response.completed", response={"id": "r", "output": final})
        )

        assert assembler.build()["output"] == final

    def test_error_event_is_an_upstream_error(self) -> None:
        """A bare ``error`` event becomes a 502 with its code and message."""
        answer = ResponsesAnswer()

        answer.translate([event("error", code="server_error", message="down")])

        assert answer.result() == (
            502,
            {
                "error": {
                    "message": "down",
                    "type": "upstream_error",
                    "code": "server_error",
                    "param": None,
                }
            },
        )

    def test_context_length_failure_is_a_client_error(self) -> None:
        """A failure that names the request's own fault is a 400."""
        answer = ResponsesAnswer()
        error = {"code": "context_length_exceeded", "message": "too long"}

        answer.translate(
            [event("response.failed", response={"status": "failed", "error": error})]
        )

        status, body = answer.result()
        assert (status, body["error"]["type"]) == (400, "invalid_request_error")
