"""The store's read-only aggregates behind the dashboard, on a real SQLite file."""

from __future__ import annotations

from codex_lb.store import AccountActivity, RequestLogRow, RequestTotals, Store

T = 1_800_000_000.0


def log_row(
    n: int,
    started_at: float,
    account_id: str | None = "acc_a",
    status: str = "success",
    error_code: str | None = None,
    cost: float | None = 0.5,
    model: str | None = "gpt-5",
) -> RequestLogRow:
    return RequestLogRow(
        request_id=f"req-{n}",
        started_at=started_at,
        api="codex",
        model=model,
        account_id=account_id,
        status=status,
        status_code=200 if status == "success" else 502,
        error_code=error_code,
        attempts=1,
        latency_ms=10.0,
        input_tokens=100,
        output_tokens=10,
        cost_usd=cost,
    )


class TestRequestTotals:
    async def test_sums_the_rows_in_the_range(self, store: Store) -> None:
        """Only rows started in [since, until) count; a missing cost adds nothing."""
        await store.write_request_logs(
            [
                log_row(1, T - 10),
                log_row(2, T, status="error", error_code="upstream_error", cost=None),
                log_row(3, T + 5, cost=0.25),
                log_row(4, T + 10),
            ]
        )

        totals = await store.request_totals(T, T + 10)

        assert totals == RequestTotals(
            requests=2, errors=1, cost_usd=0.25, input_tokens=200, output_tokens=20
        )

    async def test_empty_range_is_all_zero(self, store: Store) -> None:
        """No rows gives zeros, not None."""
        assert await store.request_totals(T) == RequestTotals(0, 0, 0.0, 0, 0)


class TestAccountActivity:
    async def test_groups_by_account_with_the_latest_error(self, store: Store) -> None:
        """Each account gets its counts, cost and the code of its newest error."""
        await store.write_request_logs(
            [
                log_row(1, T - 100, status="error", error_code="old"),
                log_row(2, T + 1, status="error", error_code="upstream_error"),
                log_row(3, T + 3, status="error", error_code="stream_incomplete"),
                log_row(4, T + 2),
                log_row(5, T + 4, account_id="acc_b", cost=1.5),
                log_row(6, T + 5, account_id=None),
            ]
        )

        activity = sorted(await store.account_activity(T), key=lambda a: a.account_id)

        assert activity == [
            AccountActivity("acc_a", 3, 2, 1.5, "stream_incomplete", T + 3),
            AccountActivity("acc_b", 1, 0, 1.5, None, None),
        ]


class TestRequestModels:
    async def test_distinct_models_since(self, store: Store) -> None:
        """Models seen since the time, sorted, without None or older ones."""
        await store.write_request_logs(
            [
                log_row(1, T - 1, model="gpt-4-old"),
                log_row(2, T, model="gpt-5-mini"),
                log_row(3, T + 1, model="gpt-5"),
                log_row(4, T + 2, model="gpt-5"),
                log_row(5, T + 3, model=None),
            ]
        )

        assert await store.request_models(T) == ["gpt-5", "gpt-5-mini"]
