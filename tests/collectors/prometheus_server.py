"""A real Prometheus server (Debian's package) for tests, on loopback."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

HAVE_PROMETHEUS = bool(shutil.which("prometheus") and shutil.which("promtool"))
WHY_NOT = "needs Debian's prometheus and promtool on PATH (make prometheus)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """Prometheus scraping one target every second, queried over HTTP."""

    def __init__(self, workdir: Path, target: str, metrics_path: str = "/metrics"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: codex-lb\n"
            f"    metrics_path: {metrics_path}\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.data = workdir / "tsdb"
        self.log = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.session = aiohttp.ClientSession()
        for _ in range(200):
            try:
                async with self.session.get(self.base + "/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("prometheus did not get ready:\n" + self.log.read_text())

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.process is not None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives (at time ``at``)."""
        assert self.session is not None
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        async with self.session.get(self.base + "/api/v1/query", params=params) as r:
            payload = await r.json()
        if payload.get("status") != "success":
            raise AssertionError(f"{expr}: {payload}")
        data = payload["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def values(self, expr: str, at: float | None = None) -> dict[str, float]:
        """``expr``'s result as {sorted label text: value}."""
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
        """Poll ``expr`` until ``ok(values)`` holds; the last values."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            got = await self.values(expr)
            if ok(got):
                return got
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting on {expr}: {got}")
            await asyncio.sleep(0.1)
