"""How an account will go on using its weekly window: its recent days again.

People use a window in working hours, not evenly around the clock. A
forecast that spreads recent use evenly over the days left counts the hours
after the last working period before a reset as if work went on, and finds
the window full in the middle of a night. So once the current window has a
whole day of history, the forecast repeats an average recent day hour by
hour: each day ahead uses what that day used, at the same times of day.

The average day is taken over the last day and the whole days before it
that kept its pace (each within a factor of two of the last day's use), at
most a week: more days even out a heavy or a light one, and a pace that
changed for a whole day starts the average afresh. With less than a day of
history the forecast falls back to the burn rate. For steady use all of
these are the same.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import attrs

from codex_lb.events.forecast import RATE_SPAN_SECONDS, Point

DAY_SECONDS = RATE_SPAN_SECONDS
TEMPLATE_DAYS = 7
PACE_FACTOR = 2.0


@attrs.define
class Pace:
    """The use expected from ``now`` on (percent points), from the current
    window's confirmed points and its burn rate (percent per second)."""

    points: Sequence[Point]
    now: float
    rate: float
    days: int = attrs.field(init=False, default=0)
    _times: list[float] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._times = [p.at for p in self.points]
        self.days = self._template_days()

    @property
    def day_use(self) -> float:
        """Percent points an average recent day uses."""
        if not self.days:
            return self.rate * DAY_SECONDS
        return max(0.0, self._into_day(DAY_SECONDS))

    def use_until(self, until: float) -> float:
        """Percent points used from now until ``until``."""
        ahead = until - self.now
        if ahead <= 0:
            return 0.0
        if not self.days:
            return self.rate * ahead
        whole, rest = divmod(ahead, DAY_SECONDS)
        return whole * self.day_use + max(0.0, self._into_day(rest))

    def time_to_use(self, amount: float) -> float | None:
        """Seconds from now until ``amount`` more points are used; None when
        nothing is being used."""
        if amount <= 0:
            return 0.0
        day_use = self.day_use
        if day_use <= 0:
            return None
        if not self.days:
            return amount / self.rate
        # Whole days first; the last point is reached within the next day.
        whole = math.ceil(amount / day_use) - 1
        left = amount - whole * day_use
        return whole * DAY_SECONDS + self._time_into_day(left)

    def _template_days(self) -> int:
        """Whole days to average (0: under a day of history): the last day
        and the days before it that kept its pace."""
        if not self.points:
            return 0
        whole = int((self.now - self.points[0].at) // DAY_SECONDS)
        whole = max(0, min(whole, TEMPLATE_DAYS))
        if whole == 0:
            return 0
        last = self._day_used(1, DAY_SECONDS)
        kept = 1
        for back in range(2, whole + 1):
            used = self._day_used(back, DAY_SECONDS)
            if not last / PACE_FACTOR <= used <= last * PACE_FACTOR:
                break
            kept = back
        return kept

    def _used_at(self, at: float) -> float:
        """Percent used at ``at``: linear between points, flat outside them
        (time after the newest point is time without use)."""
        points, index = self.points, bisect.bisect_left(self._times, at)
        if index == 0:
            return points[0].used
        if index == len(points):
            return points[-1].used
        before, after = points[index - 1], points[index]
        span = after.at - before.at
        if span <= 0:
            return after.used
        return before.used + (at - before.at) / span * (after.used - before.used)

    def _day_used(self, back: int, seconds: float) -> float:
        """Points used in the first ``seconds`` of the day that began
        ``back`` days before now."""
        start = self.now - back * DAY_SECONDS
        return self._used_at(start + seconds) - self._used_at(start)

    def _into_day(self, seconds: float) -> float:
        """Points the average day has used ``seconds`` into it."""
        days = range(1, self.days + 1)
        return sum(self._day_used(back, seconds) for back in days) / self.days

    def _time_into_day(self, amount: float) -> float:
        """Seconds into the average day at which it has used ``amount``
        points (``0 < amount <= day_use``), interpolating between readings."""
        # The average day is linear between the offsets of any day's points.
        offsets = {0.0, DAY_SECONDS}
        for back in range(1, self.days + 1):
            start = self.now - back * DAY_SECONDS
            first = bisect.bisect_right(self._times, start)
            last = bisect.bisect_left(self._times, start + DAY_SECONDS)
            offsets.update(at - start for at in self._times[first:last])
        ordered = sorted(offsets)

        # Use only grows through a day: search for the first offset reached.
        low, high = 0, len(ordered) - 1
        while low < high:
            middle = (low + high) // 2
            if self._into_day(ordered[middle]) >= amount:
                high = middle
            else:
                low = middle + 1
        if low == 0:
            return 0.0
        s0, s1 = ordered[low - 1], ordered[low]
        u0, u1 = self._into_day(s0), self._into_day(s1)
        share = (amount - u0) / (u1 - u0) if u1 > u0 else 1.0
        return s0 + min(1.0, max(0.0, share)) * (s1 - s0)
