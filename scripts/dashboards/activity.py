"""codex-lb / Activity: one account by the hour, the pool by the day."""

from __future__ import annotations

from .model import Dashboard, Panel, Row, account_variable, per_account, q

# Titles show the account's display name; queries use its id.
ACCOUNT_NAME = "${account:text}"

# Whole days with a 1 d step, so every daily bar ends on a midnight.
ACTIVITY = Dashboard(
    uid="codex-lb-activity",
    title="codex-lb / Activity",
    description="Hourly activity of one account and daily totals of the pool.",
    time_from="now-7d/d",
    time_to="now/d",
    variables=(account_variable(multi=False),),
    items=(
        Panel(
            f"Cost over the range: {ACCOUNT_NAME}",
            "stat",
            (
                q(
                    "sum(increase(codex_lb_proxy_account_cost_usd_total"
                    '{account_id="$account"}[$__range]))'
                ),
            ),
            width=6,
            height=4,
            unit="currencyUSD",
        ),
        Panel(
            f"Requests over the range: {ACCOUNT_NAME}",
            "stat",
            (
                q(
                    "sum(increase(codex_lb_proxy_account_requests_total"
                    '{account_id="$account"}[$__range]))'
                ),
            ),
            width=6,
            height=4,
            unit="short",
        ),
        Panel(
            "Cost over the range: pool",
            "stat",
            (q("sum(increase(codex_lb_proxy_cost_usd_total[$__range]))"),),
            width=6,
            height=4,
            unit="currencyUSD",
        ),
        Panel(
            "Requests over the range: pool",
            "stat",
            (q("sum(increase(codex_lb_proxy_requests_total[$__range]))"),),
            width=6,
            height=4,
            unit="short",
        ),
        Row(f"By hour: {ACCOUNT_NAME}"),
        Panel(
            f"Cost per hour: {ACCOUNT_NAME}",
            "timeseries",
            (
                q(
                    "increase(codex_lb_proxy_account_cost_usd_total"
                    '{account_id="$account"}[1h])',
                    "USD",
                ),
            ),
            width=12,
            unit="currencyUSD",
            interval="1h",
            bars=True,
        ),
        Panel(
            f"Requests per hour: {ACCOUNT_NAME}",
            "timeseries",
            (
                q(
                    "increase(codex_lb_proxy_account_requests_total"
                    '{account_id="$account"}[1h])',
                    "{{status}}",
                ),
            ),
            width=12,
            unit="short",
            interval="1h",
            bars=True,
            stacked=True,
        ),
        Row("Daily totals (whole days, 1 d step)"),
        Panel(
            "Total cost per day",
            "timeseries",
            (q("sum(increase(codex_lb_proxy_cost_usd_total[1d]))", "USD"),),
            width=12,
            unit="currencyUSD",
            interval="1d",
            bars=True,
            description="Keep the time range on whole days (now-7d/d to now/d) "
            "so each 1 d step ends on midnight.",
        ),
        Panel(
            "Cost per day by account (top 20)",
            "timeseries",
            (
                q(
                    per_account(
                        "topk(20, sum by (account_id) "
                        "(increase(codex_lb_proxy_account_cost_usd_total[1d])))"
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="currencyUSD",
            interval="1d",
            bars=True,
            stacked=True,
        ),
        Panel(
            "Requests per day",
            "timeseries",
            (
                q(
                    "sum by (status) (increase(codex_lb_proxy_requests_total[1d]))",
                    "{{status}}",
                ),
            ),
            width=12,
            unit="short",
            interval="1d",
            bars=True,
            stacked=True,
        ),
        Panel(
            "Requests per day by account (top 20)",
            "timeseries",
            (
                q(
                    per_account(
                        "topk(20, sum by (account_id) "
                        "(increase(codex_lb_proxy_account_requests_total[1d])))"
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="short",
            interval="1d",
            bars=True,
            stacked=True,
        ),
    ),
)
