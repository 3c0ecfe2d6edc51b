"""codex-lb / Estimation quality: retries and requests codex-lb could not price."""

from __future__ import annotations

from .model import Dashboard, Panel, account_table, per_account, q

ESTIMATION = Dashboard(
    uid="codex-lb-estimation",
    title="codex-lb / Estimation quality",
    description="Retries and the requests whose cost codex-lb could not price.",
    items=(
        Panel(
            "Retries/s by error class",
            "timeseries",
            (
                q(
                    "sum by (error_class) (rate(codex_lb_proxy_retries_total[5m]))",
                    "{{error_class}}",
                ),
            ),
            width=12,
            unit="ops",
            stacked=True,
        ),
        Panel(
            "Unpriced successes/s by reason",
            "timeseries",
            (
                q(
                    "sum by (reason) (rate(codex_lb_proxy_unpriced_success_total[5m]))",
                    "{{reason}}",
                ),
            ),
            width=12,
            unit="reqps",
            stacked=True,
            description="Successful requests with no cost: spend is under-counted.",
        ),
        account_table(
            "Top 10 accounts by unpriced successes/s",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_unpriced_success_total[5m])))",
            "reqps",
            "Accounts whose spend is under-counted the most.",
        ),
        Panel(
            "Unpriced share of successes",
            "timeseries",
            (
                q(
                    "sum(rate(codex_lb_proxy_unpriced_success_total"
                    "[$__rate_interval])) / "
                    'sum(rate(codex_lb_proxy_requests_total{status="success"}'
                    "[$__rate_interval]))",
                    "unpriced share",
                ),
            ),
            width=12,
            unit="percentunit",
        ),
        Panel(
            "Requests/s for models outside the price table",
            "timeseries",
            (
                q(
                    'sum by (status) (rate(codex_lb_proxy_requests_total{model="other"}'
                    "[$__rate_interval]))",
                    "{{status}}",
                ),
            ),
            width=12,
            unit="reqps",
            description="Add the model to CODEX_LB_PRICING_FILE to price it.",
        ),
        Panel(
            "Quota reading age by account",
            "timeseries",
            (
                q(
                    per_account(
                        "max by (account_id) (codex_lb_quota_snapshot_age_seconds)"
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="s",
            description="Old readings make every quota figure less certain.",
        ),
        Panel(
            "Usage refresh failures/s by reason",
            "timeseries",
            (
                q(
                    "sum by (reason) (rate(codex_lb_usage_refresh_failures_total"
                    "[$__rate_interval]))",
                    "{{reason}}",
                ),
            ),
            width=24,
            unit="ops",
        ),
    ),
)
