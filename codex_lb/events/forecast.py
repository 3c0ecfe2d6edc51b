"""Quota forecasts from one account's weekly readings: the window's history
and the pure functions that turn it into burn rate, exhaustion time, waste,
implied dollars and the pool's runway.

Readings go through the reset-aware ``WeeklyCounter`` first, and only
baselines it has confirmed become points of the history, so one stray
reading that looks like a fresh window never bends a forecast. Time without
readings counts as time without use: codex-lb reads the quota with every
request it serves and with every usage poll, so silence means idleness.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import attrs

from codex_lb.constants import SECONDARY_WINDOW_SECONDS
from codex_lb.events.weekly_counter import (
    RESET_SHIFT_SECONDS,
    Reading,
    WeeklyCounter,
)

# The burn rate is the use of the last day: long enough to average a working
# day with its night, short enough that a pause or a slowdown shows within a
# day. A span shorter than an hour says too little to forecast from.
RATE_SPAN_SECONDS = 24 * 3600.0
MIN_RATE_SPAN_SECONDS = 3600.0

# Implied dollars need this many percent points consumed in the window: the
# upstream reports whole percents, so fewer would be mostly rounding.
MIN_QUOTA_PERCENT = 5.0

# A confirmed fall smaller than this, with no reset, is rounding between two
# sources of readings (headers and polls may carry different digits), not a
# correction of the window: the history goes on instead of starting over.
ROUNDING_FALL_PERCENT = 1.0

# The history keeps points at least this far apart (a newest point closer
# than that to the one before moves to the next reading) and at most this
# many, thinned evenly.
MIN_POINT_GAP_SECONDS = 300.0
MAX_POINTS = 240

# The pool is simulated until every account has reset this many times; a
# pool still serving by then serves forever at the same pace.
RUNWAY_RESETS = 2


@attrs.frozen
class Point:
    """A confirmed reading: when, percent used, and the account's cumulative
    cost in USD seen by then."""

    at: float
    used: float
    cost: float


@attrs.define
class WindowHistory:
    """One account's confirmed readings of its current weekly window."""

    counter: WeeklyCounter = attrs.field(factory=WeeklyCounter)
    points: list[Point] = attrs.field(factory=list)
    held: Point | None = None
    cost: float = 0.0
    window_minutes: int | None = None

    @property
    def used(self) -> float | None:
        baseline = self.counter.baseline
        return None if baseline is None else baseline.used

    @property
    def reset_at(self) -> float | None:
        baseline = self.counter.baseline
        return None if baseline is None else baseline.reset_at

    @property
    def window_seconds(self) -> float:
        if self.window_minutes and self.window_minutes > 0:
            return self.window_minutes * 60.0
        return float(SECONDARY_WINDOW_SECONDS)

    def current(self, now: float) -> bool:
        """True when the confirmed window has not reset yet at ``now``."""
        reset_at = self.reset_at
        return reset_at is not None and now < reset_at and bool(self.points)

    def add_cost(self, usd: float) -> None:
        self.cost += usd

    def observe(self, used: float | None, reset_at: float | None, at: float) -> bool:
        """Feed one reading through the counter; True if the history changed."""
        counter = self.counter
        before_base, before_held = counter.baseline, counter.held
        counter.apply(used, reset_at)
        if used is None or reset_at is None:
            return False
        reading = Reading.of(used, reset_at)
        now_point = Point(at, reading.used, self.cost)

        # The held reading became the baseline and the new one is held again.
        if before_held is not None and counter.baseline is before_held:
            assert before_base is not None
            self._confirmed(before_base, before_held)
            self.held = now_point
            return True

        # The baseline did not move: the reading is held, awaiting the next.
        if counter.baseline is before_base:
            if counter.held is not before_held:
                self.held = now_point
                return True
            return False

        # The reading is the new baseline. Below the old one, it got there by
        # confirming the held fall first (progress alone never goes down).
        if before_base is None:
            self._restart(now_point)
        elif before_held is not None and reading.used < before_base.used:
            self._confirmed(before_base, before_held)
            self._append(now_point)
        else:
            self._append(now_point)
        self.held = None
        return True

    def _held_point(self, held: Reading) -> Point:
        if self.held is not None:
            return self.held
        # A held reading restored without its time: take the newest point's.
        at = self.points[-1].at if self.points else 0.0
        return Point(at, held.used, self.cost)

    def _confirmed(self, base: Reading, held: Reading) -> None:
        """The held fall below ``base`` was confirmed: a reset or a real
        correction starts a new segment; a fall smaller than rounding between
        sources goes on in the same one."""
        point = self._held_point(held)
        reset = held.reset_at - base.reset_at > RESET_SHIFT_SECONDS
        if reset or base.used - held.used >= ROUNDING_FALL_PERCENT:
            self._restart(point)
        else:
            self._append(point)

    def _restart(self, first: Point) -> None:
        # A confirmed fall (a reset, or a correction) starts a new segment:
        # burn rate and implied dollars never mix two windows.
        self.points = [first]

    def _append(self, point: Point) -> None:
        points = self.points
        if points and point.at < points[-1].at:
            # Readings can land slightly out of order; time never runs back.
            point = attrs.evolve(point, at=points[-1].at)
        if len(points) >= 2 and points[-1].at - points[-2].at < MIN_POINT_GAP_SECONDS:
            # The newest point is too close to the one before: it moves on.
            points[-1] = point
        else:
            points.append(point)
        if len(points) > MAX_POINTS:
            self.points = thin(points, MAX_POINTS)

    def to_json(self) -> dict[str, Any]:
        def point(p: Point | None) -> list[float] | None:
            return None if p is None else [p.at, p.used, p.cost]

        return {
            "counter": self.counter.to_json(),
            "points": [point(p) for p in self.points],
            "held": point(self.held),
            "cost": self.cost,
            "window_minutes": self.window_minutes,
        }

    @classmethod
    def from_json(cls, data: Any) -> WindowHistory:
        """The history saved by ``to_json``; an empty one for anything else."""
        if not isinstance(data, dict):
            return cls()
        points = [p for p in map(_point, data.get("points") or []) if p is not None]
        cost = data.get("cost")
        minutes = data.get("window_minutes")
        return cls(
            counter=WeeklyCounter.from_json(data.get("counter")),
            points=points,
            held=_point(data.get("held")),
            cost=float(cost) if isinstance(cost, int | float) else 0.0,
            window_minutes=minutes if isinstance(minutes, int) else None,
        )


