"""An incremental reader of Server-Sent Events, for watching a relayed stream.

The relay sends the upstream's bytes to the client untouched; this reader
looks at a copy to learn each event's name and, for the few events that
matter (the terminal ones and errors), its JSON data. It accepts any chunking,
events of any size up to a cap far above what the upstream sends, lines ended
by LF, CRLF or CR, and a last event without its closing blank line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

# Events that end a Responses stream.
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.incomplete", "error"}
)
# Events with no content: the relay may hold them back (see relay.py).
OPENING_EVENTS = frozenset({"response.created", "response.in_progress"})

DEFAULT_MAX_EVENT_BYTES = 256 * 1024 * 1024

_TYPE_FIELD = re.compile(rb'"type"\s*:\s*"([^"]{1,100})"')


@attrs.define(slots=True)
class SSEEvent:
    """One event: its name and, when the reader parsed it, its JSON data."""

    name: str
    data: dict[str, Any] | None = None


class SSEReader:
    """Feed it the stream's bytes; it returns the events completed so far."""

    def __init__(
        self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, parse_all: bool = False
    ) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._max_event_bytes = max_event_bytes
        # A translator (chat.py, assemble.py) reads every event's data.
        self._parse_all = parse_all
        self.overflowed = False
        self.terminal: SSEEvent | None = None
        self.saw_content = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        if self.overflowed or not chunk:
            return []
        buffer = self._buffer
        buffer += chunk
        if b"\r" in chunk:
            self._normalize_newlines()

        events: list[SSEEvent] = []
        while True:
            end = buffer.find(b"\n\n", self._scan_from)
            if end < 0:
                # Keep scanning from the end next time: a huge event must not
                # be searched from its start on every chunk.
                self._scan_from = max(0, len(buffer) - 1)
                if len(buffer) > self._max_event_bytes:
                    self.overflowed = True
                    buffer.clear()
                break
            block = bytes(buffer[:end])
            del buffer[: end + 2]
            self._scan_from = 0
            event = self._parse(block)
            if event is not None:
                events.append(event)
        return events

    def finish(self) -> list[SSEEvent]:
        """The stream ended: parse what is left, even without a blank line."""
        if self.overflowed:
            return []
        block = bytes(self._buffer).rstrip(b"\r\n")
        self._buffer.clear()
        self._scan_from = 0
        event = self._parse(block) if block else None
        return [event] if event is not None else []

    def _normalize_newlines(self) -> None:
        # A CR at the very end may be the first half of a CRLF still to come.
        buffer = self._buffer
        keep_cr = buffer.endswith(b"\r")
        if keep_cr:
            del buffer[-1:]
        normalized = bytes(buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer[:] = normalized
        if keep_cr:
            buffer += b"\r"
        self._scan_from = 0

    def _parse(self, block: bytes) -> SSEEvent | None:
        name: str | None = None
        data_lines: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
        if not data_lines and name is None:
            return None  # a comment or keep-alive
        data = b"\n".join(data_lines)
        if name is None:
            match = _TYPE_FIELD.search(data, 0, 400)
            name = match.group(1).decode("utf-8", "replace") if match else "message"

        event = SSEEvent(name)
        if name in TERMINAL_EVENTS:
            event.data = _json_object(data)
            self.terminal = event
        else:
            if self._parse_all:
                event.data = _json_object(data)
            if name not in OPENING_EVENTS:
                self.saw_content = True
        return event


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    """One event in the wire format the upstream uses."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
