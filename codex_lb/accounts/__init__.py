"""Accounts: the pool, selection, marks, token refresh, usage and identity."""

from codex_lb.accounts.account import (
    ACTIVE,
    BENCHED,
    PAUSED,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    REAUTH_REQUIRED,
    STATUSES,
    Account,
    Selection,
)
from codex_lb.accounts.pool import AccountPool
from codex_lb.accounts.states import StateConflict
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
    "StateConflict",
    "TokenRefresher",
]
