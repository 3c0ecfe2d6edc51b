"""The request log in SQLite: batched writes and the dashboard's aggregates."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from codex_lb.store.models import (
    AccountActivity,
    ApiKeyUsage,
    RequestLogRow,
    RequestTotals,
)
from codex_lb.store.sqlite_db import Database

_REQUEST_LOG_FIELDS = [f.name for f in attrs.fields(RequestLogRow)]


class RequestLogTables:
    """The ``request_logs`` table (a part of SqliteStore)."""

    _sql: Database

    async def write_request_logs(self, rows: Sequence[RequestLogRow]) -> None:
        """Insert ``rows`` in one transaction: all of them, or none and raise."""
        if not rows:
            return
        placeholders = ",".join("?" * len(_REQUEST_LOG_FIELDS))
        async with self._sql.transaction() as db:
            await db.executemany(
                f"INSERT INTO request_logs ({','.join(_REQUEST_LOG_FIELDS)}) "
                f"VALUES ({placeholders})",
                [attrs.astuple(r) for r in rows],
            )

    async def recent_request_logs(
        self,
        limit: int = 100,
        offset: int = 0,
        account_id: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RequestLogRow]:
        """Request logs, newest first, filtered by the given fields."""
        where, args = [], []
        for column, value in (
            ("account_id = ?", account_id),
            ("model = ?", model),
            ("status = ?", status),
            ("started_at >= ?", since),
            ("started_at < ?", until),
        ):
            if value is not None:
                where.append(column)
                args.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = await self._sql.fetchall(
            f"SELECT {','.join(_REQUEST_LOG_FIELDS)} FROM request_logs {clause} "
            "ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [RequestLogRow(*r) for r in rows]

    async def count_request_logs(self) -> int:
        row = await self._sql.fetchone("SELECT COUNT(*) FROM request_logs")
        return int(row[0]) if row else 0

    # Aggregates (read only, for the dashboard)

    async def request_totals(
        self, since: float, until: float | None = None
    ) -> RequestTotals:
        """Requests, errors, cost and tokens started in [since, until)."""
        row = await self._sql.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(status != 'success'), 0), "
            "COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0) FROM request_logs "
            "WHERE started_at >= ? AND started_at < ?",
            (since, float("inf") if until is None else until),
        )
        assert row is not None  # an aggregate always gives one row
        return RequestTotals(int(row[0]), int(row[1]), float(row[2]), *row[3:])

    async def account_activity(self, since: float) -> list[AccountActivity]:
        """Per account: requests, errors and cost since ``since``, last error."""
        # The planner prefers the (account_id, started_at) index for GROUP BY
        # and then walks the whole table; the covering time index reads only
        # the window (6 ms instead of 25 ms for 14 000 of 100 000 rows).
        totals = await self._sql.fetchall(
            "SELECT account_id, COUNT(*), COALESCE(SUM(status != 'success'), 0), "
            "COALESCE(SUM(cost_usd), 0.0) "
            "FROM request_logs INDEXED BY request_logs_totals "
            "WHERE started_at >= ? GROUP BY account_id",
            (since,),
        )

        # SQLite fills the bare columns of a MAX() aggregate from the row that
        # holds the maximum: each account's latest error code in one scan.
        errors = await self._sql.fetchall(
            "SELECT account_id, error_code, MAX(started_at) "
            "FROM request_logs INDEXED BY request_logs_totals "
            "WHERE started_at >= ? AND status != 'success' GROUP BY account_id",
            (since,),
        )
        last_errors = {r[0]: (r[1], r[2]) for r in errors}

        # Requests that failed before any account was chosen have none.
        return [
            AccountActivity(
                account_id=r[0],
                requests=int(r[1]),
                errors=int(r[2]),
                cost_usd=float(r[3]),
                last_error_code=last_errors.get(r[0], (None, None))[0],
                last_error_at=last_errors.get(r[0], (None, None))[1],
            )
            for r in totals
            if r[0] is not None
        ]

    async def request_models(self, since: float) -> list[str]:
        """The models named by requests started since ``since``, sorted."""
        rows = await self._sql.fetchall(
            "SELECT DISTINCT model FROM request_logs "
            "WHERE started_at >= ? AND model IS NOT NULL ORDER BY model",
            (since,),
        )
        return [r[0] for r in rows]

    async def api_key_usage(self, since: float | None = None) -> list[ApiKeyUsage]:
        """Per client key: requests, errors, cost and tokens since ``since``."""
        rows = await self._sql.fetchall(
            "SELECT api_key_id, COUNT(*), COALESCE(SUM(status != 'success'), 0), "
            "COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), MAX(started_at) FROM request_logs "
            "WHERE api_key_id IS NOT NULL AND started_at >= ? "
            "GROUP BY api_key_id ORDER BY api_key_id",
            (float("-inf") if since is None else since,),
        )
        return [
            ApiKeyUsage(
                api_key_id=r[0],
                requests=int(r[1]),
                errors=int(r[2]),
                cost_usd=float(r[3]),
                input_tokens=int(r[4]),
                output_tokens=int(r[5]),
                last_request_at=r[6],
            )
            for r in rows
        ]
