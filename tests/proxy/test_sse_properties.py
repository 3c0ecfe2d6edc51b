"""Properties of the SSE reader and of pass-through, drawn by Hypothesis.

The streams are real ones, built by the emulator's own event builder; the
reader must find the same events however they are split, must never raise on
any bytes at all, and the relay must hand the client exactly the upstream's
bytes whatever their chunking.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_lb.proxy.sse import SSEEvent, SSEReader
from codex_lb.sim import Fault
from codex_lb.sim.answers import count_usage, plan_answer
from codex_lb.sim.streams import build_events, encode_event
from tests.conftest import LB
from tests.proxy.test_relay import CODEX, events_of, only, turn


def real_stream(prompt: str, tools: bool = False) -> bytes:
    """The bytes the emulator streams for one Codex turn asking ``prompt``."""
    body: dict[str, Any] = {
        "model": "gpt-5",
        "input": [{"type": "message", "role": "user", "content": prompt}],
        "stream": True,
    }
    if tools:
        body["tools"] = [{"type": "function", "name": "exec_command"}]
    answer = plan_answer(body, "a@example.com")
    usage = count_usage(body, answer, 0)
    events = build_events(answer, usage, "gpt-5", 1_800_000_000, body, prompt, 12)
    return b"".join(encode_event(name, data) for name, data in events)


TEXT = real_stream("say something long " * 20)
TOOL = real_stream("SIM_SHELL: echo hi", tools=True)
STREAMS = {
    "text": TEXT,
    "tool": TOOL,
    "crlf": TEXT.replace(b"\n", b"\r\n"),
    "cr": TOOL.replace(b"\n", b"\r"),
    "keepalives": TEXT.replace(b"\n\n", b"\n\n: keep-alive\n\n"),
    "no-final-blank-line": TEXT[:-2],
}


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at every offset in ``cuts`` (empty pieces included)."""
    points = sorted(min(c, len(data)) for c in cuts)
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def read(chunks: list[bytes], **options: Any) -> tuple[list[SSEEvent], SSEReader]:
    reader = SSEReader(**options)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += reader.feed(chunk)
    events += reader.finish()
    return events, reader


def summary(events: list[SSEEvent], reader: SSEReader) -> tuple[Any, ...]:
    terminal = reader.terminal
    return (
        [(e.name, e.data) for e in events],
        terminal.name if terminal else None,
        terminal.data if terminal else None,
        reader.saw_content,
        reader.overflowed,
    )


cuts = st.lists(st.integers(min_value=0, max_value=len(TEXT) + 10), max_size=40)
# Pieces of SSE syntax, so random streams often look nearly right.
pieces = st.sampled_from(
    [
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"event:",
        b"event: response.completed",
        b"event: response.output_text.delta",
        b"data:",
        b"data: ",
        b'{"type":"response.completed","response":{"usage":{"input_tokens":1}}}',
        b'{"type":"error"',
        b": comment",
        b" ",
        b"\xff\xfe",
        b"\x00",
        b"[1,2]",
    ]
)
noise = st.lists(st.one_of(pieces, st.binary(max_size=32)), max_size=60).map(b"".join)


class TestReaderProperties:
    @settings(max_examples=300, deadline=None)
    @given(name=st.sampled_from(sorted(STREAMS)), cut_at=cuts)
    def test_every_split_of_a_real_stream_reads_the_same(
        self, name: str, cut_at: list[int]
    ) -> None:
        """Events, their data and the terminal usage do not depend on chunking."""
        stream = STREAMS[name]
        whole = summary(*read([stream], parse_all=True))

        assert summary(*read(split(stream, cut_at), parse_all=True)) == whole
        names, terminal_name, data, saw_content, overflowed = whole
        assert terminal_name == "response.completed"
        assert data is not None and data["response"]["usage"]["output_tokens"] > 0
        assert saw_content and not overflowed
        assert len(names) == stream.count(b"event:")

    @settings(max_examples=300, deadline=None)
    @given(name=st.sampled_from(sorted(STREAMS)), cut_at=cuts)
    def test_the_fast_path_agrees_on_names_and_terminal(
        self, name: str, cut_at: list[int]
    ) -> None:
        """The relay's reader (data parsed only when needed) sees the same events."""
        stream = STREAMS[name]
        full, full_reader = read(split(stream, cut_at), parse_all=True)
        fast, fast_reader = read(split(stream, cut_at))

        assert [e.name for e in fast] == [e.name for e in full]
        assert fast_reader.terminal == full_reader.terminal
        assert fast_reader.saw_content == full_reader.saw_content

    @settings(max_examples=500, deadline=None)
    @given(data=noise, cut_at=st.lists(st.integers(0, 2000), max_size=30))
    def test_random_bytes_never_raise_and_split_the_same(
        self, data: bytes, cut_at: list[int]
    ) -> None:
        """Any bytes at all, in any chunks: no exception, and the same events."""
        for options in ({}, {"parse_all": True}):
            whole = summary(*read([data], **options))
            assert summary(*read(split(data, cut_at), **options)) == whole

        # With a tiny cap, where an event crosses it depends on the chunking.
        read(split(data, cut_at), max_event_bytes=64)

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=4096), cut_at=st.lists(st.integers(0, 4096)))
    def test_arbitrary_binary_never_raises(
        self, data: bytes, cut_at: list[int]
    ) -> None:
        """Fully random bytes are read without error; terminal data is a dict."""
        events, _ = read(split(data, cut_at), parse_all=True)

        assert all(isinstance(e.name, str) for e in events)
        assert all(e.data is None or isinstance(e.data, dict) for e in events)


class TestPassThroughProperties:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(name=st.sampled_from(sorted(STREAMS)), cut_at=cuts)
    async def test_client_gets_the_upstream_bytes_exactly(
        self, lb: LB, name: str, cut_at: list[int]
    ) -> None:
        """However the upstream chunks a real stream, the client gets its bytes."""
        stream = STREAMS[name]
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw(split(stream, cut_at)))

        response = await lb.client.post(CODEX, json=turn())

        assert response.status == 200
        assert await response.read() == stream

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(data=noise, cut_at=st.lists(st.integers(0, 2000), max_size=10))
    async def test_garbage_upstream_gives_a_clear_answer(
        self, lb: LB, data: bytes, cut_at: list[int]
    ) -> None:
        """Garbage from the upstream is relayed as it came or refused cleanly.

        If any of it was sent, the client has it byte for byte, followed by
        one ``response.failed`` event when no terminal event came; if none
        was, the client gets a 502 in the OpenAI error shape.
        """
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw(split(data, cut_at)))
        reader = SSEReader()
        reader.feed(data)
        # Content starts the answer; so does an unterminated terminal event.
        started = reader.saw_content or reader.terminal is not None
        reader.finish()
        started = started or reader.terminal is not None

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        if response.status == 502:
            assert not started
            assert json.loads(raw)["error"]["code"] == "upstream_unavailable"
            return
        assert started and response.status == 200
        assert raw.startswith(data)
        rest = raw[len(data) :]
        if reader.terminal is not None:
            assert rest == b""
        else:
            (failed,) = events_of(rest.lstrip(b"\r\n"))
            assert failed["type"] == "response.failed"
            assert failed["response"]["error"]["code"] == "stream_incomplete"
