"""The forecast history and pure forecasting functions."""

from __future__ import annotations

import math
import random

import attrs
import pytest

from codex_lb.events.forecast import (
    MAX_POINTS,
    MIN_POINT_GAP_SECONDS,
    Point,
    PoolAccount,
    WindowHistory,
    burn_rate,
    exhaustion_eta,
    implied_quota_usd,
    pool_runway,
    projected_used,
    thin,
    used_at,
    waste_credits,
)

R = 1_800_000_000.0
W = R + 7 * 24 * 3600
T = R - 5 * 24 * 3600
HOUR = 3600.0
DAY = 24 * HOUR


def history(*readings: tuple[float, float, float]) -> WindowHistory:
    """A history fed (used, reset_at, observed_at) readings in order."""
    kept = WindowHistory()
    for used, reset_at, at in readings:
        kept.observe(used, reset_at, at)
    return kept


def pairs(kept: WindowHistory) -> list[tuple[float, float]]:
    return [(p.at, p.used) for p in kept.points]


def steady(count: int, step: float = HOUR, per_step: float = 1.0) -> list[Point]:
    """``count`` points ``step`` apart, each ``per_step`` percent higher."""
    return [Point(T + i * step, i * per_step, 0.0) for i in range(count)]


class TestWindowHistory:
    def test_progress_becomes_points_with_cost_seen(self) -> None:
        """Each confirmed reading is a point carrying the cost seen by then."""
        kept = WindowHistory()

        kept.observe(10, R, T)
        kept.add_cost(0.25)
        kept.observe(12, R, T + HOUR)

        assert kept.points == [Point(T, 10, 0.0), Point(T + HOUR, 12, 0.25)]

    def test_a_stray_reading_never_becomes_a_point(self) -> None:
        """(46,R) (0,W) (46,R): the fresh-looking reading is dropped (C06)."""
        kept = history((46, R, T), (0, W, T + HOUR), (46, R, T + 2 * HOUR))

        assert pairs(kept) == [(T, 46), (T + 2 * HOUR, 46)]
        assert kept.held is None
        assert kept.reset_at == R

    def test_a_confirmed_reset_starts_at_the_held_reading(self) -> None:
        """A reset confirmed by the next reading starts a new segment at the
        held reading's own time."""
        kept = history(
            (40, R, T),
            (42, R, T + HOUR),
            (5, W, T + 2 * HOUR),
            (7, W, T + 3 * HOUR),
        )

        assert pairs(kept) == [(T + 2 * HOUR, 5), (T + 3 * HOUR, 7)]
        assert kept.reset_at == W

    def test_a_fall_held_again_after_confirming(self) -> None:
        """A confirming reading below the held one is held in turn."""
        kept = history((80, R, T), (0, W, T + HOUR), (0, W, T + 2 * HOUR))
        kept.observe(0, W, T + 3 * HOUR)

        assert pairs(kept) == [(T + HOUR, 0), (T + 2 * HOUR, 0), (T + 3 * HOUR, 0)]

    def test_a_fall_without_reset_restarts_the_segment(self) -> None:
        """(80,R) (85,R) (0,R) (8,R): the corrected window is measured anew."""
        kept = history(
            (80, R, T), (85, R, T + HOUR), (0, R, T + 2 * HOUR), (8, R, T + 3 * HOUR)
        )

        assert pairs(kept) == [(T + 2 * HOUR, 0), (T + 3 * HOUR, 8)]

    def test_a_fall_within_rounding_goes_on(self) -> None:
        """A poll with more digits than the headers reads a hair lower, twice:
        the fall is confirmed but the window's history goes on."""
        kept = history(
            (30, R, T),
            (35.841235, R, T + HOUR),
            (35.8412345, R, T + 2 * HOUR),
            (35.8412345, R, T + 3 * HOUR),
        )

        assert pairs(kept) == [
            (T, 30),
            (T + HOUR, 35.841235),
            (T + 2 * HOUR, 35.8412345),
            (T + 3 * HOUR, 35.8412345),
        ]
        assert burn_rate(kept.points, T + 3 * HOUR) == pytest.approx(
            5.8412345 / (3 * HOUR)
        )

    def test_an_incomplete_reading_changes_nothing(self) -> None:
        """A reading without used percent or reset time is ignored."""
        kept = history((10, R, T))

        assert kept.observe(None, R, T + HOUR) is False
        assert kept.observe(20, None, T + HOUR) is False
        assert pairs(kept) == [(T, 10)]

    def test_close_readings_move_the_newest_point(self) -> None:
        """A newest point closer than the gap to the one before moves on to
        the next reading; once far enough it stays."""
        gap = MIN_POINT_GAP_SECONDS
        kept = history(
            (10, R, T),
            (11, R, T + 60),
            (12, R, T + 120),
            (13, R, T + gap + 100),
            (14, R, T + gap + 160),
        )

        assert pairs(kept) == [(T, 10), (T + gap + 100, 13), (T + gap + 160, 14)]

    def test_a_late_reading_does_not_run_time_back(self) -> None:
        """A reading observed before the newest point is placed at its time."""
        kept = history((10, R, T), (11, R, T + HOUR), (12, R, T + HOUR - 60))

        assert pairs(kept)[-1] == (T + HOUR, 12)

    def test_points_are_thinned_to_the_limit(self) -> None:
        """A week of readings keeps at most MAX_POINTS, first and last kept."""
        count = 2 * MAX_POINTS + 1
        kept = history(*((i / 10, R, T + i * HOUR) for i in range(count)))

        assert len(kept.points) <= MAX_POINTS
        assert kept.points[0].at == T
        assert kept.points[-1].at == T + (count - 1) * HOUR

    def test_json_round_trip_keeps_everything(self) -> None:
        """A saved history restores its counter, points, held reading and cost."""
        kept = history((40, R, T), (42, R, T + HOUR), (5, W, T + 2 * HOUR))
        kept.add_cost(1.5)
        kept.window_minutes = 10080

        restored = WindowHistory.from_json(kept.to_json())
        held = restored.held
        restored.observe(7, W, T + 3 * HOUR)

        assert held == Point(T + 2 * HOUR, 5, 0.0)
        assert pairs(restored) == [(T + 2 * HOUR, 5), (T + 3 * HOUR, 7)]
        assert restored.cost == 1.5
        assert restored.window_minutes == 10080

    @pytest.mark.parametrize("saved", [None, "x", {"points": [[1, 2]]}, []])
    def test_bad_saved_state_gives_an_empty_history(self, saved: object) -> None:
        """Anything that is not a saved history restores as empty."""
        restored = WindowHistory.from_json(saved)

        assert restored.points == []
        assert restored.used is None


