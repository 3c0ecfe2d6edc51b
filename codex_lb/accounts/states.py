"""How an account's status moves: benches, the operator's pause, readings.

Pure functions from one :class:`AccountState` to the next, shared by the
running pool and the ``accounts`` commands (which change the store from
another process). The rules (SPEC section 5):

- a bench (``rate_limited``, ``quota_exceeded``) lasts until its reset time;
  a fresh usage poll that shows room ends it early; nothing else shortens it;
- ``paused`` is the operator's alone, and only the pause: resuming returns
  the account to what it would be without the pause (the bench it was under
  while that still runs, else active). A bench that arrives while paused
  (a request in flight came back limited) goes under the pause;
- ``reauth_required`` ends only with a new login; it cannot be paused (it
  serves nothing already) and it replaces a pause, since the account needs
  the operator's attention either way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from codex_lb.accounts.account import ACTIVE, BENCHED, PAUSED, REAUTH_REQUIRED
from codex_lb.store import AccountState, QuotaReading

PAUSED_REASON = "paused by operator"


class StateConflict(Exception):
    """An operator action that does not apply to the account's status.

    ``code`` names the conflict for the API's error body; the message is
    written for the operator.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def paused(state: AccountState) -> AccountState:
    """The operator's pause on top of ``state`` (a bench stays beneath it).

    Pausing a paused account changes nothing. Raises StateConflict for an
    account that needs a new login.
    """
    if state.status == PAUSED:
        return state
    if state.status == REAUTH_REQUIRED:
        raise StateConflict(
            "account_needs_login",
            "the account needs a new login (reauth_required) and serves "
            "nothing until then; sign in again (or import its auth.json), "
            "then pause it if it should stay out",
        )
    beneath = state if state.status in BENCHED else None
    return AccountState(PAUSED, PAUSED_REASON, None, under_pause=beneath)


def resumed(state: AccountState, now: float) -> AccountState:
    """``state`` without the operator's pause. Raises StateConflict unless
    the account is paused: resuming never ends a bench or clears a login."""
    if state.status != PAUSED:
        raise StateConflict(
            "account_not_paused",
            f"the account is not paused (it is {state.status}{_until(state)}); "
            "resume only ends a pause",
        )
    beneath = state.under_pause
    if beneath is not None and (
        beneath.status_until is None or beneath.status_until > now
    ):
        return beneath
    return AccountState(ACTIVE)


def benched(state: AccountState, bench: AccountState) -> AccountState:
    """``state`` after a limit error benched the account with ``bench``."""
    if state.status == PAUSED:
        return attrs.evolve(state, under_pause=bench)
    if state.status == REAUTH_REQUIRED:
        return state
    return bench


def bench_lifted(state: AccountState) -> AccountState:
    """``state`` once its bench is over (by time or a reading with room)."""
    if state.status == PAUSED:
        return attrs.evolve(state, under_pause=None)
    if state.status in BENCHED:
        return AccountState(ACTIVE)
    return state


def has_bench(state: AccountState) -> bool:
    """True when a bench holds the account, directly or under a pause."""
    return state.status in BENCHED or state.under_pause is not None


def full_window_reset(quota: QuotaReading | None, now: float) -> float | None:
    """When the last full window of ``quota`` resets, if one is full.

    For a limit error that names no reset time: the stored reading often
    knows it (a free plan's weekly window at 100 % resets days away, and
    retrying every minute until then only collects 429s).
    """
    if quota is None:
        return None
    resets = [
        reset_at
        for used, reset_at in (
            (quota.primary_used_percent, quota.primary_reset_at),
            (quota.secondary_used_percent, quota.secondary_reset_at),
        )
        if used is not None and used >= 100.0 and reset_at is not None
        if reset_at > now
    ]
    return max(resets) if resets else None


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


def _until(state: AccountState) -> str:
    if state.status_until is None:
        return ""
    moment = datetime.fromtimestamp(state.status_until, UTC)
    return f" until {moment:%Y-%m-%d %H:%M} UTC"
