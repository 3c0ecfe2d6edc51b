"""The events the proxy and the account pool publish.

Each event is a small frozen record. Its ``name`` is the method a collector
defines to receive it (``def request_finished(self, event): ...``).
"""

from __future__ import annotations

from typing import ClassVar

import attrs


@attrs.frozen
class QuotaWindow:
    """One rate-limit window as read from the upstream; None means unknown."""

    used_percent: float | None
    window_minutes: int | None
    reset_at: float | None


@attrs.frozen
class AccountInfo:
    """What collectors may know of an account: no tokens, no upstream ids."""

    account_id: str
    email: str
    plan: str
    status: str


@attrs.frozen
class RequestFinished:
    """Fired once per client request, after its last byte was written."""

    name: ClassVar[str] = "request_finished"

    request_id: str
    api: str
    model: str | None
    account_id: str | None
    status: str
    status_code: int
    model_label: str
    error_code: str | None
    latency_ms: float
    attempts: int
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    api_key_id: str | None = None


@attrs.frozen
class Retry:
    """Fired each time a request leaves an account for another one."""

    name: ClassVar[str] = "retry"

    request_id: str
    account_id: str
    api: str
    error_class: str
    error_code: str | None = None


@attrs.frozen
class UnpricedSuccess:
    """Fired for a successful request whose cost is unknown."""

    name: ClassVar[str] = "unpriced_success"

    request_id: str
    account_id: str | None
    api: str
    model: str | None
    reason: str


@attrs.frozen
class QuotaSnapshot:
    """Fired for each new reading of an account's quota (poll or headers)."""

    name: ClassVar[str] = "quota_snapshot"

    account: AccountInfo
    source: str
    observed_at: float
    primary: QuotaWindow | None
    secondary: QuotaWindow | None
    credits_balance: float | None = None


@attrs.frozen
class AccountSelected:
    """Fired for each selection attempt: the pool tried and what came of it."""

    name: ClassVar[str] = "account_selected"

    pool: str
    outcome: str
    account_id: str | None = None


@attrs.frozen
class AccountMarked:
    """Fired each time an account is marked after a failure."""

    name: ClassVar[str] = "account_marked"

    account_id: str
    event: str
    code: str | None = None
    until: float | None = None


@attrs.frozen
class RequestStarted:
    """Fired when a client request is accepted, before any account is chosen."""

    name: ClassVar[str] = "request_started"

    request_id: str
    api: str


@attrs.frozen
class AttemptStarted:
    """Fired when a request is sent to an account's upstream."""

    name: ClassVar[str] = "attempt_started"

    request_id: str
    account_id: str


@attrs.frozen
class AttemptFinished:
    """Fired when an account's upstream answer is done with (any outcome)."""

    name: ClassVar[str] = "attempt_finished"

    request_id: str
    account_id: str


@attrs.frozen
class PoolChanged:
    """Fired at start-up and whenever an account is added, removed or changes
    status: the whole roster, so collectors can count and name accounts."""

    name: ClassVar[str] = "pool_changed"

    accounts: tuple[AccountInfo, ...]


@attrs.frozen
class UsageRefreshFailed:
    """Fired when a usage poll fails; nothing about the account changes."""

    name: ClassVar[str] = "usage_refresh_failed"

    account_id: str
    reason: str


@attrs.frozen
class RequestLogChanged:
    """Fired when the request-log buffer takes, drops or writes rows."""

    name: ClassVar[str] = "request_log_changed"

    size: int
    dropped: int


Event = (
    RequestFinished
    | Retry
    | UnpricedSuccess
    | QuotaSnapshot
    | AccountSelected
    | AccountMarked
    | RequestStarted
    | AttemptStarted
    | AttemptFinished
    | PoolChanged
    | UsageRefreshFailed
    | RequestLogChanged
)

EVENT_TYPES: tuple[type, ...] = (
    RequestFinished,
    Retry,
    UnpricedSuccess,
    QuotaSnapshot,
    AccountSelected,
    AccountMarked,
    RequestStarted,
    AttemptStarted,
    AttemptFinished,
    PoolChanged,
    UsageRefreshFailed,
    RequestLogChanged,
)
EVENT_NAMES: frozenset[str] = frozenset(t.name for t in EVENT_TYPES)  # type: ignore[attr-defined]
