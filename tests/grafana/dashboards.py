"""Reading the provisioned dashboards, for the structural and live tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.compose.helpers import ROOT

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"

# The operator's seed, as the repository keeps it (a test beside it checks
# it against the shared original). Read only.
SEED = ROOT / "tests" / "collectors" / "seed_000.txt"

# A seed bullet that shows an exposition line (label names and a value)
# rather than a query.
EXPOSITION_LINE = re.compile(r"\w+\{[\w,]+\} \d+")

# The `$model` matcher the Overview adds; at All (`.*`) it selects every
# series, so a query with it stands for the same query without it.
MODEL_MATCHER = re.compile(r',?model=~"\$model",?')

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


def seed_expressions() -> list[str]:
    """Every PromQL expression the seed lists, in order.

    The seed writes the identity join as `... * on(account_id) ...`: the
    dots stand for any per-account query, so the join itself is what a
    panel must carry.
    """
    found = re.findall(r"^\s+- `([^`]+)`$", SEED.read_text(), flags=re.MULTILINE)
    queries = [expr for expr in found if not EXPOSITION_LINE.fullmatch(expr)]
    return [expr.removeprefix("... ") for expr in queries]


def normalize(expr: str) -> str:
    """PromQL with all whitespace removed, for comparing expressions."""
    return re.sub(r"\s+", "", expr)


def without_model_filter(expr: str) -> str:
    """`expr` with the `$model` matcher taken out (and `{}` left empty)."""

    def drop(match: re.Match[str]) -> str:
        text = match.group(0)
        # Keep one comma when the matcher sat between two others.
        return "," if text.startswith(",") and text.endswith(",") else ""

    return MODEL_MATCHER.sub(drop, expr).replace("{}", "")


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


def grafana_time(text: str, now: float, *, end: bool) -> float:
    """Epoch seconds for a Grafana relative time such as `now-7d/d`.

    `/d` rounds to the day (UTC here): down for a range's start, up to the
    day's last millisecond for its end, as Grafana does.
    """
    match = re.fullmatch(r"now(?:-(\d+)([mhd]))?(/d)?", text)
    assert match is not None, f"unsupported relative time {text!r}"
    amount, unit, rounded = match.groups()
    seconds = {"m": 60, "h": 3600, "d": 86400}
    at = now - int(amount or 0) * seconds.get(unit or "m", 0)
    if rounded:
        day = at // 86400 * 86400
        at = day + 86400 - 0.001 if end else day
    return at


def grafana_range(
    dashboard: dict[str, Any], panel: dict[str, Any], now: float, step: float
) -> tuple[float, float]:
    """The (start, end) Grafana asks Prometheus for, for a panel with a
    minimum interval of `step` seconds.

    A panel's own relative time (`timeFrom`) runs to now; the Prometheus
    data source then aligns both ends down to a multiple of the step, which
    puts a 1 d step on midnights.
    """
    if panel.get("timeFrom"):
        start_text, end_text = panel["timeFrom"], "now"
    else:
        start_text, end_text = dashboard["time"]["from"], dashboard["time"]["to"]
    start = grafana_time(start_text, now, end=False)
    end = grafana_time(end_text, now, end=True)
    return start // step * step, end // step * step


def seconds(duration: str) -> int:
    """`1d`, `1h`, `5m` or `30s` in seconds."""
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    assert match is not None, duration
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
