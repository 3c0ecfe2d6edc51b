"""Bounded label values: the error codes a metric may carry, and the
selection outcomes routing reports.

An error code can come from the upstream or the OAuth server verbatim, so a
label taking it as is would grow a series for every string they invent. The
codes below are the ones a metric keeps; anything else is ``other``. This is
the one list of them: the codes codex-lb answers with itself, the upstream's
rate-limit and quota codes and the refresh failures of SPEC section 5.
"""

from __future__ import annotations

from typing import Final

from codex_lb.constants import PERMANENT_REFRESH_CODES, QUOTA_CODES, RATE_LIMIT_CODES

OTHER: Final = "other"

# What codex-lb itself answers or records when a request fails: the errors
# of SPEC section 5 and the transport failures it names.
CODEX_LB_ERROR_CODES: Final = frozenset(
    {
        "usage_limit_reached",
        "no_accounts",
        "invalid_request_error",
        "request_too_large",
        "unsupported_content_encoding",
        "upstream_error",
        "upstream_unavailable",
        "stream_incomplete",
        "stream_idle_timeout",
        "event_too_large",
        "server_shutdown",
        "response_failed",
        "client_disconnected",
        "internal_error",
        "upstream_timeout",
        "connection_refused",
        "connection_reset",
        "transport_error",
        "model_not_found",
        # A failed request that carried no code at all.
        "unknown",
    }
)

# Refresh failures that need a new login: the codes a permanent-failure mark
# carries.
REFRESH_FAILURE_CODES: Final = PERMANENT_REFRESH_CODES

KNOWN_ERROR_CODES: Final = (
    CODEX_LB_ERROR_CODES | RATE_LIMIT_CODES | QUOTA_CODES | PERMANENT_REFRESH_CODES
)


def error_code_label(code: str | None) -> str:
    """``code`` when it is a known error code, ``unknown`` when there is none,
    else ``other``."""
    if code is None or code == "":
        return "unknown"
    return code if code in KNOWN_ERROR_CODES else OTHER


# The classes of a failed attempt that a request can leave an account for
# (SPEC section 5): the failover classes, and ``auth`` when the login is
# lost for good after a 401 and the request moves on.
RETRY_CLASSES: Final = ("rate_limit", "quota", "auth", "upstream", "transport")

# Why a usage poll failed: the fixed reasons, and the statuses an upstream
# in trouble answers with. Others (``http_418``) count too, from their
# first failure on.
USAGE_REFRESH_REASONS: Final = (
    "timeout",
    "transport",
    "token_refresh",
    "invalid_json",
    "no_windows",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
)

# The reasons a success can be unpriced (SPEC section 6).
UNPRICED_REASONS: Final = ("missing_model", "missing_usage", "unknown_pricing")


# Where a selection looked and what came of it (``account_selected``): the
# pinned pool first, then the full pool.
SELECTION_POOLS: Final = ("pinned", "full")
SELECTION_OUTCOMES: Final = (
    "selected",
    "cooldown",
    "no_accounts",
    "all_tried",
    "all_limited",
    "all_paused",
    "all_reauth",
)
