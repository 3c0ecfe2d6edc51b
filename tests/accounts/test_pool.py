"""The account pool: selection order, pools and outcomes, stickiness, benches."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from codex_lb.accounts import (
    ACTIVE,
    PAUSED,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    REAUTH_REQUIRED,
    StateConflict,
    readings,
    selection,
)
from codex_lb.accounts.account import Account
from codex_lb.accounts.pool import AccountPool
from codex_lb.events import EventBus
from codex_lb.sim import Emulator, SimAccount, SimClock
from codex_lb.store import AccountState, QuotaReading, Store, open_store
from tests.conftest import LB, EventRecorder, new_account

T = 1_800_000_000.0
CODEX = "/backend-api/codex/responses"


@pytest.fixture
def clock() -> SimClock:
    """A frozen clock at T that only moves when a test advances it."""
    clock = SimClock(speed=0)
    clock.advance(T - clock.now())
    return clock


async def make_pool(
    store: Store, bus: EventBus, clock: SimClock, n: int = 2, **options: Any
) -> tuple[AccountPool, list[Account]]:
    """A pool over ``n`` stored accounts a, b, c... (in that order)."""
    for index in range(n):
        letter = "abcdefgh"[index]
        await store.add_account(
            new_account(f"{letter}@example.com", f"cg-{letter}"), now=T + index
        )
    pool = AccountPool(store, bus, clock=clock.now, **options)
    await pool.load()
    return pool, pool.accounts


def weekly(used: float, reset_at: float | None = None, source: str = "poll") -> Any:
    return QuotaReading(
        T,
        source,
        secondary_used_percent=used,
        secondary_window_minutes=10080,
        secondary_reset_at=reset_at,
    )


def selections(recorder: EventRecorder) -> list[tuple[str, str]]:
    return [(e.pool, e.outcome) for e in recorder.of("account_selected")]


class TestSelectionOrder:
    async def test_least_weekly_used_first(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """The account with the least weekly use is chosen."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.apply_reading(a, weekly(50))
        await pool.apply_reading(b, weekly(10))

        selection = await pool.select()

        assert selection.account is b

    async def test_least_recently_used_breaks_ties(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """With equal use, selections alternate between the accounts."""
        pool, _ = await make_pool(store, bus, clock)

        chosen = []
        for _ in range(4):
            selection = await pool.select()
            assert selection.account is not None
            chosen.append(selection.account.email)
            clock.advance(1)

        assert chosen == [
            "a@example.com",
            "b@example.com",
            "a@example.com",
            "b@example.com",
        ]

    async def test_prefer_earliest_reset_drains_the_soonest_window(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """With the option on, the weekly window resetting first wins."""
        plain, (a, b) = await make_pool(store, bus, clock)
        await plain.apply_reading(a, weekly(80, reset_at=T + 86400))
        await plain.apply_reading(b, weekly(20, reset_at=T + 5 * 86400))
        draining = AccountPool(store, bus, clock=clock.now, prefer_earliest_reset=True)
        await draining.load()

        default_choice = await plain.select()
        draining_choice = await draining.select()

        assert default_choice.account is not None
        assert default_choice.account.email == "b@example.com"
        assert draining_choice.account is not None
        assert draining_choice.account.email == "a@example.com"

    @pytest.mark.parametrize(("setting", "expected"), [("true", "a"), ("", "b")])
    async def test_prefer_earliest_reset_from_the_environment(
        self, make_lb: Any, emulator: Emulator, setting: str, expected: str
    ) -> None:
        """CODEX_LB_PREFER_EARLIEST_RESET reaches routing through the settings
        and create_app: a@ (80 %, resets in a day) serves before b@ (20 %,
        resets in five days) only with it on."""
        env = {"CODEX_LB_PREFER_EARLIEST_RESET": setting} if setting else {}
        lb: LB = await make_lb(emulator, **env)
        a = lb.pool.get(lb.ids["a@example.com"])
        b = lb.pool.get(lb.ids["b@example.com"])
        assert a is not None and b is not None
        now = lb.pool.now()
        await lb.pool.apply_reading(a, weekly(80, reset_at=now + 86400))
        await lb.pool.apply_reading(b, weekly(20, reset_at=now + 5 * 86400))

        served = await _served_by(lb)

        assert lb.pool.prefer_earliest_reset is (setting == "true")
        assert served == lb.ids[f"{expected}@example.com"]


class TestPoolsAndOutcomes:
    async def test_pinned_pool_is_tried_first(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """A pinned account is chosen over a less used unpinned one."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.apply_reading(a, weekly(90))
        await pool.apply_reading(b, weekly(10))
        await pool.set_pinned(a, True)

        selection = await pool.select()

        assert selection.account is a
        assert selections(recorder) == [("pinned", "selected")]
        assert recorder.of("account_selected")[0].account_id == a.id

    async def test_full_pool_when_the_pinned_pool_cannot_serve(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """A paused pinned account sends selection on to the full pool."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.set_pinned(a, True)
        await pool.pause(a)

        selection = await pool.select()

        assert selection.account is b
        assert selections(recorder) == [("pinned", "all_paused"), ("full", "selected")]

    async def test_pinned_cooldown_falls_through_to_a_warm_account(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """A pinned account cooling down is skipped while another is usable."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.set_pinned(a, True)
        for _ in range(3):
            pool.record_failure(a, "upstream", "http_500")

        selection = await pool.select()

        assert a.cooldown_until == T + 30
        assert selection.account is b
        assert selections(recorder) == [("pinned", "cooldown"), ("full", "selected")]

    async def test_cooling_accounts_serve_when_nothing_else_can(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """With every active account cooling down, one is used anyway."""
        pool, (a, b) = await make_pool(store, bus, clock)
        for account in (a, b):
            for _ in range(3):
                pool.record_failure(account, "transport", "connection_reset")

        selection = await pool.select()

        assert selection.account is not None
        assert selections(recorder) == [("full", "selected")]

    async def test_cooldown_doubles_up_to_five_minutes(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """Failures 3 to 8 in a row cool down 30, 60, 120, 240, 300, 300 s."""
        pool, (a, _b) = await make_pool(store, bus, clock)

        lengths = []
        for failure in range(1, 9):
            pool.record_failure(a, "upstream", "http_502")
            if failure >= 3:
                lengths.append(a.cooldown_until - T)

        assert lengths == [30, 60, 120, 240, 300, 300]

    @pytest.mark.parametrize(
        ("statuses", "outcome"),
        [
            ((), "no_accounts"),
            ((PAUSED, PAUSED), "all_paused"),
            ((REAUTH_REQUIRED, REAUTH_REQUIRED), "all_reauth"),
            ((RATE_LIMITED, RATE_LIMITED), "all_limited"),
            ((RATE_LIMITED, PAUSED), "all_limited"),
            ((PAUSED, REAUTH_REQUIRED), "no_accounts"),
        ],
    )
    async def test_why_nothing_was_selectable(
        self,
        store: Store,
        bus: EventBus,
        clock: SimClock,
        recorder: EventRecorder,
        statuses: tuple[str, ...],
        outcome: str,
    ) -> None:
        """The outcome names why no account could be chosen."""
        pool, accounts = await make_pool(store, bus, clock, n=len(statuses))
        for account, status in zip(accounts, statuses, strict=True):
            until = T + 600 if status == RATE_LIMITED else None
            await pool._set_state(account, AccountState(status, "test", until))

        selection = await pool.select()

        assert selection.account is None
        assert selection.outcome == outcome
        assert selections(recorder) == [("full", outcome)]

    async def test_every_account_tried_is_all_tried(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """Failover that ran out of untried accounts says so."""
        pool, (a, b) = await make_pool(store, bus, clock)

        selection = await pool.select(exclude=[a.id, b.id])

        assert selection.outcome == "all_tried"
        assert selections(recorder) == [("full", "all_tried")]


class TestStickiness:
    async def test_a_session_stays_on_its_account(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A session keeps its account even when another is less used."""
        pool, (a, b) = await make_pool(store, bus, clock)
        first = await pool.select("session:1")
        assert first.account is a
        await pool.apply_reading(a, weekly(70))

        again = await pool.select("session:1")
        other = await pool.select("session:2")

        assert again.account is a
        assert other.account is b

    async def test_session_dropped_when_its_account_is_benched(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A bench ends stickiness for good, even after the bench is lifted."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.select("session:1")
        await pool.apply_reading(b, weekly(5))

        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 60)
        dropped = pool.sticky_account("session:1")
        clock.advance(61)
        await pool.apply_reading(a, weekly(30))
        moved = await pool.select("session:1")

        assert dropped is None
        assert a.status == ACTIVE
        assert moved.account is b
        assert pool.sticky_account("session:1") == b.id

    async def test_session_dropped_when_another_process_pauses_it(
        self, store: Store, bus: EventBus, clock: SimClock, tmp_path: Path
    ) -> None:
        """A pause written by another connection ends stickiness at sync."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.select("session:1")
        other = await open_store(tmp_path / "data")
        try:
            await other.set_account_state(a.id, AccountState(PAUSED, "operator"))
        finally:
            await other.close()

        changed = await pool.sync()

        assert changed is True
        assert a.status == PAUSED
        assert pool.sticky_account("session:1") is None

    async def test_session_table_is_bounded(
        self,
        store: Store,
        bus: EventBus,
        clock: SimClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Past its bound the table forgets the least recently used session."""
        monkeypatch.setattr(selection, "STICKY_SESSIONS_MAX", 100)
        pool, _ = await make_pool(store, bus, clock)

        for n in range(150):
            await pool.select(f"session:{n}")
        await pool.select("session:60")
        await pool.select("session:150")

        assert pool.sticky_sessions == 100
        assert pool.sticky_account("session:50") is None
        assert pool.sticky_account("session:51") is not None
        assert pool.sticky_account("session:60") is not None


class TestBenches:
    async def test_bench_is_lifted_on_time(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A bench ends when its time comes, at the next selection."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 600)
        await pool.apply_reading(b, weekly(50))

        before = await pool.select()
        clock.advance(600)
        after = await pool.select()

        assert before.account is b
        assert after.account is a
        assert (await store.get_account(a.id)).status == ACTIVE  # type: ignore[union-attr]

    async def test_poll_with_room_lifts_early(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A fresh poll with room in every window ends the bench (C12)."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 259200)
        clock.advance(3600)

        await pool.apply_reading(
            a,
            QuotaReading(
                T + 3600, "poll", primary_used_percent=0, secondary_used_percent=0
            ),
            limit_reached=False,
        )

        assert a.status == ACTIVE
        assert a.status_until is None

    @pytest.mark.parametrize(
        ("reading", "limit_reached"),
        [
            (QuotaReading(T, "poll", primary_used_percent=3.0), None),
            (QuotaReading(T, "poll", secondary_used_percent=100.0), False),
            (QuotaReading(T, "poll", secondary_used_percent=40.0), True),
            (QuotaReading(T, "headers", secondary_used_percent=0.0), None),
            (QuotaReading(T, "poll", secondary_window_minutes=10080), None),
        ],
        ids=[
            "carried_weekly_full",
            "weekly_full",
            "endpoint_says_reached",
            "headers_only",
            "no_used_percent",
        ],
    )
    async def test_readings_that_keep_the_bench(
        self,
        store: Store,
        bus: EventBus,
        clock: SimClock,
        reading: QuotaReading,
        limit_reached: bool | None,
    ) -> None:
        """A reading that shows no room, or is not a poll, keeps the bench."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.apply_reading(a, weekly(100, reset_at=T + 259200))
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 259200)

        await pool.apply_reading(a, reading, limit_reached=limit_reached)

        assert (a.status, a.status_until) == (RATE_LIMITED, T + 259200)

    async def test_weekly_only_plan_is_lifted_by_its_weekly_window(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A free account's poll reports one weekly window; room there lifts."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 471285)

        await pool.apply_reading(a, weekly(100, reset_at=T + 471285))
        kept = a.status
        await pool.apply_reading(a, weekly(0, reset_at=T + 604800))

        assert kept == RATE_LIMITED
        assert a.status == ACTIVE

    async def test_carried_window_that_already_reset_does_not_hold(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """An old full 5 h window past its reset does not keep a bench."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.apply_reading(
            a, QuotaReading(T, "headers", primary_used_percent=100, primary_reset_at=T)
        )
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 18000)
        clock.advance(60)

        await pool.apply_reading(a, weekly(30))

        assert a.status == ACTIVE

    async def test_bench_survives_a_restart(
        self, tmp_path: Path, bus: EventBus, clock: SimClock
    ) -> None:
        """A reopened store gives a new pool the same bench, lifted on time."""
        store = await open_store(tmp_path / "restart")
        try:
            pool, (a, _b) = await make_pool(store, bus, clock)
            await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 7200)
        finally:
            await store.close()

        store = await open_store(tmp_path / "restart")
        try:
            reborn = AccountPool(store, bus, clock=clock.now)
            await reborn.load()
            (a2, b2) = reborn.accounts
            benched = (a2.status, a2.status_reason, a2.status_until)
            during = await reborn.select()
            clock.advance(7200)
            await reborn.apply_reading(b2, weekly(50))
            after = await reborn.select()
        finally:
            await store.close()

        assert benched == (RATE_LIMITED, "usage_limit_reached", T + 7200)
        assert during.account is b2
        assert after.account is a2


class TestOperatorCommands:
    async def test_cli_pause_reaches_a_running_server(
        self, make_lb: Any, tmp_path: Path
    ) -> None:
        """`accounts pause` in another process steers routing within 2 s."""
        emu = Emulator(
            [SimAccount.make("a@example.com"), SimAccount.make("b@example.com")],
            event_delay=0.0,
        )
        await emu.start()
        try:
            lb: LB = await make_lb(emu)
            a = lb.ids["a@example.com"]
            await lb.pool.apply_reading(lb.pool.get(a), weekly(0))  # type: ignore[arg-type]
            await lb.pool.apply_reading(
                lb.pool.get(lb.ids["b@example.com"]),  # type: ignore[arg-type]
                weekly(50),
            )
            first = await _served_by(lb)

            env = {
                **os.environ,
                "CODEX_LB_DATA_DIR": str(tmp_path / "lb-data"),
                "CODEX_LB_LOG_LEVEL": "warning",
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "codex_lb",
                "accounts",
                "pause",
                a,
                env=env,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            paused_at = asyncio.get_running_loop().time()

            # Poll routing: the pool picks the change up from the store.
            while lb.pool.get(a).status != PAUSED:  # type: ignore[union-attr]
                assert asyncio.get_running_loop().time() - paused_at < 2.0
                await asyncio.sleep(0.05)
            seen_after = asyncio.get_running_loop().time() - paused_at
            later = [await _served_by(lb) for _ in range(3)]
        finally:
            await emu.close()

        assert out.decode().startswith(f"pause: {a} ")
        assert first == a
        assert seen_after < 2.0
        assert later == [lb.ids["b@example.com"]] * 3


async def _served_by(lb: LB) -> str | None:
    body = {"model": "gpt-5", "input": "hi", "stream": False}
    response = await lb.client.post(CODEX, json=body)
    assert response.status == 200
    await response.read()
    (row, *_) = reversed(await lb.request_logs())
    return row.account_id


class TestHeaderReadings:
    async def test_memory_and_events_at_once_store_the_latest_later(
        self, store: Store, bus: EventBus, clock: SimClock, recorder: EventRecorder
    ) -> None:
        """Three header readings: three snapshots, one stored row, the last."""
        pool, (a, _b) = await make_pool(store, bus, clock)

        for used in (10.5, 11.25, 12.0):
            pool.take_reading(a, weekly(used, source="headers"))

        assert a.quota is not None and a.quota.secondary_used_percent == 12.0
        snapshots = recorder.of("quota_snapshot")
        assert [s.secondary.used_percent for s in snapshots] == [10.5, 11.25, 12.0]
        assert await store.quota_history(a.id) == []

        await pool.flush_readings()

        history = await store.quota_history(a.id)
        assert [(r.source, r.secondary_used_percent) for r in history] == [
            ("headers", 12.0)
        ]
        row = await store.get_account(a.id)
        assert row is not None and row.quota is not None
        assert row.quota.secondary_used_percent == 12.0

    async def test_the_writer_stores_them_after_the_interval(
        self,
        store: Store,
        bus: EventBus,
        clock: SimClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With no flush, the background writer stores the reading by itself."""
        monkeypatch.setattr(readings, "QUOTA_WRITE_SECONDS", 0.01)
        pool, (a, _b) = await make_pool(store, bus, clock)

        pool.take_reading(a, weekly(33.0, source="headers"))
        for _ in range(200):
            if await store.quota_history(a.id):
                break
            await asyncio.sleep(0.01)

        history = await store.quota_history(a.id)
        assert [(r.source, r.secondary_used_percent) for r in history] == [
            ("headers", 33.0)
        ]

    async def test_a_poll_supersedes_an_unsaved_header_reading(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A poll stored at once leaves no older header reading to write after it."""
        pool, (a, _b) = await make_pool(store, bus, clock)

        pool.take_reading(a, weekly(20.0, source="headers"))
        await pool.apply_reading(a, weekly(25.0))
        await pool.flush_readings()

        history = await store.quota_history(a.id)
        assert [(r.source, r.secondary_used_percent) for r in history] == [
            ("poll", 25.0)
        ]

    async def test_version_moves_with_polls_and_statuses_not_header_readings(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """Caches of pool-wide figures key on it; header readings age them out."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        start = pool.version

        pool.take_reading(a, weekly(10.0, source="headers"))
        assert pool.version == start
        await pool.apply_reading(a, weekly(20.0))
        assert pool.version == start + 1
        await pool.pause(a)
        assert pool.version == start + 2
        await pool.flush_readings()


class RowsReadThenHeld:
    """The real store, whose ``list_accounts`` holds the rows it read until
    released: a sync that read them, then lost the event loop for a while."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.holding = False
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def list_accounts(self) -> list[Any]:
        rows = await self._store.list_accounts()
        if self.holding:
            self.read.set()
            await self.release.wait()
        return rows


class TestSyncDuringChanges:
    @pytest.mark.parametrize(
        ("before", "action", "expected"),
        [
            (None, "bench", RATE_LIMITED),
            (None, "pause", PAUSED),
            ("pause", "resume", ACTIVE),
            (None, "pin", ACTIVE),
        ],
    )
    async def test_a_change_made_while_rows_are_read_is_kept(
        self,
        store: Store,
        bus: EventBus,
        clock: SimClock,
        before: str | None,
        action: str,
        expected: str,
    ) -> None:
        """A forced sync reads the rows, then a@ is benched (paused, resumed,
        pinned) here before the sync applies them: memory keeps the change,
        matching the store, and routing follows it."""
        held = RowsReadThenHeld(store)
        pool, (a, b) = await make_pool(held, bus, clock)  # type: ignore[arg-type]
        await pool.apply_reading(b, weekly(50))
        if before == "pause":
            await pool.pause(a)
        held.holding = True

        syncing = asyncio.create_task(pool.sync(force=True))
        await held.read.wait()
        if action == "bench":
            await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 3600)
        elif action == "pause":
            await pool.pause(a)
        elif action == "resume":
            await pool.resume(a)
        else:
            await pool.set_pinned(a, True)
        held.release.set()
        await syncing
        held.holding = False
        chosen = await pool.select()

        stored = await store.get_account(a.id)
        assert stored is not None
        assert (a.status, stored.status) == (expected, expected)
        assert (a.pinned, stored.pinned) == (action == "pin",) * 2
        assert chosen.account is (a if expected == ACTIVE else b)

    async def test_another_process_change_read_by_the_sync_is_applied(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """Without a change here meanwhile, the row read wins (a CLI pause)."""
        held = RowsReadThenHeld(store)
        pool, (a, _b) = await make_pool(held, bus, clock)  # type: ignore[arg-type]
        await store.set_account_state(a.id, AccountState(PAUSED, "paused by operator"))

        await pool.sync(force=True)

        assert a.status == PAUSED


class TestPauseAndResume:
    async def test_resume_refuses_an_account_that_is_not_paused(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """Resume ends a pause only: a bench and a needed login stay."""
        pool, (a, b, c) = await make_pool(store, bus, clock, n=3)
        await pool.bench(b, RATE_LIMITED, "usage_limit_reached", T + 3600)
        await pool.require_reauth(c, "refresh_token_reused")

        refusals = []
        for account in (a, b, c):
            with pytest.raises(StateConflict) as refused:
                await pool.resume(account)
            refusals.append(refused.value.code)

        assert refusals == ["account_not_paused"] * 3
        assert (a.status, b.status, c.status) == (ACTIVE, RATE_LIMITED, REAUTH_REQUIRED)
        assert (b.status_until, c.status_reason) == (T + 3600, "refresh_token_reused")
        stored = {r.id: r.status for r in await store.list_accounts()}
        assert stored == {a.id: ACTIVE, b.id: RATE_LIMITED, c.id: REAUTH_REQUIRED}

    async def test_a_bench_under_a_pause_returns_on_resume(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """Pausing a benched account keeps the bench beneath; resuming while
        it runs brings it back, after its end makes the account active."""
        pool, (a, b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 3600)
        await pool.bench(b, RATE_LIMITED, "usage_limit_reached", T + 3600)
        await pool.pause(a)
        await pool.pause(b)
        paused_state = (a.status, a.status_reason, a.status_until)

        await pool.resume(a)
        clock.advance(3600)
        await pool.resume(b)

        assert paused_state == (PAUSED, "paused by operator", None)
        assert (a.status, a.status_reason, a.status_until) == (
            RATE_LIMITED,
            "usage_limit_reached",
            T + 3600,
        )
        assert (b.status, b.status_until, b.under_pause) == (ACTIVE, None, None)

    async def test_a_bench_arriving_while_paused_goes_beneath_the_pause(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A request in flight at the pause comes back limited: the account
        stays paused, and resume returns it to that bench."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.pause(a)

        await pool.bench(a, QUOTA_EXCEEDED, "insufficient_quota", T + 600)
        kept = a.status
        await pool.resume(a)

        assert kept == PAUSED
        assert (a.status, a.status_until) == (QUOTA_EXCEEDED, T + 600)

    async def test_a_poll_with_room_lifts_the_bench_beneath_a_pause(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """The upstream reset early while paused: resume makes it active."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 259200)
        await pool.pause(a)

        await pool.apply_reading(a, weekly(0), limit_reached=False)
        still = a.status
        await pool.resume(a)

        assert still == PAUSED
        assert a.status == ACTIVE

    async def test_the_bench_beneath_a_pause_survives_a_restart(
        self, tmp_path: Path, bus: EventBus, clock: SimClock
    ) -> None:
        """Stored with the pause, the bench comes back after a restart."""
        store = await open_store(tmp_path / "restart")
        try:
            pool, (a, _b) = await make_pool(store, bus, clock)
            await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 7200)
            await pool.pause(a)
        finally:
            await store.close()

        store = await open_store(tmp_path / "restart")
        try:
            reborn = AccountPool(store, bus, clock=clock.now)
            await reborn.load()
            a2 = reborn.get(a.id)
            assert a2 is not None and a2.status == PAUSED
            await reborn.resume(a2)
        finally:
            await store.close()

        assert (a2.status, a2.status_until) == (RATE_LIMITED, T + 7200)

    async def test_pause_refuses_an_account_needing_a_login(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """reauth_required serves nothing already; pausing would hide it."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.require_reauth(a, "invalid_grant")

        with pytest.raises(StateConflict) as refused:
            await pool.pause(a)

        assert refused.value.code == "account_needs_login"
        assert (a.status, a.status_reason) == (REAUTH_REQUIRED, "invalid_grant")

    async def test_pausing_twice_changes_nothing(
        self, store: Store, bus: EventBus, clock: SimClock
    ) -> None:
        """A second pause keeps the first one (and the bench beneath it)."""
        pool, (a, _b) = await make_pool(store, bus, clock)
        await pool.bench(a, RATE_LIMITED, "usage_limit_reached", T + 600)
        await pool.pause(a)
        first = a.state

        await pool.pause(a)

        assert a.state == first
        assert first.under_pause is not None
        assert first.under_pause.status_until == T + 600
