"""A real Prometheus (Debian's package) for tests, on loopback.

Every test that needs Prometheus starts it here: scraping codex-lb every
second (`scraping`), with the compose stack's scrape job and rules
(`running_prometheus`), or holding synthetic history written by promtool
(`prometheus_with_history`).
"""

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

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant result of `expr` now, or at epoch `at` (raises
        PromQLError if refused)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self._api("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """The series `expr` gives from `start` to `end` every `step` seconds."""
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
        }
        data = await self._api("/api/v1/query_range", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def _api(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        return data

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}{path}") as response:
            return (await response.json())["data"]

    async def values(self, expr: str, at: float | None = None) -> dict[str, float]:
        """`expr`'s result as {sorted label text: value}, without the labels
        Prometheus adds itself."""
        out = {}
        for item in await self.query(expr, at):
            labels = ",".join(
                f"{k}={v}"
                for k, v in sorted(item["metric"].items())
                if k not in ("__name__", "instance", "job")
            )
            out[labels] = float(item["value"][1])
        return out

    async def wait_for(self, expr: str, ok: Any, seconds: float = 20.0) -> Any:
        """Poll `expr` until `ok(values)` holds; the last values."""
        deadline = time.monotonic() + seconds
        while True:
            got = await self.values(expr)
            if ok(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on {expr}: {got}")
            await asyncio.sleep(0.1)

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
async def scraping(
    work: Path, target: str, metrics_path: str = "/metrics"
) -> AsyncIterator[Prometheus]:
    """Prometheus scraping `target` every second, nothing else configured."""
    config = (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: codex-lb\n"
        f"    metrics_path: {metrics_path}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    async with serving(work, config, work / "tsdb") as prometheus:
        yield prometheus


@contextlib.asynccontextmanager
async def running_prometheus(
    work: Path, target: str, token: str, scrape_interval: str = "1s"
) -> AsyncIterator[Prometheus]:
    """Prometheus on a free loopback port with the compose scrape job and rules.

    The config is compose/prometheus.yml pointed at `target`, so the test
    scrapes exactly as the compose stack does, metrics token included.
    """
    token_file = work / "metrics_token"
    token_file.write_text(token)
    demo = load_script("demo")
    config = demo.local_prometheus_config(
        target, token_file, scrape_interval=scrape_interval
    )
    async with serving(work, config, work / "tsdb") as prometheus:
        yield prometheus


# Suffixes of the series that only grow: counters and histogram parts.
GROWING_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def history_text(
    samples: list[dict[str, Any]], end: float, span: float, spacing: float
) -> str:
    """OpenMetrics text for `span` seconds of history ending at `end`.

    Each of `samples` (an instant query result) becomes one series: a
    counter grows evenly from 0 to its value, anything else holds its
    value. A counter of value v therefore adds v * d / span over any d
    seconds, which is what a daily or hourly panel must then show.
    """
    steps = int(span // spacing)
    lines = []
    for sample in samples:
        labels = dict(sample["metric"])
        name = labels.pop("__name__")
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        value = float(sample["value"][1])
        growing = name.endswith(GROWING_SUFFIXES)
        for step in range(steps + 1):
            at = end - (steps - step) * spacing
            now_value = value * step / steps if growing else value
            lines.append(f"{name}{{{text}}} {now_value!r} {at:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def prometheus_with_history(
    work: Path, openmetrics: str
) -> AsyncIterator[Prometheus]:
    """A Prometheus that scrapes nothing and holds `openmetrics` as history,
    written into its storage by `promtool tsdb create-blocks-from`."""
    source = work / "history.om"
    source.write_text(openmetrics)
    tsdb = work / "tsdb"
    created = await asyncio.create_subprocess_exec(
        tool("promtool"),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--max-block-duration=24h",
        str(source),
        str(tsdb),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await created.communicate()
    if created.returncode != 0:
        raise RuntimeError(f"promtool could not write the history:\n{output!r}")
    async with serving(work, "global:\n  scrape_interval: 1m\n", tsdb) as prometheus:
        yield prometheus


@contextlib.asynccontextmanager
async def serving(
    work: Path, config_text: str, tsdb: Path
) -> AsyncIterator[Prometheus]:
    """Prometheus with `config_text` on storage `tsdb`, until the block ends."""
    binary = tool("prometheus")
    config = work / "prometheus.yml"
    config.write_text(config_text)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "prometheus.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tsdb}",
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
                    output = log_path.read_text(errors="replace")
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
