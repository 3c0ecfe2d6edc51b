"""Forecasts of each account's weekly window and of the whole pool.

Each account's confirmed readings of its current weekly window, with the
cost codex-lb saw it serve, live in the collector's persisted state, so a
restart keeps the history the forecasts are made from. Readings come with
every answer and a forecast reads the whole history, so a reading only
extends the history: the account's series are redrawn when the next scrape
asks (``collect``), and every account's and the pool's runway every few
seconds, as forecasts age with the clock. Each series is absent, never 0
or NaN, while there is too little to forecast from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from codex_lb.events import PoolChanged, QuotaSnapshot, RequestFinished
from codex_lb.events.collector_api import CollectorContext, CollectorState
from codex_lb.events.forecast import (
    PoolAccount,
    WindowHistory,
    burn_rate,
    implied_quota_usd,
    pool_runway,
    waste_credits,
)
from codex_lb.events.metrics import Gauge
from codex_lb.events.pace import Pace
from codex_lb.events.plans import weekly_credits
from codex_lb.events.roster import Roster

REFRESH_SECONDS = 5.0

# Accounts whose credits the pool can still spend; paused and logged-out
# accounts keep their traffic's demand but offer no capacity.
USABLE_STATUSES = frozenset({"active", "rate_limited", "quota_exceeded"})


class QuotaForecast:
    """Exhaustion time, waste at reset and implied dollars per account, and
    the pool's runway."""

    def register(self, ctx: CollectorContext) -> None:
        self.clock: Callable[[], float] = ctx.clock
        self.state: CollectorState = ctx.state
        self.roster = Roster(remembered=ctx.state.keys())
        self.histories: dict[str, WindowHistory] = {
            account_id: WindowHistory.from_json(saved)
            for account_id, saved in ctx.state.items()
        }
        self.plans: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        # Accounts read since their series were last drawn.
        self.unshown: set[str] = set()
        self.eta = ctx.gauge(
            "codex_lb_secondary_exhaustion_eta_seconds",
            "Seconds until the weekly window is full at the last day's burn rate.",
            ("account_id",),
        )
        self.waste = ctx.gauge(
            "codex_lb_secondary_waste_forecast_credits",
            "Credits forecast to be still unused when the weekly window resets.",
            ("account_id",),
        )
        self.implied = ctx.gauge(
            "codex_lb_secondary_implied_quota_usd",
            "USD of API-priced use that 100 % of the weekly window is worth.",
            ("account_id",),
        )
        self.runway = ctx.gauge(
            "codex_lb_pool_runway_seconds",
            "Seconds until the pool's usable weekly capacity runs out at its "
            "total burn rate, counting resets (+Inf: never at this pace).",
        )
        self._per_account: tuple[Gauge, ...] = (self.eta, self.waste, self.implied)
        # After a restart the kept histories forecast before any new reading.
        self._refresh()

    async def run(self) -> None:
        # Forecasts age with the clock, not only with readings.
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self._refresh()

    def pool_changed(self, event: PoolChanged) -> None:
        _added, gone = self.roster.update(event)
        for account_id in gone:
            for metric in self._per_account:
                metric.remove_where(account_id=account_id)
            self.plans.pop(account_id, None)
            self.statuses.pop(account_id, None)
            self.histories.pop(account_id, None)
            self.state.set(account_id, None)
        for info in event.accounts:
            self.plans[info.account_id] = info.plan
            self.statuses[info.account_id] = info.status
        self._refresh()

    def quota_snapshot(self, event: QuotaSnapshot) -> None:
        account_id = event.account.account_id
        window = event.secondary
        if window is None or not self.roster.knows(account_id):
            return
        self.plans[account_id] = event.account.plan
        self.statuses[account_id] = event.account.status

        history = self.histories.setdefault(account_id, WindowHistory())
        if window.window_minutes:
            history.window_minutes = window.window_minutes
        if history.observe(window.used_percent, window.reset_at, event.observed_at):
            self.state.set_later(account_id, history.to_json)
        # Drawn at the next scrape: a forecast reads the whole history (tens
        # of microseconds with a day of points), a reading comes per answer.
        self.unshown.add(account_id)

    def request_finished(self, event: RequestFinished) -> None:
        account_id = event.account_id
        if not event.cost_usd or not self.roster.knows(account_id):
            return
        assert account_id is not None
        history = self.histories.setdefault(account_id, WindowHistory())
        # The cost reaches the forecasts with the next reading's point.
        history.add_cost(event.cost_usd)
        # Serialised by the state writer at most once a second, not here.
        self.state.set_later(account_id, history.to_json)

    def collect(self) -> None:
        """Draw the accounts read since the last drawing (a scrape asks)."""
        if not self.unshown:
            return
        now = self.clock()
        for account_id in self.unshown:
            history = self.histories.get(account_id)
            if history is not None:
                self._show_account(account_id, history, now)
        self.unshown.clear()

    def _refresh(self) -> None:
        """Redraw every account's forecasts and the pool's runway."""
        self.unshown.clear()
        now = self.clock()
        demand = 0.0
        usable: list[PoolAccount] = []
        for account_id, history in self.histories.items():
            burn = self._show_account(account_id, history, now)
            credits = weekly_credits(self.plans.get(account_id))
            demand += burn * credits / 100.0
            account = self._capacity(account_id, history, credits, now)
            if account is not None:
                usable.append(account)

        runway = pool_runway(usable, demand, now)
        if runway is None:
            self.runway.remove()
        else:
            self.runway.set(runway)

    def _show_account(
        self, account_id: str, history: WindowHistory, now: float
    ) -> float:
        """Set or drop the account's time-dependent series; its burn rate."""
        self._show_implied(account_id, history)
        rate = burn_rate(history.points, now) if history.current(now) else None
        if rate is None:
            self.eta.remove(account_id=account_id)
            self.waste.remove(account_id=account_id)
            return 0.0

        used = history.points[-1].used
        reset_at = history.reset_at
        assert reset_at is not None
        # The last day over again (its average rate with less history).
        pace = Pace(history.points, now, rate)
        eta = pace.time_to_use(100.0 - used)
        if eta is None:
            self.eta.remove(account_id=account_id)
        else:
            self.eta.set(eta, account_id=account_id)
        credits = weekly_credits(self.plans.get(account_id))
        projected = min(100.0, used + pace.use_until(reset_at))
        self.waste.set(waste_credits(credits, projected), account_id=account_id)
        return rate

    def _show_implied(self, account_id: str, history: WindowHistory) -> None:
        implied = implied_quota_usd(history.points)
        if implied is None:
            self.implied.remove(account_id=account_id)
        else:
            self.implied.set(implied, account_id=account_id)

    def _capacity(
        self, account_id: str, history: WindowHistory, credits: float, now: float
    ) -> PoolAccount | None:
        """The account's place in the runway simulation, if it can serve."""
        if self.statuses.get(account_id, "active") not in USABLE_STATUSES:
            return None
        used, reset_at = history.used, history.reset_at
        if used is None or reset_at is None:
            return None
        period = history.window_seconds
        if now >= reset_at:
            # The window reset without a reading since: full and aligned.
            periods = (now - reset_at) // period + 1
            return PoolAccount(credits, credits, reset_at + periods * period, period)
        left = credits * (100.0 - used) / 100.0
        return PoolAccount(left, credits, reset_at, period)
