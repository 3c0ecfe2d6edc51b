"""The SSE reader finds events and the terminal one, however bytes arrive."""

from __future__ import annotations

import json

import pytest

from codex_lb.proxy.sse import SSEReader


def created(instructions: str = "") -> bytes:
    data = {
        "type": "response.created",
        "response": {"id": "resp_1", "status": "in_progress"},
    }
    if instructions:
        data["response"]["instructions"] = instructions  # type: ignore[index]
    return f"event: response.created\ndata: {json.dumps(data)}\n\n".encode()


def delta(text: str) -> bytes:
    data = {"type": "response.output_text.delta", "delta": text}
    return f"event: response.output_text.delta\ndata: {json.dumps(data)}\n\n".encode()


def done(i: int, c: int, o: int, r: int) -> bytes:
    data = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "status": "completed",
            "model": "gpt-5",
            "usage": {
                "input_tokens": i,
                "input_tokens_details": {"cached_tokens": c},
                "output_tokens": o,
                "output_tokens_details": {"reasoning_tokens": r},
                "total_tokens": i + o,
            },
        },
    }
    return f"event: response.completed\ndata: {json.dumps(data)}\n\n".encode()


def read_all(stream: bytes, size: int) -> tuple[list[str], SSEReader]:
    reader = SSEReader()
    names: list[str] = []
    for start in range(0, len(stream), size):
        names += [e.name for e in reader.feed(stream[start : start + size])]
    names += [e.name for e in reader.finish()]
    return names, reader


class TestSSEReader:
    @pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096, 10**9])
    def test_any_chunking_gives_the_same_events(self, size: int) -> None:
        """Events and the terminal usage are found whatever the chunk size."""
        stream = created() + delta("hi") + delta("there") + done(300, 100, 2, 1)

        names, reader = read_all(stream, size)

        assert names == [
            "response.created",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.completed",
        ]
        assert reader.terminal is not None and reader.terminal.data is not None
        usage = reader.terminal.data["response"]["usage"]
        assert usage["input_tokens"] == 300
        assert usage["input_tokens_details"]["cached_tokens"] == 100

    @pytest.mark.parametrize("cut", [1, 2])
    def test_last_event_without_blank_line_is_still_terminal(self, cut: int) -> None:
        """C02: a final event missing one or both newlines still counts."""
        stream = (created() + delta("hi") + done(300, 0, 2, 0))[:-cut]

        names, reader = read_all(stream, 5)

        assert names[-1] == "response.completed"
        assert reader.terminal is not None and reader.terminal.data is not None
        assert reader.terminal.data["response"]["usage"]["output_tokens"] == 2

    @pytest.mark.parametrize("mib", [1, 3])
    def test_huge_single_line_event(self, mib: int) -> None:
        """C01: a multi-MiB data line is read without a line-length error."""
        stream = created("x" * (mib * 1024 * 1024)) + delta("ok") + done(5000, 0, 3, 0)

        names, reader = read_all(stream, 65536)

        assert names == [
            "response.created",
            "response.output_text.delta",
            "response.completed",
        ]
        assert not reader.overflowed
        assert reader.terminal is not None and reader.terminal.data is not None

    def test_crlf_line_endings_split_between_chunks(self) -> None:
        """CRLF endings, even with CR and LF in different chunks, are read."""
        stream = (created() + done(1, 0, 1, 0)).replace(b"\n", b"\r\n")

        names, _ = read_all(stream, 1)

        assert names == ["response.created", "response.completed"]

    def test_event_without_event_line_is_named_by_its_type(self) -> None:
        """A data-only event takes its name from the JSON ``type``."""
        stream = b'data: {"type":"response.completed","response":{}}\n\n'

        names, reader = read_all(stream, 3)

        assert names == ["response.completed"]
        assert reader.terminal is not None

    def test_content_flag_ignores_opening_events(self) -> None:
        """Only events past the opening ones count as content."""
        reader = SSEReader()

        reader.feed(created())
        before = reader.saw_content
        reader.feed(delta("x"))

        assert before is False
        assert reader.saw_content is True

    def test_over_the_cap_is_reported_not_raised(self) -> None:
        """An event beyond the cap sets ``overflowed`` and stops reading."""
        reader = SSEReader(max_event_bytes=1000)

        reader.feed(b"data: " + b"x" * 2000)

        assert reader.overflowed
        assert reader.feed(b"\n\n") == []

    def test_mixed_line_endings_fed_byte_by_byte_keep_every_event(self) -> None:
        """LF and CRLF mixed, cut into single bytes, give what one chunk gives."""
        stream = (
            b"event: response.in_progress\ndata: {}\n"
            b"event: response.failed\ndata: 1\r\n\r\n"
            b'event: response.completed\ndata: {"a": 1}'
        )

        names, reader = read_all(stream, 1)

        assert names == ["response.failed", "response.completed"]
        assert reader.terminal is not None
        assert reader.terminal.data == {"a": 1}
