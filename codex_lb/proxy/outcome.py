"""What one relayed request is made of: the request, a failed attempt, an end.

:class:`ProxyRequest` is a client request read and checked;
:class:`Failure` an attempt that failed before any byte reached the client;
:class:`Outcome` how the request ended. :class:`StreamTranslator` is the
shape of the rewriters that turn an upstream Responses stream into another
API's answer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from aiohttp import web

from codex_lb.accounts import Account
from codex_lb.proxy.pricing import Usage
from codex_lb.proxy.sse import SSEEvent


class StreamTranslator(Protocol):
    """Turns one upstream Responses stream into what the client asked for.

    The relay keeps failover, the hold-back of opening events, usage and cost
    accounting and the request events; a translator only decides the bytes
    the client sees. A streaming translator returns client bytes for each
    batch of events; a buffered one returns nothing until the terminal event
    and then gives the whole answer, so its request starts only at the end.
    """

    buffered: bool

    def translate(self, events: Sequence[SSEEvent]) -> bytes:
        """Client bytes for these upstream events (always b"" when buffered)."""
        ...

    def fail(self, code: str, message: str) -> bytes:
        """Client bytes that end a started stream which broke (streaming)."""
        ...

    def result(self) -> tuple[int, dict[str, Any]]:
        """The whole answer after the terminal event: status, JSON (buffered)."""
        ...


@attrs.define
class ProxyRequest:
    """A client request, read and checked, ready to send upstream.

    ``translator``, when set, makes a fresh :class:`StreamTranslator` for
    each attempt; the upstream stream is then rewritten instead of relayed
    byte for byte.
    """

    api: str
    upstream_path: str
    body: bytes
    content_encoding: str | None
    client_headers: Mapping[str, str]
    model: str | None
    stream: bool
    session_key: str | None = None
    api_key_id: str | None = None
    method: str = "POST"
    query: str = ""
    translator: Callable[[], StreamTranslator] | None = None
    # 128 random bits as 32 hex digits, uuid4().hex's shape at a quarter of
    # its cost (it is made for every request).
    request_id: str = attrs.field(factory=lambda: os.urandom(16).hex())
    started_at: float = attrs.field(factory=time.time)
    started_mono: float = attrs.field(factory=time.monotonic)


@attrs.define
class Failure:
    """An attempt that failed before anything reached the client."""

    error_class: str
    code: str
    status: int = 502
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    resets_at: float | None = None


@attrs.define
class Outcome:
    """How a request ended, for the log, the events and the metrics.

    ``error_class`` is set when the answer failed in a way that says
    something about the account (SPEC section 5's classes): a stream that
    broke or a failure event after the answer started. The relay marks the
    account by it; a client error, a client that left or a shutdown leaves
    it None, and the account unmarked.
    """

    status_code: int
    error_code: str | None = None
    account: Account | None = None
    usage: Usage | None = None
    model: str | None = None
    response: web.StreamResponse | None = None
    error_class: str | None = None
    resets_at: float | None = None

    @property
    def success(self) -> bool:
        return self.status_code < 400 and self.error_code is None


@attrs.define
class Progress:
    """How far a request has got, for when its handler is cancelled.

    aiohttp can cancel the handler of a client that hung up; the request is
    then recorded from here: the attempts made, the account last tried, and
    whether the terminal event had already reached the client.
    """

    attempts: int = 0
    account: Account | None = None
    served: Outcome | None = None

    def cancelled(self) -> Outcome:
        """The outcome of a request cancelled now."""
        if self.served is not None:
            # A client that leaves after the terminal event has been served.
            return self.served
        return Outcome(499, "client_disconnected", self.account)
