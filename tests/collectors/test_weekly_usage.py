"""WeeklyUsage: the weekly gauges and the reset-aware counter (C06, C07)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from codex_lb.events import UsageRefreshFailed
from codex_lb.events.testing import CollectorHarness
from codex_lb.store import Store, open_store
from collectors.routing_metrics import RoutingMetrics
from collectors.weekly_usage import WeeklyUsage
from tests.collectors.events import info, roster, weekly

R = 1_800_000_000.0
W = R + 7 * 24 * 3600
ACC = {"account_id": "acc-1"}
PROGRESS = "codex_lb_secondary_used_percent_increase_total"
RESETS = "codex_lb_secondary_resets_total"
USED = "codex_lb_secondary_used_percent"


async def started() -> CollectorHarness:
    harness = await CollectorHarness.start(WeeklyUsage)
    harness.feed(roster(info()))
    return harness


class TestCounter:
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
    async def test_spec_cases_through_the_collector(
        self, readings: list[tuple[float, float]], expected: list[float], resets: int
    ) -> None:
        """The exported counter follows every worked case of SPEC 7 (C06)."""
        harness = await started()

        after = []
        for used, reset_at in readings:
            harness.feed(weekly(used, reset_at))
            await harness.drain()
            after.append(harness.sample(PROGRESS, ACC))

        assert after == pytest.approx(expected, abs=1e-9)
        assert harness.sample(RESETS, ACC) == resets

    async def test_gauges_show_the_baseline_not_a_stray(self) -> None:
        """A stray fresh-window reading leaves used, reset and credits alone."""
        harness = await started()
        harness.feed(weekly(46, R), weekly(0, W))
        await harness.drain()

        assert harness.sample(USED, ACC) == 46
        assert harness.sample("codex_lb_secondary_reset_at_seconds", ACC) == R
        assert harness.sample("codex_lb_secondary_remaining_credits", ACC) == (
            pytest.approx(7560 * 0.54)
        )
        assert harness.sample("codex_lb_secondary_window_minutes", ACC) == 10080

    async def test_remaining_credits_follow_the_plan(self) -> None:
        """A pro account's remaining credits come from 50 400 a week."""
        harness = await CollectorHarness.start(WeeklyUsage)
        pro = info(plan="pro")
        harness.feed(roster(pro), weekly(25, R, account=pro))
        await harness.drain()

        assert harness.sample("codex_lb_secondary_remaining_credits", ACC) == 37800

    async def test_known_account_counters_start_at_zero(self) -> None:
        """A known account without readings has its counters at 0, no gauges."""
        harness = await started()

        assert harness.sample(PROGRESS, ACC) == 0
        assert harness.sample(RESETS, ACC) == 0
        assert harness.sample(USED, ACC) is None

    async def test_removed_account_loses_series_and_state(self) -> None:
        """Removing an account drops all its series and its saved baseline."""
        harness = await started()
        harness.feed(weekly(10, R), weekly(20, R))
        await harness.drain()
        assert harness.sample(PROGRESS, ACC) == 10

        harness.feed(roster())

        assert "acc-1" not in harness.text()
        assert harness.host.collectors[0].state.items() == []  # type: ignore[attr-defined]


class TestRestartAndFailedPolls:
    async def test_restart_neither_loses_nor_double_counts(
        self, tmp_path: Path
    ) -> None:
        """Baseline and held reading come back from the store after a restart."""
        store = await open_store(tmp_path / "d")
        first = await CollectorHarness.start(WeeklyUsage, store=store)
        first.feed(roster(info()), weekly(10, R), weekly(40, R), weekly(5, W))
        await first.settle()
        await store.close()

        store = await open_store(tmp_path / "d")
        try:
            second = await CollectorHarness.start(WeeklyUsage, store=store)
            second.feed(roster(info()))
            assert second.sample(USED, ACC) == 40

            second.feed(weekly(7, W))
            await second.settle()
        finally:
            await store.close()

        # Before: 30. After the restart the held (5, W) is confirmed by
        # (7, W): (100 - 40) + 5 + 2 = 67 in the new process's counter.
        assert second.sample(PROGRESS, ACC) == 67
        assert second.sample(RESETS, ACC) == 1

    async def test_c07_failed_polls_change_nothing(self, tmp_path: Path) -> None:
        """(87, R), three failed polls, then (88, R): counter 0, 0, 1 (C07)."""
        store = await open_store(tmp_path / "d")
        try:
            usage = await CollectorHarness.start(WeeklyUsage, store=store)
            routing = await CollectorHarness.start(RoutingMetrics)
            usage.feed(roster(info()), weekly(87, R))
            await usage.drain()
            seen = [usage.sample(PROGRESS, ACC)]
            gauges = [usage.sample(USED, ACC)]

            for reason in ("http_502", "timeout", "invalid_json"):
                failure = UsageRefreshFailed(account_id="acc-1", reason=reason)
                usage.feed(failure)
                routing.feed(failure)
                await usage.drain()
                seen.append(usage.sample(PROGRESS, ACC))
                gauges.append(usage.sample(USED, ACC))

            usage.feed(weekly(88, R))
            await usage.drain()
            seen.append(usage.sample(PROGRESS, ACC))
            await usage.settle()
        finally:
            await store.close()

        assert seen == [0, 0, 0, 0, 1]
        assert gauges == [87, 87, 87, 87]
        assert usage.sample(RESETS, ACC) == 0
        for reason in ("http_502", "timeout", "invalid_json"):
            assert (
                routing.sample(
                    "codex_lb_usage_refresh_failures_total", {"reason": reason}
                )
                == 1
            )


