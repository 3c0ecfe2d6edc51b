"""The JSON API under ``/api/`` (behind the dashboard) and the health route.

Reads come from the pool (live routing state) and the store (request-log
aggregates); actions go through the pool, so they reach routing at once.
Access is checked before any handler by ``codex_lb.web.access``; actions
also refuse requests a browser sent from another site.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts import Account, AccountPool
from codex_lb.accounts.aggregate import pool_quota, usage_payload
from codex_lb.accounts.identity import AuthFileError, account_from_auth_document
from codex_lb.config import Settings
from codex_lb.store import AccountActivity, Store
from codex_lb.web import views
from codex_lb.web.logins import LoginError, LoginFlows

log = structlog.get_logger("codex_lb.web")

POOL_KEY = web.AppKey("pool", AccountPool)
WEB_STORE_KEY = web.AppKey("web_store", Store)
WEB_SETTINGS_KEY = web.AppKey("web_settings", Settings)
LOGINS_KEY = web.AppKey("logins", LoginFlows)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The request log's model filter offers the models seen in this window.
MODELS_WINDOW_SECONDS = 7 * 24 * 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# Reads


async def _activity(request: web.Request, now: float) -> list[AccountActivity]:
    store = request.app.get(WEB_STORE_KEY)
    if store is None:
        return []
    return await store.account_activity(now - views.DAY_SECONDS)


async def _accounts_payload(request: web.Request) -> list[dict[str, Any]]:
    pool = request.app[POOL_KEY]
    now = pool.now()
    return views.accounts_json(pool.accounts, await _activity(request, now), now)


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
    account = _account_or_404(request)
    now = request.app[POOL_KEY].now()
    activity = {a.account_id: a for a in await _activity(request, now)}
    return web.json_response(views.account_json(account, activity.get(account.id), now))


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
    limit = _int_param(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_param(query, "offset", 0, 0, 10**9)
    status = query.get("status") or None
    if status not in (None, "success", "error"):
        raise _bad_request(f"status={status!r} is not one of success, error")
    since = _time_param(query, "since")
    until = _time_param(query, "until")

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


# Actions


def _same_site_only(handler: Handler) -> Handler:
    """Refuse an action a browser sent from another site (CSRF).

    Loopback callers need no token, so any web page the operator visits
    could otherwise post to the API; browsers say where a request came from.
    """

    async def guarded(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site == "cross-site" or (
            origin is not None and origin.split("://", 1)[-1] != request.host
        ):
            log.warning("api_cross_site_refused", path=request.path, origin=origin)
            return web.json_response(
                _error(
                    "cross_site_request",
                    f"actions are refused from another site (Origin: {origin})",
                ),
                status=403,
            )
        return await handler(request)

    return guarded


async def _act(request: web.Request, action: str) -> web.Response:
    account = _account_or_404(request)
    pool = request.app[POOL_KEY]
    if action == "pause":
        await pool.pause(account)
    elif action == "resume":
        await pool.resume(account)
    elif action in ("pin", "unpin"):
        await pool.set_pinned(account, action == "pin")
    log.info("account_action", action=action, account_id=account.id)
    now = pool.now()
    activity = {a.account_id: a for a in await _activity(request, now)}
    return web.json_response(views.account_json(account, activity.get(account.id), now))


async def pause_account(request: web.Request) -> web.Response:
    return await _act(request, "pause")


async def resume_account(request: web.Request) -> web.Response:
    return await _act(request, "resume")


async def pin_account(request: web.Request) -> web.Response:
    return await _act(request, "pin")


async def unpin_account(request: web.Request) -> web.Response:
    return await _act(request, "unpin")


async def remove_account(request: web.Request) -> web.Response:
    account = _account_or_404(request)
    await request.app[POOL_KEY].remove(account)
    log.info("account_action", action="remove", account_id=account.id)
    return web.json_response({"removed": account.id})


async def import_auth_json(request: web.Request) -> web.Response:
    """Add (or refresh the tokens of) accounts from uploaded ``auth.json`` files.

    Takes a multipart form (every file part is one ``auth.json``) or one
    ``auth.json`` document as the JSON body.
    """
    documents = await _uploaded_documents(request)
    if not documents:
        raise _bad_request("no auth.json in the request (send a file or a JSON body)")

    # Every file is checked before any is stored: one bad file adds nothing.
    pool = request.app[POOL_KEY]
    try:
        accounts = [
            account_from_auth_document(doc, name, pool.now()) for name, doc in documents
        ]
    except AuthFileError as exc:
        raise _bad_request(str(exc), code="invalid_auth_file") from exc

    store = request.app[WEB_STORE_KEY]
    imported = []
    for new in accounts:
        account_id = await store.add_account(new, now=pool.now())
        imported.append(
            {
                "id": account_id,
                "email": new.email,
                "plan": new.plan,
                "new": pool.get(account_id) is None,
            }
        )
    await pool.sync(force=True)
    log.info("accounts_imported", count=len(imported))
    return web.json_response({"imported": imported})


async def start_reauth(request: web.Request) -> web.Response:
    account = _account_or_404(request)
    return await _start_login(request, account.id)


async def start_login(request: web.Request) -> web.Response:
    return await _start_login(request, None)


async def login_progress(request: web.Request) -> web.Response:
    flow = request.app[LOGINS_KEY].get(request.match_info["flow_id"])
    if flow is None:
        flow_id = request.match_info["flow_id"]
        raise _not_found(
            "login_not_found", f"no login {flow_id!r} (finished long ago?)"
        )
    return web.json_response(flow.as_json())


async def _start_login(request: web.Request, account_id: str | None) -> web.Response:
    body = await _json_body(request, default={})
    mode = body.get("mode", "device") if isinstance(body, dict) else None
    if not isinstance(mode, str):
        raise _bad_request(f"mode={mode!r} must be 'device' or 'browser'")
    try:
        flow = await request.app[LOGINS_KEY].start(mode, account_id)
    except ValueError as exc:
        raise _bad_request(str(exc)) from exc
    except LoginError as exc:
        raise web.HTTPBadGateway(
            text=json.dumps(_error("login_failed", str(exc))),
            content_type="application/json",
        ) from exc
    return web.json_response(flow.as_json(), status=202)


# Helpers


def _error(code: str, message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "code": code}
    }


def _bad_request(
    message: str, code: str = "invalid_request_error"
) -> web.HTTPException:
    return web.HTTPBadRequest(
        text=json.dumps(_error(code, message)), content_type="application/json"
    )


def _not_found(code: str, message: str) -> web.HTTPException:
    return web.HTTPNotFound(
        text=json.dumps(_error(code, message)), content_type="application/json"
    )


def _account_or_404(request: web.Request) -> Account:
    account_id = request.match_info["account_id"]
    account = request.app[POOL_KEY].get(account_id)
    if account is None:
        raise _not_found("account_not_found", f"no account with id {account_id!r}")
    return account


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad_request(f"{name}={raw!r} must be an integer from {low} to {high}")
    return value


def _time_param(query: Any, name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 time (with a zone, else the server's)."""
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise _bad_request(
                f"{name}={raw!r} is neither epoch seconds nor an ISO 8601 time"
            ) from None
        value = moment.astimezone().timestamp()
    if not math.isfinite(value):
        raise _bad_request(f"{name}={raw!r} is not a finite time")
    return value


