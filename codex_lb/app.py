"""Wiring: builds the aiohttp application and the lifetimes of its parts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts import AccountPool, TokenRefresher
from codex_lb.accounts.usage import UsagePoller
from codex_lb.clientkeys import KeyRing
from codex_lb.config import Settings
from codex_lb.events import EventBus, PoolChanged, RequestLogChanged
from codex_lb.events.collector_api import (
    COLLECTORS_KEY,
    CollectorHost,
    discover,
    metrics_handler,
)
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

log = structlog.get_logger("codex_lb.app")

SETTINGS_KEY = web.AppKey("settings", Settings)
BUS_KEY = web.AppKey("bus", EventBus)
STORE_KEY = web.AppKey("store", Store)
REQUEST_LOG_KEY = web.AppKey("request_log", RequestLogBuffer)
SESSION_KEY = web.AppKey("upstream_session", aiohttp.ClientSession)
KEYS_KEY = web.AppKey("api_keys", KeyRing)
REFRESHER_KEY = web.AppKey("token_refresher", TokenRefresher)
USAGE_POLLER_KEY = web.AppKey("usage_poller", UsagePoller)

# Request bodies are decompressed by codex-lb itself (zstd included, with a
# size limit while inflating) and forwarded as the client sent them, so
# aiohttp must leave them alone.
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


async def create_app(
    settings: Settings,
    bus: EventBus | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The application with its store open and its parts built.

    Background tasks start, and everything closes in reverse order, through
    the application's cleanup context.
    """
    bus = bus or EventBus()
    prices = PriceTable.load(settings.pricing_file)
    store = await open_store(settings.data_path)
    try:
        pool = AccountPool(
            store,
            bus,
            clock=clock,
            prefer_earliest_reset=settings.prefer_earliest_reset,
        )
        await pool.load()
        keys = KeyRing(store)
        await keys.load()
    except BaseException:
        await store.close()
        raise

    # One session (and so one connection pool and SSL context) for all calls.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
        auto_decompress=True,
        trust_env=False,
    )
    refresher = TokenRefresher(
        pool, session, settings.auth_base_url, settings.token_refresh_age_seconds
    )
    poller = UsagePoller(
        pool,
        refresher,
        session,
        bus,
        settings.upstream_base_url,
        interval=settings.usage_refresh_interval_seconds,
        concurrency=settings.usage_refresh_concurrency,
        timeout=settings.usage_refresh_timeout_seconds,
    )
    request_log = RequestLogBuffer(
        store, settings.request_log_buffer_size, settings.request_log_flush_seconds
    )
    relay = Relay(
        pool=pool,
        refresher=refresher,
        session=session,
        prices=prices,
        request_log=request_log,
        bus=bus,
        upstream_base_url=settings.upstream_base_url,
        max_attempts=settings.max_attempts,
        idle_timeout=settings.stream_idle_timeout_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        clock=clock,
    )

    app = web.Application(
        middlewares=[
            access_middleware(
                settings.admin_token,
                settings.metrics_token,
                settings.trusted_proxies,
                keys_exist=keys.exist,
                check_key=keys.check,
            )
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[BUS_KEY] = bus
    app[STORE_KEY] = store
    app[POOL_KEY] = pool
    app[RELAY_KEY] = relay
    app[REQUEST_LOG_KEY] = request_log
    app[SESSION_KEY] = session
    app[REFRESHER_KEY] = refresher
    app[USAGE_POLLER_KEY] = poller
    app[MAX_REQUEST_BYTES_KEY] = settings.max_request_bytes
    app[PRICES_KEY] = prices
    app[KEYS_KEY] = keys
    add_proxy_routes(app)
    add_openai_routes(app)
    add_key_routes(app, store)
    add_api_routes(app)
    add_dashboard_routes(app, store, settings, session)

    # --- collectors and /metrics (owned by the metrics work) ---
    collector_host = CollectorHost(
        bus, store, settings.metrics_account_identity_mode, clock=clock
    )
    try:
        await collector_host.add_all(discover(settings.collector_specs, BUILTIN))
    except BaseException:
        await session.close()
        await store.close()
        raise
    # The pool published its roster before the collectors existed.
    collector_host.deliver(PoolChanged(accounts=tuple(a.info for a in pool.accounts)))
    request_log.on_change = lambda size, dropped: bus.publish(
        RequestLogChanged(size=size, dropped=dropped)
    )
    app[COLLECTORS_KEY] = collector_host
    app.router.add_get("/metrics", metrics_handler)
    # --- end collectors ---

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        flusher = asyncio.create_task(request_log.run(), name="request-log-flush")
        tasks = [
            asyncio.create_task(pool.watch(), name="account-sync"),
            asyncio.create_task(keys.watch(), name="api-key-sync"),
            asyncio.create_task(collector_host.run(), name="collectors"),
            asyncio.create_task(poller.run(), name="usage-poll"),
        ]
        log.info(
            "codex_lb_started",
            accounts=len(pool.accounts),
            upstream=settings.upstream_base_url,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Not cancelled: it finishes the batch it may be writing.
            request_log.stop()
            await asyncio.gather(flusher, return_exceptions=True)
            await relay.close()
            await bus.drain()
            # Collectors flush their persisted state while the store is open.
            await collector_host.close()
            try:
                await request_log.flush()
            except Exception as exc:
                log.error(
                    "request_log_lost_at_shutdown",
                    rows=request_log.size,
                    error=str(exc),
                )
            await session.close()
            await store.close()
            log.info("codex_lb_stopped")

    app.cleanup_ctx.append(lifetime)
    return app


def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; streams in flight get a grace period."""

    async def make() -> web.Application:
        return await create_app(settings)

    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            make(),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_grace_seconds,
            access_log=None,
            **SERVER_OPTIONS,
            print=_print_banner(settings),
        )


def _print_banner(settings: Settings) -> Callable[[Any], None]:
    def banner(_message: Any) -> None:
        log.info(
            "listening",
            url=f"http://{settings.host}:{settings.port}",
            codex_base_url=f"http://{settings.host}:{settings.port}/backend-api/codex",
            data_dir=str(settings.data_path),
        )

    return banner
