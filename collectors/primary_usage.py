"""The short (5 h) window of each account, as last read."""

from __future__ import annotations

from codex_lb.events import PoolChanged, QuotaSnapshot
from codex_lb.events.collector_api import CollectorContext
from codex_lb.events.roster import Roster


class PrimaryUsage:
    """``codex_lb_primary_used_percent`` and ``..._reset_at_seconds``."""

    def register(self, ctx: CollectorContext) -> None:
        self.roster = Roster()
        self.used = ctx.gauge(
            "codex_lb_primary_used_percent",
            "Percent of the 5 h window used, as last read.",
            ("account_id",),
        )
        self.reset_at = ctx.gauge(
            "codex_lb_primary_reset_at_seconds",
            "When the 5 h window resets, in Unix seconds.",
            ("account_id",),
        )

    def pool_changed(self, event: PoolChanged) -> None:
        _added, gone = self.roster.update(event)
        for account_id in gone:
            self.used.remove_where(account_id=account_id)
            self.reset_at.remove_where(account_id=account_id)

    def quota_snapshot(self, event: QuotaSnapshot) -> None:
        account_id = event.account.account_id
        window = event.primary
        if window is None or not self.roster.knows(account_id):
            return
        if window.used_percent is not None:
            self.used.set(
                min(100.0, max(0.0, window.used_percent)), account_id=account_id
            )
        if window.reset_at is not None:
            self.reset_at.set(window.reset_at, account_id=account_id)
