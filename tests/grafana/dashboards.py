"""Reading the provisioned dashboards, for the structural and live tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.compose.helpers import ROOT

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"

# Every PromQL expression of the operator's seed (docs/grafana.md lists the
# panel each sits in). A dashboard must carry each one verbatim, up to
# whitespace.
SEED_EXPRESSIONS = (
    "topk(20, codex_lb_secondary_remaining_credits)",
    "topk(20, codex_lb_secondary_used_percent)",
    'sum(rate(codex_lb_proxy_requests_total{status="error"}[5m])) '
    "/ sum(rate(codex_lb_proxy_requests_total[5m]))",
    "histogram_quantile(0.95, sum by (le) "
    "(rate(codex_lb_proxy_latency_ms_bucket[5m])))",
    'sum(rate(codex_lb_proxy_tokens_total{kind="cached_input"}[5m])) '
    '/ sum(rate(codex_lb_proxy_tokens_total{kind="input"}[5m]))',
    "topk(10, sum by (account_id) "
    "(rate(codex_lb_proxy_account_cost_usd_total[5m])) * 3600)",
    "topk(10, sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m])))",
    "sum by (account_id) "
    '(rate(codex_lb_proxy_account_requests_total{status="error"}[5m])) '
    "/ sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m]))",
    "* on(account_id) group_left(display) codex_lb_account_identity",
    "sum by (error_class) (rate(codex_lb_proxy_retries_total[5m]))",
    "topk(10, sum by (account_id) (rate(codex_lb_proxy_account_retries_total[5m])))",
    "sum by (reason) (rate(codex_lb_proxy_unpriced_success_total[5m]))",
    "topk(10, sum by (account_id) "
    "(rate(codex_lb_proxy_account_unpriced_success_total[5m])))",
    "increase(codex_lb_proxy_account_cost_usd_total[1d]) "
    "/ (increase(codex_lb_secondary_used_percent_increase_total[1d]) / 100)",
    'increase(codex_lb_proxy_account_cost_usd_total{account_id="$account"}[1h])',
    'increase(codex_lb_proxy_account_requests_total{account_id="$account"}[1h])',
    "sum(increase(codex_lb_proxy_cost_usd_total[1d]))",
    "topk(20, sum by (account_id) "
    "(increase(codex_lb_proxy_account_cost_usd_total[1d])))",
    "sum by (pool, outcome) (rate(codex_lb_lb_select_total[5m]))",
    "sum by (event) (rate(codex_lb_lb_mark_total[5m]))",
    "sum by (code) (increase(codex_lb_lb_mark_permanent_failure_total[1h]))",
)

# Variables Grafana itself defines.
BUILTIN_VARIABLES = frozenset(
    {
        "__rate_interval",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__dashboard",
        "__from",
        "__to",
    }
)


def normalize(expr: str) -> str:
    """PromQL with all whitespace removed, for comparing expressions."""
    return re.sub(r"\s+", "", expr)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON, for every provisioned dashboard."""
    return {
        path.name: json.loads(path.read_text())
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, nested ones in rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(
    dashboard: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables_used(text: str) -> set[str]:
    """Names of the `$name` and `${name}` variables in an expression or title."""
    return set(re.findall(r"\$\{?(\w+)", text))


def provisioned_datasource_uid() -> str:
    text = (PROVISIONING / "datasources" / "prometheus.yml").read_text()
    (uid,) = re.findall(r"^\s+uid:\s*(\S+)\s*$", text, re.M)
    return uid


def substitute(expr: str, values: dict[str, str]) -> str:
    """The expression as Grafana would send it, variables replaced."""
    # Longest names first, so `$__range_s` is not read as `$__range` + "_s".
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name])
        expr = expr.replace("$" + name, values[name])
    return expr


def grafana_regex(regex: str) -> re.Pattern[str]:
    """A Grafana variable regex (`/.../` with `(?<name>...)`) for Python."""
    assert regex.startswith("/") and regex.endswith("/"), regex
    return re.compile(regex[1:-1].replace("(?<", "(?P<"))


def query_result_line(sample: dict[str, Any]) -> str:
    """A sample as Grafana's `query_result()` shows it to a variable regex."""
    metric = dict(sample["metric"])
    name = metric.pop("__name__", "")
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
    value, stamp = sample["value"][1], sample["value"][0]
    return f"{name}{{{labels}}} {value} {int(float(stamp) * 1000)}"
