"""A real Prometheus (Debian's package) for tests, scraping codex-lb."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.compose.helpers import load_script, tool


class PromQLError(Exception):
    """Prometheus refused a query; the message is its error."""


class Prometheus:
    """A running Prometheus and its HTTP API."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant result of `expr` now (raises PromQLError if refused)."""
        async with self.session.get(
            f"{self.url}/api/v1/query", params={"query": expr}
        ) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}{path}") as response:
            return (await response.json())["data"]

    async def wait_for_scrapes(self, count: int, after: float) -> None:
        """Wait until `count` scrapes of codex-lb ended after `after` (epoch)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            window_ms = max(1, int((time.time() - after) * 1000))
            samples = await self.query(
                f'count_over_time(up{{job="codex-lb"}}[{window_ms}ms])'
            )
            if samples and float(samples[0]["value"][1]) >= count:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"Prometheus did not scrape codex-lb {count} times")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_prometheus(
    work: Path, target: str, token: str, scrape_interval: str = "1s"
) -> AsyncIterator[Prometheus]:
    """Prometheus on a free loopback port with the compose scrape job and rules.

    The config is compose/prometheus.yml pointed at `target`, so the test
    scrapes exactly as the compose stack does, metrics token included.
    """
    binary = tool("prometheus")
    token_file = work / "metrics_token"
    token_file.write_text(token)
    config = work / "prometheus.yml"
    demo = load_script("demo")
    config.write_text(
        demo.local_prometheus_config(
            target, token_file, scrape_interval=scrape_interval
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            break
                if process.returncode is not None or time.monotonic() > deadline:
                    output = (work / "prometheus.log").read_text(errors="replace")
                    raise RuntimeError(f"Prometheus did not start:\n{output[-2000:]}")
                await asyncio.sleep(0.05)
            yield Prometheus(url, session)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
