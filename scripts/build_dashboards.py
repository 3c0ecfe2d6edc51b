"""Writes the Grafana dashboards in `grafana/dashboards/` from one description.

The dashboards are plain Grafana JSON that Grafana loads through file
provisioning; this script is their source, so panel ids, grid positions and
the data source stay consistent. Run `python scripts/build_dashboards.py`
after changing a panel (a test fails when the JSON files are stale).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"

# The uid the provisioned data source has (grafana/provisioning/datasources).
DATASOURCE_UID = "codex-lb-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}

GRID_COLUMNS = 24

# Puts the operator-facing name (email or id, by identity mode) beside every
# per-account series.
IDENTITY_JOIN = " * on(account_id) group_left(display) codex_lb_account_identity"


def per_account(expr: str) -> str:
    """`expr` (one series per account_id) with the account's display name."""
    return f"({expr}){IDENTITY_JOIN}"


@attrs.frozen
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    # Instant queries feed tables; a range query feeds graphs.
    instant: bool = False
    # The column (or series) name in the panel; tables rename by it.
    label: str = ""
    # A table column's own unit, when it differs from the panel's.
    unit: str = ""


@attrs.frozen
class Panel:
    """One panel: a kind (timeseries, stat, table), its queries and look.

    `interval` is Grafana's minimum interval, e.g. "1d" for daily totals.
    """

    title: str
    kind: str
    queries: tuple[Query, ...]
    width: int
    height: int = 8
    unit: str = ""
    description: str = ""
    stacked: bool = False
    interval: str = ""
    bars: bool = False


@attrs.frozen
class Row:
    """A titled row header that starts a new band of panels."""

    title: str


@attrs.frozen
class Variable:
    """A dashboard variable filled from Prometheus."""

    name: str
    label: str
    query: str
    regex: str = ""
    multi: bool = False
    include_all: bool = False


@attrs.frozen
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-6h"
    time_to: str = "now"


def q(expr: str, legend: str = "", **kwargs: Any) -> Query:
    return Query(expr=expr, legend=legend, **kwargs)


def account_table(title: str, expr: str, unit: str, description: str) -> Panel:
    """A top-N table: one row per account, its display name and one value."""
    return Panel(
        title,
        "table",
        (q(per_account(expr), instant=True, label=title),),
        width=12,
        height=9,
        unit=unit,
        description=description,
    )


# -- the five dashboards --------------------------------------------------

ACCOUNT_VARIABLE_REGEX = '/account_id="(?<value>[^"]+)".*display="(?<text>[^"]+)"/'

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
                    'sum(rate(codex_lb_proxy_requests_total{model=~"$model"}'
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
            (
                q(
                    'sum(rate(codex_lb_proxy_requests_total{status="error"}[5m])) / '
                    "sum(rate(codex_lb_proxy_requests_total[5m]))"
                ),
            ),
            width=4,
            height=4,
            unit="percentunit",
        ),
        Panel(
            "Cost per hour",
            "stat",
            (
                q(
                    'sum(rate(codex_lb_proxy_cost_usd_total{model=~"$model"}'
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
            (q('sum(increase(codex_lb_proxy_cost_usd_total{model=~"$model"}[24h]))'),),
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
                    '{model=~"$model"}[$__rate_interval]))',
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
            (
                q(
                    'sum(rate(codex_lb_proxy_requests_total{status="error"}[5m])) / '
                    "sum(rate(codex_lb_proxy_requests_total[5m]))",
                    "error rate",
                ),
            ),
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
        ),
        Row("Latency"),
        Panel(
            "Latency p50 / p95",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.50, sum by (le) "
                    "(rate(codex_lb_proxy_latency_ms_bucket[5m])))",
                    "p50",
                ),
                q(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(codex_lb_proxy_latency_ms_bucket[5m])))",
                    "p95",
                ),
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
                    '(rate(codex_lb_proxy_latency_ms_bucket{model=~"$model"}'
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
                    'sum by (kind) (rate(codex_lb_proxy_tokens_total{model=~"$model"}'
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
                    'sum(rate(codex_lb_proxy_tokens_total{kind="cached_input"}[5m])) '
                    '/ sum(rate(codex_lb_proxy_tokens_total{kind="input"}[5m]))',
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
                    '{model=~"$model"}[$__rate_interval])) * 3600',
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
                    'sum(increase(codex_lb_proxy_cost_usd_total{model=~"$model"}[1d]))',
                    "USD per day",
                ),
            ),
            width=12,
            unit="currencyUSD",
            interval="1d",
            bars=True,
            description="One bar per day; whole-day ranges put bars on midnight.",
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

