"""What the JSON API's handlers share: app keys, errors, parameters, guards.

Errors have OpenAI's shape (SPEC section 5), ``{"error": {"message", "type",
"code"}}``, and name the bad value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from codex_lb import errors
from codex_lb.accounts import Account, AccountPool
from codex_lb.config import Settings
from codex_lb.store import AccountActivity, Store
from codex_lb.web import views
from codex_lb.web.logins import LoginFlows

log = structlog.get_logger("codex_lb.web")

POOL_KEY = web.AppKey("pool", AccountPool)
WEB_STORE_KEY = web.AppKey("web_store", Store)
WEB_SETTINGS_KEY = web.AppKey("web_settings", Settings)
LOGINS_KEY = web.AppKey("logins", LoginFlows)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(code: str, message: str) -> dict[str, Any]:
    """The shared error shape (``param`` included, as the proxy's has it)."""
    return errors.error_body(code, message, "invalid_request_error")


def bad_request(message: str, code: str = "invalid_request_error") -> web.HTTPException:
    return web.HTTPBadRequest(
        text=json.dumps(error_body(code, message)), content_type="application/json"
    )


def not_found(code: str, message: str) -> web.HTTPException:
    return web.HTTPNotFound(
        text=json.dumps(error_body(code, message)), content_type="application/json"
    )


def conflict(code: str, message: str) -> web.HTTPException:
    """409: the action does not apply to what it names, as it stands now."""
    return web.HTTPConflict(
        text=json.dumps(error_body(code, message)), content_type="application/json"
    )


def account_or_404(request: web.Request) -> Account:
    """The account the route names by id or, as the commands accept, email."""
    key = request.match_info["account_id"]
    pool = request.app[POOL_KEY]
    account = pool.get(key)
    if account is not None:
        return account
    matches = [a for a in pool.accounts if a.email == key]
    if len(matches) > 1:
        raise conflict(
            "ambiguous_account",
            f"{len(matches)} accounts have the email {key!r}: name one by its id",
        )
    if not matches:
        raise not_found("account_not_found", f"no account with id or email {key!r}")
    return matches[0]


def int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    # ASCII digits only: int() also reads "٣" and " 3_0 ".
    value = int(raw) if raw.isascii() and raw.isdigit() else low - 1
    if not low <= value <= high:
        raise bad_request(f"{name}={raw!r} must be an integer from {low} to {high}")
    return value


def time_param(query: Any, name: str) -> float | None:
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
            raise bad_request(
                f"{name}={raw!r} is neither epoch seconds nor an ISO 8601 time"
            ) from None
        try:
            value = moment.astimezone().timestamp()
        except (ValueError, OverflowError):  # year 1 or 9999 moved by a zone
            raise bad_request(f"{name}={raw!r} is out of range") from None
    if not math.isfinite(value):
        raise bad_request(f"{name}={raw!r} is not a finite time")
    return value


async def json_body(request: web.Request, default: Any) -> Any:
    if not request.can_read_body:
        return default
    try:
        async with errors.body_read_deadline(request):
            return await request.json()
    except json.JSONDecodeError as exc:
        raise bad_request(f"body is not JSON: {exc.msg} at line {exc.lineno}") from exc
    except UnicodeDecodeError as exc:
        raise bad_request(f"body is not UTF-8 text: {exc.reason}") from exc


def same_site_only(handler: Handler) -> Handler:
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
                error_body(
                    "cross_site_request",
                    f"actions are refused from another site (Origin: {origin})",
                ),
                status=403,
            )
        return await handler(request)

    return guarded


async def account_activity(request: web.Request, now: float) -> list[AccountActivity]:
    """Every account's requests, errors and cost in the last 24 h."""
    store = request.app.get(WEB_STORE_KEY)
    if store is None:
        return []
    return await store.account_activity(now - views.DAY_SECONDS)


async def account_answer(request: web.Request, account: Account) -> web.Response:
    """One account as the API shows it, with its last 24 h."""
    now = request.app[POOL_KEY].now()
    activity = {a.account_id: a for a in await account_activity(request, now)}
    return web.json_response(views.account_json(account, activity.get(account.id), now))
