"""``GET /api/keys``: the client API keys with their request and cost totals.

A key itself is never stored, so it is never shown: a key appears by its
id, name and first characters (``sk-clb-`` and four more).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from codex_lb.store import ApiKeyUsage, Store
from codex_lb.web.api_common import time_param

KEYS_STORE_KEY = web.AppKey("keys_store", Store)


async def list_keys(request: web.Request) -> web.Response:
    """Every key (revoked ones too), with totals over the request log.

    ``?since=`` (epoch seconds or an ISO 8601 time, as on the request log)
    limits the totals to requests started since then.
    """
    since = time_param(request.query, "since")

    store = request.app[KEYS_STORE_KEY]
    usage = {u.api_key_id: u for u in await store.api_key_usage(since)}
    keys: list[dict[str, Any]] = []
    for row in await store.list_api_keys():
        totals = usage.get(row.id) or ApiKeyUsage(row.id, 0, 0, 0.0, 0, 0, None)
        keys.append(
            {
                "id": row.id,
                "name": row.name,
                "shown": row.shown + "...",
                "created_at": row.created_at,
                "revoked_at": row.revoked_at,
                "status": "revoked" if row.revoked_at is not None else "active",
                "requests": totals.requests,
                "errors": totals.errors,
                "cost_usd": totals.cost_usd,
                "input_tokens": totals.input_tokens,
                "output_tokens": totals.output_tokens,
                "last_request_at": totals.last_request_at,
            }
        )
    return web.json_response({"keys": keys})


def add_key_routes(app: web.Application, store: Store) -> None:
    app[KEYS_STORE_KEY] = store
    app.router.add_get("/api/keys", list_keys)
