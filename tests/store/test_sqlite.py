"""The SQLite store: durable, encrypted, and free of lost updates."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import attrs

from codex_lb.store import (
    AccountState,
    QuotaReading,
    SavedAccount,
    Store,
    TokenSet,
    open_store,
)
from tests.conftest import new_account


class TestSqliteStore:
    async def test_tokens_are_encrypted_at_rest(
        self, store: Store, tmp_path: Path
    ) -> None:
        """Neither token appears in the database file in clear text."""
        await store.add_account(new_account(refresh="rt-SECRET-VALUE"))

        raw = (tmp_path / "data" / "store.db").read_bytes()
        wal = tmp_path / "data" / "store.db-wal"
        raw += wal.read_bytes() if wal.exists() else b""

        assert b"rt-SECRET-VALUE" not in raw
        assert b"at-1" not in raw

    async def test_key_file_and_database_are_owner_only(
        self, store: Store, tmp_path: Path
    ) -> None:
        """encryption.key and store.db are created with mode 0600."""
        for name in ("encryption.key", "store.db"):
            assert os.stat(tmp_path / "data" / name).st_mode & 0o777 == 0o600

    async def test_refresh_then_stale_quota_write_keeps_both(
        self, store: Store
    ) -> None:
        """C13: a quota write from a copy read before a rotation keeps rt-NEW."""
        account_id = await store.add_account(new_account())
        stale_copy = await store.get_account(account_id)
        assert stale_copy is not None

        await store.set_tokens(
            account_id, TokenSet("at-NEW", "rt-NEW", None, refreshed_at=2000.0)
        )
        await store.record_quota(
            account_id, QuotaReading(2001.0, "poll", secondary_used_percent=42.0)
        )

        row = await store.get_account(account_id)
        assert row is not None and row.quota is not None
        assert (row.tokens.access_token, row.tokens.refresh_token) == (
            "at-NEW",
            "rt-NEW",
        )
        assert row.quota.secondary_used_percent == 42.0

    async def test_quota_write_then_refresh_keeps_both(self, store: Store) -> None:
        """C13, other order: the refresh does not erase the quota reading."""
        account_id = await store.add_account(new_account())

        await store.record_quota(
            account_id, QuotaReading(2001.0, "poll", secondary_used_percent=42.0)
        )
        await store.set_tokens(
            account_id, TokenSet("at-NEW", "rt-NEW", None, refreshed_at=2000.0)
        )

        row = await store.get_account(account_id)
        assert row is not None and row.quota is not None
        assert row.tokens.refresh_token == "rt-NEW"
        assert row.quota.secondary_used_percent == 42.0

    async def test_state_survives_reopen(self, tmp_path: Path) -> None:
        """A bench written before a restart is there after it."""
        store = await open_store(tmp_path / "d")
        account_id = await store.add_account(new_account())
        await store.set_account_state(
            account_id, AccountState("rate_limited", "usage_limit_reached", 5000.0)
        )
        await store.close()

        store = await open_store(tmp_path / "d")
        row = await store.get_account(account_id)
        await store.close()

        assert row is not None
        assert (row.status, row.status_until) == ("rate_limited", 5000.0)

    async def test_reimport_replaces_tokens_and_clears_reauth(
        self, store: Store
    ) -> None:
        """Importing an account again updates it instead of duplicating it."""
        account_id = await store.add_account(new_account())
        await store.set_account_state(
            account_id, AccountState("reauth_required", "invalid_grant")
        )

        again = await store.add_account(new_account(refresh="rt-FRESH"))

        rows = await store.list_accounts()
        assert again == account_id and len(rows) == 1
        assert rows[0].status == "active"
        assert rows[0].tokens.refresh_token == "rt-FRESH"

    async def test_an_older_file_keeps_the_rotated_tokens(self, store: Store) -> None:
        """Tokens refreshed after the file was written are the live ones: an
        import of that file keeps them and says so."""
        account_id = await store.add_account(new_account(refresh="rt-OLD"))
        await store.set_tokens(
            account_id, TokenSet("at-NEW", "rt-NEW", None, refreshed_at=2000.0)
        )

        saved = await store.save_account(new_account(refresh="rt-OLD"))

        row = await store.get_account(account_id)
        assert saved == SavedAccount(account_id, created=False, tokens_kept=True)
        assert row is not None
        assert (row.tokens.refresh_token, row.tokens.refreshed_at) == ("rt-NEW", 2000.0)

    async def test_an_older_file_still_revives_an_account_needing_a_login(
        self, store: Store
    ) -> None:
        """With the stored tokens refused for good, any file is worth a try."""
        account_id = await store.add_account(new_account(refresh="rt-OLD"))
        await store.set_tokens(
            account_id, TokenSet("at-NEW", "rt-NEW", None, refreshed_at=2000.0)
        )
        await store.set_account_state(
            account_id, AccountState("reauth_required", "refresh_token_reused")
        )

        saved = await store.save_account(new_account(refresh="rt-FILE"))

        row = await store.get_account(account_id)
        assert saved == SavedAccount(account_id, created=False, tokens_kept=False)
        assert row is not None
        assert (row.status, row.status_reason) == ("active", None)
        assert row.tokens.refresh_token == "rt-FILE"

    async def test_a_newer_file_replaces_the_tokens(self, store: Store) -> None:
        """A file written after the last refresh (a new login) wins."""
        account_id = await store.add_account(new_account(refresh="rt-OLD"))
        newer = attrs.evolve(
            new_account(refresh="rt-LOGIN"),
            tokens=TokenSet("at-LOGIN", "rt-LOGIN", None, refreshed_at=3000.0),
        )

        saved = await store.save_account(newer)

        row = await store.get_account(account_id)
        assert saved == SavedAccount(account_id, created=False, tokens_kept=False)
        assert row is not None and row.tokens.refresh_token == "rt-LOGIN"

    async def test_schema_version_is_recorded(self, tmp_path: Path) -> None:
        """A new database is migrated to the newest schema version."""
        store = await open_store(tmp_path / "d")
        await store.close()

        with sqlite3.connect(tmp_path / "d" / "store.db") as db:
            (version,) = db.execute("SELECT version FROM schema_version").fetchone()
            (mode,) = db.execute("PRAGMA journal_mode").fetchone()

        assert version >= 1
        assert mode == "wal"
