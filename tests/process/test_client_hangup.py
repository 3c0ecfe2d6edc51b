"""A client that hangs up mid-stream is noticed at once, not at the upstream's
next byte: the upstream connection closes and the in-flight gauges drop
while the upstream is silent. Real processes on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from soak.processes import stop
from tests.process.conftest import CODEX, CODEX_BODY, Processes, emulator_processes
from tests.process.test_shutdown import _queue_on_every_account

ESTABLISHED = "01"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    yield from emulator_processes(tmp_path)


def connections_to(pid: int, port: int) -> int:
    """``pid``'s established TCP connections to ``port`` on loopback."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[9] in inodes and remote_port == port and fields[3] == ESTABLISHED:
            count += 1
    return count


async def inflight(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(base + "/metrics") as answer:
        text = await answer.text()
    (line,) = [
        x for x in text.splitlines() if x.startswith("codex_lb_proxy_inflight_requests")
    ]
    return float(line.split()[-1])


class TestClientHangsUp:
    async def test_upstream_released_and_gauges_drop_within_a_second(
        self, processes: Processes
    ) -> None:
        lb = processes.start()
        emulator_port = int(processes.emulator_base.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as session:
            await _queue_on_every_account(
                session, processes, {"kind": "stall", "events": 4, "seconds": 600}
            )

            # A separate connection, so closing it is the client hanging up.
            async with aiohttp.ClientSession() as client:
                answer = await client.post(lb.base + CODEX, json=CODEX_BODY)
                assert answer.status == 200
                assert await answer.content.readany()
                assert connections_to(lb.process.pid, emulator_port) == 1
                assert await inflight(session, lb.base) == 1
                answer.close()  # drops the connection mid-stream
            hung_up = time.monotonic()

            while connections_to(lb.process.pid, emulator_port) or await inflight(
                session, lb.base
            ):
                assert time.monotonic() - hung_up < 1.0, "still held after 1 s"
                await asyncio.sleep(0.05)
        assert stop(lb.process) == 0

        [row] = lb.rows()
        assert (row["status_code"], row["error_code"]) == (499, "client_disconnected")
