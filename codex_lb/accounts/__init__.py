"""Accounts: the pool, selection, marks, token refresh, usage and identity."""

from codex_lb.accounts.pool import (
    ACTIVE,
    BENCHED,
    PAUSED,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    REAUTH_REQUIRED,
    STATUSES,
    Account,
    AccountPool,
    Selection,
)
from codex_lb.accounts.tokens import RefreshError, TokenRefresher

__all__ = [
    "ACTIVE",
    "BENCHED",
    "PAUSED",
    "QUOTA_EXCEEDED",
    "RATE_LIMITED",
    "REAUTH_REQUIRED",
    "STATUSES",
    "Account",
    "AccountPool",
    "RefreshError",
    "Selection",
    "TokenRefresher",
]
