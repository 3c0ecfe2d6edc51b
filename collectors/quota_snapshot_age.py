"""How old each account's latest quota reading is.

The time of the latest reading is kept in the collector's persisted state,
so after a restart a stale account shows its true age at once instead of
no age until the next reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from codex_lb.events import PoolChanged, QuotaSnapshot
from codex_lb.events.collector_api import CollectorContext, CollectorState
from codex_lb.events.roster import Roster

REFRESH_SECONDS = 1.0


class QuotaSnapshotAge:
    """``codex_lb_quota_snapshot_age_seconds``: now minus the last reading."""

    def register(self, ctx: CollectorContext) -> None:
        self.clock: Callable[[], float] = ctx.clock
        self.state: CollectorState = ctx.state
        self.roster = Roster(remembered=ctx.state.keys())
        self.last: dict[str, float] = {
            account_id: float(at)
            for account_id, at in ctx.state.items()
            if isinstance(at, int | float)
        }
        self.age = ctx.gauge(
            "codex_lb_quota_snapshot_age_seconds",
            "Seconds since the account's quota was last read (poll or headers).",
            ("account_id",),
        )
        self._refresh()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self._refresh()

    def pool_changed(self, event: PoolChanged) -> None:
        _added, gone = self.roster.update(event)
        for account_id in gone:
            self.age.remove_where(account_id=account_id)
            self.last.pop(account_id, None)
            self.state.set(account_id, None)

    def quota_snapshot(self, event: QuotaSnapshot) -> None:
        account_id = event.account.account_id
        if not self.roster.knows(account_id):
            return
        # Readings can land out of order; the age follows the newest.
        at = self.last.get(account_id, float("-inf"))
        if event.observed_at > at:
            at = self.last[account_id] = event.observed_at
            self.state.set(account_id, at)
        # This account only: the loop ages every account each second, and
        # a walk over all of them per reading (one per answer) grows with
        # the pool.
        self.age.set(max(0.0, self.clock() - at), account_id=account_id)

    def _refresh(self) -> None:
        now = self.clock()
        for account_id, at in self.last.items():
            self.age.set(max(0.0, now - at), account_id=account_id)
