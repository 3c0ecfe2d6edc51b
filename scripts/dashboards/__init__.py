"""The Grafana dashboards in `grafana/dashboards/`, described in Python.

The dashboards are plain Grafana JSON that Grafana loads through file
provisioning; this package is their source, so panel ids, grid positions and
the data source stay consistent. One module per dashboard, `model` for the
pieces they are made of, `render` for the JSON. Run `make dashboards`
(`python -m scripts.dashboards`) after changing a panel: a test fails when
the committed JSON differs from what this package renders.
"""

from __future__ import annotations

import json
from pathlib import Path

from .accounts import ACCOUNTS
from .activity import ACTIVITY
from .estimation import ESTIMATION
from .model import Dashboard
from .overview import OVERVIEW
from .render import render
from .routing import ROUTING

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, ACCOUNTS, ROUTING, ESTIMATION, ACTIVITY)


def file_name(dashboard: Dashboard) -> str:
    return dashboard.uid.removeprefix("codex-lb-") + ".json"


def rendered_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as written to disk."""
    return {file_name(d): json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}
