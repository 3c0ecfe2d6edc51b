"""Faults around the relay: the upstream, the client, the disk, the token endpoint.

The upstream is the emulator with queued faults, or, for faults below HTTP,
a raw loopback server. Each test checks what the client sees, what is
recorded, and that the accounts come out unharmed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
import structlog

from codex_lb.accounts.tokens import RETRY_AFTER_FAILURE_SECONDS
from codex_lb.app import REQUEST_LOG_KEY
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.proxy.routes import RELAY_KEY
from codex_lb.sim import Emulator, Fault
from codex_lb.store.sqlite import DB_FILE
from tests.collectors.scrape import scrape_until, total
from tests.conftest import LB
from tests.proxy.test_relay import (
    CODEX,
    CREATED,
    delta,
    done,
    events_of,
    only,
    prefer,
    turn,
)

STREAM = CREATED + delta("hi") + done(10, 0, 1, 0)

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


@attrs.define
class RawUpstream:
    """A loopback server that reads each HTTP request and runs ``script``."""

    script: Script
    server: asyncio.Server | None = None
    requests: int = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/backend-api"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.requests += 1
            await self.script(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """Start a raw upstream with a script; gives its base URL."""
    started: list[RawUpstream] = []

    async def start(script: Script) -> str:
        upstream = RawUpstream(script)
        started.append(upstream)
        return await upstream.start()

    yield start
    for upstream in started:
        await upstream.close()


async def wait_for_rows(lb: LB, count: int) -> list[Any]:
    """The request-log rows, once ``count`` have been recorded (bounded wait)."""
    for _ in range(500):
        rows = await lb.request_logs()
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} request-log rows")


def assert_unmarked(lb: LB) -> None:
    """No account was marked, benched or sent to re-login."""
    assert lb.recorder.of("account_marked") == []
    assert all(a.status in ("active", "paused") for a in lb.pool.accounts)
    assert all(a.consecutive_failures == 0 for a in lb.pool.accounts)


class TestUpstreamFaults:
    async def test_refused_connection_is_502_upstream_unavailable(
        self, make_lb: Any, emulator: Emulator
    ) -> None:
        """Nothing listening upstream: every account is tried, then one 502."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        lb = await make_lb(
            emulator,
            CODEX_LB_UPSTREAM_BASE_URL=f"http://127.0.0.1:{closed_port}/backend-api",
        )

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_unavailable"
        assert "connection_refused" in body["error"]["message"]
        (row,) = await lb.request_logs()
        assert (row.status_code, row.error_code, row.attempts) == (
            502,
            "upstream_unavailable",
            2,
        )
        # Two accounts tried is one move from the first to the second: one
        # retry (SPEC section 6), none for the last account, which had no
        # other to leave for.
        (retry,) = lb.recorder.of("retry")
        first = lb.recorder.of("attempt_started")[0].account_id
        assert (retry.error_class, retry.error_code, retry.account_id) == (
            "transport",
            "connection_refused",
            first,
        )
        assert all(a.status == "active" for a in lb.pool.accounts)

    async def test_reset_before_any_byte_fails_over_invisibly(self, lb: LB) -> None:
        """A connection dropped before the response head moves to the next account."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.cut(after_events=0))

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        (retry,) = lb.recorder.of("retry")
        assert retry.error_class == "transport"

    async def test_stall_before_the_head_fails_over(
        self, make_lb: Any, emulator: Emulator
    ) -> None:
        """An upstream silent past the idle timeout before answering is left."""
        lb = await make_lb(emulator, CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="0.3")
        await prefer(lb, "a@example.com")
        emulator.add_fault("a@example.com", Fault.timeout(3.0))

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts) == ("success", 2)
        (retry,) = lb.recorder.of("retry")
        assert (retry.error_class, retry.error_code) == (
            "transport",
            "upstream_timeout",
        )

    async def test_reset_right_after_the_terminal_event_is_success(
        self, lb: LB
    ) -> None:
        """A stream whose link drops after response.completed was delivered whole.

        The client gets exactly the upstream's bytes (no failure event after
        the terminal one) and the request is a success with its usage.
        """
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw([STREAM], then="reset"))

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert raw == STREAM
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code, row.output_tokens) == ("success", None, 1)
        assert_unmarked(lb)

    async def test_silence_after_the_terminal_event_is_success(
        self, make_lb: Any, emulator: Emulator, raw_upstream: Any
    ) -> None:
        """An upstream that goes quiet after response.completed has answered."""

        async def quiet_after_terminal(writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n"
                % (len(STREAM), STREAM)
            )
            await writer.drain()
            await asyncio.sleep(3)

        base = await raw_upstream(quiet_after_terminal)
        lb = await make_lb(
            emulator,
            CODEX_LB_UPSTREAM_BASE_URL=base,
            CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="0.3",
        )

        response = await lb.client.post(CODEX, json=turn())
        raw = await response.read()

        assert raw == STREAM
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code) == ("success", None)
        assert_unmarked(lb)

    async def test_unterminated_whole_answer_is_relayed(self, lb: LB) -> None:
        """An answer of opening and terminal events only, the last blank line
        missing, is relayed as it came, not thrown away and retried."""
        stream = CREATED + done(10, 0, 0, 0)[:-2]
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.raw([stream]))

        response = await lb.client.post(CODEX, json=turn())

        assert await response.read() == stream
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            1,
            lb.ids["a@example.com"],
        )

    @pytest.mark.parametrize(
        "answer",
        [
            b"this is not HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: 12\r\n\r\nnot gzip!!!!",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nbroken chunk\r\n",
        ],
        ids=["not-http", "head-cut", "bad-gzip", "bad-chunking"],
    )
    async def test_garbage_answers_are_502_and_mark_no_bench(
        self, make_lb: Any, emulator: Emulator, raw_upstream: Any, answer: bytes
    ) -> None:
        """An upstream answering garbage gives a clean 502, tried on each account."""

        async def garbage(writer: asyncio.StreamWriter) -> None:
            writer.write(answer)
            await writer.drain()

        base = await raw_upstream(garbage)
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=base)

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_unavailable"
        assert set(body["error"]) >= {"message", "type", "code", "param"}
        (row,) = await lb.request_logs()
        assert (row.status, row.error_code) == ("error", "upstream_unavailable")
        assert all(a.status == "active" for a in lb.pool.accounts)

    async def test_non_json_429_benches_with_the_default(self, lb: LB) -> None:
        """A 429 with an HTML body still benches the account and fails over."""
        await prefer(lb, "a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.status(429, "<html>slow down</html>")
        )

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None and a.status == "rate_limited"
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.event, mark.code) == ("rate_limit", "http_429")


class TestClientGoesAway:
    async def test_client_gone_before_the_answer_is_499(self, lb: LB) -> None:
        """A client that gives up while the upstream thinks is recorded as 499."""
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.timeout(0.5))

        with pytest.raises(TimeoutError):
            response = await lb.client.post(
                CODEX, json=turn(), timeout=aiohttp.ClientTimeout(total=0.1)
            )
            await response.read()

        (row,) = await wait_for_rows(lb, 1)
        assert (row.status, row.status_code, row.error_code) == (
            "error",
            499,
            "client_disconnected",
        )
        assert (row.account_id, row.attempts) == (lb.ids["a@example.com"], 1)
        assert lb.app[REQUEST_LOG_KEY].size == 0
        assert_unmarked(lb)
        assert lb.app[RELAY_KEY].inflight == 0

    async def test_client_gone_mid_stream_is_499_and_marks_nothing(
        self, lb: LB
    ) -> None:
        """Leaving mid-stream is the client's doing: 499, no mark on the account."""
        await only(lb, "a@example.com")
        lb.emulator.add_fault("a@example.com", Fault.stall(after_events=3, seconds=1))

        response = await lb.client.post(CODEX, json=turn())
        await response.content.readuntil(b"response.output_item.added")
        response.close()

        (row,) = await wait_for_rows(lb, 1)
        assert (row.status, row.status_code, row.error_code) == (
            "error",
            499,
            "client_disconnected",
        )
        assert row.account_id == lb.ids["a@example.com"]
        assert_unmarked(lb)

    async def test_client_leaving_right_after_the_terminal_event_is_served(
        self, make_lb: Any, emulator: Emulator, raw_upstream: Any
    ) -> None:
        """Leaving once response.completed arrived, the upstream still open, is
        a success with its usage, not an abort."""

        async def open_after_terminal(writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n"
                % (len(STREAM), STREAM)
            )
            await writer.drain()
            await asyncio.sleep(3)

        base = await raw_upstream(open_after_terminal)
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=base)

        response = await lb.client.post(CODEX, json=turn())
        assert await response.content.readexactly(len(STREAM)) == STREAM
        response.close()

        (row,) = await wait_for_rows(lb, 1)
        assert (row.status, row.status_code, row.error_code) == ("success", 200, None)
        assert (row.input_tokens, row.output_tokens) == (10, 1)
        assert_unmarked(lb)

    async def test_client_gone_with_the_terminal_event_unsent_is_499(
        self, make_lb: Any, emulator: Emulator, raw_upstream: Any
    ) -> None:
        """A terminal event that could not be written was not delivered."""
        gone = asyncio.Event()

        async def terminal_after_client_left(writer: asyncio.StreamWriter) -> None:
            head = CREATED + delta("hi")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n"
                % (len(head), head)
            )
            await writer.drain()
            await gone.wait()
            await asyncio.sleep(0.2)
            tail = done(10, 0, 1, 0) + delta("x" * 70_000)
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
            await writer.drain()

        base = await raw_upstream(terminal_after_client_left)
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=base)

        response = await lb.client.post(CODEX, json=turn())
        await response.content.readuntil(b"response.output_text.delta")
        response.close()
        gone.set()

        (row,) = await wait_for_rows(lb, 1)
        assert (row.status_code, row.error_code) == (499, "client_disconnected")


