"""The provisioned Grafana dashboards: structure, data source, seed coverage.

The live test beside this one evaluates every expression on a real
Prometheus; these checks need no server.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from scripts.dashboards import rendered_files
from tests.compose.helpers import ROOT
from tests.grafana.dashboards import (
    BUILTIN_VARIABLES,
    DASHBOARD_DIR,
    PROVISIONING,
    grafana_regex,
    load_dashboards,
    normalize,
    panels,
    provisioned_datasource_uid,
    seed_expressions,
    targets,
    variables_used,
    without_model_filter,
)

DASHBOARDS = load_dashboards()
EXPECTED_TITLES = {
    "overview.json": "codex-lb / Overview",
    "accounts.json": "codex-lb / Accounts and risk",
    "routing.json": "codex-lb / Routing",
    "estimation.json": "codex-lb / Estimation quality",
    "activity.json": "codex-lb / Activity",
}
each_dashboard = pytest.mark.parametrize("name", sorted(EXPECTED_TITLES))


class TestProvisioning:
    def test_the_five_dashboards_are_there(self) -> None:
        """Overview, accounts, routing, estimation and activity are provisioned."""
        titles = {name: d["title"] for name, d in DASHBOARDS.items()}

        assert titles == EXPECTED_TITLES

    def test_files_match_their_generator(self) -> None:
        """The JSON files are what scripts/dashboards renders now."""
        files = rendered_files()

        on_disk = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}

        assert on_disk == files, "run `make dashboards` and commit the JSON"

    def test_provider_loads_the_folder_compose_mounts(self) -> None:
        """The file provider reads where compose mounts grafana/dashboards."""
        provider = (PROVISIONING / "dashboards" / "codex-lb.yml").read_text()
        compose = (ROOT / "compose" / "docker-compose.observability.yml").read_text()

        (path,) = re.findall(r"^\s+path:\s*(\S+)\s*$", provider, re.M)
        assert f"../grafana/dashboards:{path}:ro" in compose

    def test_datasource_has_a_fixed_uid(self) -> None:
        """The data source is Prometheus with the uid the dashboards name."""
        text = (PROVISIONING / "datasources" / "prometheus.yml").read_text()

        assert provisioned_datasource_uid() == "codex-lb-prometheus"
        assert re.search(r"^\s+type:\s*prometheus\s*$", text, re.M)

    def test_dashboard_uids_are_unique(self) -> None:
        """No two dashboards share a uid."""
        uids = [d["uid"] for d in DASHBOARDS.values()]

        assert len(uids) == len(set(uids)) == 5


class TestDashboard:
    @each_dashboard
    def test_no_unresolved_inputs(self, name: str) -> None:
        """No `${DS_...}` import inputs: the file works as provisioned."""
        text = (DASHBOARD_DIR / name).read_text()

        assert "__inputs" not in DASHBOARDS[name]
        assert "${DS_" not in text and "$DS_" not in text

    @each_dashboard
    def test_every_query_uses_the_provisioned_datasource(self, name: str) -> None:
        """Panels, their targets and variables all name the provisioned uid."""
        uid = provisioned_datasource_uid()
        dashboard = DASHBOARDS[name]
        sources: list[Any] = [
            p["datasource"] for p in panels(dashboard) if p["type"] != "row"
        ]
        sources += [t["datasource"] for _, t in targets(dashboard)]
        sources += [v["datasource"] for v in dashboard["templating"]["list"]]

        assert sources
        assert all(s == {"type": "prometheus", "uid": uid} for s in sources), sources

    @each_dashboard
    def test_panel_ids_are_unique(self, name: str) -> None:
        """Every panel has its own positive integer id."""
        ids = [p["id"] for p in panels(DASHBOARDS[name])]

        assert all(isinstance(i, int) and i > 0 for i in ids)
        assert len(ids) == len(set(ids))

    @each_dashboard
    def test_grid_positions_fit_and_do_not_overlap(self, name: str) -> None:
        """Each panel lies within 24 columns and covers cells no other covers."""
        taken: dict[tuple[int, int], str] = {}
        for panel in panels(DASHBOARDS[name]):
            grid = panel["gridPos"]
            x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1, panel["title"]
            assert x + w <= 24, f"{panel['title']} ends at column {x + w}"
            for cell in itertools.product(range(x, x + w), range(y, y + h)):
                assert cell not in taken, f"{panel['title']} overlaps {taken[cell]}"
                taken[cell] = panel["title"]

    @each_dashboard
    def test_every_panel_has_queries(self, name: str) -> None:
        """Each non-row panel has targets with expressions and unique refIds."""
        for panel in panels(DASHBOARDS[name]):
            if panel["type"] == "row":
                continue
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]

    @each_dashboard
    def test_variables_resolve(self, name: str) -> None:
        """Every `$var` in a query or title is defined or built into Grafana."""
        dashboard = DASHBOARDS[name]
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        used: set[str] = set()
        for panel in panels(dashboard):
            used |= variables_used(panel["title"])
        for _, target in targets(dashboard):
            used |= variables_used(target["expr"])

        assert used - defined - BUILTIN_VARIABLES == set()
        # A variable nobody uses is a dropdown that changes nothing.
        assert defined <= used

    @each_dashboard
    def test_variable_queries_are_well_formed(self, name: str) -> None:
        """Variables query Prometheus; an account regex yields value and text."""
        for variable in DASHBOARDS[name]["templating"]["list"]:
            query = variable["query"]
            assert re.fullmatch(r"(label_values|query_result)\(.+\)", query), query
            if variable["regex"]:
                pattern = grafana_regex(variable["regex"])
                assert {"value", "text"} <= set(pattern.groupindex)

    @each_dashboard
    def test_tables_are_instant_queries(self, name: str) -> None:
        """Table panels ask for one instant value per series, as a table."""
        for panel, target in targets(DASHBOARDS[name]):
            if panel["type"] == "table":
                assert target["instant"] is True and target["range"] is False
                assert target["format"] == "table"


class TestSeedCoverage:
    def test_the_seed_lists_its_expressions(self) -> None:
        """The seed parses into its 21 queries (the join among them)."""
        expressions = seed_expressions()

        assert len(expressions) == 21
        assert "* on(account_id) group_left(display) codex_lb_account_identity" in (
            expressions
        )

    @pytest.mark.parametrize("expr", seed_expressions())
    def test_seed_expression_is_in_a_panel(self, expr: str) -> None:
        """The seed's expression appears in some panel, whitespace aside and
        with the Overview's `$model` filter at All (the live test shows that
        filter at All changes no result)."""
        exprs = [
            normalize(without_model_filter(t["expr"]))
            for d in DASHBOARDS.values()
            for _, t in targets(d)
        ]

        assert any(normalize(expr) in e for e in exprs)

    def test_per_account_panels_show_the_display_name(self) -> None:
        """Every query grouped by account joins the identity for `display`."""
        join = normalize(
            "* on(account_id) group_left(display) codex_lb_account_identity"
        )
        for dashboard in DASHBOARDS.values():
            for panel, target in targets(dashboard):
                if "{{display}}" in target["legendFormat"] or panel["type"] == "table":
                    assert join in normalize(target["expr"]), panel["title"]

    def test_daily_totals_use_a_one_day_step_on_whole_days(self) -> None:
        """Per-day graphs step by 1 d over a range that starts at midnight:
        the dashboard's, or the panel's own relative time."""
        daily = [
            (dashboard, panel, target)
            for dashboard in DASHBOARDS.values()
            for panel, target in targets(dashboard)
            if "[1d]" in target["expr"] and panel["type"] == "timeseries"
        ]

        assert len(daily) == 5
        for dashboard, panel, target in daily:
            starts = panel.get("timeFrom") or dashboard["time"]["from"]
            assert starts.endswith("d/d"), panel["title"]
            assert panel["interval"] == target["interval"] == "1d", panel["title"]
        activity = DASHBOARDS["activity.json"]
        assert activity["time"] == {"from": "now-7d/d", "to": "now/d"}


class TestPanelChoices:
    def test_no_panel_is_repeated(self) -> None:
        """No two panels, on any dashboards, share a title."""
        titles = [
            p["title"]
            for d in DASHBOARDS.values()
            for p in panels(d)
            if p["type"] != "row"
        ]

        assert sorted(titles) == sorted(set(titles))

    def test_model_filter_reaches_every_overview_query_with_a_model(self) -> None:
        """On the Overview, every selector of a metric that has a `model`
        label carries the `$model` filter."""
        with_model = (
            "codex_lb_proxy_requests_total",
            "codex_lb_proxy_latency_ms_bucket",
            "codex_lb_proxy_tokens_total",
            "codex_lb_proxy_cost_usd_total",
        )
        pattern = re.compile(rf"({'|'.join(with_model)})(\{{[^}}]*\}})?")
        selectors = [
            (panel["title"], match.group(0))
            for panel, target in targets(DASHBOARDS["overview.json"])
            for match in pattern.finditer(target["expr"])
        ]

        assert len(selectors) >= 12
        unfiltered = [s for s in selectors if 'model=~"$model"' not in s[1]]
        assert unfiltered == []

    def test_activity_titles_show_the_account_name(self) -> None:
        """Titles name the account by `${account:text}` (its display), never
        by the bare `$account` id."""
        titles = [p["title"] for p in panels(DASHBOARDS["activity.json"])]
        named = [title for title in titles if "account" in variables_used(title)]

        assert len(named) == 5
        assert all("${account:text}" in title for title in named)
        assert not any(re.search(r"\$account\b", title) for title in titles)

    def test_implied_quota_leaves_out_accounts_with_no_weekly_use(self) -> None:
        """The seed's quotient is only kept where its denominator is above 0,
        so an idle account shows no NaN or infinity."""
        accounts = {p["title"]: p for p in panels(DASHBOARDS["accounts.json"])}
        table = accounts["Implied weekly quota (USD, observed over 1 d)"]
        expr = normalize(table["targets"][0]["expr"])

        guard = normalize(
            "and on(account_id) "
            "(increase(codex_lb_secondary_used_percent_increase_total[1d]) > 0)"
        )
        assert guard in expr


class TestForecastPanels:
    def test_the_risk_table_shows_each_forecast_in_its_unit(self) -> None:
        """The reset-cliff table has the waste and exhaustion forecasts beside
        the reset time, each column with its own unit."""
        accounts = DASHBOARDS["accounts.json"]
        panels = {p["title"]: p for p in accounts["panels"]}
        table = panels["Reset cliff: time to weekly reset beside what is left"]
        columns = {t["legendFormat"]: t["expr"] for t in table["targets"]}
        units = {
            o["matcher"]["options"]: o["properties"][0]["value"]
            for o in table["fieldConfig"]["overrides"]
        }
        renamed = table["transformations"][1]["options"]["renameByName"]

        waste = "Credits lost at reset (forecast)"
        eta = "Weekly window full in (forecast)"
        assert "codex_lb_secondary_waste_forecast_credits" in columns[waste]
        assert "codex_lb_secondary_exhaustion_eta_seconds" in columns[eta]
        assert {waste, eta} <= set(renamed.values())
        assert units[waste] == "short"
        assert units[eta] == units["Weekly reset in"] == "s"
        assert units["Weekly used %"] == "percent"

    def test_the_reset_cliff_lists_the_soonest_reset_first(self) -> None:
        """The table sorts ascending by time to reset, and every column
        leaves out accounts whose reset time has already passed."""
        accounts = {p["title"]: p for p in DASHBOARDS["accounts.json"]["panels"]}
        table = accounts["Reset cliff: time to weekly reset beside what is left"]

        assert table["options"]["sortBy"] == [
            {"displayName": "Weekly reset in", "desc": False}
        ]
        reset_in, *others = (normalize(t["expr"]) for t in table["targets"])
        assert "codex_lb_secondary_reset_at_seconds-time()>0" in reset_in
        ahead = normalize(
            "and on(account_id) (codex_lb_secondary_reset_at_seconds > time())"
        )
        assert len(others) == 4
        assert all(ahead in expr for expr in others)

    def test_top_tables_sort_largest_first(self) -> None:
        """Every other table sorts by its value, largest first."""
        tables = [
            p
            for d in DASHBOARDS.values()
            for p in panels(d)
            if p["type"] == "table" and not p["title"].startswith("Reset cliff")
        ]

        assert len(tables) == 8
        for table in tables:
            (sort,) = table["options"]["sortBy"]
            assert sort["desc"] is True, table["title"]

    def test_runway_and_implied_quota_have_panels(self) -> None:
        """The pool's runway is a stat in seconds; codex-lb's implied quota
        sits beside Prometheus's own estimate in dollars."""
        panels = {p["title"]: p for p in DASHBOARDS["accounts.json"]["panels"]}
        runway = panels["Pool runway"]
        implied = panels["Implied weekly quota (USD, observed over 1 d)"]

        assert "codex_lb_pool_runway_seconds" in runway["targets"][0]["expr"]
        assert runway["fieldConfig"]["defaults"]["unit"] == "s"
        assert any(
            "codex_lb_secondary_implied_quota_usd" in t["expr"]
            for t in implied["targets"]
        )
        assert implied["fieldConfig"]["defaults"]["unit"] == "currencyUSD"
