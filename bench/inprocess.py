"""Figures measured inside this process: account selection, request-log writes.

Both run the real code on a real SQLite file in a temporary directory, with
the built-in collectors subscribed to the bus as in the server, so a
selection pays for the ``account_selected`` event it publishes.
"""

from __future__ import annotations

import time
from pathlib import Path

from codex_lb.accounts import AccountPool
from codex_lb.events import EventBus
from codex_lb.events.collector_api import CollectorHost, discover
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.store import (
    NewAccount,
    QuotaReading,
    RequestLogRow,
    TokenSet,
    open_store,
)
from collectors import BUILTIN

WEEK = 7 * 24 * 3600


async def selection_ms(data_dir: Path, accounts: int, calls: int) -> list[float]:
    """Milliseconds per ``AccountPool.select`` with ``accounts`` accounts.

    Every account has a different quota reading, and a tenth of the calls
    carry a session key, as Codex CLI turns do.
    """
    store = await open_store(data_dir)
    try:
        now = time.time()
        for index in range(accounts):
            tokens = TokenSet(f"at-{index}", f"rt-{index}", None, now)
            account_id = await store.add_account(
                NewAccount(f"user{index}@example.com", f"cg-{index}", "pro", tokens)
            )
            await store.record_quota(
                account_id,
                QuotaReading(
                    observed_at=now,
                    source="usage",
                    primary_used_percent=float(index % 97),
                    primary_window_minutes=300,
                    primary_reset_at=now + 3600,
                    secondary_used_percent=float((index * 7) % 89),
                    secondary_window_minutes=WEEK // 60,
                    secondary_reset_at=now + WEEK / 2,
                ),
            )
        bus = EventBus()
        host = CollectorHost(bus, store)
        await host.add_all(discover((), BUILTIN))
        pool = AccountPool(store, bus)
        await pool.load()

        timings: list[float] = []
        for call in range(calls):
            session_key = f"session:{call % 50}" if call % 10 == 0 else None
            started = time.perf_counter()
            selection = await pool.select(session_key)
            timings.append((time.perf_counter() - started) * 1000)
            if selection.account is None:
                raise RuntimeError(f"no account selected: {selection.outcome}")
        return timings
    finally:
        await store.close()


async def request_log_rows_per_second(
    data_dir: Path, rows: int, seconds: float
) -> float:
    """Rows a :class:`RequestLogBuffer` writes per second to a real store.

    Rows are added as the relay adds them, then flushed in the buffer's own
    batches; the figure covers both, stopping early at ``seconds``.
    """
    store = await open_store(data_dir)
    try:
        buffer = RequestLogBuffer(store, max_rows=rows + 1, flush_seconds=3600)
        written = 0
        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        batch = 2000
        while written < rows and time.monotonic() < deadline:
            for index in range(written, min(rows, written + batch)):
                buffer.add(
                    RequestLogRow(
                        request_id=f"req-{index:08d}",
                        started_at=time.time(),
                        api="codex",
                        model="gpt-5",
                        account_id="acct",
                        status="success",
                        status_code=200,
                        error_code=None,
                        attempts=1,
                        latency_ms=12.5,
                        input_tokens=1200,
                        cached_input_tokens=800,
                        output_tokens=300,
                        reasoning_tokens=100,
                        cost_usd=0.0042,
                    )
                )
            await buffer.flush()
            written = buffer.written
        elapsed = time.perf_counter() - started
        if await store.count_request_logs() != written:
            raise RuntimeError("the request log lost rows")
        return written / elapsed
    finally:
        await store.close()
