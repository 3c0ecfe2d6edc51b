"""The clients: time to first byte, throughput, long and slow streams.

Throughput and long streams use ``wrk`` (a C load generator, Debian package
``wrk``) when it is on the PATH: a Python client on a small machine spends
as much CPU as the proxy it measures and would flatten every ratio. Without
``wrk`` an aiohttp client in the harness is used, and the table says so.
Every loop here is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

SHORT_PROMPT = "hi"
# The emulator cuts an answer into at most one delta per character; its
# answers echo up to 200 characters of the prompt, so this allows ~200.
LONG_PROMPT = "x" * 200


def body(prompt: str) -> bytes:
    return json.dumps(
        {
            "model": "gpt-5",
            "input": [{"type": "message", "role": "user", "content": prompt}],
            "stream": True,
            "store": False,
        }
    ).encode()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connector(limit: int = 0) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, force_close=False)


# Content-free events a proxy may hold back (SPEC section 5): codex-lb sends
# them with the first event that carries content, the reference at once.
OPENING_EVENTS = (b"response.created", b"response.in_progress")


async def first_byte_ms(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    headers: Mapping[str, str],
) -> tuple[float, float]:
    """Milliseconds until the first body byte, and until the end of the
    first event that is not an opening one; the rest is read and dropped."""
    started = time.perf_counter()
    first = content = 0.0
    async with session.post(url, data=payload, headers=headers) as response:
        seen = b""
        async for chunk in response.content.iter_any():
            if not first:
                first = time.perf_counter() - started
            seen += chunk
            if _has_content_event(seen):
                content = time.perf_counter() - started
                break
        await response.read()
        if response.status != 200 or not content:
            raise RuntimeError(f"{url} answered {response.status}, no content")
    return first * 1000, content * 1000


def _has_content_event(stream: bytes) -> bool:
    """Whether ``stream`` holds a whole event other than the opening ones."""
    *events, _rest = stream.split(b"\n\n")
    for event in events:
        name = event.partition(b"\n")[0].removeprefix(b"event:").strip()
        if name and name not in OPENING_EVENTS:
            return True
    return False


async def ttfb(
    targets: Mapping[str, str], headers: Mapping[str, str], rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Sequential requests, one per target per round, order rotating each round;
    (times to first byte, times to first content event) per target.

    Rotating means no target always follows the same one, so a slow moment
    of the machine lands on every target alike.
    """
    names = list(targets)
    payload = body(SHORT_PROMPT)
    first: dict[str, list[float]] = {name: [] for name in names}
    content: dict[str, list[float]] = {name: [] for name in names}
    async with aiohttp.ClientSession(connector=connector()) as session:
        for _ in range(warmup):
            for name in names:
                await first_byte_ms(session, targets[name], payload, headers)
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                byte, event = await first_byte_ms(
                    session, targets[name], payload, headers
                )
                first[name].append(byte)
                content[name].append(event)
    return first, content


class Throughput:
    """Requests per second at a concurrency for a few seconds."""

    def __init__(self, work: Path, headers: Mapping[str, str], use_wrk: bool) -> None:
        self.wrk = shutil.which("wrk") if use_wrk else None
        self._work = work
        self._headers = dict(headers)
        self._scripts: dict[str, Path] = {}

    @property
    def client(self) -> str:
        return "wrk" if self.wrk else "aiohttp (client-bound on small machines)"

    def _script(self, prompt: str) -> Path:
        if prompt not in self._scripts:
            lines = [
                'wrk.method = "POST"',
                f"wrk.body = {_lua_string(body(prompt).decode())}",
                'wrk.headers["Content-Type"] = "application/json"',
            ]
            lines += [
                f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
                for k, v in self._headers.items()
            ]
            path = self._work / f"post-{len(self._scripts)}.lua"
            path.write_text("\n".join(lines) + "\n")
            self._scripts[prompt] = path
        return self._scripts[prompt]

    async def run(
        self, url: str, concurrency: int, seconds: float, prompt: str
    ) -> float:
        """Completed 200 answers per second (errors make it fail loudly)."""
        if self.wrk:
            return await self._run_wrk(url, concurrency, seconds, prompt)
        return await self._run_aiohttp(url, concurrency, seconds, prompt)

    async def _run_wrk(
        self, url: str, concurrency: int, seconds: float, prompt: str
    ) -> float:
        assert self.wrk is not None
        process = await asyncio.create_subprocess_exec(
            self.wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(self._script(prompt)),
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"wrk against {url} did not finish") from None
        text = out.decode(errors="replace")
        rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        errors = re.search(r"Socket errors:.*", text)
        if rate is None or bad is not None or errors is not None:
            raise RuntimeError(f"wrk against {url} saw failures:\n{text}")
        return float(rate.group(1))

    async def _run_aiohttp(
        self, url: str, concurrency: int, seconds: float, prompt: str
    ) -> float:
        payload = body(prompt)
        done = 0
        deadline = time.monotonic() + seconds

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(
                    url, data=payload, headers=self._headers
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                done += 1

        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector()) as session:
            await asyncio.wait_for(
                asyncio.gather(*(worker(session) for _ in range(concurrency))),
                seconds + 30,
            )
        return done / (time.monotonic() - started)


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def events_per_answer(url: str, headers: Mapping[str, str], prompt: str) -> int:
    """How many SSE events one streamed answer holds."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body(prompt), headers=headers) as response,
    ):
        raw = await response.read()
    return raw.count(b"\n\n")


async def open_streams(
    url: str,
    headers: Mapping[str, str],
    count: int,
    on_all_open: Any,
    timeout: float,
) -> tuple[int, int, float]:
    """Hold ``count`` slow streams open at once, calling ``on_all_open()``.

    Returns (streams that reached their terminal event, streams that had
    started when ``on_all_open`` was called, seconds to open them all).
    ``on_all_open`` is awaited while the streams are still running.
    """
    payload = body(SHORT_PROMPT)
    started = 0
    all_open = asyncio.Event()
    began = time.monotonic()

    async def one(session: aiohttp.ClientSession) -> bool:
        nonlocal started
        async with session.post(url, data=payload, headers=headers) as response:
            first = await response.content.readany()
            started += 1
            if started == count:
                all_open.set()
            rest = await response.read()
        return response.status == 200 and b"response.completed" in first + rest

    async with aiohttp.ClientSession(
        connector=connector(), timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        try:
            await asyncio.wait_for(all_open.wait(), timeout)
        except TimeoutError:
            pass
        opened, open_seconds = started, time.monotonic() - began
        await on_all_open()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    completed = sum(1 for r in results if r is True)
    return completed, opened, open_seconds


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p99": quantile(values, 0.99),
        "max": max(values),
    }
