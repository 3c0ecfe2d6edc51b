"""Accounts, their quota windows and the clock the emulator runs on.

Everything that depends on time reads `SimClock.now()`, so a test can jump a
week ahead with `advance()` and a demo can run a day in a minute with a
speed factor. A window is worth a configured number of API-equivalent
dollars; a request fills it by the share its priced cost takes of that sum.
"""

from __future__ import annotations

import time
import uuid
from typing import Final

import attrs

from codex_lb.constants import (
    BUILTIN_PRICES,
    PLAN_WEEKLY_CREDITS,
    PRIMARY_WINDOW_SECONDS,
    SECONDARY_WINDOW_SECONDS,
)

# What a full 5 h and a full weekly window of a plus account are worth in
# API dollars. Other plans scale by their weekly credits, so a pro account
# holds about 6.7 times as much. The absolute numbers only need to make a
# demo fill up in a few dozen requests, not match OpenAI's secret limits.
PLUS_PRIMARY_DOLLARS: Final = 5.0
PLUS_SECONDARY_DOLLARS: Final = 40.0

# Plans that, like a real free account, have only a weekly window; it is
# reported in the primary slot and the secondary slot is null.
WEEKLY_ONLY_PLANS: Final = frozenset({"free"})

# Used for consumption when a model the emulator serves has no price entry.
FALLBACK_PRICE_MODEL: Final = "gpt-5"


@attrs.define
class SimClock:
    """Emulated wall-clock time: real time times `speed`, plus manual jumps.

    A speed of 0 freezes the clock, which makes tests exact; `advance()`
    still moves it.
    """

    speed: float = 1.0
    _wall_origin: float = attrs.field(init=False, factory=time.time)
    _mono_origin: float = attrs.field(init=False, factory=time.monotonic)
    _offset: float = attrs.field(init=False, default=0.0)

    def now(self) -> float:
        """Return the emulated time in epoch seconds."""
        elapsed = time.monotonic() - self._mono_origin
        return self._wall_origin + elapsed * self.speed + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the clock forward (or back, with a negative value)."""
        self._offset += seconds


@attrs.define
class Window:
    """One rate-limit window: its length, its dollar worth and how full it is."""

    seconds: int
    dollars: float
    started_at: float = 0.0
    used_percent: float = 0.0

    @property
    def reset_at(self) -> float:
        return self.started_at + self.seconds

    @property
    def full(self) -> bool:
        return self.used_percent >= 100.0

    def roll(self, now: float) -> None:
        """Start a new, empty window when the clock has passed the reset time."""
        if now < self.reset_at:
            return

        # Windows stay aligned to their first start, so a jump of several
        # lengths lands in the window that contains `now`.
        periods = int((now - self.started_at) // self.seconds)
        self.started_at += periods * self.seconds
        self.used_percent = 0.0

    def consume(self, cost_usd: float) -> float:
        """Fill the window by the share `cost_usd` takes of its worth.

        Returns the percent added, before capping at 100.
        """
        added = cost_usd / self.dollars * 100.0
        self.used_percent = min(100.0, self.used_percent + added)
        return added


def _stable_id(prefix: str, email: str) -> str:
    # Derived from the email so restarts of a demo keep the same ids.
    return prefix + str(uuid.uuid5(uuid.NAMESPACE_URL, f"codex-lb-sim:{email}"))


def _plan_scale(plan: str) -> float:
    plus = PLAN_WEEKLY_CREDITS["plus"]
    return PLAN_WEEKLY_CREDITS.get(plan, plus) / plus


@attrs.define
class SimAccount:
    """One emulated ChatGPT account with its windows and current tokens.

    `primary` is the 5 h window, absent for weekly-only plans; `secondary`
    is the weekly window. The token fields hold the latest set issued.
    """

    email: str
    plan: str
    chatgpt_account_id: str
    user_id: str
    primary: Window | None
    secondary: Window
    access_token: str = ""
    refresh_token: str = ""
    id_token: str = ""
    credits_balance: float = 0.0
    requests_served: int = 0

    @classmethod
    def make(
        cls,
        email: str,
        plan: str = "plus",
        *,
        weekly_only: bool | None = None,
        primary_dollars: float | None = None,
        secondary_dollars: float | None = None,
        chatgpt_account_id: str | None = None,
    ) -> SimAccount:
        """Build an account with plan defaults for anything not given."""
        scale = _plan_scale(plan)
        if weekly_only is None:
            weekly_only = plan in WEEKLY_ONLY_PLANS
        if primary_dollars is None:
            primary_dollars = PLUS_PRIMARY_DOLLARS * scale
        if secondary_dollars is None:
            secondary_dollars = PLUS_SECONDARY_DOLLARS * scale

        primary = None
        if not weekly_only:
            primary = Window(PRIMARY_WINDOW_SECONDS, primary_dollars)
        return cls(
            email=email,
            plan=plan,
            chatgpt_account_id=chatgpt_account_id or _stable_id("", email),
            user_id=_stable_id("user-", email),
            primary=primary,
            secondary=Window(SECONDARY_WINDOW_SECONDS, secondary_dollars),
        )

    @property
    def windows(self) -> list[Window]:
        return [w for w in (self.primary, self.secondary) if w is not None]

    @property
    def slots(self) -> tuple[Window, Window | None]:
        """The windows as the upstream reports them: (primary, secondary) slot.

        A weekly-only account reports its weekly window in the primary slot.
        """
        if self.primary is None:
            return self.secondary, None
        return self.primary, self.secondary

    def start_windows(self, now: float) -> None:
        for window in self.windows:
            window.started_at = now

    def roll(self, now: float) -> None:
        for window in self.windows:
            window.roll(now)

    def full_windows(self, now: float) -> list[Window]:
        """The windows at 100 % after resetting any that have expired."""
        self.roll(now)
        return [w for w in self.windows if w.full]

    def consume(self, cost_usd: float, now: float) -> None:
        self.roll(now)
        for window in self.windows:
            window.consume(cost_usd)
        self.requests_served += 1


def price_for(model: str) -> tuple[float, float, float] | None:
    """Look a model up in the price table: exact name, else longest prefix."""
    exact = BUILTIN_PRICES.get(model)
    if exact is not None:
        return exact

    best: tuple[float, float, float] | None = None
    best_len = -1
    for name, price in BUILTIN_PRICES.items():
        prefix = name.removesuffix("*")
        if name.endswith("*") and model.startswith(prefix) and len(prefix) > best_len:
            best, best_len = price, len(prefix)
    return best


def request_cost(
    model: str, input_tokens: int, cached_tokens: int, output_tokens: int
) -> float:
    """USD cost of one request; an unpriced model costs what gpt-5 would."""
    price = price_for(model) or BUILTIN_PRICES[FALLBACK_PRICE_MODEL]
    input_price, cached_price, output_price = price
    fresh = input_tokens - cached_tokens
    total = fresh * input_price + cached_tokens * cached_price
    total += output_tokens * output_price
    return total / 1_000_000
