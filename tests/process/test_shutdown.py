"""Stopping codex-lb: SIGTERM drains and logs every request; kill -9 loses little.

codex-lb runs as ``python -m codex_lb`` in front of the emulator, both real
processes on loopback. The request log is read from the database file after
the process is gone.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import aiohttp

from codex_lb.events.host import HOOK_DRAIN_SECONDS
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.store import RequestLogRow, Store
from soak.processes import free_port, import_accounts, lb_env, stop
from tests.process.conftest import CODEX, CODEX_BODY, Processes, Running

STREAMS = 20
# How long writing one batch of request-log rows may take on a busy machine.
WRITE_SLACK = 0.25
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
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: the connection reached the backlog as the socket closed.
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

    async def test_a_stream_past_the_deadline_ends_with_server_shutdown(
        self, slow_streams: Processes
    ) -> None:
        """A stream stalled past the grace period ends with one clear
        response.failed server_shutdown event, not a cut; its row says so."""
        lb = slow_streams.start(
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="600",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="1",
        )
        async with aiohttp.ClientSession() as session:
            await _queue_on_every_account(
                session, slow_streams, {"kind": "stall", "events": 6, "seconds": 600}
            )
            async with session.post(lb.base + CODEX, json=CODEX_BODY) as answer:
                first = await answer.content.readany()
                lb.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                rest = await answer.content.read()
        status = await _exit_status(lb, 60)

        assert answer.status == 200
        assert first
        body = first + rest
        assert COMPLETED not in body
        assert body.endswith(b"\n\n")
        failures = [
            json.loads(line[len(b"data: ") :])
            for line in body.split(b"\n")
            if line.startswith(b"data: ") and b"response.failed" in line
        ]
        assert [f["response"]["error"]["code"] for f in failures] == ["server_shutdown"]
        assert (
            body.rstrip(b"\n").split(b"\n\n")[-1].startswith(b"event: response.failed")
        )
        # Ended at the deadline, not a second grace period later.
        assert time.monotonic() - signalled < 1 + 4
        assert status == 0
        [row] = lb.rows()
        assert (row["status"], row["status_code"], row["error_code"]) == (
            "error",
            200,
            "server_shutdown",
        )
        log = lb.log.read_text()
        assert "streams_ended_at_shutdown" in log
        # aiohttp's own deadline comes after the relay's, so it never cuts a
        # handler that is finishing (it used to log an InvalidStateError).
        assert "Unhandled exception" not in log and "Traceback" not in log

    async def test_a_request_still_waiting_at_the_deadline_gets_a_503(
        self, slow_streams: Processes
    ) -> None:
        """A request whose upstream has not answered by the deadline gets a
        503 server_shutdown it can retry elsewhere, and a row saying so."""
        lb = slow_streams.start(
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="600",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="1",
        )
        async with aiohttp.ClientSession() as session:
            await _queue_on_every_account(
                session, slow_streams, {"kind": "timeout", "seconds": 600}
            )
            request = asyncio.create_task(
                session.post(lb.base + CODEX, json=CODEX_BODY)
            )
            await asyncio.sleep(0.5)
            lb.process.send_signal(signal.SIGTERM)
            async with await request as answer:
                body = await answer.json()
                retry_after = answer.headers.get("Retry-After")
        status = await _exit_status(lb, 60)

        assert answer.status == 503
        assert body["error"]["code"] == "server_shutdown"
        assert retry_after is not None and int(retry_after) > 0
        assert status == 0
        [row] = lb.rows()
        assert (row["status_code"], row["error_code"]) == (503, "server_shutdown")
        log = lb.log.read_text()
        assert "Unhandled exception" not in log and "Traceback" not in log

    async def test_a_second_sigterm_ends_the_streams_at_once(
        self, slow_streams: Processes
    ) -> None:
        """Mid-drain, a second SIGTERM ends each stream with response.failed
        server_shutdown right away; rows are still written, the store closed
        and the stop logged, with no error from aiohttp or asyncio."""
        lb = slow_streams.start(
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="600",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="120",
            CODEX_LB_LOG_LEVEL="info",
        )
        async with aiohttp.ClientSession() as session:
            await _queue_on_every_account(
                session, slow_streams, {"kind": "stall", "events": 6, "seconds": 600}
            )
            answers = [
                await session.post(lb.base + CODEX, json=CODEX_BODY) for _ in range(3)
            ]
            firsts = [await answer.content.readany() for answer in answers]
            lb.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            lb.process.send_signal(signal.SIGTERM)
            hurried = time.monotonic()
            rests = [await answer.content.read() for answer in answers]
            ended_after = time.monotonic() - hurried
            for answer in answers:
                answer.release()
        status = await _exit_status(lb, 30)

        assert ended_after < 2, ended_after
        for first, rest in zip(firsts, rests, strict=True):
            last = (first + rest).rstrip(b"\n").split(b"\n\n")[-1]
            assert last.startswith(b"event: response.failed")
            assert b'"code":"server_shutdown"' in last.replace(b" ", b"")
        assert status == 0
        rows = lb.rows()
        assert [(r["status_code"], r["error_code"]) for r in rows] == [
            (200, "server_shutdown")
        ] * 3
        log = lb.log.read_text()
        assert "shutdown_hurried" in log and "codex_lb_stopped" in log
        assert "request_log_lost_at_shutdown" not in log
        assert "Unhandled exception" not in log and "Traceback" not in log
        assert "Task was destroyed" not in log


async def _queue_on_every_account(
    session: aiohttp.ClientSession, processes: Processes, fault: dict[str, Any]
) -> None:
    """Queue ``fault`` on every emulated account's responses route."""
    base = processes.emulator_base
    async with session.get(base + "/_sim/accounts") as answer:
        emails = [x["email"] for x in (await answer.json())["accounts"]]
    for email in emails:
        async with session.post(
            base + "/_sim/faults", json={"email": email, "fault": fault}
        ) as queued:
            assert queued.status == 200