class TestBurnRate:
    def test_steady_points_give_their_rate(self) -> None:
        """Ten hours at 1 % an hour: 1 % per 3600 s."""
        points = steady(11)

        assert burn_rate(points, T + 10 * HOUR) == pytest.approx(1 / HOUR)

    def test_only_the_last_day_counts(self) -> None:
        """A busy first day and a quieter second: the rate is the second's."""
        points = [Point(T, 0, 0), Point(T + DAY, 48, 0), Point(T + 2 * DAY, 60, 0)]

        assert burn_rate(points, T + 2 * DAY) == pytest.approx(12 / DAY)

    def test_the_day_boundary_is_interpolated(self) -> None:
        """The start of the span falls between two points: linear there."""
        points = [Point(T, 0, 0), Point(T + 2 * DAY, 40, 0)]

        assert used_at(points, T + DAY) == 20
        assert burn_rate(points, T + 2 * DAY) == pytest.approx(20 / DAY)

    def test_silence_after_the_last_reading_is_idle_time(self) -> None:
        """Twelve hours without readings halve a day's rate."""
        points = [Point(T, 0, 0), Point(T + 12 * HOUR, 12, 0)]

        assert burn_rate(points, T + DAY) == pytest.approx(12 / DAY)

    def test_a_day_without_readings_is_no_use(self) -> None:
        """More than a day of silence: a rate of 0."""
        points = steady(5)

        assert burn_rate(points, T + 4 * HOUR + DAY) == 0

    def test_too_little_data_has_no_rate(self) -> None:
        """One point, or a span under an hour, gives no rate."""
        assert burn_rate([Point(T, 5, 0)], T + DAY) is None
        assert burn_rate(steady(2, step=600), T + 600) is None


class TestForecasts:
    def test_exhaustion_eta_from_now(self) -> None:
        """60 % used at 10 % a day is full in 4 days, counted from now."""
        rate = 10 / DAY

        assert exhaustion_eta(60, T, rate, T) == pytest.approx(4 * DAY)
        assert exhaustion_eta(60, T, rate, T + HOUR) == pytest.approx(4 * DAY)

    def test_a_full_window_is_exhausted_now(self) -> None:
        """At 100 % the time left is 0 whatever the rate."""
        assert exhaustion_eta(100, T, 0.0, T + HOUR) == 0

    def test_projection_is_capped_at_full(self) -> None:
        """Projected use never passes 100 %."""
        assert projected_used(60, T, 10 / DAY, T + 2 * DAY, T) == pytest.approx(80)
        assert projected_used(60, T, 10 / DAY, T + 6 * DAY, T) == 100

    def test_projection_starts_at_now_after_silence(self) -> None:
        """Time already past without readings is not projected again."""
        rate = 10 / DAY

        assert projected_used(60, T, rate, T + 3 * DAY, T + DAY) == pytest.approx(80)

    def test_waste_is_the_unused_share_of_the_plan(self) -> None:
        """A plus week at 80 % leaves 1512 credits; a full one none."""
        assert waste_credits(7560, 80) == pytest.approx(1512)
        assert waste_credits(7560, 100) == 0


