"""How routing behaves: selections, marks and failed usage polls."""

from __future__ import annotations

from codex_lb.events import AccountMarked, AccountSelected, UsageRefreshFailed
from codex_lb.events.collector_api import CollectorContext
from codex_lb.events.labels import (
    REFRESH_FAILURE_CODES,
    SELECTION_OUTCOMES,
    SELECTION_POOLS,
    USAGE_REFRESH_REASONS,
    error_code_label,
)

MARK_EVENTS = (
    "rate_limit",
    "usage_limit_reached",
    "quota_exceeded",
    "permanent_failure",
    "error",
)


class RoutingMetrics:
    """Selection outcomes, account marks and usage-refresh failures."""

    def register(self, ctx: CollectorContext) -> None:
        self.selections = ctx.counter(
            "codex_lb_lb_select_total",
            "Account selections by pool tried and outcome.",
            ("pool", "outcome"),
        )
        self.marks = ctx.counter(
            "codex_lb_lb_mark_total",
            "Marks left on accounts after failures, by kind.",
            ("event",),
        )
        self.permanent = ctx.counter(
            "codex_lb_lb_mark_permanent_failure_total",
            "Accounts that need a new login, by the refresh error code (known "
            "codes, else other).",
            ("code",),
        )
        self.refresh_failures = ctx.counter(
            "codex_lb_usage_refresh_failures_total",
            "Usage polls that failed, by reason.",
            ("reason",),
        )
        # Every known label value starts at 0, so the first selection of
        # each kind and the first lost login show in rate() and increase().
        for event in MARK_EVENTS:
            self.marks.touch(event=event)
        for pool in SELECTION_POOLS:
            for outcome in SELECTION_OUTCOMES:
                self.selections.touch(pool=pool, outcome=outcome)
        for code in sorted(REFRESH_FAILURE_CODES):
            self.permanent.touch(code=code)
        for reason in USAGE_REFRESH_REASONS:
            self.refresh_failures.touch(reason=reason)

    def account_selected(self, event: AccountSelected) -> None:
        self.selections.inc(pool=event.pool, outcome=event.outcome)

    def account_marked(self, event: AccountMarked) -> None:
        self.marks.inc(event=event.event)
        if event.event == "permanent_failure":
            self.permanent.inc(code=error_code_label(event.code))

    def usage_refresh_failed(self, event: UsageRefreshFailed) -> None:
        self.refresh_failures.inc(reason=event.reason)
