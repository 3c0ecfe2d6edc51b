"""The reset-aware weekly counter as a pure state machine (SPEC 7, case C06)."""

from __future__ import annotations

import pytest

from codex_lb.events.weekly_counter import Reading, WeeklyCounter

R = 1_800_000_000.0
W = R + 7 * 24 * 3600


def run(readings: list[tuple[float | None, float | None]]) -> tuple[list[float], int]:
    """The counter after each reading, and the resets counted."""
    counter = WeeklyCounter()
    total, resets, after = 0.0, 0, []
    for used, reset_at in readings:
        step = counter.apply(used, reset_at)
        total += step.added
        resets += step.resets
        after.append(total)
    return after, resets


class TestWorkedCases:
    @pytest.mark.parametrize(
        ("readings", "expected", "resets"),
        [
            (
                [(10, R), (40, R), (35, R), (42, R), (5, W), (7, W)],
                [0, 30, 30, 32, 32, 97],
                1,
            ),
            ([(46, R), (0, W), (46, R), (46, R)], [0, 0, 0, 0], 0),
            ([(30, R), (31, R + 3 * 3600)], [0, 1], 0),
            ([(80, R), (85, R), (0, R), (8, R)], [0, 5, 5, 13], 0),
        ],
    )
    def test_spec_table(
        self,
        readings: list[tuple[float, float]],
        expected: list[float],
        resets: int,
    ) -> None:
        """Every worked case of SPEC section 7 gives its counter and resets."""
        after, counted = run(readings)

        assert after == pytest.approx(expected, abs=1e-9)
        assert counted == resets


class TestRules:
    def test_incomplete_reading_changes_nothing(self) -> None:
        """A reading without used percent or reset time is ignored (rule 1)."""
        counter = WeeklyCounter()
        counter.apply(20, R)

        assert counter.apply(None, R).changed is False
        assert counter.apply(50, None).added == 0
        assert counter.baseline == Reading(20, R)

    def test_first_reading_only_sets_baseline(self) -> None:
        """The first reading adds nothing however high it is (rule 2)."""
        counter = WeeklyCounter()

        step = counter.apply(87, R)

        assert step.added == 0
        assert counter.baseline == Reading(87, R)

    def test_readings_are_clamped(self) -> None:
        """Used percent outside [0, 100] is clamped before use."""
        counter = WeeklyCounter()
        counter.apply(90, R)

        assert counter.apply(130, R).added == 10
        assert counter.baseline == Reading(100, R)

    def test_held_reading_does_not_move_baseline(self) -> None:
        """A fall is held and the baseline stays where it was (rule 4)."""
        counter = WeeklyCounter()
        counter.apply(60, R)

        counter.apply(1, W)

        assert counter.baseline == Reading(60, R)
        assert counter.held == Reading(1, W)

    def test_confirmation_needs_close_reset_time(self) -> None:
        """A second fall with a reset time far from the held one drops it."""
        counter = WeeklyCounter()
        counter.apply(60, R)
        counter.apply(1, W)

        step = counter.apply(2, W + 2 * 3600)

        assert step.added == 0 and step.resets == 0
        assert counter.held == Reading(2, W + 2 * 3600)
        assert counter.baseline == Reading(60, R)

    def test_reset_shift_of_exactly_an_hour_is_not_a_reset(self) -> None:
        """A reset time moved by exactly 3600 s is a fall, not a reset."""
        after, resets = run([(50, R), (10, R + 3600), (12, R + 3600)])

        assert after == [0, 0, 2]
        assert resets == 0

    def test_json_round_trip(self) -> None:
        """A saved counter comes back with its baseline and held reading."""
        counter = WeeklyCounter()
        counter.apply(40, R)
        counter.apply(3, W)

        again = WeeklyCounter.from_json(counter.to_json())

        assert again == counter
        assert WeeklyCounter.from_json({"baseline": "junk"}) == WeeklyCounter()
