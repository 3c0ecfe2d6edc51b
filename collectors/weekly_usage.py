"""The weekly (secondary) window of each account and its reset-aware counter.

The gauges show the counter's baseline, not the raw reading, so one stray
reading that looks like a fresh window never makes them flap. The baseline
and held reading are kept in the collector's persisted state, and a new
baseline is on disk before its progress is counted: a restart, even after
``kill -9``, neither loses nor double counts progress (at worst, one step
that was never shown is never shown).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from codex_lb.events import PoolChanged, QuotaSnapshot
from codex_lb.events.collector_api import CollectorContext, CollectorState
from codex_lb.events.plans import weekly_credits
from codex_lb.events.roster import Roster
from codex_lb.events.weekly_counter import Step, WeeklyCounter


class WeeklyUsage:
    """Weekly used percent, reset time, window, remaining credits, progress."""

    def register(self, ctx: CollectorContext) -> None:
        self.state: CollectorState = ctx.state
        self.roster = Roster(remembered=ctx.state.keys())
        self.counters: dict[str, WeeklyCounter] = {
            account_id: WeeklyCounter.from_json(saved)
            for account_id, saved in ctx.state.items()
        }
        self.plans: dict[str, str] = {}
        self.used = ctx.gauge(
            "codex_lb_secondary_used_percent",
            "Percent of the weekly window used (the counter's baseline).",
            ("account_id",),
        )
        self.reset_at = ctx.gauge(
            "codex_lb_secondary_reset_at_seconds",
            "When the weekly window resets, in Unix seconds.",
            ("account_id",),
        )
        self.window = ctx.gauge(
            "codex_lb_secondary_window_minutes",
            "Length of the weekly window in minutes.",
            ("account_id",),
        )
        self.remaining = ctx.gauge(
            "codex_lb_secondary_remaining_credits",
            "Weekly credits left: the plan's capacity times the unused share.",
            ("account_id",),
        )
        self.progress = ctx.counter(
            "codex_lb_secondary_used_percent_increase_total",
            "Weekly percent points consumed, counting across window resets.",
            ("account_id",),
        )
        self.resets = ctx.counter(
            "codex_lb_secondary_resets_total",
            "Weekly window resets seen.",
            ("account_id",),
        )

    def pool_changed(self, event: PoolChanged) -> None:
        added, gone = self.roster.update(event)
        for account_id in gone:
            for metric in (
                self.used,
                self.reset_at,
                self.window,
                self.remaining,
                self.progress,
                self.resets,
            ):
                metric.remove_where(account_id=account_id)
            self.plans.pop(account_id, None)
            if self.counters.pop(account_id, None) is not None:
                self.state.set(account_id, None)
        for info in event.accounts:
            self.plans[info.account_id] = info.plan
        for info in added:
            self.progress.touch(account_id=info.account_id)
            self.resets.touch(account_id=info.account_id)
            self._show(info.account_id)

    def quota_snapshot(self, event: QuotaSnapshot) -> Awaitable[None] | None:
        """Apply the reading; a step that moved the baseline is saved, then
        counted, in a task of its own (the awaitable returned).

        Identical readings, the common case, neither write nor start a task.
        """
        account_id = event.account.account_id
        window = event.secondary
        if window is None or not self.roster.knows(account_id):
            return None
        self.plans[account_id] = event.account.plan
        if window.window_minutes:
            self.window.set(window.window_minutes, account_id=account_id)

        counter = self.counters.setdefault(account_id, WeeklyCounter())
        step = counter.apply(window.used_percent, window.reset_at)
        self._show(account_id)
        if not step.changed:
            return None
        # The baseline as of this reading: a later reading may move it again
        # before this write runs, and writes its own.
        return self._save_then_count(account_id, counter, counter.to_json(), step)

    async def _save_then_count(
        self,
        account_id: str,
        counter: WeeklyCounter,
        saved: dict[str, Any],
        step: Step,
    ) -> None:
        # On disk first, counted second: a kill between the two leaves a
        # step never shown; the other order would count it again after the
        # restart, from the old baseline.
        await self.state.save(account_id, saved)
        if self.counters.get(account_id) is not counter:
            return  # removed from the pool meanwhile
        if step.added > 0:
            self.progress.inc(step.added, account_id=account_id)
        if step.resets:
            self.resets.inc(step.resets, account_id=account_id)

    def _show(self, account_id: str) -> None:
        counter = self.counters.get(account_id)
        if counter is None or counter.baseline is None:
            return
        used = counter.baseline.used
        self.used.set(used, account_id=account_id)
        self.reset_at.set(counter.baseline.reset_at, account_id=account_id)
        credits = weekly_credits(self.plans.get(account_id))
        self.remaining.set(credits * (100.0 - used) / 100.0, account_id=account_id)
