"""The SQLite connection: one writer at a time, each write its own transaction.

The store runs on a single aiosqlite connection. In SQLite's default mode
every write would join one implicit transaction shared by all writers, and
a write that fails on a full disk can make SQLite roll back that whole
transaction: other writers' committed-looking work (a rotated refresh
token) would vanish without an error. So the connection is in autocommit
mode and every write method runs in its own ``BEGIN IMMEDIATE ... COMMIT``
under one lock, rolled back on any error, which reaches its caller.

Reads take the same lock, so a read never sees another write's uncommitted
rows.

A write's caller may be cancelled at any await (a client that hangs up
cancels its request). aiosqlite runs each statement on its own thread, in
the order they were handed over, and a statement already handed over runs
even when the task awaiting it is cancelled: a cancelled ``BEGIN`` still
begins. So a transaction that ends by an exception always hands over a
``ROLLBACK`` before the lock is let go; queued behind it, the next writer's
``BEGIN`` finds the connection idle.

When another process holds the database for longer than the busy timeout,
the write that waited fails, and so would every write queued behind it, one
busy timeout after the other. So until a write succeeds again, writes wait
only briefly: they fail fast and their callers keep or retry the data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from codex_lb.store.schema import MIGRATIONS

log = structlog.get_logger("codex_lb.store")

# How long a write waits for another process (a CLI command) to let go of
# the database before it fails with "database is locked"; once one has
# failed so, how long the writes after it wait until one succeeds.
BUSY_TIMEOUT_SECONDS = 5.0
LOCKED_BUSY_TIMEOUT_SECONDS = 0.1


class Database:
    """The connection, its write lock and its transactions."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection
        self._lock = asyncio.Lock()
        self._failing_fast = False

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Connect to ``path`` in WAL mode and bring its schema up to date."""
        connection = await aiosqlite.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            await _migrate(connection)
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    async def close(self) -> None:
        async with self._lock:
            await self.connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed on leaving, rolled back on an error."""
        async with self._lock:
            try:
                await self._begin()
                yield self.connection
                await self.connection.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        async with self._lock, self.connection.execute(sql, tuple(args)) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Any:
        async with self._lock, self.connection.execute(sql, tuple(args)) as cursor:
            return await cursor.fetchone()

    async def _begin(self) -> None:
        try:
            await self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) and not self._failing_fast:
                await self._set_busy_timeout(LOCKED_BUSY_TIMEOUT_SECONDS)
                self._failing_fast = True
            raise
        if self._failing_fast:
            await self._set_busy_timeout(BUSY_TIMEOUT_SECONDS)
            self._failing_fast = False

    async def _set_busy_timeout(self, seconds: float) -> None:
        await self.connection.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    async def _rollback(self) -> None:
        # Handed over whatever the connection looks like from here: a BEGIN
        # or COMMIT still queued on its thread has not changed it yet. When
        # there is nothing to roll back (BEGIN failed, COMMIT went through,
        # a full disk made SQLite roll back by itself), SQLite says so.
        # Shielded: a second cancellation must not take the ROLLBACK back.
        try:
            await asyncio.shield(self.connection.execute("ROLLBACK"))
        except sqlite3.OperationalError as exc:
            if "no transaction is active" not in str(exc):
                log.error("store_rollback_failed", error=str(exc))
        except sqlite3.Error as exc:
            log.error("store_rollback_failed", error=str(exc))


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to the newest version, one migration at a time."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
    )
    async with db.execute("SELECT version FROM schema_version") as cur:
        row = await cur.fetchone()
    if row is None:
        await db.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = 0
    else:
        version = int(row[0])
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"store.db has schema version {version}, newer than this codex-lb "
            f"knows ({len(MIGRATIONS)}): upgrade codex-lb"
        )

    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await db.executescript(
            f"BEGIN; {script}; UPDATE schema_version SET version = {number}; COMMIT;"
        )
