"""Errors the client sees, in OpenAI's ``{"error": {...}}`` shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ClientError(Exception):
    """A request codex-lb refuses before any account is involved."""

    def __init__(
        self, status: int, code: str, message: str, type_: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_ or code


def error_body(
    code: str, message: str, type_: str | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": type_ or code,
        "code": code,
        "param": None,
    }
    error.update(extra)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(error_body(code, message, type_, **extra)),
        content_type="application/json",
        headers=headers,
    )


def client_error_response(exc: ClientError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, exc.type)