ACCOUNTS = Dashboard(
    uid="codex-lb-accounts",
    title="codex-lb / Accounts and risk",
    description="Per-account quota, traffic and the risks of the weekly windows.",
    variables=(
        Variable(
            "account",
            "Account",
            "query_result(codex_lb_account_identity)",
            regex=ACCOUNT_VARIABLE_REGEX,
            multi=True,
            include_all=True,
        ),
    ),
    items=(
        Panel(
            "Pool runway",
            "stat",
            (q("min(codex_lb_pool_runway_seconds)"),),
            width=6,
            height=4,
            unit="s",
            description="Time until the pool's usable weekly capacity runs out "
            "at the last day's burn rate, counting resets (codex-lb's forecast; "
            "infinite when resets keep up with the use, no data when nothing "
            "is being used).",
        ),
        Panel(
            "Earliest weekly reset in",
            "stat",
            (q("min(codex_lb_secondary_reset_at_seconds) - time()"),),
            width=6,
            height=4,
            unit="s",
        ),
        Panel(
            "Weekly credits left (pool)",
            "stat",
            (q("sum(codex_lb_secondary_remaining_credits)"),),
            width=6,
            height=4,
            unit="short",
        ),
        Panel(
            "Accounts needing re-auth",
            "stat",
            (q('sum(codex_lb_accounts{status="reauth_required"})'),),
            width=6,
            height=4,
            unit="short",
            description="Log these accounts in again (dashboard or `codex_lb login`).",
        ),
        Row("Weekly quota: top 20"),
        account_table(
            "Top 20 by remaining weekly credits",
            "topk(20, codex_lb_secondary_remaining_credits)",
            "short",
            "Credits left in each account's weekly window.",
        ),
        account_table(
            "Top 20 by weekly used %",
            "topk(20, codex_lb_secondary_used_percent)",
            "percent",
            "How full each account's weekly window is.",
        ),
        Row("Traffic: top 10"),
        account_table(
            "Top 10 by cost per hour",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_cost_usd_total[5m])) * 3600)",
            "currencyUSD",
            "API-equivalent dollars per hour spent through each account.",
        ),
        account_table(
            "Top 10 by requests/s",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_requests_total[5m])))",
            "reqps",
            "Requests each account served (success or error).",
        ),
        account_table(
            "Top 10 by error rate",
            "topk(10, sum by (account_id) "
            '(rate(codex_lb_proxy_account_requests_total{status="error"}[5m])) / '
            "sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m])))",
            "percentunit",
            "Share of each account's requests that ended in an error.",
        ),
        account_table(
            "Top 10 by retries/s",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_retries_total[5m])))",
            "reqps",
            "How often requests left each account for another.",
        ),
        Row("Reset cliff and forecasts"),
        Panel(
            "Reset cliff: time to weekly reset beside what is left",
            "table",
            (
                q(
                    per_account("codex_lb_secondary_reset_at_seconds - time()"),
                    instant=True,
                    label="Weekly reset in",
                    unit="s",
                ),
                q(
                    per_account("codex_lb_secondary_remaining_credits"),
                    instant=True,
                    label="Credits left now",
                    unit="short",
                ),
                q(
                    per_account("codex_lb_secondary_used_percent"),
                    instant=True,
                    label="Weekly used %",
                    unit="percent",
                ),
                q(
                    per_account("codex_lb_secondary_waste_forecast_credits"),
                    instant=True,
                    label="Credits lost at reset (forecast)",
                    unit="short",
                ),
                q(
                    per_account("codex_lb_secondary_exhaustion_eta_seconds"),
                    instant=True,
                    label="Weekly window full in (forecast)",
                    unit="s",
                ),
            ),
            width=24,
            height=10,
            description="Capacity left close to a reset is lost at the reset. "
            "Sort by 'Weekly reset in'; a large 'Credits lost at reset' "
            "means route more work to that account.",
        ),
        Panel(
            "Implied weekly quota (USD, observed over 1 d)",
            "table",
            (
                q(
                    per_account(
                        "increase(codex_lb_proxy_account_cost_usd_total[1d]) / "
                        "(increase(codex_lb_secondary_used_percent_increase_total"
                        "[1d]) / 100)"
                    ),
                    instant=True,
                    label="Implied USD (Prometheus, 1 d)",
                ),
                q(
                    per_account("codex_lb_secondary_implied_quota_usd"),
                    instant=True,
                    label="Implied USD (codex-lb)",
                ),
            ),
            width=24,
            height=9,
            unit="currencyUSD",
            description="What 100 % of a weekly window is worth in API dollars, "
            "from cost divided by the weekly percent it consumed. "
            "Workload-dependent: an operational estimate.",
        ),
        Row("Trends"),
        Panel(
            "Weekly used % by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_secondary_used_percent{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="percent",
        ),
        Panel(
            "5 h used % by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_primary_used_percent{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="percent",
        ),
        Panel(
            "Accounts by status",
            "timeseries",
            (q("sum by (status) (codex_lb_accounts)", "{{status}}"),),
            width=12,
            unit="short",
            stacked=True,
        ),
        Panel(
            "Requests in flight by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_account_inflight_requests{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="short",
        ),
    ),
)

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
        Panel(
            "Accounts by status",
            "timeseries",
            (q("sum by (status) (codex_lb_accounts)", "{{status}}"),),
            width=24,
            unit="short",
            stacked=True,
        ),
    ),
)

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

