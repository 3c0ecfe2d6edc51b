"""Reading a client's request body: size limits, decompression, JSON."""

from __future__ import annotations

import json
import zlib
from typing import Any

import zstandard
from aiohttp import web

from codex_lb.errors import ClientError, body_read_deadline

_CHUNK = 64 * 1024


def _too_large(limit: int) -> ClientError:
    return ClientError(
        413,
        "request_too_large",
        f"request body is larger than {limit} bytes (CODEX_LB_MAX_REQUEST_BYTES)",
        "invalid_request_error",
    )


async def read_raw_body(request: web.Request, limit: int) -> bytes:
    """The body as sent, refused with 413 as soon as it passes ``limit``, and
    with 408 when it does not arrive within the body-read deadline."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async with body_read_deadline(request):
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    return b"".join(chunks)


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` decompressed per ``Content-Encoding``, never past ``limit`` bytes.

    The limit applies while decompressing, so a small bomb cannot expand in
    memory before it is refused.
    """
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        if coding == "identity":
            continue
        try:
            if coding == "zstd":
                data = _zstd(data, limit)
            elif coding in ("gzip", "x-gzip"):
                data = _zlib(data, limit, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                data = _deflate(data, limit)
            else:
                raise ClientError(
                    415,
                    "unsupported_content_encoding",
                    f"Content-Encoding {coding!r} is not supported "
                    "(use zstd, gzip or deflate)",
                    "invalid_request_error",
                )
        except (zlib.error, zstandard.ZstdError) as exc:
            raise ClientError(
                400,
                "invalid_request_error",
                f"request body is not valid {coding} data: {exc}",
                "invalid_request_error",
            ) from exc
    return data


def _zlib(data: bytes, limit: int, wbits: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _too_large(limit)
    if not decompressor.eof:
        raise zlib.error("truncated stream")
    return out


def _deflate(data: bytes, limit: int) -> bytes:
    # "deflate" is meant to be zlib-wrapped, but raw deflate is common too.
    try:
        return _zlib(data, limit, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(data, limit, -zlib.MAX_WBITS)


def _zstd(data: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(data)
    out = bytearray()
    while True:
        chunk = reader.read(_CHUNK)
        if not chunk:
            break
        out += chunk
        if len(out) > limit:
            raise _too_large(limit)
    return bytes(out)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400,
            "invalid_request_error",
            f"request body is not valid UTF-8 (byte {exc.start})",
            "invalid_request_error",
        ) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            400,
            "invalid_request_error",
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            "invalid_request_error",
        ) from exc
    except RecursionError as exc:
        raise ClientError(
            400,
            "invalid_request_error",
            "request body is not valid JSON: nested too deeply",
            "invalid_request_error",
        ) from exc
    except ValueError as exc:
        # What the parser refuses beyond syntax: an integer of more digits
        # than Python converts (sys.get_int_max_str_digits), and the like.
        raise ClientError(
            400,
            "invalid_request_error",
            f"request body is not usable JSON: {str(exc).split(';')[0]}",
            "invalid_request_error",
        ) from exc
    if not isinstance(value, dict):
        raise ClientError(
            400,
            "invalid_request_error",
            f"request body must be a JSON object, not {type(value).__name__}",
            "invalid_request_error",
        )
    return value


# Longer than any model name; a name is kept in every request-log row and
# listed by the dashboard, so one of 100 KB or with line breaks would be
# stored and shown for as long as the log keeps it.
MAX_MODEL_CHARS = 200


def require_model(body: dict[str, Any]) -> str:
    """The request's ``model``; ClientError (``param`` model) if it is no
    model name. One rule for every route."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        problem = "'model' is required and must be a non-empty string"
    elif len(model) > MAX_MODEL_CHARS or not model.isprintable():
        problem = (
            f"'model' must be a model name: at most {MAX_MODEL_CHARS} "
            "printable characters"
        )
    else:
        return model
    raise ClientError(
        400, "invalid_request_error", problem, "invalid_request_error", param="model"
    )
