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
import orjson

# Events that end a Responses stream.
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.incomplete", "error"}
)
# Events with no content: the relay may hold them back (see streaming.py).
OPENING_EVENTS = frozenset({"response.created", "response.in_progress"})

DEFAULT_MAX_EVENT_BYTES = 256 * 1024 * 1024

_TYPE_FIELD = re.compile(rb'"type"\s*:\s*"([^"]{1,100})"')


@attrs.define(slots=True)
class SSEEvent:
    """One event: its name and, when the reader parsed it, its JSON data."""

    name: str
    data: dict[str, Any] | None = None


class SSEReader:
    """Feed it the stream's bytes; it returns the events completed so far.

    Most chunks hold whole events, so a chunk is split where it stands and
    only an unfinished event is kept, as a list of pieces joined once its
    end arrives: a huge event costs linear time however it is chunked. An
    event's data is only looked at when the event needs it.
    """

    def __init__(
        self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, parse_all: bool = False
    ) -> None:
        self._pieces: list[bytes] = []
        self._pending_size = 0
        self._pending_cr = False
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
        if self._pending_cr or b"\r" in chunk:
            chunk = self._normalize_newlines(chunk)
            if not chunk:
                return []

        pieces = self._pieces
        if pieces:
            ends_here = b"\n\n" in chunk or (chunk[0] == _LF and pieces[-1][-1] == _LF)
            if not ends_here:
                pieces.append(chunk)
                self._pending_size += len(chunk)
                self._check_size()
                return []
            pieces.append(chunk)
            chunk = b"".join(pieces)
            pieces.clear()
            self._pending_size = 0

        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            pieces.append(rest)
            self._pending_size = len(rest)
            self._check_size()
        events: list[SSEEvent] = []
        for block in blocks:
            event = self._parse(block)
            if event is not None:
                events.append(event)
        return events

    def finish(self) -> list[SSEEvent]:
        """The stream ended: parse what is left, even without a blank line."""
        if self.overflowed:
            return []
        block = b"".join(self._pieces).rstrip(b"\r\n")
        self._pieces.clear()
        self._pending_size = 0
        self._pending_cr = False
        event = self._parse(block) if block else None
        return [event] if event is not None else []

    def _check_size(self) -> None:
        if self._pending_size > self._max_event_bytes:
            self.overflowed = True
            self._pieces.clear()
            self._pending_size = 0

    def _normalize_newlines(self, chunk: bytes) -> bytes:
        # A CR at the very end may be the first half of a CRLF still to come.
        if self._pending_cr:
            chunk = b"\r" + chunk
        self._pending_cr = chunk.endswith(b"\r")
        if self._pending_cr:
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _parse(self, block: bytes) -> SSEEvent | None:
        # The usual shape, "event: NAME\ndata: JSON", with data the event does
        # not need: read the name and stop.
        if block.startswith(b"event:") and not self._parse_all:
            newline = block.find(b"\n")
            if newline > 0 and block.find(b"\nevent:", newline) < 0:
                only_name = _name(block[6:newline])
                if only_name not in TERMINAL_EVENTS:
                    if only_name not in OPENING_EVENTS:
                        self.saw_content = True
                    return SSEEvent(only_name)

        name: str | None = None
        data_lines: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                name = _name(line[6:])
        if not data_lines and name is None:
            return None  # a comment or keep-alive
        data = b"\n".join(data_lines)
        if name is None:
            match = _TYPE_FIELD.search(data, 0, 400)
            name = match.group(1).decode("utf-8", "replace") if match else "message"

        event = SSEEvent(name)
        if name in TERMINAL_EVENTS:
            # Only usage, model and error are read from it here: orjson's
            # floats for integers past 64 bits read the same (token counts
            # are capped far below), and what it refuses the standard
            # library reads. A translator's events go to the client, so
            # they are read by the standard library alone.
            event.data = _json_object(data, fast=not self._parse_all)
            self.terminal = event
        else:
            if self._parse_all:
                event.data = _json_object(data)
            if name not in OPENING_EVENTS:
                self.saw_content = True
        return event


_LF = ord("\n")
_MAX_NAMES = 1024
_names: dict[bytes, str] = {}


def _name(raw: bytes) -> str:
    """An event name, decoded once per distinct name (they repeat endlessly)."""
    name = _names.get(raw)
    if name is None:
        name = raw.strip().decode("utf-8", "replace")
        if len(_names) < _MAX_NAMES:
            _names[raw] = name
    return name


def _json_object(data: bytes, fast: bool = False) -> dict[str, Any] | None:
    value: Any = None
    if fast:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN, a lone surrogate, ...: the standard library decides
    if value is None:
        try:
            value = json.loads(data)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    """One event in the wire format the upstream uses."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
