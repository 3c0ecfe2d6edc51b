"""``make soak``: hours of traffic in minutes, then check that nothing leaked.

The emulator and codex-lb run as separate processes on loopback. For
SOAK_SECONDS (default 600) SOAK_CONCURRENCY (default 200) clients stream
turns through codex-lb while faults are queued on the emulator through its
``/_sim/faults`` control API (cut streams, 429s, 5xx, stalls) and some
clients hang up early or mid-stream. Afterwards:

- the request log holds one row per request sent;
- the in-flight gauges in ``/metrics`` read 0;
- codex-lb's open file descriptors and resident memory are back near where
  they were before the load (read from ``/proc``).

It prints its figures and exits 1 when a check fails. Not part of
``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from soak.processes import (
    free_port,
    import_accounts,
    lb_env,
    open_fds,
    rss_bytes,
    socket_states,
    start_codex_lb,
    start_emulator,
    stop,
)

BODY = {
    "model": "gpt-5",
    "instructions": "",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "soak"}],
        }
    ],
    "stream": True,
    "store": False,
}
CODEX = "/backend-api/codex/responses"
# Upstream keep-alive connections idle out after 60 s (app.py's connector,
# whose clean-up runs every 60 s); the server's own after 75 s. Wait past both.
FD_SETTLE_SECONDS = 150.0
# A client told the pool is exhausted waits as asked (at most this long)
# instead of spinning; the faults it queued would otherwise pile up.
MAX_BACKOFF_SECONDS = 2.0
# Memory may settle higher than a cold start (allocator arenas, caches that
# fill once); it must not keep growing with the number of requests.
RSS_SLACK_BYTES = 40 * 1024 * 1024
FD_SLACK = 8


def _fault_menu(rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """A random fault to queue before a request (about one in twelve)."""
    roll = rng.random()
    if roll < 0.03:
        return "cut", {"kind": "cut", "events": rng.randint(0, 6)}
    if roll < 0.045:
        return "429_usage_limit", {
            "kind": "status",
            "status": 429,
            "body": {
                "error": {
                    "type": "usage_limit_reached",
                    "code": "usage_limit_reached",
                    "resets_in_seconds": 2,
                }
            },
        }
    if roll < 0.055:
        return "429_rate_limit", {
            "kind": "status",
            "status": 429,
            "body": {"error": {"code": "rate_limit_exceeded", "resets_in_seconds": 1}},
        }
    if roll < 0.075:
        status = rng.choice((500, 502, 503))
        return f"{status}", {"kind": "status", "status": status, "body": {}}
    if roll < 0.085:
        return "stall", {"kind": "stall", "events": rng.randint(1, 4), "seconds": 0.5}
    return None


class Soak:
    """The load, the fault injection and the tallies."""

    def __init__(
        self, lb_base: str, sim_base: str, emails: list[str], seed: int
    ) -> None:
        self.lb_base = lb_base
        self.sim_base = sim_base
        self.emails = emails
        self.rng = random.Random(seed)
        self.sent = 0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.aborts: collections.Counter[str] = collections.Counter()
        self.connect_errors = 0

    async def run(self, seconds: float, concurrency: int) -> None:
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            refill = asyncio.create_task(self._refill(session, deadline))
            await asyncio.gather(
                *(self._client(session, deadline) for _ in range(concurrency))
            )
            refill.cancel()
            await asyncio.gather(refill, return_exceptions=True)

    async def _refill(self, session: aiohttp.ClientSession, deadline: float) -> None:
        # The soak is about faults, not quota: empty the windows now and then
        # so the pool is not simply exhausted by the traffic.
        while time.monotonic() < deadline:
            for email in self.emails:
                async with session.post(
                    self.sim_base + "/_sim/usage",
                    json={"email": email, "primary": 0, "secondary": 0},
                ) as answer:
                    await answer.read()
            await asyncio.sleep(2)

    async def _client(self, session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            fault = _fault_menu(self.rng)
            if fault is not None:
                name, spec = fault
                email = self.rng.choice(self.emails)
                async with session.post(
                    self.sim_base + "/_sim/faults",
                    json={"email": email, "fault": spec},
                ) as answer:
                    if answer.status == 200:
                        self.faults[name] += 1
            roll = self.rng.random()
            if roll < 0.03:
                await self._abort_early()
            elif roll < 0.07:
                await self._abort_mid_stream(session)
            else:
                await self._stream(session)

    async def _stream(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(self.lb_base + CODEX, json=BODY) as answer:
                self.sent += 1
                raw = await answer.read()
        except aiohttp.ClientConnectorError:
            self.connect_errors += 1
            return
        except aiohttp.ClientError:
            self.statuses["client_error"] += 1
            return
        if answer.status != 200:
            self.statuses[str(answer.status)] += 1
            if answer.status == 429:
                wait = float(answer.headers.get("Retry-After", "1") or 1)
                await asyncio.sleep(min(max(wait, 0.1), MAX_BACKOFF_SECONDS))
        elif b"event: response.completed" in raw:
            self.statuses["completed"] += 1
        elif b"event: response.failed" in raw:
            self.statuses["failed_event"] += 1
        else:
            self.statuses["other"] += 1

    async def _abort_mid_stream(self, session: aiohttp.ClientSession) -> None:
        """Read the first bytes of the answer, then hang up."""
        try:
            async with session.post(self.lb_base + CODEX, json=BODY) as answer:
                self.sent += 1
                await answer.content.readany()
                answer.close()
        except aiohttp.ClientConnectorError:
            self.connect_errors += 1
            return
        except aiohttp.ClientError:
            pass
        self.aborts["mid_stream"] += 1

    async def _abort_early(self) -> None:
        """Send the whole request on a raw socket, hang up before the answer."""
        host, port = self.lb_base.removeprefix("http://").split(":")
        payload = json.dumps(BODY).encode()
        head = (
            f"POST {CODEX} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            self.connect_errors += 1
            return
        writer.write(head + payload)
        await writer.drain()
        # Bytes handed to the kernel on loopback reach codex-lb: it will
        # serve (and log) this request whatever happens next.
        self.sent += 1
        await asyncio.sleep(self.rng.uniform(0.0, 0.05))
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        self.aborts["early"] += 1


async def _metrics(base: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/metrics") as answer,
    ):
        return await answer.text()


def _gauges(text: str, name: str) -> list[float]:
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.M)
    return [float(m.group(2)) for m in pattern.finditer(text)]


def _rows(db: Path) -> int:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(
            connection.execute("SELECT count(*) FROM request_logs").fetchone()[0]
        )
    finally:
        connection.close()


async def _warm_up(base: str, requests: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            async with session.post(base + CODEX, json=BODY) as answer:
                await answer.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.run", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600))
    )
    parser.add_argument(
        "--concurrency", type=int, default=int(os.environ.get("SOAK_CONCURRENCY", 200))
    )
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", 1)))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="codex-lb-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.seconds:.0f} s, {args.concurrency} streams, in {workdir}")
    sim, sim_base = start_emulator(
        workdir,
        "--plans",
        "pro",
        "--event-delay-ms",
        "10",
        "--events",
        "8",
        accounts=args.accounts,
    )
    lb = None
    try:
        port = free_port()
        env = lb_env(
            workdir / "lb-data",
            sim_base,
            port,
            # aiohttp reuses pooled connections oldest first, so a steady
            # trickle of polls would keep every idle upstream connection of
            # the peak alive; with polls off the pool drains after the load
            # and descriptors can be compared with the start.
            CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS="0",
            CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="5",
        )
        import_accounts(env, workdir / "auth")
        lb = start_codex_lb(env, workdir / "codex-lb.log")
        base = f"http://127.0.0.1:{port}"
        return asyncio.run(_soak(args, lb.pid, base, sim_base, workdir, env))
    finally:
        if lb is not None:
            print(f"codex-lb exit status after SIGTERM: {stop(lb, 60)}")
        stop(sim)


async def _soak(
    args: argparse.Namespace,
    pid: int,
    base: str,
    sim_base: str,
    workdir: Path,
    env: dict[str, str],
) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(sim_base + "/_sim/accounts") as answer,
    ):
        emails = [a["email"] for a in (await answer.json())["accounts"]]

    cold = (rss_bytes(pid), open_fds(pid))
    await _warm_up(base, 50)
    await asyncio.sleep(2)
    warm_rows = _rows(workdir / "lb-data" / "store.db")
    warm = (rss_bytes(pid), open_fds(pid))

    soak = Soak(base, sim_base, emails, args.seed)
    started = time.monotonic()
    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, rss_bytes(pid)))
            await asyncio.sleep(30)

    sampler = asyncio.create_task(sample())
    await soak.run(args.seconds, args.concurrency)
    elapsed = time.monotonic() - started
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)

    # Let the last rows flush (CODEX_LB_REQUEST_LOG_FLUSH_SECONDS, 1 s).
    await asyncio.sleep(3)
    rows = _rows(workdir / "lb-data" / "store.db") - warm_rows
    metrics = await _metrics(base)
    inflight = _gauges(metrics, "codex_lb_proxy_inflight_requests")
    account_inflight = _gauges(metrics, "codex_lb_account_inflight_requests")
    dropped = _gauges(metrics, "codex_lb_request_log_buffer_dropped_total")
    busy = (rss_bytes(pid), open_fds(pid))

    settle_started = time.monotonic()
    while time.monotonic() - settle_started < FD_SETTLE_SECONDS:
        if open_fds(pid) <= warm[1] + FD_SLACK:
            break
        await asyncio.sleep(1)
    settled = time.monotonic() - settle_started
    after = (rss_bytes(pid), open_fds(pid))
    sockets = socket_states(pid)

    mib = 1024 * 1024
    print(
        f"requests sent:        {soak.sent} in {elapsed:.0f} s "
        f"({soak.sent / elapsed:.0f}/s), connect errors {soak.connect_errors}"
    )
    print(f"outcomes:             {dict(sorted(soak.statuses.items()))}")
    print(f"client aborts:        {dict(sorted(soak.aborts.items()))}")
    print(
        f"faults injected:      {sum(soak.faults.values())} "
        f"{dict(sorted(soak.faults.items()))}"
    )
    print(f"request-log rows:     {rows} (dropped {dropped})")
    print(f"in-flight gauges:     proxy {inflight}, accounts {account_inflight}")
    print(
        f"RSS MiB:              cold {cold[0] / mib:.1f}, warm {warm[0] / mib:.1f}, "
        f"end of load {busy[0] / mib:.1f}, after {after[0] / mib:.1f}"
    )
    print(
        "RSS during load MiB:  "
        + " ".join(f"{t:.0f}s={r / mib:.0f}" for t, r in samples)
    )
    print(
        f"open fds:             cold {cold[1]}, warm {warm[1]}, "
        f"end of load {busy[1]}, after {after[1]} (settled in {settled:.0f} s)"
    )
    print(f"sockets after:        {dict(sorted(sockets.items()))}")

    checks = {
        "rows == requests sent": rows == soak.sent,
        "no rows dropped": dropped == [0.0],
        "in-flight gauges at 0": inflight == [0.0]
        and all(v == 0 for v in account_inflight),
        "fds back near start": after[1] <= warm[1] + FD_SLACK,
        "no half-closed sockets": sockets.get("close_wait", 0) == 0,
        "memory back near start": after[0] <= warm[0] + RSS_SLACK_BYTES,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
