"""The dashboard's page data: accounts, the pool snapshot and request-log rows.

Pure functions from the pool's accounts and the store's aggregates to the
JSON the dashboard API returns. Nothing here changes state. Times are epoch
seconds (the browser formats them in the operator's time zone); money is USD.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from codex_lb.accounts import BENCHED, PAUSED, REAUTH_REQUIRED, STATUSES, Account
from codex_lb.accounts.aggregate import capacity
from codex_lb.constants import PLAN_WEEKLY_CREDITS
from codex_lb.store import AccountActivity, RequestLogRow, RequestTotals

DAY_SECONDS = 24 * 3600.0
HOUR_SECONDS = 3600.0


def remaining_weekly_credits(
    plan: str, weekly_used_percent: float | None
) -> float | None:
    """A plan's weekly credits times what is left of the weekly window.

    None when the plan's capacity or the weekly reading is unknown: a guess
    would look like a fact on the dashboard.
    """
    capacity = PLAN_WEEKLY_CREDITS.get(plan.lower())
    if capacity is None or weekly_used_percent is None:
        return None
    left = 1.0 - min(100.0, max(0.0, weekly_used_percent)) / 100.0
    return round(capacity * left, 2)


def account_json(
    account: Account, activity: AccountActivity | None = None, now: float = 0.0
) -> dict[str, Any]:
    """An account for the API: never a token or the ChatGPT account id."""
    quota = account.quota
    weekly_used = quota.secondary_used_percent if quota else None
    cooling = account.cooldown_until > now
    return {
        "id": account.id,
        "email": account.email,
        "display": account.email,
        "plan": account.plan,
        "status": account.status,
        "status_reason": account.status_reason,
        "status_until": account.status_until,
        "under_pause": (
            None
            if account.under_pause is None
            else {
                "status": account.under_pause.status,
                "status_reason": account.under_pause.status_reason,
                "status_until": account.under_pause.status_until,
            }
        ),
        "cooldown_until": account.cooldown_until if cooling else None,
        "consecutive_failures": account.consecutive_failures,
        "pinned": account.pinned,
        "last_used_at": account.last_used_at,
        "inflight": account.inflight,
        "primary_used_percent": quota.primary_used_percent if quota else None,
        "primary_reset_at": quota.primary_reset_at if quota else None,
        "secondary_used_percent": weekly_used,
        "secondary_reset_at": quota.secondary_reset_at if quota else None,
        "quota_observed_at": quota.observed_at if quota else None,
        "remaining_weekly_credits": remaining_weekly_credits(account.plan, weekly_used),
        "requests_24h": activity.requests if activity else 0,
        "errors_24h": activity.errors if activity else 0,
        "cost_24h_usd": round(activity.cost_usd, 6) if activity else 0.0,
        "last_error_code": activity.last_error_code if activity else None,
        "last_error_at": activity.last_error_at if activity else None,
    }


def accounts_json(
    accounts: Iterable[Account],
    activity: Iterable[AccountActivity],
    now: float,
) -> list[dict[str, Any]]:
    by_account = {a.account_id: a for a in activity}
    return [account_json(a, by_account.get(a.id), now) for a in accounts]


def day_start(now: float) -> float:
    """Midnight of ``now``'s day in the server's local time zone."""
    moment = datetime.datetime.fromtimestamp(now).astimezone()
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def week_start(now: float) -> float:
    """Monday 00:00 of ``now``'s week in the server's local time zone."""
    moment = datetime.datetime.fromtimestamp(now).astimezone()
    monday = moment - datetime.timedelta(days=moment.weekday())
    return monday.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _weekly_used(account: Account) -> float | None:
    return account.quota.secondary_used_percent if account.quota else None


def _left_percent(accounts: list[Account], slot: str) -> float | None:
    """What is left of a window across ``accounts``, weighted by capacity.

    A pro account holds about 6.7 times a plus account, so its percent
    weighs that much more, as in the pool's quota for the Codex CLI
    (``/api/codex/usage``). Accounts with no reading of the window are left
    out.
    """
    weighted = weights = 0.0
    for account in accounts:
        used = getattr(account.quota, f"{slot}_used_percent", None)
        if used is None:
            continue
        weight = capacity(account.plan)
        weighted += (100.0 - min(100.0, max(0.0, used))) * weight
        weights += weight
    return round(weighted / weights, 2) if weights else None


def _next(times: Iterable[float | None], now: float) -> float | None:
    future = [t for t in times if t is not None and t > now]
    return min(future) if future else None


def totals_json(totals: RequestTotals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "error_rate": (
            round(totals.errors / totals.requests, 4) if totals.requests else 0.0
        ),
        "cost_usd": round(totals.cost_usd, 6),
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
    }


def pool_snapshot(
    accounts: list[Account],
    today: RequestTotals,
    week: RequestTotals,
    last_hour: RequestTotals,
    now: float,
) -> dict[str, Any]:
    """The pool at a glance: quota left, next resets, statuses, cost, errors.

    Quota left is the capacity-weighted mean over the accounts that can
    serve now or after a reset (not paused, not waiting for a login) that
    have a reading; credits are summed over the same accounts.
    """
    serving = [a for a in accounts if a.status not in (PAUSED, REAUTH_REQUIRED)]
    readings = [a.quota for a in serving if a.quota is not None]
    # Credits count only where both the plan's capacity and the reading are
    # known, so "left" and "capacity" always cover the same accounts.
    credits = [
        (left, PLAN_WEEKLY_CREDITS[a.plan.lower()])
        for a in serving
        if (left := remaining_weekly_credits(a.plan, _weekly_used(a))) is not None
    ]

    by_status = {status: 0 for status in STATUSES}
    for account in accounts:
        by_status[account.status] = by_status.get(account.status, 0) + 1

    return {
        "generated_at": now,
        "accounts": len(accounts),
        "accounts_by_status": by_status,
        "pinned": sum(1 for a in accounts if a.pinned),
        "inflight": sum(a.inflight for a in accounts),
        "primary_left_percent": _left_percent(serving, "primary"),
        "secondary_left_percent": _left_percent(serving, "secondary"),
        "weekly_credits_left": round(sum(left for left, _ in credits), 2),
        "weekly_credits_capacity": round(sum(cap for _, cap in credits), 2),
        "next_primary_reset_at": _next((q.primary_reset_at for q in readings), now),
        "next_secondary_reset_at": _next((q.secondary_reset_at for q in readings), now),
        "next_bench_end_at": _next(
            (a.status_until for a in accounts if a.status in BENCHED), now
        ),
        "today": totals_json(today),
        "this_week": totals_json(week),
        "last_hour": totals_json(last_hour),
    }


def request_json(row: RequestLogRow, emails: Mapping[str, str]) -> dict[str, Any]:
    """One request-log row; the account is named by email when it still exists."""
    return {
        "request_id": row.request_id,
        "started_at": row.started_at,
        "api": row.api,
        "model": row.model,
        "account_id": row.account_id,
        "account_email": emails.get(row.account_id or ""),
        "status": row.status,
        "status_code": row.status_code,
        "error_code": row.error_code,
        "attempts": row.attempts,
        "latency_ms": round(row.latency_ms, 1),
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_usd": row.cost_usd,
        "api_key_id": row.api_key_id,
    }
