"""Each store write is its own transaction: a failing write undoes only itself.

A full disk (``PRAGMA max_page_count`` at the file's size) makes SQLite fail
a write with SQLITE_FULL, and SQLite may then roll back the whole open
transaction. Writers sharing one implicit transaction would lose each
other's work that way; here every write must either land or raise.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import structlog

from codex_lb.accounts.readings import DeferredReadings
from codex_lb.events.state import CollectorState
from codex_lb.store import (
    AccountState,
    QuotaReading,
    RequestLogRow,
    Store,
    TokenSet,
    open_store,
    sqlite_db,
)
from tests.conftest import new_account


def log_row(n: int, padding: int = 0) -> RequestLogRow:
    return RequestLogRow(
        request_id=f"req-{n}" + "x" * padding,
        started_at=1000.0 + n,
        api="codex",
        model="gpt-5",
        account_id=None,
        status="success",
        status_code=200,
        error_code=None,
        attempts=1,
        latency_ms=1.0,
    )


@asynccontextmanager
async def full_disk(store: Store) -> AsyncIterator[None]:
    """No page may be added to the database file while inside."""
    db = store._db  # type: ignore[attr-defined]
    async with db.execute("PRAGMA page_count") as cursor:
        row = await cursor.fetchone()
    await db.execute(f"PRAGMA max_page_count = {row[0]}")
    try:
        yield
    finally:
        await db.execute("PRAGMA max_page_count = 1073741823")


async def reopened(path: Path) -> Store:
    return await open_store(path)


class TestOneTransactionPerWrite:
    async def test_failing_log_batch_never_undoes_a_token_write(
        self, tmp_path: Path
    ) -> None:
        """A refresh stored while a log batch fails on a full disk survives a
        restart, or its write says it failed: never a silent rt-OLD."""
        store = await open_store(tmp_path / "d")
        account_id = await store.add_account(new_account(refresh="rt-OLD"))
        rotated = TokenSet("at-NEW", "rt-NEW", None, refreshed_at=2000.0)
        try:
            async with full_disk(store):
                token_write, log_write = await asyncio.gather(
                    store.set_tokens(account_id, rotated),
                    store.write_request_logs([log_row(n, 3000) for n in range(50)]),
                    return_exceptions=True,
                )
        finally:
            await store.close()

        store = await reopened(tmp_path / "d")
        try:
            row = await store.get_account(account_id)
            logged = await store.count_request_logs()
        finally:
            await store.close()

        assert isinstance(log_write, sqlite3.OperationalError)
        assert "full" in str(log_write)
        assert logged == 0
        assert row is not None
        if token_write is None:
            assert (row.tokens.access_token, row.tokens.refresh_token) == (
                "at-NEW",
                "rt-NEW",
            )
        else:
            assert isinstance(token_write, sqlite3.Error)
            assert row.tokens.refresh_token == "rt-OLD"

    async def test_log_batch_beside_a_failing_quota_write_lands_or_raises(
        self, store: Store
    ) -> None:
        """A batch that returns has its rows stored, though a quota write
        failed beside it; a batch that raised stored none of them."""
        account_id = await store.add_account(new_account())
        oversized = QuotaReading(observed_at=1.0, source="x" * 20_000)

        async with full_disk(store):
            log_write, quota_write = await asyncio.gather(
                store.write_request_logs([log_row(n) for n in range(5)]),
                store.record_quota(account_id, oversized),
                return_exceptions=True,
            )
        stored = await store.count_request_logs()

        assert isinstance(quota_write, sqlite3.OperationalError)
        assert stored == (5 if log_write is None else 0)
        assert await store.quota_history(account_id) == []

    async def test_a_batch_failing_partway_is_never_committed_by_another_write(
        self, store: Store
    ) -> None:
        """Rows before the one that fails do not ride on the next writer's
        commit: the failed batch leaves nothing behind to be written twice."""
        account_id = await store.add_account(new_account())
        refused = attrs.evolve(log_row(2), status=None)  # NOT NULL
        batch = [log_row(0), log_row(1), refused]

        with pytest.raises(sqlite3.IntegrityError):
            await store.write_request_logs(batch)
        await store.set_last_used(account_id, 1234.0)
        await store.write_request_logs(batch[:2])

        rows = await store.recent_request_logs(limit=100)
        assert sorted(r.request_id for r in rows) == ["req-0", "req-1"]
        stored = await store.get_account(account_id)
        assert stored is not None and stored.last_used_at == 1234.0

    async def test_a_locked_database_fails_the_write_and_keeps_nothing(
        self, store: Store, tmp_path: Path
    ) -> None:
        """Another process holding the write lock makes a batch raise; once it
        lets go, the same batch lands once."""
        await store.write_request_logs([log_row(0)])
        await store._db.execute("PRAGMA busy_timeout = 100")  # type: ignore[attr-defined]
        other = sqlite3.connect(tmp_path / "data" / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await store.write_request_logs([log_row(1)])
            other.execute("INSERT INTO collector_state VALUES ('c', 'k', '1')")
        finally:
            other.execute("COMMIT")
            other.close()

        await store.write_request_logs([log_row(1)])

        rows = await store.recent_request_logs(limit=100)
        assert sorted(r.request_id for r in rows) == ["req-0", "req-1"]

    async def test_writes_behind_a_long_lock_fail_fast_until_one_succeeds(
        self, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first write waits the busy timeout; the next ones fail at once
        instead of queueing a full timeout each; a success restores the wait."""
        monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECONDS", 1.0)
        await store._db.execute("PRAGMA busy_timeout = 1000")  # type: ignore[attr-defined]
        other = sqlite3.connect(tmp_path / "data" / "store.db", isolation_level=None)
        loop = asyncio.get_running_loop()

        async def failing_write() -> float:
            started = loop.time()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await store.write_request_logs([log_row(9)])
            return loop.time() - started

        try:
            other.execute("BEGIN IMMEDIATE")
            first = await failing_write()
            later = [await failing_write() for _ in range(3)]
            other.execute("COMMIT")
            await store.write_request_logs([log_row(1)])
            other.execute("BEGIN IMMEDIATE")
            after_success = await failing_write()
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()

        assert first >= 0.9
        assert max(later) < 0.6
        assert after_success >= 0.9
        assert [r.request_id for r in await store.recent_request_logs()] == ["req-1"]


