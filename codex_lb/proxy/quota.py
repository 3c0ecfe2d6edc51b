"""The quota that travels with answers: readings in, the pool's headers out.

Every upstream answer carries its account's ``x-codex-*`` headers: each is a
quota reading, taken and published. Every answer to a client carries the
pool's headers instead (see ``routes.pool_quota_headers``), aggregated over
the accounts that can serve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from codex_lb.accounts import Account, AccountPool
from codex_lb.accounts.aggregate import PoolQuota, pool_quota, quota_headers
from codex_lb.accounts.quota import reading_from_headers
from codex_lb.accounts.readings import snapshot
from codex_lb.events import EventBus
from codex_lb.store import QuotaReading

# The pool's quota headers walk every account (0.8 ms at 300): they are kept
# until the pool's version moves (roster, status, poll) and, while only the
# readings that come with answers move them, for at most this long.
POOL_QUOTA_MAX_AGE_SECONDS = 1.0


class AnswerQuota:
    """Takes the readings answers bring; gives the pool's quota headers."""

    def __init__(
        self, pool: AccountPool, bus: EventBus, clock: Callable[[], float]
    ) -> None:
        self._pool = pool
        self._bus = bus
        self._clock = clock
        self._pool_quota: tuple[int, float, PoolQuota] | None = None
        self._headers: tuple[PoolQuota, int, dict[str, str]] | None = None

    def ingest(self, account: Account, headers: Mapping[str, str]) -> None:
        """Take the reading an answer's headers carry; publish each one.

        A reading that changes nothing is published as it is (so the age of
        the account's last reading stays true) without being merged or
        stored again: the store keeps changes, the events every reading.
        """
        self._take(account, headers, self._clock())

    def ingest_soon(
        self, account: Account, headers: Mapping[str, str]
    ) -> Callable[[], None]:
        """:meth:`ingest`, once the relay next waits (after the answer's first
        bytes, when they came with the headers); returns the call that takes
        the reading at once if it has not run yet, which the relay makes
        before the attempt's own events, so their order stays.

        Taking a reading (publishing it through every collector) was a tenth
        of the time to the first byte.
        """
        pending = _Pending(self, account, headers, self._clock())
        asyncio.get_running_loop().call_soon(pending)
        return pending

    def _take(self, account: Account, headers: Mapping[str, str], now: float) -> None:
        reading = reading_from_headers(headers, now)
        if reading is None:
            return
        old = account.quota
        if old is not None and _same_windows(old, reading):
            self._bus.publish(snapshot(account, reading))
            return
        # The store write happens off the request path.
        self._pool.take_reading(account, reading)

    def pool_headers(self) -> dict[str, str]:
        """The pool's ``x-codex-*`` quota headers as of now.

        Written once per second of the clock for the same pool quota (the
        seconds until a reset are whole seconds; every answer asks).
        """
        now = self._clock()
        quota = self._current()
        second = int(now)
        cached = self._headers
        if cached is None or cached[0] is not quota or cached[1] != second:
            cached = (quota, second, quota_headers(quota, now))
            self._headers = cached
        return dict(cached[2])

    def _current(self) -> PoolQuota:
        now = time.monotonic()
        cached = self._pool_quota
        if (
            cached is None
            or cached[0] != self._pool.version
            or now - cached[1] > POOL_QUOTA_MAX_AGE_SECONDS
        ):
            quota = pool_quota(self._pool.accounts, self._clock())
            cached = (self._pool.version, now, quota)
            self._pool_quota = cached
        return cached[2]


class _Pending:
    """One answer's reading, taken by whichever call comes first."""

    __slots__ = ("_account", "_headers", "_now", "_quota")

    def __init__(
        self,
        quota: AnswerQuota,
        account: Account,
        headers: Mapping[str, str],
        now: float,
    ) -> None:
        self._quota: AnswerQuota | None = quota
        self._account = account
        self._headers = headers
        self._now = now

    def __call__(self) -> None:
        quota, self._quota = self._quota, None
        if quota is not None:
            quota._take(self._account, self._headers, self._now)


def _same_windows(old: QuotaReading, new: QuotaReading) -> bool:
    """Whether ``new`` repeats ``old``'s windows (what headers can carry)."""
    return (
        old.primary_used_percent == new.primary_used_percent
        and old.secondary_used_percent == new.secondary_used_percent
        and old.primary_reset_at == new.primary_reset_at
        and old.secondary_reset_at == new.secondary_reset_at
        and old.primary_window_minutes == new.primary_window_minutes
        and old.secondary_window_minutes == new.secondary_window_minutes
    )
