"""What a plan's weekly window holds, for collectors that count credits."""

from __future__ import annotations

from codex_lb.constants import PLAN_WEEKLY_CREDITS

DEFAULT_PLAN = "plus"


def weekly_credits(plan: str | None) -> float:
    """A plan's weekly capacity in credits; unknown plans count as plus
    (SPEC section 7: plus 7 560, pro 50 400, team and business as plus)."""
    default = PLAN_WEEKLY_CREDITS[DEFAULT_PLAN]
    if not plan:
        return default
    return PLAN_WEEKLY_CREDITS.get(plan.lower(), default)
