"""Accounts and their quota readings in SQLite.

Every write touches only the columns it owns: a token refresh writes tokens,
a quota reading writes quota columns, a status change writes status columns.
So no writer can undo another's work with a stale copy of a row.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from codex_lb.store.crypto import TokenCipher
from codex_lb.store.models import (
    AccountRow,
    AccountState,
    NewAccount,
    QuotaReading,
    SavedAccount,
    TokenSet,
)
from codex_lb.store.sqlite_db import Database

REAUTH_REQUIRED = "reauth_required"

_ACCOUNT_COLUMNS = (
    "id, email, chatgpt_account_id, plan, status, status_reason, status_until, "
    "pinned, access_token, refresh_token, id_token, token_refreshed_at, "
    "access_expires_at, created_at, last_used_at, quota_observed_at, "
    "quota_source, primary_used_percent, primary_window_minutes, "
    "primary_reset_at, secondary_used_percent, secondary_window_minutes, "
    "secondary_reset_at, credits_balance, under_pause_status, "
    "under_pause_reason, under_pause_until"
)

_READING_COLUMNS = (
    "primary_used_percent, primary_window_minutes, primary_reset_at, "
    "secondary_used_percent, secondary_window_minutes, secondary_reset_at"
)


class AccountTables:
    """The ``accounts`` and ``quota_readings`` tables (a part of SqliteStore)."""

    _sql: Database
    _cipher: TokenCipher

    async def save_account(
        self, new: NewAccount, now: float | None = None
    ) -> SavedAccount:
        """Add ``new``, or update the account with its ChatGPT id.

        A known account gets the new tokens (leaving ``reauth_required``)
        unless its stored tokens were refreshed after ``new``'s: those are
        the live ones, as a refresh token is single use, and are kept
        unless the account already needs a new login.
        """
        now = time.time() if now is None else now
        tokens = self._encrypt_tokens(new.tokens)
        async with self._sql.transaction() as db:
            async with db.execute(
                "SELECT id, status, token_refreshed_at FROM accounts "
                "WHERE chatgpt_account_id = ?",
                (new.chatgpt_account_id,),
            ) as cur:
                existing = await cur.fetchone()

            if existing is None:
                account_id = "acc_" + uuid.uuid4().hex[:12]
                await db.execute(
                    "INSERT INTO accounts (id, email, chatgpt_account_id, plan, "
                    "access_token, refresh_token, id_token, token_refreshed_at, "
                    "access_expires_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        account_id,
                        new.email,
                        new.chatgpt_account_id,
                        new.plan,
                        *tokens,
                        now,
                    ),
                )
                return SavedAccount(account_id, created=True)

            account_id, status, stored_refreshed_at = existing
            if status != REAUTH_REQUIRED and (
                stored_refreshed_at > new.tokens.refreshed_at
            ):
                return SavedAccount(account_id, created=False, tokens_kept=True)

            relogin = status == REAUTH_REQUIRED
            await db.execute(
                "UPDATE accounts SET email = ?, plan = ?, access_token = ?, "
                "refresh_token = ?, id_token = ?, token_refreshed_at = ?, "
                "access_expires_at = ?, status = ?, "
                "status_reason = CASE WHEN ? THEN NULL ELSE status_reason END "
                "WHERE id = ?",
                (
                    new.email,
                    new.plan,
                    *tokens,
                    "active" if relogin else status,
                    relogin,
                    account_id,
                ),
            )
        return SavedAccount(account_id, created=False)

    async def add_account(self, new: NewAccount, now: float | None = None) -> str:
        """:meth:`save_account`, for callers that need only the id."""
        return (await self.save_account(new, now)).id

    async def list_accounts(self) -> list[AccountRow]:
        rows = await self._sql.fetchall(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id"
        )
        return [self._account_from_row(r) for r in rows]

    async def get_account(self, account_id: str) -> AccountRow | None:
        row = await self._sql.fetchone(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
        )
        return None if row is None else self._account_from_row(row)

    async def remove_account(self, account_id: str) -> bool:
        async with self._sql.transaction() as db:
            cur = await db.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            await db.execute(
                "DELETE FROM quota_readings WHERE account_id = ?", (account_id,)
            )
        return cur.rowcount > 0

    async def set_account_state(self, account_id: str, state: AccountState) -> None:
        under = state.under_pause
        async with self._sql.transaction() as db:
            await db.execute(
                "UPDATE accounts SET status = ?, status_reason = ?, "
                "status_until = ?, under_pause_status = ?, under_pause_reason = ?, "
                "under_pause_until = ? WHERE id = ?",
                (
                    state.status,
                    state.status_reason,
                    state.status_until,
                    under.status if under else None,
                    under.status_reason if under else None,
                    under.status_until if under else None,
                    account_id,
                ),
            )

    async def set_pinned(self, account_id: str, pinned: bool) -> None:
        async with self._sql.transaction() as db:
            await db.execute(
                "UPDATE accounts SET pinned = ? WHERE id = ?",
                (int(pinned), account_id),
            )

    async def set_tokens(self, account_id: str, tokens: TokenSet) -> None:
        async with self._sql.transaction() as db:
            await db.execute(
                "UPDATE accounts SET access_token = ?, refresh_token = ?, "
                "id_token = ?, token_refreshed_at = ?, access_expires_at = ? "
                "WHERE id = ?",
                (*self._encrypt_tokens(tokens), account_id),
            )

    async def set_last_used(self, account_id: str, at: float) -> None:
        async with self._sql.transaction() as db:
            await db.execute(
                "UPDATE accounts SET last_used_at = ? WHERE id = ?", (at, account_id)
            )

    async def record_quota(self, account_id: str, reading: QuotaReading) -> None:
        """Keep ``reading`` as the account's latest and in its history."""
        windows = (
            reading.primary_used_percent,
            reading.primary_window_minutes,
            reading.primary_reset_at,
            reading.secondary_used_percent,
            reading.secondary_window_minutes,
            reading.secondary_reset_at,
        )
        async with self._sql.transaction() as db:
            await db.execute(
                "UPDATE accounts SET quota_observed_at = ?, quota_source = ?, "
                "primary_used_percent = ?, primary_window_minutes = ?, "
                "primary_reset_at = ?, secondary_used_percent = ?, "
                "secondary_window_minutes = ?, secondary_reset_at = ?, "
                "credits_balance = COALESCE(?, credits_balance), "
                "plan = COALESCE(?, plan) WHERE id = ?",
                (
                    reading.observed_at,
                    reading.source,
                    *windows,
                    reading.credits_balance,
                    reading.plan,
                    account_id,
                ),
            )
            await db.execute(
                "INSERT INTO quota_readings (account_id, observed_at, source, "
                f"{_READING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (account_id, reading.observed_at, reading.source, *windows),
            )

    async def quota_history(
        self, account_id: str, since: float = 0.0
    ) -> list[QuotaReading]:
        """The readings of one account since ``since``, oldest first."""
        rows = await self._sql.fetchall(
            f"SELECT observed_at, source, {_READING_COLUMNS} FROM quota_readings "
            "WHERE account_id = ? AND observed_at >= ? ORDER BY observed_at, id",
            (account_id, since),
        )
        return [QuotaReading(*r) for r in rows]

    # Helpers

    def _encrypt_tokens(
        self, tokens: TokenSet
    ) -> tuple[bytes, bytes, bytes | None, float, float | None]:
        return (
            self._cipher.encrypt(tokens.access_token),
            self._cipher.encrypt(tokens.refresh_token),
            None if tokens.id_token is None else self._cipher.encrypt(tokens.id_token),
            tokens.refreshed_at,
            tokens.access_expires_at,
        )

    def _account_from_row(self, r: sqlite3.Row | tuple[Any, ...]) -> AccountRow:
        tokens = TokenSet(
            access_token=self._cipher.decrypt(r[8]),
            refresh_token=self._cipher.decrypt(r[9]),
            id_token=None if r[10] is None else self._cipher.decrypt(r[10]),
            refreshed_at=r[11],
            access_expires_at=r[12],
        )
        quota = None
        if r[15] is not None:
            quota = QuotaReading(
                observed_at=r[15],
                source=r[16] or "poll",
                primary_used_percent=r[17],
                primary_window_minutes=r[18],
                primary_reset_at=r[19],
                secondary_used_percent=r[20],
                secondary_window_minutes=r[21],
                secondary_reset_at=r[22],
                credits_balance=r[23],
            )
        under_pause = None if r[24] is None else AccountState(r[24], r[25], r[26])
        return AccountRow(
            id=r[0],
            email=r[1],
            chatgpt_account_id=r[2],
            plan=r[3],
            status=r[4],
            status_reason=r[5],
            status_until=r[6],
            pinned=bool(r[7]),
            tokens=tokens,
            created_at=r[13],
            last_used_at=r[14],
            quota=quota,
            under_pause=under_pause,
        )
