"""The built-in dashboard: its pages, their static assets, and the admin login.

The pages are one static HTML shell and a small vanilla-JavaScript front end
served from ``codex_lb/web/static``; every number on them comes from the JSON
API in ``codex_lb.web.api``. Nothing is fetched from the internet.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from codex_lb.accounts.oauth import DEFAULT_CALLBACK_PORT
from codex_lb.config import Settings
from codex_lb.errors import body_read_deadline
from codex_lb.store import Store
from codex_lb.web.api import (
    LOGINS_KEY,
    POOL_KEY,
    WEB_SETTINGS_KEY,
    WEB_STORE_KEY,
    add_admin_api_routes,
)
from codex_lb.web.logins import LoginFlows, oauth_starter

STATIC_DIR = Path(__file__).parent / "static"
PAGES = ("", "/accounts", "/requests")
# The cookie the access middleware accepts in place of a bearer admin token.
ADMIN_COOKIE = "codex_lb_admin"
LOGIN_PATH = "/dashboard/login"


async def page(_request: web.Request) -> web.FileResponse:
    """Every page is the same shell; the script shows the one in the path."""
    return web.FileResponse(
        STATIC_DIR / "dashboard.html", headers={"Cache-Control": "no-store"}
    )


async def login_form(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    """Check the admin token from the form; on success keep it in a cookie.

    A browser cannot send a bearer header when it navigates, so a remote
    operator logs in once; the cookie is HTTP-only and same-site strict.
    """
    token = request.app[WEB_SETTINGS_KEY].admin_token
    try:
        async with body_read_deadline(request):
            form = await request.post()
    except ValueError:  # a malformed form: the same as a wrong token
        raise web.HTTPSeeOther(LOGIN_PATH + "?failed=1") from None
    given = form.get("token")
    if (
        token is None
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), token.encode())
    ):
        raise web.HTTPSeeOther(LOGIN_PATH + "?failed=1")

    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        ADMIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


def add_dashboard_routes(
    app: web.Application,
    store: Store,
    settings: Settings,
    session: aiohttp.ClientSession,
    login_callback_port: int = DEFAULT_CALLBACK_PORT,
) -> None:
    """Serve the dashboard pages and the API behind them on ``app``.

    ``session`` is the application's client session, for the OAuth calls of
    logins started from the dashboard; browser logins listen for their
    callback on ``login_callback_port`` (``app[LOGINS_KEY].callback_port``
    changes it later, as tests do).
    """
    starter = oauth_starter(session, settings.auth_base_url)
    logins = LoginFlows(app[POOL_KEY], store, starter, login_callback_port)
    app[WEB_STORE_KEY] = store
    app[WEB_SETTINGS_KEY] = settings
    app[LOGINS_KEY] = logins

    # Logins still waiting for the operator end with the application.
    async def logins_lifetime(_app: web.Application) -> AsyncIterator[None]:
        yield
        await logins.close()

    app.cleanup_ctx.append(logins_lifetime)

    for suffix in PAGES:
        app.router.add_get("/dashboard" + suffix, page)
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_static("/dashboard/static", STATIC_DIR, append_version=False)
    add_admin_api_routes(app)
