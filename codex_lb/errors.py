"""Errors the client sees, in OpenAI's ``{"error": {...}}`` shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import web

from codex_lb.store import STORE_ERRORS

log = structlog.get_logger("codex_lb.errors")


class ClientError(Exception):
    """A request codex-lb refuses before any account is involved."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        type_: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_ or code
        # The request field at fault, as OpenAI's errors name it.
        self.param = param


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
    response = error_response(
        exc.status, exc.code, exc.message, exc.type, param=exc.param
    )
    if exc.status == 408:
        # The rest of the body may never come: no keep-alive after this.
        response.force_close()
    return response


# How long a client may take to send its whole request body
# (CODEX_LB_BODY_READ_TIMEOUT_SECONDS); set by the app.
BODY_READ_TIMEOUT_KEY: Final = web.AppKey("body_read_timeout", float)
DEFAULT_BODY_READ_TIMEOUT: Final = 60.0


@contextlib.asynccontextmanager
async def body_read_deadline(request: web.Request) -> AsyncIterator[None]:
    """Bound the reading of ``request``'s body in the block.

    A client that announces a body and sends it slowly or not at all would
    hold a connection and a handler for as long as it likes; past the
    deadline it gets 408 ``request_timeout`` (ClientError) and the
    connection is closed.
    """
    seconds = request.app.get(BODY_READ_TIMEOUT_KEY, DEFAULT_BODY_READ_TIMEOUT)
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ClientError(
            408,
            "request_timeout",
            f"the request body did not arrive within {seconds:g} s "
            "(CODEX_LB_BODY_READ_TIMEOUT_SECONDS)",
            "invalid_request_error",
        ) from None


# Codes for the errors aiohttp raises itself (routing, body limits, ...).
_HTTP_CODES: Final = {
    400: "invalid_request_error",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
}
# Headers of an aiohttp error that still mean something on the JSON answer.
_KEPT_HEADERS: Final = ("Allow", "Retry-After", "WWW-Authenticate")


@web.middleware
async def json_errors_middleware(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Every error answer in the ``{"error": {...}}`` shape (SPEC section 5).

    Handlers answer their own errors in that shape already; this catches
    what aiohttp raises by itself (an unknown route, a wrong method, a body
    over the limit) and what nobody expected: a store that cannot be
    written becomes 503 ``store_unavailable``, anything else a logged 500
    ``internal_error`` instead of aiohttp's plain-text page.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _from_http_exception(request, exc)
    except ClientError as exc:
        return client_error_response(exc)
    except STORE_ERRORS as exc:
        log.error(
            "store_unavailable",
            method=request.method,
            path=request.path,
            error=str(exc),
        )
        return error_response(
            503,
            "store_unavailable",
            f"codex-lb's store could not be written ({exc}); nothing was changed: "
            "free some disk space and try again",
            headers={"Retry-After": "5"},
        )
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return error_response(
            500,
            "internal_error",
            "codex-lb failed while serving this request; its log has the details",
            "server_error",
        )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    if exc.status == 404:
        message = f"no route {request.method} {request.path}"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path} (use {allowed})"
    else:
        message = exc.text.removeprefix(f"{exc.status}: ") if exc.text else exc.reason
    headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
    type_ = "server_error" if exc.status >= 500 else "invalid_request_error"
    return error_response(exc.status, code, message, type_, headers=headers)