class TestKill:
    async def test_kill_9_leaves_a_sound_database_missing_one_interval(
        self, quick_streams: Processes
    ) -> None:
        """After SIGKILL under load the file checks ok, every request that
        finished more than one flush interval before the kill has its row,
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

        # A row reaches the file within one flush interval of its request's
        # end: only requests that ended in the last interval before the kill
        # may be missing (plus the time one batch takes to write).
        settled = [t for t in finished if t < killed_at - flush_seconds - WRITE_SLACK]
        connection = sqlite3.connect(lb.db)
        try:
            [[check]] = connection.execute("PRAGMA integrity_check").fetchall()
            [[rows]] = connection.execute("SELECT count(*) FROM request_logs")
        finally:
            connection.close()
        assert check == "ok"
        assert len(settled) > 0
        assert len(settled) <= rows <= len(finished) + 10, (
            len(settled),
            rows,
            len(finished),
        )
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


class TestLogReaderGone:
    async def test_requests_and_sigterm_work_with_the_log_pipe_closed(
        self, quick_streams: Processes
    ) -> None:
        """A server whose log reader went away still serves, logs and stops.

        Every log line then fails with a broken pipe; before log writes were
        made to survive that, SIGTERM (whose handler logs) was never obeyed
        and some requests got no answer at all.
        """
        env = lb_env(
            quick_streams.workdir / "piped-data",
            quick_streams.emulator_base,
            free_port(),
            CODEX_LB_LOG_LEVEL="debug",
        )
        import_accounts(env, quick_streams.workdir / "auth")
        process = subprocess.Popen(
            [sys.executable, "-m", "codex_lb"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        quick_streams.started.append(process)
        base = f"http://127.0.0.1:{env['CODEX_LB_PORT']}"
        assert process.stdout is not None
        await asyncio.to_thread(process.stdout.readline)  # started: it logs
        await _until_healthy(base)
        process.stdout.close()

        async with aiohttp.ClientSession() as session:
            answers = [
                await _answer(session, base + CODEX, CODEX_BODY) for _ in range(20)
            ]
        process.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(process.wait, 60)

        assert answers == [(200, True)] * 20
        assert status == 0
        rows = sqlite3.connect(env["CODEX_LB_DATA_DIR"] + "/store.db").execute(
            "SELECT status_code FROM request_logs"
        )
        assert [code for (code,) in rows] == [200] * 20


async def _until_healthy(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(base + "/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never became healthy")


async def _answer(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, bool]:
    """The status of one streamed turn and whether it completed."""
    async with session.post(url, json=body) as answer:
        return answer.status, COMPLETED in await answer.read()


class TestHungCollector:
    async def test_a_handler_that_never_returns_is_abandoned_at_shutdown(
        self, quick_streams: Processes
    ) -> None:
        """SIGTERM with a collector's handler stuck: the server still stops,
        within the hooks' limit, and names the handler it gave up on (it
        once waited for the third signal)."""
        lb = quick_streams.start(
            CODEX_LB_COLLECTORS="tests.events.raising_collectors:NeverReturns",
            CODEX_LB_SHUTDOWN_GRACE_SECONDS="2",
        )
        async with aiohttp.ClientSession() as session:
            assert await _answer(session, lb.base + CODEX, CODEX_BODY) == (200, True)

        started = time.monotonic()
        lb.process.send_signal(signal.SIGTERM)
        status = await _exit_status(lb, 60)
        took = time.monotonic() - started

        assert status == 0
        assert took < HOOK_DRAIN_SECONDS + 10
        lines = [json.loads(line) for line in lb.log.read_text().splitlines()]
        (abandoned,) = [
            line for line in lines if line["event"] == "collector_hooks_abandoned"
        ]
        assert abandoned["hooks"] == [
            "tests.events.raising_collectors:NeverReturns.request_finished"
        ]
        assert len(lb.rows()) == 1