ACTIVITY = Dashboard(
    uid="codex-lb-activity",
    title="codex-lb / Activity",
    description="Hourly activity of one account and daily totals of the pool.",
    time_from="now-7d/d",
    time_to="now/d",
    variables=(
        Variable(
            "account",
            "Account",
            "query_result(codex_lb_account_identity)",
            regex=ACCOUNT_VARIABLE_REGEX,
        ),
    ),
    items=(
        Panel(
            "Cost over the range: $account",
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
            "Requests over the range: $account",
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
        Row("By hour: $account"),
        Panel(
            "Cost per hour: $account",
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
            "Requests per hour: $account",
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

DASHBOARDS = (OVERVIEW, ACCOUNTS, ROUTING, ESTIMATION, ACTIVITY)


# -- rendering to Grafana JSON ----------------------------------------------


def _layout(items: Iterable[Panel | Row]) -> list[tuple[Panel | Row, dict[str, int]]]:
    """Place panels left to right, wrapping at 24 columns; rows span the width."""
    placed: list[tuple[Panel | Row, dict[str, int]]] = []
    x = y = band = 0
    for item in items:
        if isinstance(item, Row):
            # A row starts below everything placed so far.
            y += band
            x = band = 0
            placed.append((item, {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1}))
            y += 1
            continue
        if x + item.width > GRID_COLUMNS:
            y += band
            x = band = 0
        placed.append((item, {"x": x, "y": y, "w": item.width, "h": item.height}))
        x += item.width
        band = max(band, item.height)
    return placed


def _target(query: Query, ref: str, panel: Panel) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": query.expr,
        "legendFormat": query.legend or query.label or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "editorMode": "code",
    }
    if panel.kind == "table":
        target["format"] = "table"
    # Grafana's "Min step": with the panel's minimum interval it makes daily
    # panels evaluate once a day, on the range's whole-day boundaries.
    if panel.interval:
        target["interval"] = panel.interval
    return target


def _table_transformations(panel: Panel) -> list[dict[str, Any]]:
    """Merge the instant queries into one row per account; name the columns."""
    refs = [chr(ord("A") + i) for i in range(len(panel.queries))]
    rename = {
        ("Value" if len(refs) == 1 else f"Value #{ref}"): query.label
        for ref, query in zip(refs, panel.queries, strict=True)
    }
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": {
                    "Time": True,
                    "__name__": True,
                    "instance": True,
                    "job": True,
                },
                "indexByName": {"display": 0, "account_id": 1},
                "renameByName": {
                    "display": "Account",
                    "account_id": "Account id",
                    **rename,
                },
            },
        },
    ]


