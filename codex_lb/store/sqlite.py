"""The SQLite backend of the store (aiosqlite, WAL mode).

:class:`SqliteStore` is the whole store interface on one SQLite file, put
together from the tables' parts: accounts and quota readings
(``sqlite_accounts``), the request log (``sqlite_requests``), and here the
client keys and the collectors' state. The connection and its transactions
live in ``sqlite_db``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiosqlite

from codex_lb.store.crypto import TokenCipher
from codex_lb.store.models import ApiKeyRow
from codex_lb.store.sqlite_accounts import AccountTables
from codex_lb.store.sqlite_db import Database
from codex_lb.store.sqlite_requests import RequestLogTables

DB_FILE = "store.db"


class SqliteStore(AccountTables, RequestLogTables):
    """The store on one SQLite file. Open with :meth:`open`."""

    def __init__(self, sql: Database, cipher: TokenCipher) -> None:
        self._sql = sql
        self._cipher = cipher

    @classmethod
    async def open(cls, data_dir: Path) -> SqliteStore:
        """Open (creating and migrating as needed) the store in ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cipher = TokenCipher.from_data_dir(data_dir)
        path = data_dir / DB_FILE
        if not path.exists():
            # Create it owner-only before SQLite does, with its default mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return cls(await Database.open(path), cipher)

    @property
    def _db(self) -> aiosqlite.Connection:
        """The raw connection, for tests that make the disk look full."""
        return self._sql.connection

    async def close(self) -> None:
        await self._sql.close()

    async def change_marker(self) -> int:
        """A number that changes when another process commits a change."""
        row = await self._sql.fetchone("PRAGMA data_version")
        return int(row[0]) if row else 0

    # Client API keys

    async def add_api_key(
        self, name: str, key_hash: str, shown: str, now: float | None = None
    ) -> ApiKeyRow:
        """Keep a new key's hash under ``name``; returns its row."""
        row = ApiKeyRow(
            id="key_" + uuid.uuid4().hex[:12],
            name=name,
            key_hash=key_hash,
            shown=shown,
            created_at=time.time() if now is None else now,
        )
        async with self._sql.transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, key_hash, shown, created_at) "
                "VALUES (?,?,?,?,?)",
                (row.id, row.name, row.key_hash, row.shown, row.created_at),
            )
        return row

    async def list_api_keys(self) -> list[ApiKeyRow]:
        """Every key, revoked ones included, oldest first."""
        rows = await self._sql.fetchall(
            "SELECT id, name, key_hash, shown, created_at, revoked_at "
            "FROM api_keys ORDER BY created_at, id"
        )
        return [ApiKeyRow(*r) for r in rows]

    async def revoke_api_key(self, key_id: str, now: float | None = None) -> bool:
        """Revoke key ``key_id``; False if there is no such live key."""
        async with self._sql.transaction() as db:
            cur = await db.execute(
                "UPDATE api_keys SET revoked_at = ? "
                "WHERE id = ? AND revoked_at IS NULL",
                (time.time() if now is None else now, key_id),
            )
        return cur.rowcount > 0

    # Collector state

    async def load_collector_state(self, collector: str) -> dict[str, Any]:
        rows = await self._sql.fetchall(
            "SELECT key, value FROM collector_state WHERE collector = ?",
            (collector,),
        )
        return {key: json.loads(value) for key, value in rows}

    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None:
        """Keep ``value`` (JSON-able) under ``key``; None deletes it."""
        async with self._sql.transaction() as db:
            if value is None:
                await db.execute(
                    "DELETE FROM collector_state WHERE collector = ? AND key = ?",
                    (collector, key),
                )
            else:
                await db.execute(
                    "INSERT INTO collector_state (collector, key, value) "
                    "VALUES (?,?,?) ON CONFLICT (collector, key) "
                    "DO UPDATE SET value = excluded.value",
                    (collector, key, json.dumps(value)),
                )
