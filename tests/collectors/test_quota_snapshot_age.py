"""QuotaSnapshotAge: how old each account's latest quota reading is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import pytest

from codex_lb.events import QuotaSnapshot
from codex_lb.events.testing import CollectorHarness
from codex_lb.store import open_store
from collectors import quota_snapshot_age
from collectors.quota_snapshot_age import QuotaSnapshotAge
from tests.collectors.events import info, roster, weekly

NOW = 1_800_000_000.0
AGE = "codex_lb_quota_snapshot_age_seconds"
ACC = {"account_id": "acc-1"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def read_at(at: float, account_id: str = "acc-1") -> QuotaSnapshot:
    return attrs.evolve(weekly(10, NOW, account=info(account_id)), observed_at=at)


async def started(clock: Clock) -> CollectorHarness:
    harness = await CollectorHarness.start(QuotaSnapshotAge, clock=clock)
    harness.feed(roster(info()))
    return harness


class TestAge:
    async def test_absent_before_any_reading(self) -> None:
        """A known account never read has no age series."""
        harness = await started(Clock())

        assert harness.sample(AGE, ACC) is None

    async def test_now_minus_the_newest_reading(self) -> None:
        """Readings at NOW-90 and, late, NOW-300: the age is 90 s."""
        harness = await started(Clock())

        harness.feed(read_at(NOW - 90), read_at(NOW - 300))

        assert harness.sample(AGE, ACC) == 90

    async def test_the_loop_ages_it_with_the_clock(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without new readings the age grows as the clock moves."""
        monkeypatch.setattr(quota_snapshot_age, "REFRESH_SECONDS", 0.001)
        clock = Clock()
        harness = await started(clock)
        harness.feed(read_at(NOW))

        clock.now = NOW + 600
        harness.host.start()
        await asyncio.sleep(0.02)
        await harness.settle()

        assert harness.sample(AGE, ACC) == 600

    async def test_a_reading_ages_its_own_account_at_once(self) -> None:
        """A reading sets its account's age now; another account's age is
        left to the loop (a reading per answer must not walk the pool)."""
        clock = Clock()
        harness = await CollectorHarness.start(QuotaSnapshotAge, clock=clock)
        harness.feed(roster(info("acc-1"), info("acc-2")))
        harness.feed(read_at(NOW - 10, "acc-1"), read_at(NOW - 20, "acc-2"))

        clock.now = NOW + 30
        harness.feed(read_at(NOW + 25, "acc-1"))

        assert harness.sample(AGE, ACC) == 5
        assert harness.sample(AGE, {"account_id": "acc-2"}) == 20

    async def test_a_removed_account_loses_its_age(self) -> None:
        """pool_changed without the account drops its series."""
        harness = await started(Clock())
        harness.feed(read_at(NOW - 5))

        harness.feed(roster(info("acc-2")))

        assert harness.sample(AGE, ACC) is None

    async def test_a_restart_keeps_the_last_reading_time(self, tmp_path: Path) -> None:
        """After a restart the age counts from the reading before it."""
        clock = Clock()
        store = await open_store(tmp_path / "data")
        try:
            first = await CollectorHarness.start(QuotaSnapshotAge, store, clock=clock)
            first.feed(roster(info()), read_at(NOW - 30))
            await first.settle()

            clock.now = NOW + 100
            again = await CollectorHarness.start(QuotaSnapshotAge, store, clock=clock)

            assert again.sample(AGE, ACC) == 130
        finally:
            await store.close()
