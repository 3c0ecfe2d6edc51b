"""Which accounts exist: their identity and how many are in each status."""

from __future__ import annotations

from collections.abc import Callable

from codex_lb.events import AccountInfo, PoolChanged
from codex_lb.events.collector_api import CollectorContext

STATUSES = ("active", "paused", "rate_limited", "quota_exceeded", "reauth_required")


class AccountRoster:
    """``codex_lb_account_identity`` and ``codex_lb_accounts``."""

    def register(self, ctx: CollectorContext) -> None:
        self.display_of: Callable[[AccountInfo], str] = ctx.display
        self.displays: dict[str, str] = {}
        self.identity = ctx.gauge(
            "codex_lb_account_identity",
            "Always 1: joins account_id to a display name (email or id).",
            ("account_id", "display"),
        )
        self.statuses = ctx.gauge(
            "codex_lb_accounts", "Accounts in the pool by status.", ("status",)
        )
        for status in STATUSES:
            self.statuses.set(0, status=status)

    def pool_changed(self, event: PoolChanged) -> None:
        counts = dict.fromkeys(STATUSES, 0)
        displays: dict[str, str] = {}
        for info in event.accounts:
            counts[info.status] = counts.get(info.status, 0) + 1
            displays[info.account_id] = self.display_of(info)
        for status, count in counts.items():
            self.statuses.set(count, status=status)

        # A removed or renamed account loses its old series.
        for account_id, display in self.displays.items():
            if displays.get(account_id) != display:
                self.identity.remove(account_id=account_id, display=display)
        for account_id, display in displays.items():
            self.identity.set(1, account_id=account_id, display=display)
        self.displays = displays
