"""Client API keys in the store: migration 2, rows, revocation, per-key totals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from codex_lb.store import ApiKeyRow, ApiKeyUsage, RequestLogRow, Store, open_store
from codex_lb.store.schema import MIGRATIONS


def log_row(
    request_id: str,
    api_key_id: str | None,
    status: str = "success",
    cost: float | None = 0.5,
    started_at: float = 100.0,
) -> RequestLogRow:
    return RequestLogRow(
        request_id=request_id,
        started_at=started_at,
        api="chat",
        model="gpt-5",
        account_id="acc_1",
        status=status,
        status_code=200 if status == "success" else 502,
        error_code=None if status == "success" else "upstream_error",
        attempts=1,
        latency_ms=10.0,
        input_tokens=100,
        output_tokens=20,
        cost_usd=cost,
        api_key_id=api_key_id,
    )


class TestApiKeys:
    async def test_add_list_and_revoke(self, store: Store) -> None:
        """A key is kept by hash; revoking it twice is refused the second time."""
        row = await store.add_api_key("laptop", "ab" * 32, "sk-clb-Abcd", now=10.0)

        first = await store.revoke_api_key(row.id, now=20.0)
        second = await store.revoke_api_key(row.id, now=30.0)

        assert row.id.startswith("key_")
        assert await store.list_api_keys() == [
            ApiKeyRow(row.id, "laptop", "ab" * 32, "sk-clb-Abcd", 10.0, 20.0)
        ]
        assert (first, second) == (True, False)

    async def test_usage_per_key(self, store: Store) -> None:
        """Requests, errors, cost and tokens are summed per key."""
        await store.write_request_logs(
            [
                log_row("r1", "key_a", started_at=100.0),
                log_row("r2", "key_a", status="error", cost=None, started_at=200.0),
                log_row("r3", "key_b", cost=0.25, started_at=300.0),
                log_row("r4", None, started_at=400.0),
            ]
        )

        everything = await store.api_key_usage()
        recent = await store.api_key_usage(since=250.0)

        assert everything == [
            ApiKeyUsage("key_a", 2, 1, 0.5, 200, 40, 200.0),
            ApiKeyUsage("key_b", 1, 0, 0.25, 100, 20, 300.0),
        ]
        assert recent == [ApiKeyUsage("key_b", 1, 0, 0.25, 100, 20, 300.0)]

    async def test_version_1_database_is_migrated(self, tmp_path: Path) -> None:
        """A store from before keys gains the table and keeps its rows."""
        data = tmp_path / "d"
        data.mkdir()
        with sqlite3.connect(data / "store.db") as db:
            db.executescript(MIGRATIONS[0])
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version (version) VALUES (1)")
            db.execute(
                "INSERT INTO request_logs (request_id, started_at, api, status, "
                "status_code, attempts, latency_ms, api_key_id) "
                "VALUES ('old', 1.0, 'codex', 'success', 200, 1, 5.0, NULL)"
            )

        store = await open_store(data)
        try:
            row = await store.add_api_key("ci", "cd" * 32, "sk-clb-Wxyz")
            logs = await store.recent_request_logs()
        finally:
            await store.close()

        with sqlite3.connect(data / "store.db") as db:
            (version,) = db.execute("SELECT version FROM schema_version").fetchone()
        assert version == len(MIGRATIONS)
        assert row.name == "ci"
        assert [r.request_id for r in logs] == ["old"]
