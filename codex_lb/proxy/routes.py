"""The proxy's HTTP routes for the Codex backend (``/v1/*``: openai_api.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from codex_lb.accounts.aggregate import replace_quota_headers
from codex_lb.clientkeys import API_KEY_ID
from codex_lb.errors import ClientError, client_error_response
from codex_lb.proxy.body import (
    decode_body,
    parse_json_object,
    read_raw_body,
    require_model,
)
from codex_lb.proxy.outcome import ProxyRequest
from codex_lb.proxy.relay import Relay

RELAY_KEY = web.AppKey("relay", Relay)
MAX_REQUEST_BYTES_KEY = web.AppKey("max_request_bytes", int)

# The proxied routes: every answer on them carries the pool's quota headers.
PROXIED_PREFIXES = ("/backend-api/codex/", "/v1/")


def _session_key(request: web.Request, body: dict[str, Any]) -> str | None:
    """What keeps a conversation on one account: Codex session, or cache key."""
    for header in ("session_id", "session-id"):
        value = request.headers.get(header)
        if value:
            return "session:" + value
    cache_key = body.get("prompt_cache_key")
    if isinstance(cache_key, str) and cache_key:
        return "cache:" + cache_key
    return None


async def _read_json(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """(the body exactly as sent, its JSON object decoded)."""
    limit = request.app[MAX_REQUEST_BYTES_KEY]
    raw = await read_raw_body(request, limit)
    encoding = request.headers.get("Content-Encoding")
    decoded = decode_body(raw, encoding, limit)
    return raw, parse_json_object(decoded)


async def codex_responses(request: web.Request) -> web.StreamResponse:
    """``POST /backend-api/codex/responses``: SSE relayed byte for byte."""
    return await _relay_model_request(request, "codex", "/codex/responses")


async def codex_compact(request: web.Request) -> web.StreamResponse:
    """``POST /backend-api/codex/responses/compact``: JSON in, JSON out."""
    return await _relay_model_request(
        request, "compact", "/codex/responses/compact", stream=False
    )


async def _relay_model_request(
    request: web.Request, api: str, upstream_path: str, stream: bool = True
) -> web.StreamResponse:
    """Read a Codex model request and serve it through the pool, unchanged.

    ``stream`` false: the route never streams; else the body's ``stream``
    decides (absent means true, as the Codex CLI sends it).
    """
    try:
        raw, body = await _read_json(request)
        model = require_model(body)
    except ClientError as exc:
        return client_error_response(exc)
    proxied = ProxyRequest(
        api=api,
        upstream_path=upstream_path,
        body=raw,
        content_encoding=request.headers.get("Content-Encoding"),
        client_headers=request.headers,
        model=model,
        stream=stream and body.get("stream", True) is not False,
        session_key=_session_key(request, body),
        api_key_id=request.get(API_KEY_ID),
    )
    return await request.app[RELAY_KEY].serve(request, proxied)


async def codex_models(request: web.Request) -> web.StreamResponse:
    """``GET /backend-api/codex/models``: the upstream's catalog, via the pool."""
    proxied = ProxyRequest(
        api="models",
        upstream_path="/codex/models",
        body=b"",
        content_encoding=None,
        client_headers=request.headers,
        model=None,
        stream=False,
        method="GET",
        query=request.query_string,
        api_key_id=request.get(API_KEY_ID),
    )
    return await request.app[RELAY_KEY].serve(request, proxied, record=False)


async def pool_quota_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """Give a proxied route's answer the pool's quota headers (SPEC section 3).

    Run as the answer's headers go out, so every answer gets them: relayed,
    passed back, or codex-lb's own (a refused body, a 429, a 502, a 503), and
    an account's own ``x-codex-*`` headers never reach the client. A caller
    the access rules turned away (401, 403) learns nothing of the pool.
    """
    if not request.path.startswith(PROXIED_PREFIXES):
        return
    if response.status in (401, 403):
        replace_quota_headers(response.headers, {})
    else:
        replace_quota_headers(response.headers, request.app[RELAY_KEY].pool_headers())


def add_proxy_routes(app: web.Application) -> None:
    app.on_response_prepare.append(pool_quota_headers)
    app.router.add_post("/backend-api/codex/responses", codex_responses)
    app.router.add_post("/backend-api/codex/responses/compact", codex_compact)
    app.router.add_get("/backend-api/codex/models", codex_models)