def _point(value: Any) -> Point | None:
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) for v in value)
    ):
        return Point(float(value[0]), float(value[1]), float(value[2]))
    return None


def thin(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` points: every other one dropped, first and last kept."""
    kept = list(points)
    while len(kept) > limit and len(kept) > 2:
        kept = [*kept[:-1:2], kept[-1]]
    return kept


def used_at(points: Sequence[Point], at: float) -> float:
    """Percent used at ``at``, linear between points and flat outside them."""
    if at <= points[0].at:
        return points[0].used
    for before, after in itertools.pairwise(points):
        if at <= after.at:
            span = after.at - before.at
            if span <= 0:
                return after.used
            share = (at - before.at) / span
            return before.used + share * (after.used - before.used)
    return points[-1].used


def burn_rate(
    points: Sequence[Point], now: float, span: float = RATE_SPAN_SECONDS
) -> float | None:
    """Percent per second over the last ``span`` up to ``now``; None with too
    little data. Time after the newest point counts as idle."""
    if len(points) < 2:
        return None
    end = max(now, points[-1].at)
    start = max(points[0].at, end - span)
    if end - start < MIN_RATE_SPAN_SECONDS:
        return None
    added = points[-1].used - used_at(points, start)
    return max(0.0, added / (end - start))


def exhaustion_eta(used: float, last_at: float, rate: float, now: float) -> float:
    """Seconds from ``now`` until the window is full at ``rate``; 0 if full."""
    if used >= 100.0:
        return 0.0
    full_at = max(now, last_at) + (100.0 - used) / rate
    return max(0.0, full_at - now)


def projected_used(
    used: float, last_at: float, rate: float, reset_at: float, now: float
) -> float:
    """Percent used just before ``reset_at`` if ``rate`` goes on, capped at 100."""
    ahead = max(0.0, reset_at - max(now, last_at))
    return min(100.0, used + rate * ahead)


def waste_credits(plan_credits: float, projected: float) -> float:
    """Credits still unused at the reset when ``projected`` percent is used."""
    return plan_credits * (100.0 - min(100.0, projected)) / 100.0


def implied_quota_usd(points: Sequence[Point]) -> float | None:
    """USD that 100 % of the window is worth: the least-squares slope of
    cumulative cost against percent used, times 100; None with too little.

    A request's cost may be seen just before or just after the reading that
    shows it (headers and the finished event race); that shifts the line,
    not its slope.
    """
    if len(points) < 2 or points[-1].used - points[0].used < MIN_QUOTA_PERCENT:
        return None
    mean_used = sum(p.used for p in points) / len(points)
    mean_cost = sum(p.cost for p in points) / len(points)
    spread = sum((p.used - mean_used) ** 2 for p in points)
    together = sum((p.used - mean_used) * (p.cost - mean_cost) for p in points)
    if spread <= 0 or together <= 0:
        return None
    return together / spread * 100.0


@attrs.define
class PoolAccount:
    """One usable account in the runway simulation (credits, epoch seconds)."""

    credits_left: float
    credits_per_window: float
    reset_at: float
    window_seconds: float


def pool_runway(
    accounts: Sequence[PoolAccount], demand: float, now: float
) -> float | None:
    """Seconds until the pool cannot serve ``demand`` credits per second.

    The demand goes to the account that resets soonest first, as the credits
    it leaves at its reset are lost; a reset refills an account. None when
    nothing is being used; ``inf`` when the pool outlasts every account's
    ``RUNWAY_RESETS``-th reset and so never runs dry at this pace.
    """
    if demand <= 0:
        return None
    pool = sorted(
        (attrs.evolve(a) for a in accounts if a.window_seconds > 0),
        key=lambda a: a.reset_at,
    )
    if not pool:
        return 0.0
    horizon = max(a.reset_at + RUNWAY_RESETS * a.window_seconds for a in pool)
    held = sum(a.credits_left for a in pool)
    # Spending goes soonest reset first, so the accounts before ``first`` in
    # this order are empty; it only moves back when a refill lands there.
    first = 0
    t = now
    while t < horizon:
        # Until the next reset the pool can give what it holds, no more.
        soonest = pool[0]
        need = demand * (soonest.reset_at - t)
        if held < need:
            return t + held / demand - now
        held -= need
        while need > 0 and first < len(pool):
            account = pool[first]
            take = min(account.credits_left, need)
            account.credits_left -= take
            need -= take
            if account.credits_left <= 0:
                first += 1

        # The soonest account resets: refilled, it takes its new place.
        t = soonest.reset_at
        pool.pop(0)
        first = max(0, first - 1)
        held += soonest.credits_per_window - soonest.credits_left
        soonest.credits_left = soonest.credits_per_window
        soonest.reset_at += soonest.window_seconds
        place = bisect.bisect_right(pool, soonest.reset_at, key=lambda a: a.reset_at)
        pool.insert(place, soonest)
        first = min(first, place)
    return math.inf
