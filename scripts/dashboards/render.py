"""Dashboard descriptions rendered to the JSON Grafana provisions from files."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import DATASOURCE, Dashboard, Panel, Query, Row, Variable

GRID_COLUMNS = 24


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


def _refs(panel: Panel) -> list[str]:
    return [chr(ord("A") + i) for i in range(len(panel.queries))]


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
    refs = _refs(panel)
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
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": DATASOURCE,
        "targets": [
            _target(query, ref, panel)
            for ref, query in zip(_refs(panel), panel.queries, strict=True)
        ],
        "fieldConfig": {
            "defaults": {"unit": panel.unit or "short"},
            "overrides": _column_units(panel) if table else [],
        },
    }
    if panel.interval:
        result["interval"] = panel.interval
    if panel.time_from:
        result["timeFrom"] = panel.time_from

    if panel.kind == "timeseries":
        result["fieldConfig"]["defaults"]["custom"] = _series_style(panel)
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
        column = panel.sort_by or panel.queries[0].label
        result["options"] = {
            "showHeader": True,
            "sortBy": [{"displayName": column, "desc": not panel.sort_ascending}],
        }
    return result


def _series_style(panel: Panel) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "bars" if panel.bars else "line"}
    if panel.stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    if panel.bars:
        custom["fillOpacity"] = 80
    return custom


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
