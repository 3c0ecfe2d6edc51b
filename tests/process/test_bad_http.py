"""Requests aiohttp's HTTP parser refuses before codex-lb's handlers run.

codex-lb cannot shape these answers (they are aiohttp's plain-text 400s), but
it owns its log: each refusal is one warning line, never an error with a
traceback that a remote client could repeat to flood the log. Real
processes on loopback; the log read from the process's own output.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from soak.processes import stop
from tests.process.conftest import CODEX, CODEX_BODY, Processes

# Each is refused by the parser: a header line over 8190 bytes, 200 headers.
UNPARSABLE = {
    "long-header": b"X-Big: " + b"a" * 20_000 + b"\r\n",
    "many-headers": b"".join(b"X-H%d: 1\r\n" % i for i in range(200)),
}


async def _raw(port: int, headers: bytes) -> bytes:
    """Send one request with ``headers``; what came back before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST " + CODEX.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer sk-clb-neverlogged0123456789\r\n"
        + headers
        + b"Content-Length: 2\r\n\r\n{}"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


class TestUnparsableRequests:
    @pytest.mark.parametrize("kind", sorted(UNPARSABLE))
    async def test_one_warning_line_each_and_the_server_serves_on(
        self, quick_streams: Processes, kind: str
    ) -> None:
        lb = quick_streams.start()
        port = int(lb.env["CODEX_LB_PORT"])

        answers = [await _raw(port, UNPARSABLE[kind]) for _ in range(3)]
        async with (
            aiohttp.ClientSession() as session,
            session.post(lb.base + CODEX, json=CODEX_BODY) as after,
        ):
            assert after.status == 200
            await after.read()
        assert stop(lb.process) == 0

        # aiohttp answers these in HTTP/1.0: the request's version is unknown.
        assert all(answer.split(b" ")[1] == b"400" for answer in answers)
        lines = [json.loads(line) for line in lb.log.read_text().splitlines()]
        refused = [line for line in lines if line["event"] == "bad_http_request"]
        assert len(refused) == 3
        assert {(r["level"], r["status"], r["peer"]) for r in refused} == {
            ("warning", 400, "127.0.0.1")
        }
        assert not [line for line in lines if "exception" in line]
        assert not [line for line in lines if line["level"] in ("error", "critical")]
        assert "sk-clb-neverlogged" not in lb.log.read_text()
