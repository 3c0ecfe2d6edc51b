"""Small builders for the events collector tests feed."""

from __future__ import annotations

from codex_lb.events import (
    AccountInfo,
    PoolChanged,
    QuotaSnapshot,
    QuotaWindow,
    RequestFinished,
)


def info(
    account_id: str = "acc-1",
    email: str = "a@example.com",
    plan: str = "plus",
    status: str = "active",
) -> AccountInfo:
    return AccountInfo(account_id, email, plan, status)


def roster(*accounts: AccountInfo) -> PoolChanged:
    return PoolChanged(accounts=tuple(accounts))


def weekly(
    used: float | None,
    reset_at: float | None,
    account: AccountInfo | None = None,
    minutes: int | None = 10080,
) -> QuotaSnapshot:
    return QuotaSnapshot(
        account=account or info(),
        source="poll",
        observed_at=0.0,
        primary=QuotaWindow(12.0, 300, 1_800_000_100.0),
        secondary=QuotaWindow(used, minutes, reset_at),
    )


def finished(
    status: str = "success",
    model: str = "gpt-5",
    api: str = "codex",
    account_id: str | None = "acc-1",
    latency_ms: float = 120.0,
    cost: float | None = 0.5,
    error_code: str | None = None,
    tokens: tuple[int, int, int, int] | None = (100, 20, 10, 4),
    request_id: str = "r1",
) -> RequestFinished:
    i, c, o, r = tokens or (None, None, None, None)
    return RequestFinished(
        request_id=request_id,
        api=api,
        model=model,
        account_id=account_id,
        status=status,
        status_code=200 if status == "success" else 502,
        model_label=model,
        error_code=error_code,
        latency_ms=latency_ms,
        attempts=1,
        input_tokens=i,
        cached_input_tokens=c,
        output_tokens=o,
        reasoning_tokens=r,
        cost_usd=cost,
    )
