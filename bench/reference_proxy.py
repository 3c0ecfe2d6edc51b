"""The floor codex-lb is measured against: a bare aiohttp pass-through.

Every request goes to the same path on UPSTREAM with the client's headers,
through one shared client session; the answer streams back chunk by chunk.
No accounts, no parsing, no logs. ``GET /metrics`` gives only the event
loop lag, probed as codex-lb probes it (every 25 ms, the longest lateness
since the previous scrape), so the bench compares stalls too.

    python bench/reference_proxy.py PORT UPSTREAM   # http://127.0.0.1:8765
"""

import asyncio
import sys
import time

import aiohttp
from aiohttp import web

DROP = {"host", "content-length", "transfer-encoding", "connection"}
SESSION = web.AppKey("session", aiohttp.ClientSession)
WORST_LAG = web.AppKey("worst_lag", list)
PROBE_SECONDS = 0.025


async def forward(request: web.Request) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
    async with request.app[SESSION].request(
        request.method, request.path_qs, data=await request.read(), headers=headers
    ) as upstream:
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in DROP}
        response = web.StreamResponse(status=upstream.status, headers=kept)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def probe_lag(app: web.Application):
    async def probe() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(PROBE_SECONDS)
            late = time.monotonic() - started - PROBE_SECONDS
            app[WORST_LAG][0] = max(app[WORST_LAG][0], late)

    task = asyncio.create_task(probe())
    yield
    task.cancel()


async def lag(request: web.Request) -> web.Response:
    worst = request.app[WORST_LAG][0]
    request.app[WORST_LAG][0] = 0.0
    return web.Response(text=f"codex_lb_event_loop_lag_seconds {worst!r}\n")


async def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    connector = aiohttp.TCPConnector(limit=0)
    app[SESSION] = aiohttp.ClientSession(
        upstream, connector=connector, auto_decompress=False
    )
    app[WORST_LAG] = [0.0]
    app.on_cleanup.append(lambda app: app[SESSION].close())
    app.cleanup_ctx.append(probe_lag)
    app.router.add_get("/metrics", lag)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


if __name__ == "__main__":
    port, upstream = int(sys.argv[1]), sys.argv[2]
    web.run_app(make_app(upstream), host="127.0.0.1", port=port, print=None)
