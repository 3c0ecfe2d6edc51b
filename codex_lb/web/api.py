"""The JSON API under ``/api/`` (behind the dashboard) and the health route.

Reads come from the pool (live routing state) and the store (request-log
aggregates); they live here. Actions (``api_actions``) go through the pool,
so they reach routing at once. Access is checked before any handler by
``codex_lb.web.access``; actions also refuse requests a browser sent from
another site. Shared helpers and app keys are in ``api_common``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from codex_lb.accounts.aggregate import pool_quota, usage_payload
from codex_lb.web import api_actions as actions
from codex_lb.web import views
from codex_lb.web.api_common import (
    LOGINS_KEY,
    POOL_KEY,
    WEB_SETTINGS_KEY,
    WEB_STORE_KEY,
    account_activity,
    account_answer,
    account_or_404,
    bad_request,
    int_param,
    same_site_only,
    time_param,
)

__all__ = [
    "LOGINS_KEY",
    "POOL_KEY",
    "WEB_SETTINGS_KEY",
    "WEB_STORE_KEY",
    "add_admin_api_routes",
    "add_api_routes",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The request log's model filter offers the models seen in this window.
MODELS_WINDOW_SECONDS = 7 * 24 * 3600.0


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# Reads


async def _accounts_payload(request: web.Request) -> list[dict[str, Any]]:
    pool = request.app[POOL_KEY]
    now = pool.now()
    return views.accounts_json(pool.accounts, await account_activity(request, now), now)


async def _snapshot_payload(request: web.Request) -> dict[str, Any]:
    pool = request.app[POOL_KEY]
    store = request.app[WEB_STORE_KEY]
    now = pool.now()
    return views.pool_snapshot(
        pool.accounts,
        today=await store.request_totals(views.day_start(now)),
        week=await store.request_totals(views.week_start(now)),
        last_hour=await store.request_totals(now - views.HOUR_SECONDS),
        now=now,
    )


async def list_accounts(request: web.Request) -> web.Response:
    return web.json_response({"accounts": await _accounts_payload(request)})


async def get_account(request: web.Request) -> web.Response:
    return await account_answer(request, account_or_404(request))


async def snapshot(request: web.Request) -> web.Response:
    return web.json_response(await _snapshot_payload(request))


async def dashboard_data(request: web.Request) -> web.Response:
    """Everything the overview and accounts pages show, in one call."""
    settings = request.app[WEB_SETTINGS_KEY]
    return web.json_response(
        {
            "snapshot": await _snapshot_payload(request),
            "accounts": await _accounts_payload(request),
            "grafana_url": settings.grafana_url,
        }
    )


async def list_requests(request: web.Request) -> web.Response:
    """The request log, newest first, filtered and paginated.

    One row more than the page is read to tell whether another page exists,
    so no count of a large table is needed.
    """
    query = request.query
    limit = int_param(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = int_param(query, "offset", 0, 0, 10**9)
    status = query.get("status") or None
    if status not in (None, "success", "error"):
        raise bad_request(f"status={status!r} is not one of success, error")
    since = time_param(query, "since")
    until = time_param(query, "until")

    store = request.app[WEB_STORE_KEY]
    rows = await store.recent_request_logs(
        limit=limit + 1,
        offset=offset,
        account_id=query.get("account") or None,
        model=query.get("model") or None,
        status=status,
        since=since,
        until=until,
    )
    pool = request.app[POOL_KEY]
    emails = {a.id: a.email for a in pool.accounts}
    models = await store.request_models(pool.now() - MODELS_WINDOW_SECONDS)
    return web.json_response(
        {
            "requests": [views.request_json(r, emails) for r in rows[:limit]],
            "limit": limit,
            "offset": offset,
            "has_more": len(rows) > limit,
            "models": models,
        }
    )


async def codex_usage(request: web.Request) -> web.Response:
    """The pool's quota in the upstream usage shape, for the Codex CLI."""
    pool = request.app[POOL_KEY]
    now = pool.now()
    return web.json_response(usage_payload(pool_quota(pool.accounts, now), now))


# Routes


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/api/accounts", list_accounts)
    app.router.add_get("/api/codex/usage", codex_usage)


def add_admin_api_routes(app: web.Application) -> None:
    """The dashboard's API (reads and actions) beyond ``/api/accounts``."""
    app.router.add_get("/api/dashboard", dashboard_data)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/requests", list_requests)
    app.router.add_post(
        "/api/accounts/import", same_site_only(actions.import_auth_json)
    )
    app.router.add_get("/api/accounts/{account_id}", get_account)
    app.router.add_delete(
        "/api/accounts/{account_id}", same_site_only(actions.remove_account)
    )
    for action, handler in (
        ("pause", actions.pause_account),
        ("resume", actions.resume_account),
        ("pin", actions.pin_account),
        ("unpin", actions.unpin_account),
        ("reauth", actions.start_reauth),
    ):
        app.router.add_post(
            f"/api/accounts/{{account_id}}/{action}", same_site_only(handler)
        )
    app.router.add_post("/api/logins", same_site_only(actions.start_login))
    app.router.add_get("/api/logins/{flow_id}", actions.login_progress)
    app.router.add_delete("/api/logins/{flow_id}", same_site_only(actions.cancel_login))
