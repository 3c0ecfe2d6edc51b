"""The JSON API under ``/api/`` and the health route."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from codex_lb.accounts import Account, AccountPool

POOL_KEY = web.AppKey("pool", AccountPool)


def account_json(account: Account) -> dict[str, Any]:
    """An account for the API: never a token or the ChatGPT account id."""
    quota = account.quota
    return {
        "id": account.id,
        "email": account.email,
        "plan": account.plan,
        "status": account.status,
        "status_reason": account.status_reason,
        "status_until": account.status_until,
        "pinned": account.pinned,
        "last_used_at": account.last_used_at,
        "primary_used_percent": quota.primary_used_percent if quota else None,
        "primary_reset_at": quota.primary_reset_at if quota else None,
        "secondary_used_percent": quota.secondary_used_percent if quota else None,
        "secondary_reset_at": quota.secondary_reset_at if quota else None,
        "quota_observed_at": quota.observed_at if quota else None,
    }


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_accounts(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    return web.json_response({"accounts": [account_json(a) for a in pool.accounts]})


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/api/accounts", list_accounts)