class GatedStore:
    """A real store whose collector-state writes wait for ``gate`` (a write
    in flight when the process dies) and are counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.gate.set()
        self.writes: list[tuple[str, Any]] = []

    async def load_collector_state(self, collector: str) -> dict[str, Any]:
        return await self.store.load_collector_state(collector)

    async def save_collector_state(
        self, collector: str, key: str, value: Any | None
    ) -> None:
        await self.gate.wait()
        self.writes.append((key, value))
        await self.store.save_collector_state(collector, key, value)


def kill_9() -> None:
    """The process dies: its pending collector work never runs, nothing is
    flushed. (Its tasks are cancelled; none of them gets to write.)"""
    for task in asyncio.all_tasks():
        if task.get_name().startswith(("collector-state:", "collector-hook:")):
            task.cancel()


async def stopped_cleanly(store: GatedStore, used: float, reset_at: float) -> None:
    """A process that reads one reading and shuts down as it should."""
    harness = await CollectorHarness.start(WeeklyUsage, store=store)
    harness.feed(roster(info()), weekly(used, reset_at))
    await harness.settle()


async def killed(store: GatedStore, used: float, reset_at: float) -> float:
    """A process that reads one reading, handles it as far as the store
    lets it, and is killed; the progress it had exposed."""
    harness = await CollectorHarness.start(WeeklyUsage, store=store)
    harness.feed(roster(info()), weekly(used, reset_at))
    if store.gate.is_set():
        await harness.drain()
    else:
        # The write waits on the gate: let everything else run, then die.
        for _ in range(20):
            await asyncio.sleep(0)
    exposed = harness.sample(PROGRESS, ACC)
    kill_9()
    await asyncio.sleep(0)
    assert exposed is not None
    return exposed


class TestKill9:
    async def test_killed_after_counting_is_not_counted_again(
        self, tmp_path: Path
    ) -> None:
        """(10, R) on disk; a process counts (40, R) and is killed within the
        second a delayed write would wait; the next one reads (40, R) again:
        30 in all, not 60."""
        store = await open_store(tmp_path / "d")
        try:
            gated = GatedStore(store)
            await stopped_cleanly(gated, 10, R)
            second = await killed(gated, 40, R)
            third = await killed(gated, 40, R)
        finally:
            await store.close()

        assert (second, third) == (30, 0)

    async def test_killed_while_writing_counts_once_after(self, tmp_path: Path) -> None:
        """A process is killed while the new baseline is being written: it
        has not shown the step, and the next process counts it once."""
        store = await open_store(tmp_path / "d")
        try:
            gated = GatedStore(store)
            await stopped_cleanly(gated, 10, R)
            gated.gate.clear()
            second = await killed(gated, 40, R)
            gated.gate.set()
            third = await killed(gated, 40, R)
        finally:
            await store.close()

        assert (second, third) == (0, 30)

    async def test_identical_readings_write_nothing(self, tmp_path: Path) -> None:
        """Only a reading that moves the baseline or the held reading is
        written: the same reading ten times is one write."""
        store = await open_store(tmp_path / "d")
        try:
            gated = GatedStore(store)
            harness = await CollectorHarness.start(WeeklyUsage, store=gated)
            harness.feed(roster(info()), *[weekly(40, R)] * 10, weekly(41, R))
            await harness.settle()
        finally:
            await store.close()

        assert [value["baseline"] for _key, value in gated.writes] == [
            [40, R],
            [41, R],
        ]