@attrs.define
class Flood:
    """An upstream streaming ``total`` bytes as fast as it is let."""

    total: int
    written: int = 0
    ended: asyncio.Event = attrs.Factory(asyncio.Event)

    async def __call__(self, writer: asyncio.StreamWriter) -> None:
        block = delta("x" * 16_000) * 4
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Connection: close\r\n\r\n" + CREATED
        )
        try:
            while self.written < self.total:
                writer.write(block)
                await writer.drain()
                self.written += len(block)
        finally:
            self.ended.set()


async def settled(read: Callable[[], int], polls: int = 8) -> int:
    """``read()`` once it has not changed for ``polls`` polls in a row."""
    last, same = -1, 0
    for _ in range(600):
        value = read()
        same = same + 1 if value == last else 0
        if same >= polls:
            return value
        last = value
        await asyncio.sleep(0.05)
    return read()


class TestSlowClient:
    async def test_a_client_that_stops_reading_stops_the_upstream(
        self, make_lb: Any, emulator: Emulator, raw_upstream: Any
    ) -> None:
        """Back-pressure: the proxy reads upstream only as fast as the client.

        The upstream offers 256 MiB; the client reads a little and stops.
        What the upstream manages to write is bounded by socket and relay
        buffers, a small fraction of the stream, not by the stream's size.
        """
        flood = Flood(total=256 * 1024 * 1024)
        base = await raw_upstream(flood)
        lb = await make_lb(emulator, CODEX_LB_UPSTREAM_BASE_URL=base)
        body = json.dumps(turn()).encode()

        reader, writer = await asyncio.open_connection("127.0.0.1", lb.client.port)
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (CODEX.encode(), len(body), body)
        )
        await writer.drain()
        assert (await reader.readline()).split()[1] == b"200"
        await reader.readexactly(4096)

        written = await settled(lambda: flood.written)

        assert written < 48 * 1024 * 1024, written
        assert not flood.ended.is_set()
        writer.close()
        await asyncio.wait_for(flood.ended.wait(), 10)
        (row,) = await wait_for_rows(lb, 1)
        assert (row.status_code, row.error_code) == (499, "client_disconnected")


