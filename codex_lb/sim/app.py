"""The aiohttp application: request recording, body decoding and route table.

Every request is recorded in `Emulator.requests` before any handler runs, so
a test can see what arrived even when the answer was an error. Bodies may
come compressed (`zstd`, `gzip`, `deflate`), as the Codex CLI sends them.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import zstandard
from aiohttp import web

from .emulator import Emulator, RecordedRequest

EMULATOR: Final = web.AppKey("emulator", Emulator)
RECORD: Final = web.RequestKey("record", RecordedRequest)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyError(ValueError):
    """A request body that cannot be decoded or parsed."""


def decode_bytes(raw: bytes, encoding: str) -> bytes:
    """Undo a `content-encoding` on a request body."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    try:
        if encoding == "gzip":
            return zlib.decompress(raw, wbits=16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(raw)
        if encoding == "zstd":
            # Streaming frames carry no content size; a decompressobj copes.
            return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise BodyError(f"cannot decode {encoding} body: {exc}") from exc
    raise BodyError(f"unsupported content-encoding {encoding!r}")


def parse_body(raw: bytes, content_type: str) -> Any:
    """JSON or form body as Python data; None for an empty body."""
    if not raw:
        return None

    # Forms only for form content that does not look like JSON: curl's -d
    # labels JSON as a form.
    is_form = content_type == "application/x-www-form-urlencoded"
    if is_form and not raw.lstrip().startswith((b"{", b"[")):
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BodyError(f"body is not JSON: {exc}") from exc


def json_error(
    status: int,
    code: str,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An OpenAI-style `{"error": {...}}` response."""
    error = {"message": message, "type": error_type, "code": code, "param": None}
    return web.json_response(
        {"error": {**error, **extra}}, status=status, headers=headers
    )


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the request, decoded, then hand it on."""
    emulator = request.app[EMULATOR]
    headers = {name.lower(): value for name, value in request.headers.items()}
    query = dict(request.query)

    # A body that fails to decode is still recorded (as None) and refused.
    raw = await request.read()
    problem: BodyError | None = None
    body: Any = None
    try:
        decoded = decode_bytes(raw, request.headers.get("Content-Encoding", ""))
        body = parse_body(decoded, request.content_type)
    except BodyError as exc:
        problem = exc

    record = RecordedRequest(request.method, request.path, query, headers, body)
    emulator.requests.append(record)
    if problem is not None:
        return json_error(400, "invalid_request_error", str(problem))
    request[RECORD] = record
    return await handler(request)


def build_app(emulator: Emulator) -> web.Application:
    """The application serving the backend, OAuth and control routes."""
    from . import backend, control, oauth

    app = web.Application(middlewares=[record_requests], client_max_size=64 << 20)
    app[EMULATOR] = emulator
    app.add_routes(backend.routes)
    app.add_routes(oauth.routes)
    app.add_routes(control.routes)
    return app
