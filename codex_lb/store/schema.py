"""The SQLite schema, as a list of forward migrations.

Migration N brings a database from version N - 1 to N. Never edit a released
migration: add the next one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: accounts, request logs, quota readings, collector state.
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        chatgpt_account_id TEXT NOT NULL UNIQUE,
        plan TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        status_reason TEXT,
        status_until REAL,
        pinned INTEGER NOT NULL DEFAULT 0,
        access_token BLOB NOT NULL,
        refresh_token BLOB NOT NULL,
        id_token BLOB,
        token_refreshed_at REAL NOT NULL,
        access_expires_at REAL,
        created_at REAL NOT NULL,
        last_used_at REAL,
        quota_observed_at REAL,
        quota_source TEXT,
        primary_used_percent REAL,
        primary_window_minutes INTEGER,
        primary_reset_at REAL,
        secondary_used_percent REAL,
        secondary_window_minutes INTEGER,
        secondary_reset_at REAL,
        credits_balance REAL
    );
    CREATE TABLE request_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        api TEXT NOT NULL,
        model TEXT,
        account_id TEXT,
        api_key_id TEXT,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        error_code TEXT,
        attempts INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        input_tokens INTEGER,
        cached_input_tokens INTEGER,
        output_tokens INTEGER,
        reasoning_tokens INTEGER,
        cost_usd REAL
    );
    CREATE INDEX request_logs_started ON request_logs (started_at);
    CREATE INDEX request_logs_account ON request_logs (account_id, started_at);
    CREATE TABLE quota_readings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        observed_at REAL NOT NULL,
        source TEXT NOT NULL,
        primary_used_percent REAL,
        primary_window_minutes INTEGER,
        primary_reset_at REAL,
        secondary_used_percent REAL,
        secondary_window_minutes INTEGER,
        secondary_reset_at REAL
    );
    CREATE INDEX quota_readings_account ON quota_readings (account_id, observed_at);
    CREATE TABLE collector_state (
        collector TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (collector, key)
    );
    """,
    # 2: client API keys (only a key's SHA-256 is kept), per-key log lookups.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        shown TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX request_logs_api_key ON request_logs (api_key_id, started_at);
    """,
    # 3: the dashboard's aggregates read an index, not the table: time-range
    # totals and per-account sums from one covering index (which also serves
    # every started_at lookup the old one did), the model list from another.
    """
    CREATE INDEX request_logs_totals ON request_logs (
        started_at, status, cost_usd, input_tokens, output_tokens, account_id
    );
    DROP INDEX request_logs_started;
    CREATE INDEX request_logs_model ON request_logs (model, started_at);
    """,
    # 4: the bench a paused account was under, so resuming it returns the
    # account to that bench while it still runs.
    """
    ALTER TABLE accounts ADD COLUMN under_pause_status TEXT;
    ALTER TABLE accounts ADD COLUMN under_pause_reason TEXT;
    ALTER TABLE accounts ADD COLUMN under_pause_until REAL;
    """,
]