class TestCancelledWrites:
    """A client that hangs up cancels its request at whatever it awaits, a
    store write included. The write may land or not; the store must go on:
    a cancelled ``BEGIN`` still begins on aiosqlite's thread, and a
    transaction left open that way failed every later write ("cannot start
    a transaction within a transaction"), request-log rows included."""

    @pytest.mark.parametrize("ticks", range(12))
    async def test_writes_after_a_cancelled_write_land(
        self, tmp_path: Path, ticks: int
    ) -> None:
        store = await open_store(tmp_path / "d")
        account_id = await store.add_account(new_account())
        try:
            write = asyncio.create_task(
                store.set_account_state(account_id, AccountState("rate_limited"))
            )
            for _ in range(ticks):
                await asyncio.sleep(0)
            write.cancel()
            await asyncio.gather(write, return_exceptions=True)

            await store.set_account_state(account_id, AccountState("paused"))
            await store.write_request_logs([log_row(1), log_row(2)])
        finally:
            await store.close()

        again = await reopened(tmp_path / "d")
        try:
            row = await again.get_account(account_id)
            assert row is not None and row.status == "paused"
            assert await again.count_request_logs() == 2
        finally:
            await again.close()

    async def test_a_write_cancelled_twice_still_leaves_the_store_usable(
        self, tmp_path: Path
    ) -> None:
        """Cancelled again while its rollback is under way."""
        store = await open_store(tmp_path / "d")
        try:
            for ticks in range(8):
                write = asyncio.create_task(
                    store.write_request_logs([log_row(100 + ticks)])
                )
                for _ in range(ticks):
                    await asyncio.sleep(0)
                write.cancel()
                await asyncio.sleep(0)
                write.cancel()
                await asyncio.gather(write, return_exceptions=True)
            await store.write_request_logs([log_row(1)])
            rows = await store.count_request_logs()
        finally:
            await store.close()

        # Each cancelled batch either landed whole or not at all; the last did.
        assert 1 <= rows <= 9


class TestFailingWritesAreLoggedOncePerStreak:
    """A full disk fails every write until it has room again. Each writer
    logs the first failure and the recovery, not a line per write (the soak
    saw 285,000 lines in ten minutes from one stuck store)."""

    async def test_collector_state(self, tmp_path: Path) -> None:
        store = await open_store(tmp_path / "d")
        state = CollectorState("tests:Counter", store)
        try:
            with structlog.testing.capture_logs() as logs:
                async with full_disk(store):
                    for n in range(20):
                        await state.save(f"key-{n}", {"n": n, "pad": "x" * 4000})
                await state.save("after", {"n": 99})
                await state.flush()
            stored = await store.load_collector_state("tests:Counter")
        finally:
            await store.close()

        events = [e["event"] for e in logs]
        assert events.count("collector_state_write_failed") == 1
        assert events.count("collector_state_write_recovered") == 1
        (recovered,) = [e for e in logs if e["event"].endswith("_recovered")]
        assert recovered["failed_writes"] >= 19
        # Nothing was lost: the keys the full disk refused were kept and
        # written once it had room.
        assert sorted(stored) == sorted([f"key-{n}" for n in range(20)] + ["after"])

    async def test_quota_readings(self, tmp_path: Path) -> None:
        store = await open_store(tmp_path / "d")
        ids = [
            await store.add_account(new_account(f"{n}@example.com", f"cg-{n}"))
            for n in range(300)
        ]
        readings = DeferredReadings(store)
        reading = QuotaReading(1000.0, "headers", 12.0, 300, 2000.0)
        try:
            with structlog.testing.capture_logs() as logs:
                async with full_disk(store):
                    for account_id in ids:
                        readings.keep(account_id, attrs.evolve(reading))
                    await readings.flush()
                readings.keep(ids[0], attrs.evolve(reading, observed_at=1001.0))
                await readings.flush()
        finally:
            await store.close()

        events = [e["event"] for e in logs]
        assert events.count("quota_write_failed") == 1
        assert events.count("quota_write_recovered") == 1