async def _json_body(request: web.Request, default: Any) -> Any:
    if not request.can_read_body:
        return default
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise _bad_request(f"body is not JSON: {exc.msg} at line {exc.lineno}") from exc


async def _uploaded_documents(request: web.Request) -> list[tuple[str, Any]]:
    """(name, parsed JSON) of each uploaded ``auth.json``."""
    if not request.content_type.startswith("multipart/"):
        return [("request body", await _json_body(request, default=None))]

    documents = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or part.filename is None:
            continue
        raw = await part.read(decode=False)
        name = part.filename
        try:
            documents.append((name, json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _bad_request(
                f"{name}: not JSON: {exc}", code="invalid_auth_file"
            ) from exc
    return documents


async def codex_usage(request: web.Request) -> web.Response:
    """The pool's quota in the upstream usage shape, for the Codex CLI."""
    pool = request.app[POOL_KEY]
    return web.json_response(usage_payload(pool_quota(pool.accounts), pool.now()))


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/api/accounts", list_accounts)
    app.router.add_get("/api/codex/usage", codex_usage)


def add_admin_api_routes(app: web.Application) -> None:
    """The dashboard's API (reads and actions) beyond ``/api/accounts``."""
    app.router.add_get("/api/dashboard", dashboard_data)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/requests", list_requests)
    app.router.add_post("/api/accounts/import", _same_site_only(import_auth_json))
    app.router.add_get("/api/accounts/{account_id}", get_account)
    app.router.add_delete("/api/accounts/{account_id}", _same_site_only(remove_account))
    for action, handler in (
        ("pause", pause_account),
        ("resume", resume_account),
        ("pin", pin_account),
        ("unpin", unpin_account),
        ("reauth", start_reauth),
    ):
        app.router.add_post(
            f"/api/accounts/{{account_id}}/{action}", _same_site_only(handler)
        )
    app.router.add_post("/api/logins", _same_site_only(start_login))
    app.router.add_get("/api/logins/{flow_id}", login_progress)
