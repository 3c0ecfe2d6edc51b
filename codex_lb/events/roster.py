"""Which accounts exist, as collectors learn it from ``pool_changed``."""

from __future__ import annotations

from collections.abc import Iterable

from codex_lb.events.records import AccountInfo, PoolChanged


class Roster:
    """The accounts of the latest ``pool_changed`` and what changed since.

    ``remembered`` are the accounts a collector's persisted state still
    holds from before a restart. The first roster reports those it no longer
    lists as gone, so an account removed while codex-lb was down loses its
    state and series like one removed while it ran.
    """

    def __init__(self, remembered: Iterable[str] = ()) -> None:
        self.accounts: dict[str, AccountInfo] = {}
        self.seen = False
        self._remembered = set(remembered)

    def update(self, event: PoolChanged) -> tuple[list[AccountInfo], list[str]]:
        """Take the new roster; (accounts added, ids of the accounts gone)."""
        new = {info.account_id: info for info in event.accounts}
        added = [info for key, info in new.items() if key not in self.accounts]
        before = set(self.accounts)
        if not self.seen:
            before |= self._remembered
            self._remembered.clear()
        gone = sorted(key for key in before if key not in new)
        self.accounts = new
        self.seen = True
        return added, gone

    def knows(self, account_id: str | None) -> bool:
        """True for a known account, and for any account before a roster came."""
        if account_id is None:
            return False
        return not self.seen or account_id in self.accounts
