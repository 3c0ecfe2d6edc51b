"""Wiring: builds the aiohttp application and the lifetimes of its parts.

``codex_lb.serve`` runs it as the server (listening, signals, the data
folder's lock).

:func:`create_app` registers the routes and lines up one cleanup context per
part that holds a resource: the store, the upstream session, the request-log
writer, the account pool with its background work, the collectors and the
relay. aiohttp opens them in that order at start-up and closes them in
reverse, so each closes while what it needs is still open; when a part fails
to start, the parts opened before it are closed (see :func:`_parts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts import AccountPool, TokenRefresher
from codex_lb.accounts.usage import UsagePoller
from codex_lb.clientkeys import KEYS_KEY, KeyRing
from codex_lb.config import Settings
from codex_lb.errors import BODY_READ_TIMEOUT_KEY, json_errors_middleware
from codex_lb.events import EventBus, PoolChanged, RequestLogChanged
from codex_lb.events.collector_api import (
    COLLECTORS_KEY,
    CollectorHost,
    discover,
    metrics_handler,
)
from codex_lb.logs import remember_secret
from codex_lb.proxy.openai_api import PRICES_KEY, add_openai_routes
from codex_lb.proxy.pricing import PriceTable
from codex_lb.proxy.relay import Relay
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.proxy.routes import MAX_REQUEST_BYTES_KEY, RELAY_KEY, add_proxy_routes
from codex_lb.store import Store, open_store
from codex_lb.web.access import access_middleware
from codex_lb.web.api import POOL_KEY, add_api_routes
from codex_lb.web.api_keys import add_key_routes
from codex_lb.web.dashboard import add_dashboard_routes
from collectors import BUILTIN

__all__ = ["KEYS_KEY", "RELAY_KEY", "SERVER_OPTIONS", "create_app"]
log = structlog.get_logger("codex_lb.app")

SETTINGS_KEY = web.AppKey("settings", Settings)
BUS_KEY = web.AppKey("bus", EventBus)
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("clock")
STORE_KEY = web.AppKey("store", Store)
REQUEST_LOG_KEY = web.AppKey("request_log", RequestLogBuffer)
SESSION_KEY = web.AppKey("upstream_session", aiohttp.ClientSession)
REFRESHER_KEY = web.AppKey("token_refresher", TokenRefresher)
USAGE_POLLER_KEY = web.AppKey("usage_poller", UsagePoller)

# Request bodies are decompressed by codex-lb itself (zstd included, with a
# size limit while inflating) and forwarded as the client sent them, so
# aiohttp must leave them alone. After answering a request whose body was
# not read to its end (413, 408), aiohttp reads and drops the rest for at
# most ``lingering_time`` before closing: 2 s, not its 10, so a client that
# stopped sending cannot hold the connection much past its 408.
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False, "lingering_time": 2.0}


async def create_app(
    settings: Settings,
    bus: EventBus | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The application with its routes, its parts lined up to open at start-up."""
    # Read before anything opens: a bad pricing file stops start-up cleanly.
    prices = PriceTable.load(settings.pricing_file)
    for secret in (settings.admin_token, settings.metrics_token):
        remember_secret(secret)

    app = web.Application(
        middlewares=[
            # Outermost, so the access middleware's answers and aiohttp's own
            # errors alike leave in the {"error": {...}} shape.
            json_errors_middleware,
            access_middleware(
                settings.admin_token,
                settings.metrics_token,
                settings.trusted_networks,
                settings.host,
            ),
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[BUS_KEY] = bus or EventBus()
    app[CLOCK_KEY] = clock
    app[PRICES_KEY] = prices
    app[MAX_REQUEST_BYTES_KEY] = settings.max_request_bytes
    app[BODY_READ_TIMEOUT_KEY] = settings.body_read_timeout_seconds
    add_proxy_routes(app)
    add_openai_routes(app)
    add_api_routes(app)
    app.router.add_get("/metrics", metrics_handler)
    app.on_shutdown.append(_end_streams_at_the_deadline)

    app.cleanup_ctx.append(_parts)
    return app


async def _parts(app: web.Application) -> AsyncIterator[None]:
    """Open the parts in order; close them in reverse, also when one fails."""
    async with contextlib.AsyncExitStack() as opened:
        for part in (
            _store,
            _upstream_session,
            _request_log,
            _accounts,
            _collectors,
            _relay,
            _web,
        ):
            await opened.enter_async_context(part(app))
        log.info(
            "codex_lb_started",
            accounts=len(app[POOL_KEY].accounts),
            upstream=app[SETTINGS_KEY].upstream_base_url,
        )
        yield
    log.info("codex_lb_stopped")


@contextlib.asynccontextmanager
async def _store(app: web.Application) -> AsyncIterator[None]:
    """The SQLite store, open for the whole life of the application."""
    store = await open_store(app[SETTINGS_KEY].data_path)
    app[STORE_KEY] = store
    try:
        yield
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    """One client session (one connection pool, one SSL context) for all calls."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
        auto_decompress=True,
        trust_env=False,
    )
    app[SESSION_KEY] = session
    try:
        yield
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def _request_log(app: web.Application) -> AsyncIterator[None]:
    """The request-log buffer and its writer; what is left is written at the end."""
    settings = app[SETTINGS_KEY]
    request_log = RequestLogBuffer(
        app[STORE_KEY],
        settings.request_log_buffer_size,
        settings.request_log_flush_seconds,
    )
    app[REQUEST_LOG_KEY] = request_log
    writer = asyncio.create_task(request_log.run(), name="request-log-flush")
    try:
        yield
    finally:
        # Stopped, not cancelled: it finishes the batch it may be writing.
        request_log.stop()
        await asyncio.gather(writer, return_exceptions=True)
        try:
            await request_log.flush()
        except Exception as exc:
            log.error(
                "request_log_lost_at_shutdown", rows=request_log.size, error=str(exc)
            )


@contextlib.asynccontextmanager
async def _accounts(app: web.Application) -> AsyncIterator[None]:
    """The account pool, client keys, token refresh and usage polling.

    Their background work (following other processes' changes, polling)
    runs while the application does; header readings not yet stored are
    written when it stops.
    """
    settings, store, session = app[SETTINGS_KEY], app[STORE_KEY], app[SESSION_KEY]
    pool = AccountPool(
        store,
        app[BUS_KEY],
        clock=app[CLOCK_KEY],
        prefer_earliest_reset=settings.prefer_earliest_reset,
    )
    await pool.load()
    keys = KeyRing(store)
    await keys.load()
    refresher = TokenRefresher(
        pool, session, settings.auth_base_url, settings.token_refresh_age_seconds
    )
    poller = UsagePoller(
        pool,
        refresher,
        session,
        app[BUS_KEY],
        settings.upstream_base_url,
        interval=settings.usage_refresh_interval_seconds,
        concurrency=settings.usage_refresh_concurrency,
        timeout=settings.usage_refresh_timeout_seconds,
    )
    app[POOL_KEY] = pool
    app[KEYS_KEY] = keys
    app[REFRESHER_KEY] = refresher
    app[USAGE_POLLER_KEY] = poller

    tasks = [
        asyncio.create_task(pool.watch(), name="account-sync"),
        asyncio.create_task(keys.watch(), name="api-key-sync"),
        asyncio.create_task(poller.run(), name="usage-poll"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Refreshes in flight store their rotated tokens before the end.
        await refresher.close()
        await pool.flush_readings()


@contextlib.asynccontextmanager
async def _collectors(app: web.Application) -> AsyncIterator[None]:
    """The collectors behind ``/metrics``; they save their state at the end."""
    settings, bus, pool = app[SETTINGS_KEY], app[BUS_KEY], app[POOL_KEY]
    host = CollectorHost(
        bus,
        app[STORE_KEY],
        settings.metrics_account_identity_mode,
        clock=app[CLOCK_KEY],
    )
    app[COLLECTORS_KEY] = host
    await host.add_all(discover(settings.collector_specs, BUILTIN))
    # The pool published its roster before the collectors existed.
    host.deliver(PoolChanged(accounts=tuple(a.info for a in pool.accounts)))
    app[REQUEST_LOG_KEY].on_change = lambda size, dropped: bus.publish(
        RequestLogChanged(size=size, dropped=dropped)
    )
    runner = asyncio.create_task(host.run(), name="collectors")
    try:
        yield
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        # Collectors save their persisted state while the store is open.
        await host.close()


@contextlib.asynccontextmanager
async def _relay(app: web.Application) -> AsyncIterator[None]:
    """The relay that serves the proxy routes."""
    settings = app[SETTINGS_KEY]
    relay = Relay(
        pool=app[POOL_KEY],
        refresher=app[REFRESHER_KEY],
        session=app[SESSION_KEY],
        prices=app[PRICES_KEY],
        request_log=app[REQUEST_LOG_KEY],
        bus=app[BUS_KEY],
        upstream_base_url=settings.upstream_base_url,
        max_attempts=settings.max_attempts,
        idle_timeout=settings.stream_idle_timeout_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        max_event_bytes=settings.max_event_bytes,
        clock=app[CLOCK_KEY],
    )
    app[RELAY_KEY] = relay
    try:
        yield
    finally:
        await relay.close()


@contextlib.asynccontextmanager
async def _web(app: web.Application) -> AsyncIterator[None]:
    """The dashboard and key routes, which take the open store and session.

    Added here, once those are open: aiohttp freezes the router only after
    start-up. The cleanup context the dashboard adds for its logins is
    entered after this one, so it closes first.
    """
    settings, store = app[SETTINGS_KEY], app[STORE_KEY]
    add_key_routes(app, store)
    add_dashboard_routes(app, store, settings, app[SESSION_KEY])
    yield


async def _end_streams_at_the_deadline(app: web.Application) -> None:
    """On shutdown, end what is still being served once the grace period ends.

    aiohttp waits for requests in flight up to the same deadline and then
    cuts them; the relay ends each one first with ``server_shutdown``.
    """
    if RELAY_KEY in app:
        app[RELAY_KEY].stop_streams_after(app[SETTINGS_KEY].shutdown_grace_seconds)


# Python's cycle collector runs after every 700 net allocations by default
# and then scans every young object still alive: with hundreds of requests
# in flight that is most of them, and a full collection walked every module
# and function loaded at start-up (56 ms pauses, 11 % of the CPU at 256
# clients of short streams). See docs/performance.md.
GC_YOUNG_THRESHOLD = 10_000


async def settle_the_heap(_app: web.Application | None = None) -> None:
    """Once everything is open: what start-up made is never scanned again,
    and the young generation is collected after 10 000 net allocations.

    Only for the serving process (``run``): a test process making many
    applications keeps Python's defaults.
    """
    gc.collect()
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
