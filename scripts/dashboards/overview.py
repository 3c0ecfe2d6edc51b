"""codex-lb / Overview: traffic, errors, latency, tokens, cache and cost."""

from __future__ import annotations

from .model import MODEL, Dashboard, Panel, Row, Variable, q


def error_rate(window: str) -> str:
    """Share of the selected models' requests that ended in an error."""
    return (
        f'sum(rate(codex_lb_proxy_requests_total{{status="error",{MODEL}}}[{window}]))'
        f" / sum(rate(codex_lb_proxy_requests_total{{{MODEL}}}[{window}]))"
    )


def latency_quantile(quantile: str) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate(codex_lb_proxy_latency_ms_bucket{{{MODEL}}}[5m])))"
    )


OVERVIEW = Dashboard(
    uid="codex-lb-overview",
    title="codex-lb / Overview",
    description="Traffic, errors, latency, tokens, cache and cost of the proxy.",
    variables=(
        Variable(
            "model",
            "Model",
            "label_values(codex_lb_proxy_requests_total, model)",
            multi=True,
            include_all=True,
        ),
    ),
    items=(
        Panel(
            "Requests/s",
            "stat",
            (
                q(
                    f"sum(rate(codex_lb_proxy_requests_total{{{MODEL}}}"
                    "[$__rate_interval]))"
                ),
            ),
            width=4,
            height=4,
            unit="reqps",
        ),
        Panel(
            "Error rate (5 m)",
            "stat",
            (q(error_rate("5m")),),
            width=4,
            height=4,
            unit="percentunit",
        ),
        Panel(
            "Cost per hour",
            "stat",
            (
                q(
                    f"sum(rate(codex_lb_proxy_cost_usd_total{{{MODEL}}}"
                    "[$__rate_interval])) * 3600"
                ),
            ),
            width=4,
            height=4,
            unit="currencyUSD",
        ),
        Panel(
            "Cost, last 24 h",
            "stat",
            (q(f"sum(increase(codex_lb_proxy_cost_usd_total{{{MODEL}}}[24h]))"),),
            width=4,
            height=4,
            unit="currencyUSD",
        ),
        Panel(
            "Requests in flight",
            "stat",
            (q("sum(codex_lb_proxy_inflight_requests)"),),
            width=4,
            height=4,
            unit="short",
        ),
        Panel(
            "Active accounts",
            "stat",
            (q('sum(codex_lb_accounts{status="active"})'),),
            width=4,
            height=4,
            unit="short",
        ),
        Row("Traffic and errors"),
        Panel(
            "Requests/s by model",
            "timeseries",
            (
                q(
                    "sum by (model) (rate(codex_lb_proxy_requests_total"
                    f"{{{MODEL}}}[$__rate_interval]))",
                    "{{model}}",
                ),
            ),
            width=8,
            unit="reqps",
            stacked=True,
        ),
        Panel(
            "Error rate",
            "timeseries",
            (q(error_rate("5m"), "error rate"),),
            width=8,
            unit="percentunit",
            description="Share of client requests that ended in an error.",
        ),
        Panel(
            "Errors/s by code",
            "timeseries",
            (
                q(
                    "sum by (error_code) (rate(codex_lb_proxy_errors_total"
                    "[$__rate_interval]))",
                    "{{error_code}}",
                ),
            ),
            width=8,
            unit="reqps",
            stacked=True,
            description="All models: the error counter has no model label.",
        ),
        Row("Latency"),
        Panel(
            "Latency p50 / p95",
            "timeseries",
            (
                q(latency_quantile("0.50"), "p50"),
                q(latency_quantile("0.95"), "p95"),
            ),
            width=12,
            unit="ms",
            description="Whole request, first byte in to last byte out.",
        ),
        Panel(
            "Latency p95 by model",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.95, sum by (le, model) "
                    f"(rate(codex_lb_proxy_latency_ms_bucket{{{MODEL}}}"
                    "[$__rate_interval])))",
                    "{{model}}",
                ),
            ),
            width=12,
            unit="ms",
        ),
        Row("Tokens and cache"),
        Panel(
            "Tokens/s by kind",
            "timeseries",
            (
                q(
                    f"sum by (kind) (rate(codex_lb_proxy_tokens_total{{{MODEL}}}"
                    "[$__rate_interval]))",
                    "{{kind}}",
                ),
            ),
            width=12,
            unit="short",
            description="Cached input is part of input; reasoning is part of output.",
        ),
        Panel(
            "Cache ratio",
            "timeseries",
            (
                q(
                    "sum(rate(codex_lb_proxy_tokens_total"
                    f'{{kind="cached_input",{MODEL}}}[5m])) '
                    f'/ sum(rate(codex_lb_proxy_tokens_total{{kind="input",{MODEL}}}'
                    "[5m]))",
                    "cached / input",
                ),
            ),
            width=12,
            unit="percentunit",
        ),
        Row("Cost"),
        Panel(
            "Cost per hour by model",
            "timeseries",
            (
                q(
                    "sum by (model) (rate(codex_lb_proxy_cost_usd_total"
                    f"{{{MODEL}}}[$__rate_interval])) * 3600",
                    "{{model}}",
                ),
            ),
            width=12,
            unit="currencyUSD",
            stacked=True,
        ),
        Panel(
            "Cost per day",
            "timeseries",
            (
                q(
                    f"sum(increase(codex_lb_proxy_cost_usd_total{{{MODEL}}}[1d]))",
                    "USD per day",
                ),
            ),
            width=12,
            unit="currencyUSD",
            interval="1d",
            bars=True,
            # The dashboard's 6 h range holds one daily bar at most.
            time_from="now-7d/d",
            description="The last 7 whole days and today so far, one bar per "
            "day, whatever the dashboard's range.",
        ),
        Row("Process health"),
        Panel(
            "Accounts tried per request (mean)",
            "timeseries",
            (
                q(
                    "sum(rate(codex_lb_proxy_attempts_sum[$__rate_interval])) / "
                    "sum(rate(codex_lb_proxy_attempts_count[$__rate_interval]))",
                    "attempts",
                ),
            ),
            width=8,
            unit="short",
        ),
        Panel(
            "Event loop lag",
            "timeseries",
            (q("max(codex_lb_event_loop_lag_seconds)", "lag"),),
            width=8,
            unit="s",
        ),
        Panel(
            "Request log buffer",
            "timeseries",
            (
                q("sum(codex_lb_request_log_buffer_size)", "rows waiting"),
                q(
                    "sum(rate(codex_lb_request_log_buffer_dropped_total"
                    "[$__rate_interval]))",
                    "rows dropped/s",
                ),
            ),
            width=8,
            unit="short",
        ),
    ),
)
