"""The records that cross the store's interface."""

from __future__ import annotations

import attrs


@attrs.frozen
class TokenSet:
    """An account's OAuth tokens, in clear text (the store encrypts them)."""

    access_token: str
    refresh_token: str
    id_token: str | None
    refreshed_at: float
    access_expires_at: float | None = None


@attrs.frozen
class QuotaReading:
    """One reading of an account's two windows; a None field was not given."""

    observed_at: float
    source: str
    primary_used_percent: float | None = None
    primary_window_minutes: int | None = None
    primary_reset_at: float | None = None
    secondary_used_percent: float | None = None
    secondary_window_minutes: int | None = None
    secondary_reset_at: float | None = None
    plan: str | None = None
    credits_balance: float | None = None


@attrs.frozen
class AccountState:
    """The routing state of an account that must survive a restart.

    ``under_pause`` is, for a paused account, the bench it was under when
    the operator paused it: resuming returns to it while it still runs.
    """

    status: str
    status_reason: str | None = None
    status_until: float | None = None
    under_pause: AccountState | None = None


@attrs.frozen
class NewAccount:
    """An account as it is added (by import or login)."""

    email: str
    chatgpt_account_id: str
    plan: str
    tokens: TokenSet


@attrs.frozen
class AccountRow:
    """An account as stored."""

    id: str
    email: str
    chatgpt_account_id: str
    plan: str
    status: str
    status_reason: str | None
    status_until: float | None
    pinned: bool
    tokens: TokenSet
    created_at: float
    last_used_at: float | None
    quota: QuotaReading | None
    under_pause: AccountState | None = None

    @property
    def state(self) -> AccountState:
        return AccountState(
            self.status, self.status_reason, self.status_until, self.under_pause
        )


@attrs.frozen
class SavedAccount:
    """What saving an imported or signed-in account did.

    ``tokens_kept`` is true when the store already held newer tokens for
    that account (a refresh rotated them after the file was written) and
    kept them: replacing them would log the account out at its next refresh.
    """

    id: str
    created: bool
    tokens_kept: bool = False


@attrs.frozen
class RequestLogRow:
    """One client request, written once after it finished."""

    request_id: str
    started_at: float
    api: str
    model: str | None
    account_id: str | None
    status: str
    status_code: int
    error_code: str | None
    attempts: int
    latency_ms: float
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    api_key_id: str | None = None


@attrs.frozen
class ApiKeyRow:
    """A client API key as stored: its hash, never the key.

    ``shown`` is the key's first characters (``sk-clb-`` and four more), to
    tell keys apart in a list.
    """

    id: str
    name: str
    key_hash: str
    shown: str
    created_at: float
    revoked_at: float | None = None


@attrs.frozen
class ApiKeyUsage:
    """One client key's requests in the request log."""

    api_key_id: str
    requests: int
    errors: int
    cost_usd: float
    input_tokens: int
    output_tokens: int
    last_request_at: float | None


@attrs.frozen
class RequestTotals:
    """Sums over the request log in a time range (for the dashboard)."""

    requests: int
    errors: int
    cost_usd: float
    input_tokens: int
    output_tokens: int


@attrs.frozen
class AccountActivity:
    """One account's requests in a time range, and its latest error there."""

    account_id: str
    requests: int
    errors: int
    cost_usd: float
    last_error_code: str | None
    last_error_at: float | None
