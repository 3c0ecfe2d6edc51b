"""The pieces a dashboard is described with, and the PromQL helpers they share."""

from __future__ import annotations

from typing import Any

import attrs

# The uid the provisioned data source has (grafana/provisioning/datasources).
DATASOURCE_UID = "codex-lb-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}

# Puts the operator-facing name (email or id, by identity mode) beside every
# per-account series.
IDENTITY_JOIN = " * on(account_id) group_left(display) codex_lb_account_identity"

# `$account` lists account ids and shows each by its display name.
ACCOUNT_VARIABLE_REGEX = '/account_id="(?<value>[^"]+)".*display="(?<text>[^"]+)"/'

# The label matcher of the `$model` variable; at All it matches every series.
MODEL = 'model=~"$model"'


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

    `interval` is Grafana's minimum interval, e.g. "1d" for daily totals;
    `time_from` a relative time range of the panel's own (e.g. "now-7d/d")
    in place of the dashboard's. A table sorts by `sort_by` (its first
    column when empty), largest first unless `sort_ascending`.
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
    time_from: str = ""
    sort_by: str = ""
    sort_ascending: bool = False


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


def account_variable(*, multi: bool) -> Variable:
    """`$account`: account ids, shown by display name."""
    return Variable(
        "account",
        "Account",
        "query_result(codex_lb_account_identity)",
        regex=ACCOUNT_VARIABLE_REGEX,
        multi=multi,
        include_all=multi,
    )
