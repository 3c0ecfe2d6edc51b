"""The account pool: who can serve, in which order, and what failures do.

The pool keeps every account in memory for routing and writes each change of
lasting state (status, bench, tokens, quota) to the store at once, so a
restart resumes where it stopped; only the quota readings that come with
every answer are stored a moment later, the latest per account. Other
processes (the ``accounts`` commands) change the store directly;
:meth:`AccountPool.sync` picks their changes up.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs
import structlog

from codex_lb.accounts.quota import merge_reading
from codex_lb.events import (
    AccountInfo,
    AccountMarked,
    AccountSelected,
    EventBus,
    PoolChanged,
    QuotaSnapshot,
    QuotaWindow,
)
from codex_lb.logs import remember_secret
from codex_lb.store import AccountRow, AccountState, QuotaReading, Store, TokenSet

log = structlog.get_logger("codex_lb.accounts")

ACTIVE = "active"
PAUSED = "paused"
RATE_LIMITED = "rate_limited"
QUOTA_EXCEEDED = "quota_exceeded"
REAUTH_REQUIRED = "reauth_required"
STATUSES = (ACTIVE, PAUSED, RATE_LIMITED, QUOTA_EXCEEDED, REAUTH_REQUIRED)
BENCHED = (RATE_LIMITED, QUOTA_EXCEEDED)

# How long a limited account is benched when the upstream gives no reset time.
DEFAULT_BENCH_SECONDS = 60.0
# Upstream or transport failures in a row before an account cools down.
FAILURES_BEFORE_COOLDOWN = 3
COOLDOWN_FIRST_SECONDS = 30.0
COOLDOWN_MAX_SECONDS = 300.0
STICKY_SESSIONS_MAX = 10_000
# Every answer carries a quota reading in its headers: memory and events take
# each one, the store the latest per account at most this often.
QUOTA_WRITE_SECONDS = 1.0


def _remembered(tokens: TokenSet) -> TokenSet:
    for secret in (tokens.access_token, tokens.refresh_token, tokens.id_token):
        remember_secret(secret)
    return tokens


@attrs.define(eq=False)
class Account:
    """One account as routing sees it; the lasting part mirrors the store."""

    id: str
    email: str
    chatgpt_account_id: str
    plan: str
    status: str
    status_reason: str | None
    status_until: float | None
    pinned: bool
    # Every token the account holds, loaded or refreshed, is kept out of
    # the logs by value (it may be an opaque string).
    tokens: TokenSet = attrs.field(converter=_remembered)
    quota: QuotaReading | None
    last_used_at: float | None

    # Runtime only: lost on restart on purpose.
    last_selected_at: float = 0.0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    inflight: int = 0
    refresh_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    @classmethod
    def from_row(cls, row: AccountRow) -> Account:
        return cls(
            id=row.id,
            email=row.email,
            chatgpt_account_id=row.chatgpt_account_id,
            plan=row.plan,
            status=row.status,
            status_reason=row.status_reason,
            status_until=row.status_until,
            pinned=row.pinned,
            tokens=row.tokens,
            quota=row.quota,
            last_used_at=row.last_used_at,
        )

    @property
    def info(self) -> AccountInfo:
        return AccountInfo(self.id, self.email, self.plan, self.status)

    @property
    def weekly_used(self) -> float:
        q = self.quota
        return q.secondary_used_percent or 0.0 if q else 0.0

    @property
    def short_used(self) -> float:
        q = self.quota
        return q.primary_used_percent or 0.0 if q else 0.0

    @property
    def weekly_reset_at(self) -> float:
        q = self.quota
        reset = q.secondary_reset_at if q else None
        return reset if reset is not None else float("inf")


@attrs.frozen
class Selection:
    """What a selection came to: an account, or why there was none."""

    account: Account | None
    outcome: str
    pool: str


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
        self._prefer_earliest_reset = prefer_earliest_reset
        self._accounts: dict[str, Account] = {}
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._change_marker: int | None = None
        # Moves with the roster, a status, a plan or a reading awaited with
        # apply_reading (not with take_reading): what a cache keys on.
        self.version = 0
        self._unsaved: dict[str, QuotaReading] = {}
        self._quota_writer: asyncio.Task[None] | None = None
        self._writer_waiting = False

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def now(self) -> float:
        return self._clock()

    # Loading and syncing with the store

    async def load(self) -> None:
        """Read every account from the store (at start-up)."""
        self._change_marker = await self._store.change_marker()
        rows = await self._store.list_accounts()
        self._accounts = {row.id: Account.from_row(row) for row in rows}
        self.version += 1
        self._publish_roster()

    async def sync(self, force: bool = False) -> bool:
        """Pick up changes other processes made; True if anything changed."""
        marker = await self._store.change_marker()
        if not force and marker == self._change_marker:
            return False
        self._change_marker = marker

        rows = {row.id: row for row in await self._store.list_accounts()}
        for gone in set(self._accounts) - set(rows):
            del self._accounts[gone]
            self._forget_account_sessions(gone)
        for row in rows.values():
            account = self._accounts.get(row.id)
            if account is None:
                self._accounts[row.id] = Account.from_row(row)
                continue
            account.email, account.plan = row.email, row.plan
            if row.status != ACTIVE:
                self._forget_account_sessions(row.id)
            account.status, account.pinned = row.status, row.pinned
            account.status_reason, account.status_until = (
                row.status_reason,
                row.status_until,
            )
            # Only ever move forward: a refresh or reading made here while the
            # rows were read must not be replaced by the older stored copy.
            if row.tokens.refreshed_at > account.tokens.refreshed_at:
                account.tokens = row.tokens
            if row.quota is not None and (
                account.quota is None
                or row.quota.observed_at > account.quota.observed_at
            ):
                account.quota = row.quota
        self.version += 1
        self._publish_roster()
        return True

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
        excluded = set(exclude)

        if session_key is not None and session_key in self._sessions:
            sticky = self._accounts.get(self._sessions[session_key])
            if (
                sticky is not None
                and sticky.id not in excluded
                and sticky.status == ACTIVE
                and sticky.cooldown_until <= now
            ):
                self._sessions.move_to_end(session_key)
                return self._chosen(sticky, "pinned" if sticky.pinned else "full", now)
            # Its account stopped being usable: the session moves for good.
            del self._sessions[session_key]

        pinned = [a for a in self._accounts.values() if a.pinned]
        selection: Selection | None = None
        if pinned:
            # Within the pinned pool a cooling-down account is never a last
            # resort: the full pool may still hold a warm one.
            selection = self._select_from(
                pinned, "pinned", excluded, now, last_resort=False
            )
            if selection.account is None:
                selection = None
        if selection is None:
            selection = self._select_from(
                list(self._accounts.values()), "full", excluded, now
            )

        if selection.account is not None and session_key is not None:
            self._sessions[session_key] = selection.account.id
            self._sessions.move_to_end(session_key)
            while len(self._sessions) > STICKY_SESSIONS_MAX:
                self._sessions.popitem(last=False)
        return selection

    def _select_from(
        self,
        candidates: list[Account],
        pool: str,
        excluded: set[str],
        now: float,
        last_resort: bool = True,
    ) -> Selection:
        # Accounts cooling down after failures are skipped while another is
        # usable, and used anyway when they are all that is left.
        usable = [
            a
            for a in candidates
            if a.status == ACTIVE and a.cooldown_until <= now and a.id not in excluded
        ]
        active = usable
        if not usable:
            active = [
                a for a in candidates if a.status == ACTIVE and a.id not in excluded
            ]
            usable = active if last_resort else []
        if not usable:
            outcome = "cooldown" if active else self._why_none(candidates, excluded)
            self._bus.publish(AccountSelected(pool=pool, outcome=outcome))
            return Selection(None, outcome, pool)

        key = _reset_first_order if self._prefer_earliest_reset else _usage_order
        return self._chosen(min(usable, key=key), pool, now)

    def _chosen(self, account: Account, pool: str, now: float) -> Selection:
        account.last_selected_at = now
        self._bus.publish(
            AccountSelected(pool=pool, outcome="selected", account_id=account.id)
        )
        return Selection(account, "selected", pool)

    def _why_none(self, candidates: list[Account], excluded: set[str]) -> str:
        """Why no candidate could be selected, as an ``account_selected`` outcome.

        ``all_tried`` means every candidate left was already tried by this
        request (failover ran out of accounts, not the pool).
        """
        remaining = [a for a in candidates if a.id not in excluded]
        if not remaining:
            return "no_accounts" if not candidates else "all_tried"
        statuses = {a.status for a in remaining}
        if statuses <= set(BENCHED) or (
            statuses & set(BENCHED) and statuses <= {*BENCHED, PAUSED, REAUTH_REQUIRED}
        ):
            return "all_limited"
        if statuses == {PAUSED}:
            return "all_paused"
        if statuses == {REAUTH_REQUIRED}:
            return "all_reauth"
        return "no_accounts"

    def earliest_reset(self) -> float | None:
        """When the first benched account comes back, if any is benched."""
        times = [
            a.status_until
            for a in self._accounts.values()
            if a.status in BENCHED and a.status_until is not None
        ]
        return min(times) if times else None

    def forget_session(self, session_key: str) -> None:
        self._sessions.pop(session_key, None)

    def sticky_account(self, session_key: str) -> str | None:
        """The account id a session sticks to, if it has one."""
        return self._sessions.get(session_key)

    @property
    def sticky_sessions(self) -> int:
        return len(self._sessions)

    def _forget_account_sessions(self, account_id: str) -> None:
        # A session stays only while its account is usable (SPEC section 5).
        stale = [key for key, held in self._sessions.items() if held == account_id]
        for key in stale:
            del self._sessions[key]

    # Marks

    async def bench(
        self, account: Account, status: str, code: str, until: float | None
    ) -> None:
        """Take ``account`` out of rotation until ``until`` (a 429 or quota)."""
        now = self._clock()
        if until is None or until <= now:
            until = now + DEFAULT_BENCH_SECONDS
        await self._set_state(account, AccountState(status, code, until))
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
        await self._set_state(account, AccountState(PAUSED, "paused by operator"))

    async def resume(self, account: Account) -> None:
        await self._set_state(account, AccountState(ACTIVE))

    async def set_pinned(self, account: Account, pinned: bool) -> None:
        account.pinned = pinned
        await self._store.set_pinned(account.id, pinned)

    async def remove(self, account: Account) -> None:
        await self._store.remove_account(account.id)
        self._unsaved.pop(account.id, None)
        self._accounts.pop(account.id, None)
        self.version += 1
        self._forget_account_sessions(account.id)
        self._publish_roster()

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
        self._unsaved.pop(account.id, None)
        self.version += 1
        await self._store.record_quota(account.id, merged)

        # A fresh poll with room in every window ends a bench early (the
        # upstream reset early); one that still shows a window full keeps it.
        # Only a poll is trusted for this: headers arrive with the very 429
        # that benched the account.
        if (
            account.status in BENCHED
            and reading.source == "poll"
            and limit_reached is not True
            and shows_room(reading, merged, self._clock())
        ):
            await self._set_state(account, AccountState(ACTIVE))
            log.info("account_bench_lifted", account_id=account.id, by="reading")

        self._publish_snapshot(account, reading, merged)

    def take_reading(self, account: Account, reading: QuotaReading) -> None:
        """Keep a reading from an answer's headers; store it a little later.

        Memory and events have it at once; the store gets each account's
        latest every ``QUOTA_WRITE_SECONDS``, off the request path. Headers
        never lift a bench (they arrive with the very 429 that set it).
        """
        merged = self._merge(account, reading)
        self._unsaved[account.id] = merged
        if self._quota_writer is None or self._quota_writer.done():
            self._quota_writer = asyncio.get_running_loop().create_task(
                self._write_later(), name="quota-writer"
            )
        self._publish_snapshot(account, reading, merged)

    async def flush_readings(self) -> None:
        """Store every kept reading now (at shutdown)."""
        writer = self._quota_writer
        if writer is not None and not writer.done():
            if self._writer_waiting:
                writer.cancel()
            await asyncio.wait([writer])
        await self._write_unsaved()

    # Internals

    def _merge(self, account: Account, reading: QuotaReading) -> QuotaReading:
        merged = merge_reading(account.quota, reading)
        account.quota = merged
        if merged.plan and merged.plan != account.plan:
            account.plan = merged.plan
        return merged

    def _publish_snapshot(
        self, account: Account, reading: QuotaReading, merged: QuotaReading
    ) -> None:
        self._bus.publish(
            QuotaSnapshot(
                account=account.info,
                source=reading.source,
                observed_at=reading.observed_at,
                primary=_window(
                    merged.primary_used_percent,
                    merged.primary_window_minutes,
                    merged.primary_reset_at,
                ),
                secondary=_window(
                    merged.secondary_used_percent,
                    merged.secondary_window_minutes,
                    merged.secondary_reset_at,
                ),
                credits_balance=merged.credits_balance,
            )
        )

    async def _write_later(self) -> None:
        self._writer_waiting = True
        try:
            await asyncio.sleep(QUOTA_WRITE_SECONDS)
        finally:
            self._writer_waiting = False
        await self._write_unsaved()

    async def _write_unsaved(self) -> None:
        while self._unsaved:
            account_id = next(iter(self._unsaved))
            reading = self._unsaved.pop(account_id)
            try:
                await self._store.record_quota(account_id, reading)
            except Exception as exc:  # the store may be briefly locked
                log.warning("quota_write_failed", account_id=account_id, error=str(exc))

    async def _lift_expired_benches(self, now: float) -> None:
        for account in self._accounts.values():
            if (
                account.status in BENCHED
                and account.status_until is not None
                and account.status_until <= now
            ):
                await self._set_state(account, AccountState(ACTIVE))
                log.info("account_bench_lifted", account_id=account.id, by="time")

    async def _set_state(self, account: Account, state: AccountState) -> None:
        changed = account.status != state.status
        if state.status != ACTIVE:
            self._forget_account_sessions(account.id)
        account.status = state.status
        self.version += 1
        account.status_reason = state.status_reason
        account.status_until = state.status_until
        try:
            await self._store.set_account_state(account.id, state)
        except Exception as exc:  # locked or full: routing goes on from memory
            log.error(
                "account_write_failed",
                account_id=account.id,
                what="status",
                error=str(exc),
            )
        if changed:
            self._publish_roster()

    def _publish_roster(self) -> None:
        self._bus.publish(
            PoolChanged(accounts=tuple(a.info for a in self._accounts.values()))
        )


def shows_room(fresh: QuotaReading, merged: QuotaReading, now: float) -> bool:
    """True when ``fresh`` reports a used percent and no window is full.

    A window the fresh reading does not mention counts with its carried-over
    value, unless that value's window has already reset.
    """
    known = False
    for slot in ("primary", "secondary"):
        used = getattr(fresh, f"{slot}_used_percent")
        if used is not None:
            known = True
            if used >= 100.0:
                return False
            continue
        carried = getattr(merged, f"{slot}_used_percent")
        reset_at = getattr(merged, f"{slot}_reset_at")
        still_full = carried is not None and carried >= 100.0
        if still_full and (reset_at is None or reset_at > now):
            return False
    return known


def _usage_order(account: Account) -> tuple[float, float, float]:
    """Least weekly used first, then least 5 h used, then least recently used."""
    # Account.weekly_used and short_used, inlined: this runs per account
    # per selection.
    q = account.quota
    if q is None:
        return (0.0, 0.0, account.last_selected_at)
    return (
        q.secondary_used_percent or 0.0,
        q.primary_used_percent or 0.0,
        account.last_selected_at,
    )


def _reset_first_order(account: Account) -> tuple[float, float, float, float]:
    """Soonest weekly reset first: drains quota that a reset would waste."""
    return (account.weekly_reset_at, *_usage_order(account))


def _window(
    used: float | None, minutes: int | None, reset_at: float | None
) -> QuotaWindow | None:
    if used is None and minutes is None and reset_at is None:
        return None
    return QuotaWindow(used_percent=used, window_minutes=minutes, reset_at=reset_at)
