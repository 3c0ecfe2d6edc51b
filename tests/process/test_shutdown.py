"""Stopping codex-lb: SIGTERM drains and logs every request; kill -9 loses little.

codex-lb runs as ``python -m codex_lb`` in front of the emulator, both real
processes on loopback. The request log is read from the database file after
the process is gone.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp

from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.store import RequestLogRow, Store
from soak.processes import stop
from tests.process.conftest import CODEX, CODEX_BODY, Processes, Running

STREAMS = 20
COMPLETED = b"event: response.completed"


async def _stream(
    session: aiohttp.ClientSession,
    base: str,
    opened: list[int],
    all_open: asyncio.Event,
) -> tuple[int, bytes]:
    """One streamed turn; counts itself open once its first bytes arrive."""
    async with session.post(base + CODEX, json=CODEX_BODY) as answer:
        first = await answer.content.readany()
        opened.append(1)
        if len(opened) == STREAMS:
            all_open.set()
        try:
            rest = await answer.content.read()
        except aiohttp.ClientPayloadError:
            rest = b""
        return answer.status, first + rest


async def _refused(base: str, streams: list[asyncio.Task[tuple[int, bytes]]]) -> bool:
    """Whether a new connection is refused while some stream is still open."""
    host, port = base.removeprefix("http://").split(":")
    while not all(task.done() for task in streams):
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return True
        writer.close()
        await asyncio.sleep(0.05)
    return False


async def _exit_status(process: Running, timeout: float) -> int:
    return await asyncio.to_thread(process.process.wait, timeout)


class TestSigterm:
    async def test_streams_in_flight_finish_and_each_has_a_row(
        self, slow_streams: Processes
    ) -> None:
        """20 streams open at SIGTERM all complete; the last flush logs all 20.

        The periodic flush is set to ten minutes, so every row in the file was
        written by the shutdown flush.
        """
        lb = slow_streams.start(
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="600",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="120",
            CODEX_LB_LOG_LEVEL="info",
        )
        opened: list[int] = []
        all_open = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            streams = [
                asyncio.create_task(_stream(session, lb.base, opened, all_open))
                for _ in range(STREAMS)
            ]
            await asyncio.wait_for(all_open.wait(), 120)
            lb.process.send_signal(signal.SIGTERM)
            refused = await _refused(lb.base, streams)
            results = await asyncio.gather(*streams)
        status = await _exit_status(lb, 120)

        assert refused, "new connections must be refused while streams drain"
        assert [code for code, _ in results] == [200] * STREAMS
        assert all(COMPLETED in body for _, body in results)
        assert status == 0
        rows = lb.rows()
        assert len(rows) == STREAMS
        assert {(r["status"], r["status_code"]) for r in rows} == {("success", 200)}
        assert all(r["output_tokens"] > 0 for r in rows)
        assert "codex_lb_stopped" in lb.log.read_text()

    async def test_a_stream_past_the_deadline_is_cut_and_still_logged(
        self, slow_streams: Processes
    ) -> None:
        """A stream stalled past the grace period ends; its row says so."""
        lb = slow_streams.start(
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="600",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="1",
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(slow_streams.emulator_base + "/_sim/accounts") as a:
                emails = [x["email"] for x in (await a.json())["accounts"]]
            for email in emails:
                fault = {"kind": "stall", "events": 6, "seconds": 600}
                async with session.post(
                    slow_streams.emulator_base + "/_sim/faults",
                    json={"email": email, "fault": fault},
                ) as queued:
                    assert queued.status == 200
            async with session.post(lb.base + CODEX, json=CODEX_BODY) as answer:
                first = await answer.content.readany()
                lb.process.send_signal(signal.SIGTERM)
                try:
                    rest = await answer.content.read()
                except aiohttp.ClientPayloadError:
                    rest = b""
        status = await _exit_status(lb, 60)

        assert answer.status == 200
        assert first
        assert COMPLETED not in first + rest
        assert status == 0
        [row] = lb.rows()
        assert row["status"] == "error"
        assert row["error_code"] is not None


class TestKill:
    async def test_kill_9_leaves_a_sound_database_missing_one_interval(
        self, quick_streams: Processes
    ) -> None:
        """After SIGKILL under load the file checks ok, every request that
        finished more than a few flush intervals before the kill has its row,
        and codex-lb starts again on the same data."""
        flush_seconds = 0.5
        lb = quick_streams.start(CODEX_LB_REQUEST_LOG_FLUSH_SECONDS=str(flush_seconds))
        finished: list[float] = []
        stop_at = time.monotonic() + 7

        async def client(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < stop_at:
                try:
                    async with session.post(lb.base + CODEX, json=CODEX_BODY) as a:
                        body = await a.read()
                except aiohttp.ClientError:
                    return
                if a.status == 200 and COMPLETED in body:
                    finished.append(time.monotonic())

        async def killer() -> float:
            await asyncio.sleep(5)
            lb.process.kill()
            return time.monotonic()

        async with aiohttp.ClientSession() as session:
            kill = asyncio.create_task(killer())
            await asyncio.gather(*(client(session) for _ in range(10)))
            killed_at = await kill
        lb.process.wait(30)

        # A row reaches the file within one flush interval; allow a few
        # for a busy machine.
        settled = [t for t in finished if t < killed_at - 4 * flush_seconds - 1]
        connection = sqlite3.connect(lb.db)
        try:
            [[check]] = connection.execute("PRAGMA integrity_check").fetchall()
            [[rows]] = connection.execute("SELECT count(*) FROM request_logs")
        finally:
            connection.close()
        assert check == "ok"
        assert len(settled) > 0
        assert len(settled) <= rows <= len(finished) + 10
        again = quick_streams.start()
        async with (
            aiohttp.ClientSession() as session,
            session.post(again.base + CODEX, json=CODEX_BODY) as answer,
        ):
            assert answer.status == 200
            assert COMPLETED in await answer.read()
        assert stop(again.process) == 0
        assert len(again.rows()) == rows + 1


def _row(request_id: str) -> RequestLogRow:
    return RequestLogRow(
        request_id, 1000.0, "codex", "gpt-5", None, "success", 200, None, 1, 5.0
    )


class TestRequestLogWriterStop:
    async def test_stop_ends_the_writer_after_its_write_each_row_once(
        self, store: Store
    ) -> None:
        """The shutdown path stops the writer instead of cancelling it: it
        returns after writing what it holds, and a last flush adds nothing
        twice (a cancel between insert and commit could have)."""
        buffer = RequestLogBuffer(store, max_rows=100, flush_seconds=600)
        writer = asyncio.create_task(buffer.run())
        await asyncio.sleep(0)  # the writer waits for its interval
        ids = [f"req-{n}" for n in range(3)]
        for request_id in ids:
            buffer.add(_row(request_id))

        buffer.stop()
        await asyncio.wait_for(writer, 30)
        written_by_writer = buffer.written
        buffer.add(_row("req-late"))
        await buffer.flush()

        written = await store.recent_request_logs(limit=100)
        assert written_by_writer == 3
        assert sorted(r.request_id for r in written) == [*ids, "req-late"]
        assert buffer.size == 0