class TestImpliedQuota:
    def test_cost_per_percent_times_one_hundred(self) -> None:
        """Each percent costs 0.4 USD: the window is worth 40 USD."""
        points = [Point(T + i, 10 + i, 0.4 * i) for i in range(10)]

        assert implied_quota_usd(points) == pytest.approx(40)

    def test_a_cost_seen_one_reading_late_does_not_bias_it(self) -> None:
        """Cost lagging its reading by one request shifts, not tilts, the line."""
        points = [Point(T + i, 2.0 * i, 0.8 * max(0, i - 1)) for i in range(1, 10)]

        assert implied_quota_usd(points) == pytest.approx(40)

    def test_too_little_use_or_no_cost_gives_nothing(self) -> None:
        """Under 5 percent points, or no cost, there is no estimate."""
        few = [Point(T, 10, 0), Point(T + 1, 14, 1.6)]
        free = [Point(T, 10, 0), Point(T + 1, 30, 0)]

        assert implied_quota_usd(few) is None
        assert implied_quota_usd(free) is None
        assert implied_quota_usd([]) is None


class TestThin:
    def test_halves_and_keeps_both_ends(self) -> None:
        """Nine points thinned to five: every other one, the last kept."""
        points = steady(9)

        assert [p.used for p in thin(points, 5)] == [0, 2, 4, 6, 8]


def account(left: float, reset_in: float, full: float = 1000.0) -> PoolAccount:
    return PoolAccount(left, full, T + reset_in, 1000.0)


class TestPoolRunway:
    def test_nothing_used_has_no_runway(self) -> None:
        """A pool burning nothing has no runway series."""
        assert pool_runway([account(100, 50)], 0.0, T) is None

    def test_no_usable_account_runs_out_now(self) -> None:
        """Demand with nothing to serve it: 0."""
        assert pool_runway([], 1.0, T) == 0

    def test_runs_out_before_the_reset(self) -> None:
        """100 credits at 1 a second, reset far away: 100 s."""
        assert pool_runway([account(100, 900)], 1.0, T) == pytest.approx(100)

    def test_a_reset_before_running_out_refills(self) -> None:
        """The reset at 50 s refills 1000 credits; at 2 a second they last
        until 550 s."""
        assert pool_runway([account(100, 50)], 2.0, T) == pytest.approx(550)

    def test_the_account_resetting_first_is_spent_first(self) -> None:
        """X resets at 100 s, Y at 1000 s: spending X first loses nothing,
        so the pool lasts 100 + 1050 / 1.5 = 800 s, not less."""
        pool = [account(100, 1000), account(100, 100)]

        assert pool_runway(pool, 1.5, T) == pytest.approx(800)

    def test_a_pool_that_keeps_up_never_runs_out(self) -> None:
        """Resets bringing more than the demand: +Inf."""
        assert pool_runway([account(100, 50)], 1.0, T) == math.inf

    def test_the_input_is_left_unchanged(self) -> None:
        """Simulating does not spend the caller's accounts."""
        pool = [account(100, 50)]

        pool_runway(pool, 2.0, T)

        assert pool == [account(100, 50)]

    def test_a_window_without_length_is_left_out(self) -> None:
        """An account whose window has no positive length cannot loop forever:
        it is left out of the simulation."""
        pool = [PoolAccount(100, 1000, T + 50, 0.0), account(100, 900)]

        assert pool_runway(pool, 1.0, T) == pytest.approx(100)

    @pytest.mark.parametrize("seed", range(20))
    def test_matches_a_plain_simulation(self, seed: int) -> None:
        """Random pools give what a plain, slower simulation gives."""
        rng = random.Random(seed)
        week = 7 * DAY
        pool = [
            PoolAccount(
                rng.choice([0.0, rng.uniform(0, 7560)]),
                7560.0,
                T + rng.uniform(0, week),
                week,
            )
            for _ in range(rng.randint(1, 12))
        ]
        demand = len(pool) * 7560 / week * rng.uniform(0.3, 2.5)

        expected = plain_runway(pool, demand, T)
        got = pool_runway(pool, demand, T)

        assert got == pytest.approx(expected)


def plain_runway(accounts: list[PoolAccount], demand: float, now: float) -> float:
    """Step from reset to reset, spending soonest-reset first, re-sorting the
    whole pool at every step."""
    pool = [attrs.evolve(a) for a in accounts]
    horizon = max(a.reset_at + 2 * a.window_seconds for a in pool)
    t = now
    while t < horizon:
        next_reset = min(a.reset_at for a in pool)
        need = demand * (next_reset - t)
        held = sum(a.credits_left for a in pool)
        if held < need:
            return t + held / demand - now
        for one in sorted(pool, key=lambda a: a.reset_at):
            take = min(one.credits_left, need)
            one.credits_left -= take
            need -= take
        t = next_reset
        for one in pool:
            if one.reset_at <= t:
                one.credits_left = one.credits_per_window
                one.reset_at += one.window_seconds
    return math.inf
