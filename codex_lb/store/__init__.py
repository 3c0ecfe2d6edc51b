"""The store: everything codex-lb keeps on disk, behind one narrow interface.

The rest of codex-lb imports only this module: :class:`Store`, the records
it exchanges and :func:`open_store`. SQLite (``sqlite*.py``) is the backend
today; a PostgreSQL backend for several replicas would implement the same
protocol. Every write is all or nothing: it lands, or it raises and leaves
no trace, whatever other writes run beside it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from codex_lb.store.models import (
    AccountActivity,
    AccountRow,
    AccountState,
    ApiKeyRow,
    ApiKeyUsage,
    NewAccount,
    QuotaReading,
    RequestLogRow,
    RequestTotals,
    SavedAccount,
    TokenSet,
)
from codex_lb.store.sqlite import SqliteStore

# What a store method raises when the store cannot do what it was asked
# (disk full, database locked, file unreadable): callers that must answer
# for it catch these, and only these, and describe them with store_failure.
STORE_ERRORS: Final[tuple[type[Exception], ...]] = (sqlite3.Error, OSError)


class StoreOpenError(Exception):
    """The store in a data folder cannot be opened; the message says why."""

    def __init__(self, data_dir: Path, cause: str) -> None:
        super().__init__(f"cannot open the store in {data_dir}: {cause}")
        self.data_dir = data_dir
        self.cause = cause


def store_failure(exc: BaseException) -> str:
    """Words for a store error, without a traceback: ``disk is full``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


class Store(Protocol):
    """What codex-lb asks of its storage."""

    async def close(self) -> None: ...
    async def change_marker(self) -> int: ...
    async def save_account(
        self, new: NewAccount, now: float | None = None
    ) -> SavedAccount: ...
    async def add_account(self, new: NewAccount, now: float | None = None) -> str: ...
    async def list_accounts(self) -> list[AccountRow]: ...
    async def get_account(self, account_id: str) -> AccountRow | None: ...
    async def remove_account(self, account_id: str) -> bool: ...
    async def set_account_state(self, account_id: str, state: AccountState) -> None: ...
    async def set_pinned(self, account_id: str, pinned: bool) -> None: ...
    async def set_tokens(self, account_id: str, tokens: TokenSet) -> None: ...
    async def set_last_used(self, account_id: str, at: float) -> None: ...
    async def record_quota(self, account_id: str, reading: QuotaReading) -> None: ...
    async def quota_history(
        self, account_id: str, since: float = 0.0
    ) -> list[QuotaReading]: ...
    async def write_request_logs(self, rows: Sequence[RequestLogRow]) -> None: ...
    async def recent_request_logs(
        self,
        limit: int = 100,
        offset: int = 0,
        account_id: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RequestLogRow]: ...
    async def count_request_logs(self) -> int: ...
    async def request_totals(
        self, since: float, until: float | None = None
    ) -> RequestTotals: ...
    async def account_activity(self, since: float) -> list[AccountActivity]: ...
    async def request_models(self, since: float) -> list[str]: ...
    async def add_api_key(
        self, name: str, key_hash: str, shown: str, now: float | None = None
    ) -> ApiKeyRow: ...
    async def list_api_keys(self) -> list[ApiKeyRow]: ...
    async def revoke_api_key(self, key_id: str, now: float | None = None) -> bool: ...
    async def api_key_usage(self, since: float | None = None) -> list[ApiKeyUsage]: ...
    async def load_collector_state(self, collector: str) -> dict[str, Any]: ...
    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None: ...


async def open_store(data_dir: Path) -> Store:
    """Open the store for ``data_dir``; StoreOpenError says why it cannot."""
    try:
        return await SqliteStore.open(data_dir)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        # RuntimeError: a schema newer than this codex-lb knows. SQLite's own
        # words ("unable to open database file") hide the cause a write to
        # the folder shows: read-only, no permission, no space.
        cause = _folder_problem(data_dir) if isinstance(exc, sqlite3.Error) else None
        raise StoreOpenError(data_dir, cause or store_failure(exc)) from exc


def _folder_problem(data_dir: Path) -> str | None:
    """Why one byte cannot be written in ``data_dir``, or None if it can."""
    probe = data_dir / ".write-probe"
    try:
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, b"x")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


__all__ = [
    "STORE_ERRORS",
    "AccountActivity",
    "AccountRow",
    "AccountState",
    "ApiKeyRow",
    "ApiKeyUsage",
    "NewAccount",
    "QuotaReading",
    "RequestLogRow",
    "RequestTotals",
    "SavedAccount",
    "Store",
    "StoreOpenError",
    "TokenSet",
    "open_store",
    "store_failure",
]
