"""Quota readings: what a snapshot event says, and the deferred store writer.

A reading names the windows its source reported; the pool merges it into
the account's last known quota for routing (a window not mentioned keeps
its old value). The ``quota_snapshot`` event carries only what the reading
itself reported: repeating a carried-over window would present an old value
as a new observation, and the weekly counter would take a stray reading
that was merely carried along as a confirmation of it.
"""

from __future__ import annotations

import asyncio

import structlog

from codex_lb.accounts.account import Account
from codex_lb.events import QuotaSnapshot, QuotaWindow
from codex_lb.logs import FailureStreak
from codex_lb.store import QuotaReading, Store

log = structlog.get_logger("codex_lb.accounts")

# Every answer carries a quota reading in its headers: memory and events take
# each one, the store the latest per account at most this often.
QUOTA_WRITE_SECONDS = 1.0


def snapshot(account: Account, reading: QuotaReading) -> QuotaSnapshot:
    """The ``quota_snapshot`` event for ``reading`` of ``account``."""
    return QuotaSnapshot(
        account=account.info,
        source=reading.source,
        observed_at=reading.observed_at,
        primary=_window(
            reading.primary_used_percent,
            reading.primary_window_minutes,
            reading.primary_reset_at,
        ),
        secondary=_window(
            reading.secondary_used_percent,
            reading.secondary_window_minutes,
            reading.secondary_reset_at,
        ),
        credits_balance=reading.credits_balance,
    )


def _window(
    used: float | None, minutes: int | None, reset_at: float | None
) -> QuotaWindow | None:
    if used is None and minutes is None and reset_at is None:
        return None
    return QuotaWindow(used_percent=used, window_minutes=minutes, reset_at=reset_at)


class DeferredReadings:
    """Merged readings waiting to be stored, the latest per account.

    A background task writes them ``QUOTA_WRITE_SECONDS`` after the first
    one arrives, off the request path; :meth:`flush` writes them at once.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._unsaved: dict[str, QuotaReading] = {}
        self._writer: asyncio.Task[None] | None = None
        self._writer_waiting = False
        # The store may be briefly locked, or full: logged once per streak.
        self._failures = FailureStreak(log, "quota_write", level="warning")

    def keep(self, account_id: str, merged: QuotaReading) -> None:
        self._unsaved[account_id] = merged
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_later(), name="quota-writer"
            )

    def discard(self, account_id: str) -> None:
        """Forget an unsaved reading (a newer one was stored, or the account
        is gone)."""
        self._unsaved.pop(account_id, None)

    async def flush(self) -> None:
        """Store every kept reading now (at shutdown)."""
        writer = self._writer
        if writer is not None and not writer.done():
            if self._writer_waiting:
                writer.cancel()
            await asyncio.wait([writer])
        await self._write_unsaved()

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
            except Exception as exc:
                self._failures.failed(account_id=account_id, error=str(exc))
            else:
                self._failures.succeeded()
