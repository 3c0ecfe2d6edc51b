"""Added time to first byte: codex-lb against calling the emulator directly.

Starts the emulator (no event delays) and codex-lb as separate processes on
free loopback ports, then sends N streamed turns to each, interleaved, and
prints the median and p99 time to the first body byte of both and the
difference. Not a test: figures vary with the machine.

    .venv/bin/python bench/ttfb.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BODY = {
    "model": "gpt-5",
    "input": [{"type": "message", "role": "user", "content": "hi"}],
    "stream": True,
    "store": False,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def first_byte(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> float:
    started = time.perf_counter()
    async with session.post(url, json=BODY, headers=headers) as response:
        await response.content.readany()
        elapsed = time.perf_counter() - started
        await response.read()
    return elapsed * 1000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="codex-lb-ttfb-"))
    sim_port, lb_port = free_port(), free_port()
    python = sys.executable
    sim = subprocess.Popen(
        [
            python,
            "-m",
            "codex_lb.sim",
            "--port",
            str(sim_port),
            "--accounts",
            "2",
            "--fast",
            "--auth-dir",
            str(work / "auth"),
        ],
        stdout=subprocess.DEVNULL,
    )
    env = dict(
        os.environ,
        CODEX_LB_PORT=str(lb_port),
        CODEX_LB_DATA_DIR=str(work / "lb"),
        CODEX_LB_UPSTREAM_BASE_URL=f"http://127.0.0.1:{sim_port}/backend-api",
        CODEX_LB_AUTH_BASE_URL=f"http://127.0.0.1:{sim_port}",
        CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS="0",
        CODEX_LB_LOG_LEVEL="warning",
    )
    lb = None
    try:
        await wait_ready(f"http://127.0.0.1:{sim_port}/_sim/accounts")
        auth_files = sorted(str(p) for p in (work / "auth").glob("*/auth.json"))
        subprocess.run(
            [python, "-m", "codex_lb", "accounts", "import", *auth_files],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        lb = subprocess.Popen([python, "-m", "codex_lb"], env=env)
        await wait_ready(f"http://127.0.0.1:{lb_port}/health")

        first = json.loads((work / "auth").glob("*/auth.json").__next__().read_text())
        direct_headers = {
            "Authorization": f"Bearer {first['tokens']['access_token']}",
            "chatgpt-account-id": first["tokens"]["account_id"],
        }
        direct_url = f"http://127.0.0.1:{sim_port}/backend-api/codex/responses"
        proxied_url = f"http://127.0.0.1:{lb_port}/backend-api/codex/responses"
        direct, proxied = [], []
        async with aiohttp.ClientSession() as session:
            for _ in range(20):  # warm up both paths and connection pools
                await first_byte(session, direct_url, direct_headers)
                await first_byte(session, proxied_url, {})
            for _ in range(count):
                direct.append(await first_byte(session, direct_url, direct_headers))
                proxied.append(await first_byte(session, proxied_url, {}))
    finally:
        for process in (lb, sim):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)

    d50, p50 = statistics.median(direct), statistics.median(proxied)
    d99, p99 = quantile(direct, 0.99), quantile(proxied, 0.99)
    print(f"requests each: {count}")
    print(f"direct   TTFB p50 {d50:7.3f} ms   p99 {d99:7.3f} ms")
    print(f"codex-lb TTFB p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    print(f"added    TTFB p50 {p50 - d50:+7.3f} ms   p99 {p99 - d99:+7.3f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
