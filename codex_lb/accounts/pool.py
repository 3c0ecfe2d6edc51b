"""The account pool: who can serve, in which order, and what failures do.

Every account is in memory for routing; each change of lasting state
(status, bench, tokens, quota) goes to the store at once, so a restart
resumes where it stopped (header readings a moment later, the latest per
account). Other processes (the ``accounts`` commands) change the store
directly; :meth:`AccountPool.sync` picks their changes up. Its parts:
``account``, ``states`` (how a status moves), ``selection`` and
``readings`` (snapshot events, the deferred writer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from codex_lb.accounts.account import (
    ACTIVE,
    BENCHED,
    PAUSED,
    QUOTA_EXCEEDED,
    REAUTH_REQUIRED,
    Account,
    Selection,
)
from codex_lb.accounts.quota import merge_reading
from codex_lb.accounts.readings import DeferredReadings, snapshot
from codex_lb.accounts.selection import Selector
from codex_lb.accounts.states import (
    bench_lifted,
    benched,
    full_window_reset,
    paused,
    resumed,
    shows_room,
)
from codex_lb.events import AccountMarked, EventBus, PoolChanged
from codex_lb.logs import FailureStreak
from codex_lb.store import AccountRow, AccountState, QuotaReading, Store, TokenSet

log = structlog.get_logger("codex_lb.accounts")

# How long a limited account is benched when neither the upstream's error nor
# the account's last reading says when its full window resets.
DEFAULT_BENCH_SECONDS = 60.0
# Upstream or transport failures in a row before an account cools down.
FAILURES_BEFORE_COOLDOWN = 3
COOLDOWN_FIRST_SECONDS = 30.0
COOLDOWN_MAX_SECONDS = 300.0


class AccountPool:
    """Every account, the selection order, and the marks failures leave."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Callable[[], float] = time.time,
        prefer_earliest_reset: bool = False,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._removing: set[str] = set()
        self._selector = Selector(self._accounts, bus.publish, prefer_earliest_reset)
        self._sessions = self._selector.sessions
        self._change_marker: int | None = None
        # Moves with the roster, a status, a plan or a reading awaited with
        # apply_reading (not with take_reading): what a cache keys on.
        self.version = 0
        self._deferred = DeferredReadings(store)
        # A mark the store cannot take: logged once per streak of them.
        self._status_writes = FailureStreak(log, "account_write", what="status")

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    @property
    def prefer_earliest_reset(self) -> bool:
        return self._selector.prefer_earliest_reset

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def now(self) -> float:
        return self._clock()

    # Loading and syncing with the store

    async def load(self) -> None:
        """Read every account from the store (at start-up)."""
        self._change_marker = await self._store.change_marker()
        rows = await self._store.list_accounts()
        self._accounts.clear()
        self._accounts.update((row.id, Account.from_row(row)) for row in rows)
        self.version += 1
        self._publish_roster()

    async def sync(self, force: bool = False) -> bool:
        """Pick up changes other processes made; True if anything changed.

        The rows are read while this process goes on routing: a status or
        pin changed here meanwhile is newer than the row's and stays, as do
        tokens and readings newer than the row's.
        """
        changes_before = {a.id: a.local_changes for a in self._accounts.values()}
        marker = await self._store.change_marker()
        if not force and marker == self._change_marker:
            return False
        self._change_marker = marker

        rows = {row.id: row for row in await self._store.list_accounts()}
        for gone in set(self._accounts) - set(rows):
            del self._accounts[gone]
            self._sessions.forget_account(gone)
        for row in rows.values():
            account = self._accounts.get(row.id)
            if account is None:
                self._accounts[row.id] = Account.from_row(row)
            else:
                unchanged = account.local_changes == changes_before.get(row.id)
                self._apply_row(account, row, state_too=unchanged)
        self.version += 1
        self._publish_roster()
        return True

    def _apply_row(self, account: Account, row: AccountRow, state_too: bool) -> None:
        account.email, account.plan = row.email, row.plan

        # A new login or import of an account that needed one: its stored
        # tokens replace the refused ones, however old the file was.
        relogin = (
            state_too
            and account.status == REAUTH_REQUIRED
            and row.status != REAUTH_REQUIRED
            and row.tokens != account.tokens
        )
        if state_too:
            if row.status != ACTIVE:
                self._sessions.forget_account(row.id)
            account.state = row.state
            account.pinned = row.pinned

        # Only ever move forward: a refresh or reading made here while the
        # rows were read must not be replaced by the older stored copy.
        if relogin or row.tokens.refreshed_at > account.tokens.refreshed_at:
            account.tokens = row.tokens
        if row.quota is not None and (
            account.quota is None or row.quota.observed_at > account.quota.observed_at
        ):
            account.quota = row.quota

    async def watch(self, interval: float = 1.0) -> None:
        """Sync with the store forever (a background task).

        Benches that ran out are lifted here too, so the store (and what the
        ``accounts list`` command shows) is right even with no traffic.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
                await self._lift_expired_benches(self._clock())
            except Exception as exc:  # the store may be briefly locked
                log.warning("account_sync_failed", error=str(exc))

    # Selection

    async def select(
        self, session_key: str | None = None, exclude: Iterable[str] = ()
    ) -> Selection:
        """The account to try next, or why there is none.

        The pinned pool is tried first, then the full pool; a session stays
        on its account while that account is usable.
        """
        now = self._clock()
        await self._lift_expired_benches(now)
        return self._selector.select(session_key, set(exclude), now)

    def earliest_reset(self) -> float | None:
        """When the first benched account comes back, if any is benched."""
        times = [
            a.status_until
            for a in self._accounts.values()
            if a.status in BENCHED and a.status_until is not None
        ]
        return min(times) if times else None

    def forget_session(self, session_key: str) -> None:
        self._sessions.forget(session_key)

    def sticky_account(self, session_key: str) -> str | None:
        """The account id a session sticks to, if it has one."""
        return self._sessions.get(session_key)

    @property
    def sticky_sessions(self) -> int:
        return len(self._sessions)

    # Marks

    async def bench(
        self, account: Account, status: str, code: str, until: float | None
    ) -> None:
        """Take ``account`` out of rotation until ``until`` (a 429 or quota).

        An error that names no reset time (or one already past) benches the
        account until its full window resets, when its last reading shows
        one, else for ``DEFAULT_BENCH_SECONDS``.
        """
        now = self._clock()
        if until is None or until <= now:
            until = full_window_reset(account.quota, now) or now + DEFAULT_BENCH_SECONDS
        bench = AccountState(status, code, until)
        await self._set_state(account, benched(account.state, bench))
        event = (
            "usage_limit_reached"
            if code == "usage_limit_reached"
            else ("quota_exceeded" if status == QUOTA_EXCEEDED else "rate_limit")
        )
        self._bus.publish(
            AccountMarked(account_id=account.id, event=event, code=code, until=until)
        )
        log.info(
            "account_benched",
            account_id=account.id,
            status=status,
            code=code,
            until=round(until),
            under_pause=account.status == PAUSED,
        )

    def record_failure(self, account: Account, error_class: str, code: str) -> None:
        """Count an upstream or transport failure; cool down after a streak."""
        now = self._clock()
        account.consecutive_failures += 1
        streak = account.consecutive_failures - FAILURES_BEFORE_COOLDOWN
        if streak >= 0:
            seconds = min(COOLDOWN_MAX_SECONDS, COOLDOWN_FIRST_SECONDS * 2**streak)
            account.cooldown_until = now + seconds
            log.info(
                "account_cooldown",
                account_id=account.id,
                seconds=seconds,
                failures=account.consecutive_failures,
            )
        self._bus.publish(
            AccountMarked(account_id=account.id, event="error", code=code)
        )

    def record_success(self, account: Account) -> None:
        account.consecutive_failures = 0
        account.cooldown_until = 0.0
        account.last_used_at = self._clock()

    async def require_reauth(self, account: Account, code: str) -> None:
        await self._set_state(account, AccountState(REAUTH_REQUIRED, code, None))
        self._bus.publish(
            AccountMarked(account_id=account.id, event="permanent_failure", code=code)
        )
        log.warning("account_reauth_required", account_id=account.id, code=code)

    # Operator actions

    async def pause(self, account: Account) -> None:
        """Take ``account`` out of routing until resumed; a bench stays beneath.

        Raises StateConflict for an account that needs a new login.
        """
        state = paused(account.state)
        if state != account.state:
            await self._set_state(account, state, operator=True)

    async def resume(self, account: Account) -> None:
        """End the operator's pause. Raises StateConflict if not paused."""
        state = resumed(account.state, self._clock())
        await self._set_state(account, state, operator=True)

    async def set_pinned(self, account: Account, pinned: bool) -> None:
        """Pin or unpin; stored first, so a store failure changes nothing."""
        await self._store.set_pinned(account.id, pinned)
        account.pinned = pinned
        account.local_changes += 1

    async def remove(self, account: Account) -> bool:
        """Remove ``account`` from the store, then from routing.

        False when it is already gone or another call is removing it: of
        several removals at once, one removes.
        """
        if account.id not in self._accounts or account.id in self._removing:
            return False
        self._removing.add(account.id)
        try:
            await self._store.remove_account(account.id)
        finally:
            self._removing.discard(account.id)
        self._deferred.discard(account.id)
        self._accounts.pop(account.id, None)
        self.version += 1
        self._sessions.forget_account(account.id)
        self._publish_roster()
        return True

    # Tokens and quota

    async def store_tokens(self, account: Account, tokens: TokenSet) -> None:
        """Keep rotated tokens; memory holds them even when the store fails.

        The old refresh token is spent by then, so a failed write is logged
        as an error: the account serves on until a restart, which would need
        a new login unless a later refresh is stored.
        """
        account.tokens = tokens
        self.version += 1
        try:
            await self._store.set_tokens(account.id, tokens)
        except Exception as exc:  # locked or full
            log.error(
                "account_write_failed",
                account_id=account.id,
                what="tokens",
                error=str(exc),
            )

    async def apply_reading(
        self,
        account: Account,
        reading: QuotaReading,
        limit_reached: bool | None = None,
    ) -> None:
        """Keep a new quota reading, publish it, and lift a bench it disproves.

        ``limit_reached`` is the usage endpoint's own verdict, when it gave
        one: a poll saying the limit is reached never lifts a bench.
        """
        merged = self._merge(account, reading)
        self._deferred.discard(account.id)
        self.version += 1
        await self._store.record_quota(account.id, merged)

        # A fresh poll with room in every window ends a bench early (the
        # upstream reset early), also one kept under a pause; a poll that
        # still shows a window full keeps it. Only a poll is trusted for
        # this: headers arrive with the very 429 that benched the account.
        if (
            (account.status in BENCHED or account.under_pause is not None)
            and reading.source == "poll"
            and limit_reached is not True
            and shows_room(reading, merged, self._clock())
        ):
            await self._set_state(account, bench_lifted(account.state))
            log.info("account_bench_lifted", account_id=account.id, by="reading")

        self._bus.publish(snapshot(account, reading))

    def take_reading(self, account: Account, reading: QuotaReading) -> None:
        """Keep a reading from an answer's headers; store it a little later.

        Memory and events have it at once; the store gets each account's
        latest a moment later, off the request path. Headers never lift a
        bench (they arrive with the very 429 that set it).
        """
        self._deferred.keep(account.id, self._merge(account, reading))
        self._bus.publish(snapshot(account, reading))

    async def flush_readings(self) -> None:
        """Store every kept reading now (at shutdown)."""
        await self._deferred.flush()

    # Internals

    def _merge(self, account: Account, reading: QuotaReading) -> QuotaReading:
        merged = merge_reading(account.quota, reading)
        account.quota = merged
        if merged.plan and merged.plan != account.plan:
            account.plan = merged.plan
        return merged

    async def _lift_expired_benches(self, now: float) -> None:
        for account in self._accounts.values():
            if (
                account.status in BENCHED
                and account.status_until is not None
                and account.status_until <= now
            ):
                await self._set_state(account, bench_lifted(account.state))
                log.info("account_bench_lifted", account_id=account.id, by="time")

    async def _set_state(
        self, account: Account, state: AccountState, operator: bool = False
    ) -> None:
        """Apply ``state``. A mark codex-lb makes routes from memory even when
        the store fails; an operator's action is stored first and, when the
        store fails, raises and changes nothing, so what the operator is told
        is what a restart or another process sees."""
        if operator:
            await self._store.set_account_state(account.id, state)
        changed = account.status != state.status
        if state.status != ACTIVE:
            self._sessions.forget_account(account.id)
        account.state = state
        account.local_changes += 1
        self.version += 1
        if not operator:
            try:
                await self._store.set_account_state(account.id, state)
            except Exception as exc:  # locked or full: routing goes on from memory
                self._status_writes.failed(account_id=account.id, error=str(exc))
            else:
                self._status_writes.succeeded()
        if changed:
            self._publish_roster()

    def _publish_roster(self) -> None:
        self._bus.publish(
            PoolChanged(accounts=tuple(a.info for a in self._accounts.values()))
        )
