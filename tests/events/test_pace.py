"""Pace: the coming days as a repeat of the recent ones."""

from __future__ import annotations

import pytest

from codex_lb.events.forecast import Point
from codex_lb.events.pace import Pace

HOUR = 3600.0
DAY = 24 * HOUR
T = 1_800_000_000.0


def working_days(days: int, per_hour: float = 3.0, start: float = T) -> list[Point]:
    """Hourly points over ``days`` days from midnight ``start``: 9 to 17
    h used at ``per_hour`` points an hour, nothing at night."""
    points, used = [], 0.0
    for hour in range(days * 24 + 1):
        if 9 < hour % 24 <= 17:
            used += per_hour
        points.append(Point(start + hour * HOUR, used, 0.0))
    return points


def days_of(uses: list[float]) -> list[Point]:
    """Points at each midnight, after days that used ``uses`` points."""
    points, used = [Point(T, 0.0, 0.0)], 0.0
    for day, use in enumerate(uses, start=1):
        used += use
        points.append(Point(T + day * DAY, used, 0.0))
    return points


class TestUnderADay:
    def test_falls_back_to_the_burn_rate(self) -> None:
        """With less than a day of history the rate is spread evenly."""
        points = [Point(T, 10.0, 0.0), Point(T + 6 * HOUR, 16.0, 0.0)]
        pace = Pace(points, T + 6 * HOUR, 1.0 / HOUR)

        assert pace.days == 0
        assert pace.use_until(T + 16 * HOUR) == pytest.approx(10.0)
        assert pace.time_to_use(84.0) == pytest.approx(84 * HOUR)


class TestWorkingDays:
    def test_the_evening_before_a_reset_uses_nothing(self) -> None:
        """At 17 h the rest of the evening adds nothing; the next morning's
        four working hours add twelve points, a whole day 24."""
        points = working_days(2)
        now = T + DAY + 17 * HOUR
        pace = Pace(points, now, 24 / DAY)

        assert pace.days == 1
        assert pace.use_until(now + 7 * HOUR) == pytest.approx(0.0)
        assert pace.use_until(now + 20 * HOUR) == pytest.approx(12.0)
        assert pace.use_until(now + DAY) == pytest.approx(24.0)

    def test_the_window_fills_in_working_hours(self) -> None:
        """30 points at 17 h: a whole day, then 6 points by 11 h the day
        after next, 42 h away (an even spread would say 30 h, at night)."""
        points = working_days(2)
        now = T + DAY + 17 * HOUR

        eta = Pace(points, now, 24 / DAY).time_to_use(30.0)

        assert eta == pytest.approx(42 * HOUR)

    def test_steady_use_is_the_burn_rate(self) -> None:
        """Even use around the clock: the same as the rate spread evenly."""
        points = [Point(T + h * HOUR, h * 0.5, 0.0) for h in range(49)]
        now = T + 48 * HOUR
        pace = Pace(points, now, 0.5 / HOUR)

        assert pace.use_until(now + 30 * HOUR) == pytest.approx(15.0)
        assert pace.time_to_use(20.0) == pytest.approx(40 * HOUR)


class TestAverageDay:
    def test_days_at_the_same_pace_are_averaged(self) -> None:
        """Days of 20, 28 and 24 points: the average day uses 24."""
        pace = Pace(days_of([20.0, 28.0, 24.0]), T + 3 * DAY, 24 / DAY)

        assert pace.days == 3
        assert pace.day_use == pytest.approx(24.0)

    def test_a_changed_pace_starts_afresh(self) -> None:
        """Two days of 24 points, then 6 and 6: only the slow days count."""
        pace = Pace(days_of([24.0, 24.0, 6.0, 6.0]), T + 4 * DAY, 6 / DAY)

        assert pace.days == 2
        assert pace.day_use == pytest.approx(6.0)
        assert pace.use_until(T + 7 * DAY) == pytest.approx(18.0)

    def test_an_idle_day_forecasts_no_use(self) -> None:
        """After a whole idle day nothing is expected: no time to fill."""
        pace = Pace(days_of([24.0, 0.0]), T + 2 * DAY, 0.0)

        assert pace.days == 1
        assert pace.use_until(T + 5 * DAY) == 0.0
        assert pace.time_to_use(10.0) is None
        assert pace.time_to_use(0.0) == 0.0

    def test_at_most_a_week_is_averaged(self) -> None:
        """Ten days at one pace: the average day is taken over seven."""
        pace = Pace(days_of([10.0] * 10), T + 10 * DAY, 10 / DAY)

        assert pace.days == 7
