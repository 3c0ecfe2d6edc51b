"""codex-lb / Routing: how accounts are picked, marked and failed over."""

from __future__ import annotations

from .model import Dashboard, Panel, q

# Accounts by status lives on the accounts dashboard only.
ROUTING = Dashboard(
    uid="codex-lb-routing",
    title="codex-lb / Routing",
    description="How accounts are picked, marked and failed over.",
    items=(
        Panel(
            "Selection outcomes/s by pool",
            "timeseries",
            (
                q(
                    "sum by (pool, outcome) (rate(codex_lb_lb_select_total[5m]))",
                    "{{pool}} {{outcome}}",
                ),
            ),
            width=12,
            unit="ops",
            stacked=True,
        ),
        Panel(
            "Marks/s by event",
            "timeseries",
            (
                q(
                    "sum by (event) (rate(codex_lb_lb_mark_total[5m]))",
                    "{{event}}",
                ),
            ),
            width=12,
            unit="ops",
        ),
        Panel(
            "Permanent failures by code (per hour)",
            "timeseries",
            (
                q(
                    "sum by (code) "
                    "(increase(codex_lb_lb_mark_permanent_failure_total[1h]))",
                    "{{code}}",
                ),
            ),
            width=12,
            unit="short",
            description="Refreshes that failed for good: the account needs a "
            "new login.",
        ),
        Panel(
            "Accounts tried per request p95",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.95, sum by (le, api) "
                    "(rate(codex_lb_proxy_attempts_bucket[$__rate_interval])))",
                    "{{api}}",
                ),
            ),
            width=12,
            unit="short",
        ),
    ),
)
