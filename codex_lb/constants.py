"""Facts about the ChatGPT backend shared by the proxy and the emulator.

Plain data only: nothing here imports the rest of codex-lb, so the emulator can
use it without pulling in the running product.
"""

from __future__ import annotations

from typing import Final

# USD per million tokens: (input, cached input, output). Names ending in "*"
# match by prefix. These are OpenAI's published API prices for the models the
# Codex backend serves; CODEX_LB_PRICING_FILE replaces or extends them.
BUILTIN_PRICES: Final[dict[str, tuple[float, float, float]]] = {
    "gpt-5": (1.25, 0.125, 10.0),
    "gpt-5-codex": (1.25, 0.125, 10.0),
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.4),
    "gpt-5.1": (1.25, 0.125, 10.0),
    "gpt-5.1-codex": (1.25, 0.125, 10.0),
    "gpt-5.1-codex-max": (1.25, 0.125, 10.0),
    "gpt-5.1-codex-mini": (0.25, 0.025, 2.0),
    "gpt-5.2": (1.75, 0.175, 14.0),
    "gpt-5.2-codex": (1.75, 0.175, 14.0),
    "codex-mini-latest": (1.5, 0.375, 6.0),
}

# Weekly capacity of a plan in credits; team and business count as plus.
PLAN_WEEKLY_CREDITS: Final[dict[str, float]] = {
    "free": 7560.0,
    "plus": 7560.0,
    "team": 7560.0,
    "business": 7560.0,
    "enterprise": 7560.0,
    "edu": 7560.0,
    "pro": 50400.0,
}

PRIMARY_WINDOW_SECONDS: Final = 5 * 3600
SECONDARY_WINDOW_SECONDS: Final = 7 * 24 * 3600

# The claim namespace ChatGPT puts into its id and access tokens.
AUTH_CLAIM: Final = "https://api.openai.com/auth"
PROFILE_CLAIM: Final = "https://api.openai.com/profile"

# The OAuth client the Codex CLI registers as; codex-lb logs in as it.
CODEX_OAUTH_CLIENT_ID: Final = "app_EMoamEEZ73f0CkXaXp7hrann"

# Error codes the upstream uses for a full window or an exhausted quota.
RATE_LIMIT_CODES: Final = frozenset({"rate_limit_exceeded", "usage_limit_reached"})
QUOTA_CODES: Final = frozenset(
    {"insufficient_quota", "quota_exceeded", "usage_not_included"}
)

# Refresh failures that no retry will cure: the account must log in again.
PERMANENT_REFRESH_CODES: Final = frozenset(
    {
        "invalid_grant",
        "refresh_token_reused",
        "refresh_token_expired",
        "refresh_token_invalidated",
        "token_expired",
        "account_deactivated",
    }
)