class TestStoreFaults:
    async def test_locked_database_still_serves_and_rows_wait(
        self, make_lb: Any, emulator: Emulator, tmp_path: Any
    ) -> None:
        """With the store locked, requests are served (failover included); the
        log rows wait in the buffer and reach the store once it is free."""
        lb = await make_lb(emulator, CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="0.05")
        buffer: RequestLogBuffer = lb.app[REQUEST_LOG_KEY]
        await prefer(lb, "a@example.com")
        await lb.request_logs()
        lock = sqlite3.connect(tmp_path / "lb-data" / DB_FILE, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            lb.emulator.set_usage("a@example.com", primary=100.0)
            with structlog.testing.capture_logs() as logs:
                first = await lb.client.post(CODEX, json=turn())
                first_events = events_of(await first.read())
                second = await lb.client.post(CODEX, json=turn())
                second_events = events_of(await second.read())
                for _ in range(400):
                    if any(e["event"] == "request_log_write_failed" for e in logs):
                        break
                    await asyncio.sleep(0.05)

            assert first_events[-1]["type"] == "response.completed"
            assert second_events[-1]["type"] == "response.completed"
            assert buffer.size == 2
            assert any(e["event"] == "request_log_write_failed" for e in logs)
            # The bench holds in memory though the store could not take it.
            a = lb.pool.get(lb.ids["a@example.com"])
            assert a is not None and a.status == "rate_limited"
            (failed,) = [e for e in logs if e["event"] == "account_write_failed"]
            assert (failed["account_id"], failed["what"]) == (a.id, "status")
        finally:
            lock.rollback()
            lock.close()

        rows = await lb.request_logs()
        assert [(r.status, r.attempts) for r in rows] == [
            ("success", 2),
            ("success", 1),
        ]
        assert buffer.size == 0 and buffer.dropped == 0

    async def test_full_buffer_drops_are_counted_and_logged(
        self, make_lb: Any, emulator: Emulator, tmp_path: Any
    ) -> None:
        """Past the buffer's bound, rows are dropped, counted in the metric
        and logged; the rows kept reach the store once it is writable."""
        lb = await make_lb(
            emulator,
            CODEX_LB_REQUEST_LOG_BUFFER_SIZE="2",
            CODEX_LB_REQUEST_LOG_FLUSH_SECONDS="0.05",
        )
        buffer: RequestLogBuffer = lb.app[REQUEST_LOG_KEY]
        lock = sqlite3.connect(tmp_path / "lb-data" / DB_FILE, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            with structlog.testing.capture_logs() as logs:
                for _ in range(5):
                    response = await lb.client.post(CODEX, json=turn())
                    assert events_of(await response.read())[-1]["type"] == (
                        "response.completed"
                    )
            assert (buffer.size, buffer.dropped) == (2, 3)
            (dropped,) = [e for e in logs if e["event"] == "request_log_dropped"]
            assert dropped["dropped_total"] == 1
            samples = await scrape_until(
                lb,
                lambda s: total(s, "codex_lb_request_log_buffer_dropped_total") == 3,
            )
            assert total(samples, "codex_lb_request_log_buffer_dropped_total") == 3
            assert total(samples, "codex_lb_request_log_buffer_size") == 2
        finally:
            lock.rollback()
            lock.close()

        rows = await lb.request_logs()
        assert len(rows) == 2
        samples = await scrape_until(
            lb, lambda s: total(s, "codex_lb_request_log_buffer_size") == 0
        )
        assert total(samples, "codex_lb_request_log_buffer_size") == 0
        assert total(samples, "codex_lb_request_log_buffer_dropped_total") == 3

    async def test_disk_full_serves_and_writes_each_row_once(self, lb: LB) -> None:
        """SQLITE_FULL: requests are served, rows wait, then land exactly once."""
        await lb.request_logs()
        db = lb.store._db  # type: ignore[attr-defined]
        async with db.execute("PRAGMA page_count") as cur:
            (pages,) = await cur.fetchone()
        await db.execute(f"PRAGMA max_page_count = {pages}")
        buffer: RequestLogBuffer = lb.app[REQUEST_LOG_KEY]
        try:
            for _ in range(60):
                response = await lb.client.post(CODEX, json=turn(text="y" * 2000))
                assert events_of(await response.read())[-1]["type"] == (
                    "response.completed"
                )
            with pytest.raises(sqlite3.OperationalError, match="full"):
                await buffer.flush()
            assert buffer.size == 60
        finally:
            await db.execute("PRAGMA max_page_count = 1073741823")

        rows = await lb.request_logs()
        assert len(rows) == 60
        assert len({r.request_id for r in rows}) == 60
        assert await lb.store.count_request_logs() == 60


class TestTokenEndpointDown:
    async def test_refresh_failing_before_the_attempt_moves_on(self, lb: LB) -> None:
        """Token endpoint down for an expired account: another serves; the
        account keeps its refresh token and refreshes once the endpoint is back."""
        lb.emulator.clock.advance(11 * 24 * 3600)
        await prefer(lb, "a@example.com")
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        before = a.tokens.refresh_token
        lb.emulator.add_fault(
            "a@example.com", Fault.status(503, {"error": "unavailable"}), "token"
        )

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (row,) = await lb.request_logs()
        assert (row.account_id, row.attempts) == (lb.ids["b@example.com"], 1)
        assert (a.status, a.tokens.refresh_token) == ("active", before)
        stored = await lb.store.get_account(a.id)
        assert stored is not None and stored.tokens.refresh_token == before

        # The failed refresh is not retried for a short back-off.
        lb.emulator.clock.advance(RETRY_AFTER_FAILURE_SECONDS)
        response = await lb.client.post(CODEX, json=turn())
        await response.read()
        rows = await lb.request_logs()
        assert rows[-1].account_id == a.id and rows[-1].status == "success"
        assert (
            a.tokens.refresh_token == lb.emulator.account("a@example.com").refresh_token
        )

    async def test_refresh_failing_after_a_401_is_a_clear_error(self, lb: LB) -> None:
        """A 401 whose refresh fails for now: the client gets a 502 it retries,
        never the upstream's 401 (a Codex CLI reads a 401 as its own login
        failing); the account is not marked for re-login, keeps its refresh
        token, and works once the endpoint is back."""
        await only(lb, "a@example.com")
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        before = a.tokens.refresh_token
        lb.emulator.revoke_access_token("a@example.com")
        lb.emulator.add_fault(
            "a@example.com", Fault.status(500, {"error": "server_error"}), "token"
        )

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_unavailable"
        assert "token endpoint" in body["error"]["message"]
        assert (a.status, a.tokens.refresh_token) == ("active", before)
        (row,) = await lb.request_logs()
        assert (row.status_code, row.error_code, row.attempts) == (
            502,
            "upstream_unavailable",
            1,
        )

        # The failed refresh is not retried for a short back-off.
        lb.emulator.clock.advance(RETRY_AFTER_FAILURE_SECONDS)
        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())
        assert events[-1]["type"] == "response.completed"
        assert a.tokens.refresh_token != before

    async def test_refresh_failing_for_good_after_a_401_moves_on(self, lb: LB) -> None:
        """A 401 whose refresh fails for good: the account needs a new login and
        the request moves to the next account, as if it had never been tried."""
        await prefer(lb, "a@example.com")
        lb.emulator.revoke_access_token("a@example.com")
        lb.emulator.add_fault(
            "a@example.com",
            Fault.status(400, {"error": "invalid_grant"}),
            "token",
        )

        response = await lb.client.post(CODEX, json=turn())
        events = events_of(await response.read())

        assert response.status == 200
        assert events[-1]["type"] == "response.completed"
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None and a.status == "reauth_required"
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        (retry,) = lb.recorder.of("retry")
        assert (retry.account_id, retry.error_class, retry.error_code) == (
            a.id,
            "auth",
            "invalid_grant",
        )
        (mark,) = lb.recorder.of("account_marked")
        assert (mark.account_id, mark.event, mark.code) == (
            a.id,
            "permanent_failure",
            "invalid_grant",
        )

    async def test_token_endpoint_down_for_every_account_is_502(self, lb: LB) -> None:
        """Every account's token expired and the endpoint down: a temporary 502
        naming the token endpoint, not a 503 telling the user to add one."""
        lb.emulator.clock.advance(11 * 24 * 3600)
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(
                email, Fault.status(503, {"error": "unavailable"}), "token"
            )

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 502
        assert body["error"]["code"] == "upstream_unavailable"
        assert "token endpoint" in body["error"]["message"]
        assert "(unavailable)" in body["error"]["message"]
        assert "accounts import" not in body["error"]["message"]
        (row,) = await lb.request_logs()
        assert (row.status_code, row.error_code, row.attempts) == (
            502,
            "upstream_unavailable",
            0,
        )
        assert all(a.status == "active" for a in lb.pool.accounts)
        assert not any(r.path.endswith("/responses") for r in lb.emulator.requests)

    async def test_every_account_needing_a_login_says_so(self, lb: LB) -> None:
        """The 503 no_accounts names what to do about the pool as it is."""
        lb.emulator.clock.advance(11 * 24 * 3600)
        for email in ("a@example.com", "b@example.com"):
            lb.emulator.add_fault(
                email, Fault.status(400, {"error": "invalid_grant"}), "token"
            )

        response = await lb.client.post(CODEX, json=turn())
        body = await response.json()

        assert response.status == 503
        assert body["error"]["code"] == "no_accounts"
        assert "codex-lb login" in body["error"]["message"]
        assert all(a.status == "reauth_required" for a in lb.pool.accounts)
