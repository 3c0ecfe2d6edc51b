"""Which account serves next: the selection order and sticky sessions.

Selection takes active accounts only, least weekly used first, then least
5 h used, then least recently chosen (or, with the drain option, the weekly
window that resets soonest first). Accounts cooling down after failures are
used only when nothing else is left. A Codex session keeps its account
while that account is usable, in a bounded table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from codex_lb.accounts.account import (
    ACTIVE,
    BENCHED,
    PAUSED,
    REAUTH_REQUIRED,
    Account,
    Selection,
)
from codex_lb.events import AccountSelected

STICKY_SESSIONS_MAX = 10_000


class Selector:
    """Chooses among the pool's accounts and keeps sessions on theirs.

    Each choice (or why there was none) is published as ``account_selected``
    through ``publish``.
    """

    def __init__(
        self,
        accounts: Mapping[str, Account],
        publish: Callable[[AccountSelected], None],
        prefer_earliest_reset: bool,
    ) -> None:
        self._accounts = accounts
        self._publish = publish
        self.prefer_earliest_reset = prefer_earliest_reset
        self.sessions = StickySessions()

    def select(
        self, session_key: str | None, excluded: set[str], now: float
    ) -> Selection:
        """The pinned pool first, then the full pool; a session stays on its
        account while that account is usable."""
        if session_key is not None and session_key in self.sessions:
            sticky = self._accounts.get(self.sessions.get(session_key) or "")
            if (
                sticky is not None
                and sticky.id not in excluded
                and sticky.status == ACTIVE
                and sticky.cooldown_until <= now
            ):
                self.sessions.touch(session_key)
                return self._chosen(sticky, "pinned" if sticky.pinned else "full", now)
            # Its account stopped being usable: the session moves for good.
            self.sessions.forget(session_key)

        pinned = [a for a in self._accounts.values() if a.pinned]
        selection: Selection | None = None
        if pinned:
            # Within the pinned pool a cooling-down account is never a last
            # resort: the full pool may still hold a warm one.
            selection = self._select_from(
                pinned, "pinned", excluded, now, last_resort=False
            )
            if selection.account is None:
                selection = None
        if selection is None:
            selection = self._select_from(
                list(self._accounts.values()), "full", excluded, now
            )

        if selection.account is not None and session_key is not None:
            self.sessions.hold(session_key, selection.account.id)
        return selection

    def _select_from(
        self,
        candidates: list[Account],
        pool: str,
        excluded: set[str],
        now: float,
        last_resort: bool = True,
    ) -> Selection:
        choices, any_active = usable(candidates, excluded, now, last_resort)
        if not choices:
            outcome = "cooldown" if any_active else why_none(candidates, excluded)
            self._publish(AccountSelected(pool=pool, outcome=outcome))
            return Selection(None, outcome, pool)
        return self._chosen(best(choices, self.prefer_earliest_reset), pool, now)

    def _chosen(self, account: Account, pool: str, now: float) -> Selection:
        account.last_selected_at = now
        self._publish(
            AccountSelected(pool=pool, outcome="selected", account_id=account.id)
        )
        return Selection(account, "selected", pool)


def usable(
    candidates: list[Account], excluded: set[str], now: float, last_resort: bool
) -> tuple[list[Account], bool]:
    """The accounts that may serve now, and whether any active one is left.

    Accounts cooling down after failures are skipped while another is
    usable, and used anyway (as a ``last_resort``) when they are all that is
    left.
    """
    warm = [
        a
        for a in candidates
        if a.status == ACTIVE and a.cooldown_until <= now and a.id not in excluded
    ]
    if warm:
        return warm, True
    active = [a for a in candidates if a.status == ACTIVE and a.id not in excluded]
    return (active if last_resort else []), bool(active)


def best(accounts: list[Account], prefer_earliest_reset: bool) -> Account:
    """The first account in selection order."""
    key = reset_first_order if prefer_earliest_reset else usage_order
    return min(accounts, key=key)


def why_none(candidates: list[Account], excluded: set[str]) -> str:
    """Why no candidate could be selected, as an ``account_selected`` outcome.

    ``all_tried`` means every candidate left was already tried by this
    request (failover ran out of accounts, not the pool).
    """
    remaining = [a for a in candidates if a.id not in excluded]
    if not remaining:
        return "no_accounts" if not candidates else "all_tried"
    statuses = {a.status for a in remaining}
    if statuses <= set(BENCHED) or (
        statuses & set(BENCHED) and statuses <= {*BENCHED, PAUSED, REAUTH_REQUIRED}
    ):
        return "all_limited"
    if statuses == {PAUSED}:
        return "all_paused"
    if statuses == {REAUTH_REQUIRED}:
        return "all_reauth"
    return "no_accounts"


def usage_order(account: Account) -> tuple[float, float, float]:
    """Least weekly used first, then least 5 h used, then least recently used."""
    # Account.weekly_used and short_used, inlined: this runs per account
    # per selection.
    q = account.quota
    if q is None:
        return (0.0, 0.0, account.last_selected_at)
    return (
        q.secondary_used_percent or 0.0,
        q.primary_used_percent or 0.0,
        account.last_selected_at,
    )


def reset_first_order(account: Account) -> tuple[float, float, float, float]:
    """Soonest weekly reset first: drains quota that a reset would waste."""
    return (account.weekly_reset_at, *usage_order(account))


class StickySessions:
    """Session key -> account id, the most recently used kept, bounded."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = STICKY_SESSIONS_MAX if limit is None else limit
        self._held: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, session_key: str) -> bool:
        return session_key in self._held

    def get(self, session_key: str) -> str | None:
        return self._held.get(session_key)

    def touch(self, session_key: str) -> None:
        self._held.move_to_end(session_key)

    def hold(self, session_key: str, account_id: str) -> None:
        self._held[session_key] = account_id
        self._held.move_to_end(session_key)
        while len(self._held) > self._limit:
            self._held.popitem(last=False)

    def forget(self, session_key: str) -> None:
        self._held.pop(session_key, None)

    def forget_account(self, account_id: str) -> None:
        """Drop every session of ``account_id`` (it stopped being usable)."""
        stale = [key for key, held in self._held.items() if held == account_id]
        for key in stale:
            del self._held[key]
