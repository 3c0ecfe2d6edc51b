"""Which accounts exist, as collectors learn it from ``pool_changed``."""

from __future__ import annotations

from codex_lb.events.records import AccountInfo, PoolChanged


class Roster:
    """The accounts of the latest ``pool_changed`` and what changed since."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountInfo] = {}
        self.seen = False

    def update(self, event: PoolChanged) -> tuple[list[AccountInfo], list[AccountInfo]]:
        """Take the new roster; (accounts added, accounts gone)."""
        new = {info.account_id: info for info in event.accounts}
        added = [info for key, info in new.items() if key not in self.accounts]
        gone = [info for key, info in self.accounts.items() if key not in new]
        self.accounts = new
        self.seen = True
        return added, gone

    def knows(self, account_id: str | None) -> bool:
        """True for a known account, and for any account before a roster came."""
        if account_id is None:
            return False
        return not self.seen or account_id in self.accounts
