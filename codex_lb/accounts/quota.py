"""Turning upstream quota reports into readings.

Two sources report the same thing: the ``wham/usage`` endpoint and the
``x-codex-*`` headers on proxied responses. A window is classified by its
length, not by the slot it came in: a plan that reports only a weekly window
in the primary slot still feeds the weekly (secondary) reading. A missing,
null or empty value is unknown, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from codex_lb.store import QuotaReading

# Windows shorter than a day are the short (5 h) window; the rest are weekly.
_SHORT_WINDOW_LIMIT_MINUTES = 24 * 60


@attrs.frozen
class _Window:
    used_percent: float | None
    window_minutes: int | None
    reset_at: float | None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _clamp_percent(value: float | None) -> float | None:
    return None if value is None else min(100.0, max(0.0, value))


def _window_from_usage(raw: Any, now: float) -> _Window | None:
    if not isinstance(raw, Mapping):
        return None
    seconds = _number(raw.get("limit_window_seconds"))
    reset_at = _number(raw.get("reset_at"))
    if reset_at is None:
        after = _number(raw.get("reset_after_seconds"))
        reset_at = None if after is None else now + after
    window = _Window(
        used_percent=_clamp_percent(_number(raw.get("used_percent"))),
        window_minutes=None if not seconds else round(seconds / 60),
        reset_at=reset_at,
    )
    if window == _Window(None, None, None):
        return None
    return window


def _window_from_headers(
    headers: Mapping[str, str], slot: str, now: float
) -> _Window | None:
    prefix = f"x-codex-{slot}-"
    used = _number(headers.get(prefix + "used-percent"))
    minutes = _number(headers.get(prefix + "window-minutes"))
    reset_at = _number(headers.get(prefix + "reset-at"))
    if reset_at is None:
        after = _number(headers.get(prefix + "reset-after-seconds"))
        reset_at = None if after is None else now + after
    window = _Window(
        used_percent=_clamp_percent(used),
        # A window of 0 minutes is how some upstreams say "no such window".
        window_minutes=int(minutes) if minutes else None,
        reset_at=reset_at,
    )
    if window == _Window(None, None, None):
        return None
    return window


def _classify(
    first: _Window | None, second: _Window | None
) -> tuple[_Window | None, _Window | None]:
    """(short, weekly) from the windows in the primary and secondary slots."""
    short: _Window | None = None
    weekly: _Window | None = None
    for slot_default, window in (("short", first), ("weekly", second)):
        if window is None:
            continue
        kind = slot_default
        if window.window_minutes is not None:
            is_short = window.window_minutes < _SHORT_WINDOW_LIMIT_MINUTES
            kind = "short" if is_short else "weekly"
        if kind == "short" and short is None:
            short = window
        elif kind == "weekly" and weekly is None:
            weekly = window
    return short, weekly


def _reading(
    short: _Window | None,
    weekly: _Window | None,
    now: float,
    source: str,
    plan: str | None = None,
    credits_balance: float | None = None,
) -> QuotaReading | None:
    if short is None and weekly is None:
        return None
    return QuotaReading(
        observed_at=now,
        source=source,
        primary_used_percent=short.used_percent if short else None,
        primary_window_minutes=short.window_minutes if short else None,
        primary_reset_at=short.reset_at if short else None,
        secondary_used_percent=weekly.used_percent if weekly else None,
        secondary_window_minutes=weekly.window_minutes if weekly else None,
        secondary_reset_at=weekly.reset_at if weekly else None,
        plan=plan,
        credits_balance=credits_balance,
    )


def reading_from_usage(payload: Any, now: float) -> QuotaReading | None:
    """A reading from a ``wham/usage`` answer; None if it reports no window."""
    if not isinstance(payload, Mapping):
        return None
    limits = payload.get("rate_limit")
    limits = limits if isinstance(limits, Mapping) else {}
    short, weekly = _classify(
        _window_from_usage(limits.get("primary_window"), now),
        _window_from_usage(limits.get("secondary_window"), now),
    )
    plan = payload.get("plan_type")
    credits = payload.get("credits")
    balance = _number(credits.get("balance")) if isinstance(credits, Mapping) else None
    return _reading(
        short,
        weekly,
        now,
        "poll",
        plan=plan.lower() if isinstance(plan, str) and plan else None,
        credits_balance=balance,
    )


_HEADER_NAMES = tuple(
    f"x-codex-{slot}-{field}"
    for slot in ("primary", "secondary")
    for field in ("used-percent", "window-minutes", "reset-at", "reset-after-seconds")
)
# Header values seen -> the windows they make, for values that make the same
# windows at any time (each window names its reset_at, or no reset at all).
# Every answer carries these headers, and they repeat from answer to answer.
_MAX_PARSED = 1024
_parsed: dict[tuple[str | None, ...], tuple[_Window | None, _Window | None]] = {}


def reading_from_headers(headers: Mapping[str, str], now: float) -> QuotaReading | None:
    """A reading from the ``x-codex-*`` headers of a response, if it has any."""
    values = tuple([headers.get(name) for name in _HEADER_NAMES])
    windows = _parsed.get(values)
    if windows is None:
        windows = _classify(
            _window_from_headers(headers, "primary", now),
            _window_from_headers(headers, "secondary", now),
        )
        # A reset-after-seconds read in place of a reset-at depends on now.
        if all(
            _number(values[at]) is not None or _number(values[after]) is None
            for at, after in ((2, 3), (6, 7))
        ):
            if len(_parsed) >= _MAX_PARSED:
                _parsed.clear()
            _parsed[values] = windows
    return _reading(*windows, now, "headers")


def merge_reading(old: QuotaReading | None, new: QuotaReading) -> QuotaReading:
    """``new`` with the windows it does not mention carried over from ``old``."""
    if old is None:
        return new
    changes: dict[str, Any] = {}
    for slot in ("primary", "secondary"):
        fields = (f"{slot}_used_percent", f"{slot}_window_minutes", f"{slot}_reset_at")
        if all(getattr(new, f) is None for f in fields):
            changes.update({f: getattr(old, f) for f in fields})
    if new.plan is None and old.plan is not None:
        changes["plan"] = old.plan
    if new.credits_balance is None and old.credits_balance is not None:
        changes["credits_balance"] = old.credits_balance
    return attrs.evolve(new, **changes) if changes else new
