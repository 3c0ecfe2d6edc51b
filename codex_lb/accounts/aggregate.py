"""The pool's quota seen as one account, for the Codex CLI.

The Codex CLI shows the quota of "its" account from the ``wham/usage``
endpoint and from the ``x-codex-*`` headers of each response. Behind
codex-lb that account is the pool, so both are aggregated over the accounts
that can serve now:

- used percent: the capacity-weighted mean over those accounts whose used
  percent is known (a pro account holds about 6.7 times a plus account, as
  in ``PLAN_WEEKLY_CREDITS``); an account with no reading is left out, never
  counted as 0;
- reset: the earliest reset still ahead among them, when capacity next
  comes back (a reset already past says nothing about the next one);
- window length: the one most of them report.

When no account can serve but some are benched, the benched accounts are
aggregated instead and the limit is reported as reached. With nothing at all
the windows are null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, MutableMapping
from typing import Any

import attrs

from codex_lb.accounts.account import ACTIVE, BENCHED, Account
from codex_lb.constants import PLAN_WEEKLY_CREDITS

QUOTA_HEADER_PREFIXES = ("x-codex-primary-", "x-codex-secondary-")


@attrs.frozen
class PoolWindow:
    """One window of the pool: None fields are unknown."""

    used_percent: float | None
    window_minutes: int | None
    reset_at: float | None


@attrs.frozen
class PoolQuota:
    """The pool's two windows and whether it can serve at all."""

    primary: PoolWindow | None
    secondary: PoolWindow | None
    limit_reached: bool
    plan: str | None
    credits_balance: float | None


def capacity(plan: str) -> float:
    """An account's weight: its plan's weekly credits (unknown plans as plus)."""
    return PLAN_WEEKLY_CREDITS.get(plan, PLAN_WEEKLY_CREDITS["plus"])


def pool_quota(accounts: Iterable[Account], now: float | None = None) -> PoolQuota:
    """Aggregate the accounts that can serve (or, failing that, the benched).

    Resets at or before ``now`` are left out (all count without a ``now``).
    """
    everyone = list(accounts)
    usable = [a for a in everyone if a.status == ACTIVE]
    limited = not usable
    members = usable or [a for a in everyone if a.status in BENCHED]

    balances = [
        a.quota.credits_balance
        for a in members
        if a.quota is not None and a.quota.credits_balance is not None
    ]
    plan = max(members, key=lambda a: capacity(a.plan)).plan if members else None
    return PoolQuota(
        primary=_window(members, "primary", now),
        secondary=_window(members, "secondary", now),
        limit_reached=limited,
        plan=plan,
        credits_balance=sum(balances) if balances else None,
    )


def _window(members: list[Account], slot: str, now: float | None) -> PoolWindow | None:
    weighted = 0.0
    weights = 0.0
    resets: list[float] = []
    lengths: Counter[int] = Counter()
    for account in members:
        quota = account.quota
        if quota is None:
            continue
        used = getattr(quota, f"{slot}_used_percent")
        if used is not None:
            weight = capacity(account.plan)
            weighted += used * weight
            weights += weight
        reset_at = getattr(quota, f"{slot}_reset_at")
        if reset_at is not None and (now is None or reset_at > now):
            resets.append(reset_at)
        minutes = getattr(quota, f"{slot}_window_minutes")
        if minutes:
            lengths[minutes] += 1

    if not weights and not resets and not lengths:
        return None
    return PoolWindow(
        used_percent=round(weighted / weights, 2) if weights else None,
        window_minutes=lengths.most_common(1)[0][0] if lengths else None,
        reset_at=min(resets) if resets else None,
    )


def usage_payload(quota: PoolQuota, now: float) -> dict[str, Any]:
    """The pool in the shape of the upstream ``wham/usage`` answer."""
    credits = None
    if quota.credits_balance is not None:
        credits = {
            "has_credits": quota.credits_balance > 0,
            "unlimited": False,
            "balance": _number(quota.credits_balance),
        }
    return {
        "plan_type": quota.plan,
        "rate_limit": {
            "allowed": not quota.limit_reached,
            "limit_reached": quota.limit_reached,
            "primary_window": _window_json(quota.primary, now),
            "secondary_window": _window_json(quota.secondary, now),
        },
        "credits": credits,
    }


def _window_json(window: PoolWindow | None, now: float) -> dict[str, Any] | None:
    if window is None:
        return None
    reset_at = window.reset_at
    return {
        "used_percent": window.used_percent,
        "limit_window_seconds": (
            window.window_minutes * 60 if window.window_minutes else None
        ),
        "reset_after_seconds": (
            None if reset_at is None else max(0, int(reset_at - now))
        ),
        "reset_at": None if reset_at is None else int(reset_at),
    }


def quota_headers(quota: PoolQuota, now: float) -> dict[str, str]:
    """The pool as ``x-codex-primary-*`` / ``x-codex-secondary-*`` headers.

    An unknown value is left out, never sent as 0 or empty.
    """
    headers: dict[str, str] = {}
    for slot, window in (("primary", quota.primary), ("secondary", quota.secondary)):
        if window is None:
            continue
        prefix = f"x-codex-{slot}-"
        if window.used_percent is not None:
            headers[prefix + "used-percent"] = _number(window.used_percent)
        if window.window_minutes:
            headers[prefix + "window-minutes"] = str(window.window_minutes)
        if window.reset_at is not None:
            headers[prefix + "reset-at"] = str(int(window.reset_at))
            headers[prefix + "reset-after-seconds"] = str(
                max(0, int(window.reset_at - now))
            )
    return headers


def replace_quota_headers(
    headers: MutableMapping[str, str], pool_headers: dict[str, str]
) -> None:
    """Swap one account's ``x-codex-*`` quota headers for the pool's."""
    own = [
        name
        for name in headers
        if name[:1] in "xX" and name.lower().startswith(QUOTA_HEADER_PREFIXES)
    ]
    for name in own:
        del headers[name]
    headers.update(pool_headers)


def _number(value: float) -> str:
    # "12.5", "100", "0": no float noise in a header or a JSON string.
    return f"{value:.2f}".rstrip("0").rstrip(".")
