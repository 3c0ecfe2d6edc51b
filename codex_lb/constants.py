"""Facts about the ChatGPT backend shared by the proxy and the emulator.

Plain data only: nothing here imports the rest of codex-lb, so the emulator can
use it without pulling in the running product.
"""

from __future__ import annotations

from typing import Final

# USD per million tokens: (input, cached input, output), OpenAI's Standard
# rates for prompts of up to 272K input tokens (longer prompts cost more; the
# table does not model that). Names ending in "*" match by prefix.
# CODEX_LB_PRICING_FILE replaces or extends these entries.
#
# The first block is the catalog of the Codex CLI this repository pins
# (0.171.0, see the Makefile), in the CLI's own order; its default model
# comes first. Figures as published for the API on OpenAI's model pages
# (gpt-6.2-sol, gpt-6-luna, gpt-5.6-sol, gpt-5.6-luna read there; the others
# as quoted from those pages by several price trackers), November 2026.
# gpt-5.6-sol is at its promotional rate (list: 5.00 / 0.50 / 30.00).
#
# No published price exists for three names of that catalog, so they are
# left unpriced (counted as unknown_pricing, never guessed):
# gpt-daybreak-blue-latest and gpt-daybreak-red-latest (aliases of OpenAI's
# Daybreak cybersecurity access programs, whose target model is not
# published) and codex-auto-review (Codex's internal approval reviewer).
# An operator who knows what they cost adds them with CODEX_LB_PRICING_FILE.
BUILTIN_PRICES: Final[dict[str, tuple[float, float, float]]] = {
    "gpt-6.2-sol": (2.0, 0.1, 10.0),
    "gpt-6.2-astra": (8.0, 0.4, 40.0),
    "gpt-6.1-terra": (1.0, 0.05, 5.0),
    "gpt-6.1-sol": (2.0, 0.1, 10.0),
    "gpt-6-astra": (10.0, 1.0, 50.0),
    "gpt-6-sol": (2.0, 0.2, 10.0),
    "gpt-6-luna": (0.1, 0.01, 0.5),
    "gpt-5.6-sol": (4.0, 0.4, 20.0),
    "gpt-5.6-terra": (2.0, 0.2, 12.0),
    "gpt-5.6-luna": (0.2, 0.02, 1.2),
    "gpt-5.5": (5.0, 0.5, 30.0),
    # Earlier Codex models, still accepted by the backend for older clients.
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

# The model the pinned Codex CLI uses when its config names none.
CODEX_CLI_DEFAULT_MODEL: Final = "gpt-6.2-sol"

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
