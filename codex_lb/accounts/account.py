"""One account as routing sees it, and the statuses it can be in."""

from __future__ import annotations

import attrs

from codex_lb.events import AccountInfo
from codex_lb.logs import remember_secret
from codex_lb.store import AccountRow, AccountState, QuotaReading, TokenSet

ACTIVE = "active"
PAUSED = "paused"
RATE_LIMITED = "rate_limited"
QUOTA_EXCEEDED = "quota_exceeded"
REAUTH_REQUIRED = "reauth_required"
STATUSES = (ACTIVE, PAUSED, RATE_LIMITED, QUOTA_EXCEEDED, REAUTH_REQUIRED)
BENCHED = (RATE_LIMITED, QUOTA_EXCEEDED)


def _remembered(tokens: TokenSet) -> TokenSet:
    for secret in (tokens.access_token, tokens.refresh_token, tokens.id_token):
        remember_secret(secret)
    return tokens


# No attrs hook on assignment: routing sets several fields per request, and
# a hook makes every assignment a Python call. The one field that needs
# one, the tokens, is a property instead.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Account:
    """One account as routing sees it; the lasting part mirrors the store."""

    id: str
    email: str
    chatgpt_account_id: str
    plan: str
    status: str
    status_reason: str | None
    status_until: float | None
    pinned: bool
    # Every token the account holds, loaded or refreshed, is kept out of
    # the logs by value (it may be an opaque string): see ``tokens``.
    _tokens: TokenSet = attrs.field(converter=_remembered, alias="tokens")
    quota: QuotaReading | None
    last_used_at: float | None
    # For a paused account: the bench it was under (see AccountState).
    under_pause: AccountState | None = None

    # Runtime only: lost on restart on purpose.
    last_selected_at: float = 0.0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    inflight: int = 0
    # Moves with every change this process makes to the status or the pin,
    # so a sync can tell a stored row read before the change from one after.
    local_changes: int = 0

    @classmethod
    def from_row(cls, row: AccountRow) -> Account:
        return cls(
            id=row.id,
            email=row.email,
            chatgpt_account_id=row.chatgpt_account_id,
            plan=row.plan,
            status=row.status,
            status_reason=row.status_reason,
            status_until=row.status_until,
            pinned=row.pinned,
            tokens=row.tokens,
            quota=row.quota,
            last_used_at=row.last_used_at,
            under_pause=row.under_pause,
        )

    @property
    def tokens(self) -> TokenSet:
        return self._tokens

    @tokens.setter
    def tokens(self, tokens: TokenSet) -> None:
        self._tokens = _remembered(tokens)

    @property
    def info(self) -> AccountInfo:
        """What collectors may know. An account whose login carried no email
        is stored under its ChatGPT account id, which never reaches the
        collectors (nor ``/metrics``): they see codex-lb's own id instead."""
        email = self.id if self.email == self.chatgpt_account_id else self.email
        return AccountInfo(self.id, email, self.plan, self.status)

    @property
    def state(self) -> AccountState:
        return AccountState(
            self.status, self.status_reason, self.status_until, self.under_pause
        )

    @state.setter
    def state(self, state: AccountState) -> None:
        self.status = state.status
        self.status_reason = state.status_reason
        self.status_until = state.status_until
        self.under_pause = state.under_pause

    @property
    def weekly_used(self) -> float:
        q = self.quota
        return q.secondary_used_percent or 0.0 if q else 0.0

    @property
    def short_used(self) -> float:
        q = self.quota
        return q.primary_used_percent or 0.0 if q else 0.0

    @property
    def weekly_reset_at(self) -> float:
        q = self.quota
        reset = q.secondary_reset_at if q else None
        return reset if reset is not None else float("inf")


@attrs.frozen
class Selection:
    """What a selection came to: an account, or why there was none."""

    account: Account | None
    outcome: str
    pool: str