def _column_units(panel: Panel) -> list[dict[str, Any]]:
    """Per-column units of a table, matched by the column's name."""
    return [
        {
            "matcher": {"id": "byName", "options": query.label},
            "properties": [{"id": "unit", "value": query.unit}],
        }
        for query in panel.queries
        if query.unit and query.label
    ]


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    table = panel.kind == "table"
    refs = [chr(ord("A") + i) for i in range(len(panel.queries))]
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": DATASOURCE,
        "targets": [
            _target(query, ref, panel)
            for ref, query in zip(refs, panel.queries, strict=True)
        ],
        "fieldConfig": {
            "defaults": {"unit": panel.unit or "short"},
            "overrides": _column_units(panel) if table else [],
        },
    }
    if panel.interval:
        result["interval"] = panel.interval
    if panel.kind == "timeseries":
        custom: dict[str, Any] = {"drawStyle": "bars" if panel.bars else "line"}
        if panel.stacked:
            custom["stacking"] = {"mode": "normal", "group": "A"}
        if panel.bars:
            custom["fillOpacity"] = 80
        result["fieldConfig"]["defaults"]["custom"] = custom
        result["options"] = {
            "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        result["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    elif table:
        result["transformations"] = _table_transformations(panel)
        first = panel.queries[0].label
        result["options"] = {
            "showHeader": True,
            "sortBy": [{"displayName": first, "desc": True}],
        }
    return result


def _variable_json(variable: Variable) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": variable.query,
        "definition": variable.query,
        "regex": variable.regex,
        "refresh": 2,
        "sort": 1,
        "multi": variable.multi,
        "includeAll": variable.include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if variable.include_all:
        result["allValue"] = ".*"
    return result


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as the JSON Grafana provisions from a file."""
    panels = []
    for panel_id, (item, grid) in enumerate(_layout(dashboard.items), start=1):
        if isinstance(item, Row):
            panels.append(
                {
                    "id": panel_id,
                    "type": "row",
                    "title": item.title,
                    "gridPos": grid,
                    "collapsed": False,
                    "panels": [],
                }
            )
        else:
            panels.append(_panel_json(item, panel_id, grid))
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["codex-lb"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": dashboard.time_from, "to": dashboard.time_to},
        "links": [
            {
                "type": "dashboards",
                "tags": ["codex-lb"],
                "asDropdown": True,
                "title": "codex-lb",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": [_variable_json(v) for v in dashboard.variables]},
        "panels": panels,
    }


def file_name(dashboard: Dashboard) -> str:
    return dashboard.uid.removeprefix("codex-lb-") + ".json"


def rendered_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as written to disk."""
    return {file_name(d): json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main() -> None:
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    files = rendered_files()
    for name, text in files.items():
        (DASHBOARD_DIR / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {DASHBOARD_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
