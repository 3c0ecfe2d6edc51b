"""Every dashboard panel evaluated on a real Prometheus scraping codex-lb.

codex-lb runs on the emulator with three accounts; a scripted workload
gives it two emulated hours of weekly use (for the forecasts), successes on
two models, cached input, a failover on a 429, a 5xx retry, an unpriced
success, a client error, a failed usage poll and an account that needs a
new login. Prometheus scrapes it every second with the compose scrape job
(metrics token included) and loads the compose alert rules. Then every
expression of every dashboard, variables substituted as Grafana would,
must parse and return data, as an instant query and, for graphs, as a range
query. The daily and hourly panels run with their 1 d and 1 h steps on a
second Prometheus holding three days of history made from what codex-lb
exported, and must show the per-day and per-hour figures that history
implies.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from codex_lb.app import SERVER_OPTIONS, USAGE_POLLER_KEY, create_app
from codex_lb.config import load_settings
from codex_lb.events import EventBus
from codex_lb.sim import Emulator, Fault, SimAccount
from codex_lb.store import open_store
from tests.conftest import LB, EventRecorder, import_accounts, settings_env
from tests.grafana.dashboards import (
    grafana_range,
    grafana_regex,
    load_dashboards,
    query_result_line,
    seconds,
    substitute,
    targets,
    without_model_filter,
)
from tests.prometheus import (
    Prometheus,
    PromQLError,
    history_text,
    prometheus_with_history,
    running_prometheus,
)

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

# What Grafana puts in for its own variables at a 1 h range.
GRAFANA_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

TOKEN = "live-test-metrics-token"
CODEX = "/backend-api/codex/responses"
UNPRICED_MODEL = "gpt-5.9-preview"
EMAILS = ("a@example.com", "b@example.com", "c@example.com")

# The synthetic history: three days, a sample every four minutes (gauges
# must have a sample within the 5 min Prometheus looks back).
HISTORY_DAYS = 3
HISTORY_SPACING = 240.0


@attrs.frozen
class Scraped:
    """codex-lb after the workload, the Prometheus that scraped it, and
    when that Prometheus started scraping (epoch seconds)."""

    lb: LB
    prom: Prometheus
    since: float


@attrs.frozen
class History:
    """A Prometheus with days of history made from codex-lb's series."""

    prom: Prometheus
    samples: list[dict[str, Any]]
    start: float
    end: float

    def per_second(self, metric: str, **labels: str) -> float:
        """How fast the history's `metric` series (matching `labels`) grow,
        summed, in units per second."""
        total = sum(
            float(s["value"][1])
            for s in self.samples
            if s["metric"]["__name__"] == metric
            and all(s["metric"].get(k) == v for k, v in labels.items())
        )
        return total / (self.end - self.start)


def turn(model: str, cache_key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello there"}],
            }
        ],
        "stream": True,
        "store": False,
    }
    if cache_key:
        body["prompt_cache_key"] = cache_key
    return body


async def send(lb: LB, model: str, cache_key: str | None = None) -> int:
    response = await lb.client.post(CODEX, json=turn(model, cache_key))
    await response.read()
    return response.status


async def send_until_retry(lb: LB, error_class: str) -> None:
    """Send until a request has left an account with `error_class`."""
    for _ in range(4):
        await send(lb, "gpt-5")
        if any(r.error_class == error_class for r in lb.recorder.of("retry")):
            return
    raise AssertionError(f"no {error_class} retry happened")


async def workload(lb: LB) -> None:
    """The scripted traffic: every kind of event the panels count."""
    emu = lb.emulator
    a, b, c = (lb.pool.get(lb.ids[email]) for email in EMAILS)
    assert a is not None and b is not None and c is not None

    # c needs a new login: its token is revoked and the refresh is refused.
    await lb.pool.pause(a)
    await lb.pool.pause(b)
    emu.revoke_access_token("c@example.com")
    emu.add_fault(
        "c@example.com", Fault.status(400, {"error": "invalid_grant"}), "token"
    )
    await send(lb, "gpt-5")
    assert c.status == "reauth_required"
    await lb.pool.resume(a)
    await lb.pool.resume(b)

    # Two hours of weekly use, a reading every half hour on each account,
    # give the forecasts a burn rate and an implied quota to work from.
    for step in range(5):
        for email in EMAILS[:2]:
            emu.set_usage(email, secondary=10.0 + 4.0 * step)
        assert await send(lb, "gpt-5") == 200
        assert await send(lb, "gpt-5") == 200
        emu.clock.advance(1800)

    # A usage poll that fails (502) counts as a refresh failure.
    emu.add_fault("b@example.com", Fault.status(502, {}), "usage")
    assert await lb.app[USAGE_POLLER_KEY].poll(b) is False

    # Successes on two models; the repeated cache key makes cached input.
    for model in ("gpt-5", "gpt-5-mini"):
        for _ in range(3):
            assert await send(lb, model, cache_key=f"session-{model}") == 200

    # A success the price table cannot price, and a client error.
    assert await send(lb, UNPRICED_MODEL) == 200
    assert await send(lb, "gpt-5-typo") == 400

    # A 5xx before the first byte moves the request to the other account.
    emu.add_fault("a@example.com", Fault.status(500, {"error": {"message": "x"}}))
    await send_until_retry(lb, "upstream")

    # A full account answers 429 usage_limit_reached: failover, bench, mark.
    limited = {
        "error": {
            "type": "usage_limit_reached",
            "code": "usage_limit_reached",
            "message": "limit",
            "resets_in_seconds": 600,
        }
    }
    emu.add_fault("a@example.com", Fault.status(429, limited))
    await send_until_retry(lb, "rate_limit")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scraped(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Scraped]:
    """codex-lb after the workload, and a Prometheus that scraped it since.

    Built once for the module: Prometheus waits about 5 s before its first
    scrape of a new target, which every test would otherwise pay again.
    """
    tmp = tmp_path_factory.mktemp("panels-live")
    emu = Emulator([SimAccount.make(email) for email in EMAILS], event_delay=0.0)
    emu.models.append(UNPRICED_MODEL)
    await emu.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(emu.close)
        lb = await start_lb(emu, tmp, stack)
        url = URL(str(lb.client.make_url("/")))
        work = tmp / "prometheus"
        work.mkdir()
        since = time.time()
        prom = await stack.enter_async_context(
            running_prometheus(work, f"{url.host}:{url.port}", TOKEN)
        )

        # A first scrape before the traffic, so counters rise between samples.
        await prom.wait_for_scrapes(1, after=time.time() - 60)
        await workload(lb)
        await send(lb, "gpt-5")
        await prom.wait_for_scrapes(3, after=time.time())
        yield Scraped(lb, prom, since)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(
    scraped: Scraped, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[History]:
    """Three days of history ending now, made from every codex-lb series the
    live Prometheus holds (counters growing evenly, gauges held)."""
    samples = await scraped.prom.query('{__name__=~"codex_lb_.+"}')
    assert len(samples) > 100
    end = time.time()
    start = end - HISTORY_DAYS * 86400
    text = history_text(samples, end, end - start, HISTORY_SPACING)
    work = tmp_path_factory.mktemp("panels-history")
    async with prometheus_with_history(work, text) as prom:
        yield History(prom, samples, start, end)


async def start_lb(emu: Emulator, tmp: Path, stack: contextlib.AsyncExitStack) -> LB:
    """codex-lb on the emulator with its accounts imported, as `make_lb` does."""
    data_dir = tmp / "lb-data"
    store = await open_store(data_dir)
    try:
        ids = await import_accounts(store, emu, tmp / "auth")
    finally:
        await store.close()
    recorder = EventRecorder()
    bus = EventBus()
    bus.subscribe(recorder)
    env = settings_env(emu, data_dir, CODEX_LB_METRICS_TOKEN=TOKEN)
    app = await create_app(
        load_settings(env, env_file=None), bus=bus, clock=emu.clock.now
    )
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    client: TestClient[web.Request, web.Application] = TestClient(server)
    await client.start_server()
    stack.push_async_callback(client.close)
    return LB(client, app, emu, recorder, ids)


async def resolve_variables(
    prom: Prometheus, dashboard: dict[str, Any]
) -> dict[str, list[tuple[str, str]]]:
    """Variable name -> (value, text) options, as Grafana would list them."""
    options = {}
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        if query.startswith("label_values("):
            metric, label = (p.strip() for p in query[13:-1].split(","))
            samples = await prom.query(metric)
            values = sorted({s["metric"][label] for s in samples})
            found = [(v, v) for v in values]
        else:
            assert query.startswith("query_result("), query
            samples = await prom.query(query[13:-1])
            pattern = grafana_regex(variable["regex"])
            matches = [pattern.search(query_result_line(s)) for s in samples]
            found = sorted((m["value"], m["text"]) for m in matches if m)
        options[variable["name"]] = found
    return options


def variable_values(
    dashboard: dict[str, Any], options: dict[str, list[tuple[str, str]]]
) -> dict[str, str]:
    """What each variable stands for in a query: All, or the first option."""
    values = dict(GRAFANA_VALUES)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        values[name] = (
            variable["allValue"] if variable["includeAll"] else options[name][0][0]
        )
    return values


class TestPanelsOnPrometheus:
    async def test_scrape_authenticates_with_the_metrics_token(
        self, scraped: Scraped
    ) -> None:
        """The compose scrape job's token gets in; codex-lb refuses none."""
        lb, prom = scraped.lb, scraped.prom

        (up,) = await prom.query('up{job="codex-lb"}')
        refused = await lb.client.get("/metrics", headers={"Authorization": "x"})

        assert up["value"][1] == "1"
        assert refused.status == 401

    async def test_variables_list_every_account_and_model(
        self, scraped: Scraped
    ) -> None:
        """`$account` offers each account id shown by email; `$model` the models."""
        lb, prom = scraped.lb, scraped.prom
        dashboards = load_dashboards()

        overview = await resolve_variables(prom, dashboards["overview.json"])
        accounts = await resolve_variables(prom, dashboards["accounts.json"])
        activity = await resolve_variables(prom, dashboards["activity.json"])

        expected_accounts = sorted((lb.ids[e], e) for e in EMAILS)
        assert accounts == activity == {"account": expected_accounts}
        assert overview == {
            "model": [
                ("gpt-5", "gpt-5"),
                ("gpt-5-mini", "gpt-5-mini"),
                ("other", "other"),
            ]
        }

    async def test_every_panel_expression_returns_data(self, scraped: Scraped) -> None:
        """Each query parses and returns data as an instant query;
        per-account results carry the display name."""
        problems = []
        checked = 0

        for name, _, panel, target, expr in await panel_queries(scraped.prom):
            where = f"{name} / {panel['title']} / {target['refId']}"
            checked += 1
            try:
                result = await scraped.prom.query(expr)
            except PromQLError as exc:
                problems.append(f"{where}: does not evaluate: {exc}\n  {expr}")
                continue
            problems += result_problems(where, expr, target, result)

        assert checked > 50
        assert problems == []

    async def test_graphs_return_data_as_range_queries(self, scraped: Scraped) -> None:
        """Each graph and stat query without a minimum interval returns
        points as the range query Grafana sends, stepping by the scrape
        interval over the time Prometheus has scraped codex-lb."""
        problems = []
        checked = 0
        end = time.time()

        for name, _, panel, target, expr in await panel_queries(scraped.prom):
            if target["instant"] or panel.get("interval"):
                continue
            where = f"{name} / {panel['title']} / {target['refId']}"
            checked += 1
            try:
                result = await scraped.prom.query_range(expr, scraped.since, end, 1)
            except PromQLError as exc:
                problems.append(f"{where}: does not evaluate: {exc}\n  {expr}")
                continue
            problems += result_problems(where, expr, target, result)

        assert checked > 35
        assert problems == []

    async def test_model_filter_at_all_changes_nothing(self, scraped: Scraped) -> None:
        """With `$model` at All, every query that filters by it gives what
        the same query without the filter gives (the seed's expressions)."""
        at = time.time()
        compared = 0

        for _, _, panel, target, expr in await panel_queries(scraped.prom):
            if "$model" not in target["expr"]:
                continue
            filtered = await scraped.prom.query(expr, at=at)
            plain = substitute(without_model_filter(target["expr"]), GRAFANA_VALUES)
            unfiltered = await scraped.prom.query(plain, at=at)

            assert filtered, panel["title"]
            assert as_values(filtered) == as_values(unfiltered), panel["title"]
            compared += 1

        assert compared == 13

    async def test_alert_rules_evaluate(self, scraped: Scraped) -> None:
        """The compose rules load and evaluate; the account that needs a new
        login sets off its alert."""
        prom = scraped.prom

        await prom.wait_for_scrapes(2, after=time.time())
        groups = (await prom.get("/api/v1/rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        alerts = (await prom.get("/api/v1/alerts"))["alerts"]

        assert len(rules) == 5
        assert [r["name"] for r in rules if r["health"] != "ok"] == []
        # Whether the early errors count toward a rate depends on where the
        # scrapes fell; whether the runway (a few emulated hours at the
        # workload's pace, against resets days away) has been scraped and
        # evaluated yet depends on codex-lb's 5 s forecast refresh.
        names = {a["labels"]["alertname"] for a in alerts}
        assert "CodexLbAccountNeedsReauth" in names
        assert names <= {
            "CodexLbAccountNeedsReauth",
            "CodexLbHighErrorRate",
            "CodexLbPoolExhaustsBeforeReset",
        }


class TestDailyAndHourlyPanels:
    async def test_each_returns_points_with_its_step(self, history: History) -> None:
        """Every panel with a minimum interval (1 h, 1 d) returns points for
        the range and step Grafana would ask for, on three days of history."""
        problems = []
        checked = 0

        for name, dashboard, panel, target, expr in await panel_queries(history.prom):
            if not panel.get("interval"):
                continue
            where = f"{name} / {panel['title']} / {target['refId']}"
            result = await range_as_grafana(history, dashboard, panel, expr)
            checked += 1
            points = [v for series in result for v in series["values"]]
            if len(points) < 2:
                problems.append(f"{where}: {len(points)} points\n  {expr}")
            problems += result_problems(where, expr, target, result)

        assert checked == 7
        assert problems == []

    async def test_daily_bars_hold_whole_days(self, history: History) -> None:
        """Each daily bar on a midnight whose day lies in the history holds
        that day's cost: 86 400 s at the rate the history grows."""
        expected = history.per_second("codex_lb_proxy_cost_usd_total") * 86400
        daily = {
            ("activity.json", "Total cost per day"),
            ("overview.json", "Cost per day"),
        }

        for name, dashboard, panel, _, expr in await panel_queries(history.prom):
            if (name, panel["title"]) not in daily:
                continue
            (series,) = await range_as_grafana(history, dashboard, panel, expr)
            whole = inside(history, series["values"], 86400)

            assert len(whole) >= 2, panel["title"]
            assert all(at % 86400 == 0 for at, _ in whole), panel["title"]
            for _, value in whole:
                assert value == pytest.approx(expected, rel=1e-3), panel["title"]

    async def test_hourly_bars_hold_the_account_hour(self, history: History) -> None:
        """Each hourly cost bar for `$account` holds an hour of that
        account's cost (the account that cost the most is picked)."""
        dashboard = load_dashboards()["activity.json"]
        costs = {
            s["metric"]["account_id"]: float(s["value"][1])
            for s in history.samples
            if s["metric"]["__name__"] == "codex_lb_proxy_account_cost_usd_total"
        }
        account = max(costs, key=costs.__getitem__)
        expected = 3600 * history.per_second(
            "codex_lb_proxy_account_cost_usd_total", account_id=account
        )
        panel, target = next(
            (p, t)
            for p, t in targets(dashboard)
            if p["title"].startswith("Cost per hour")
        )

        expr = substitute(target["expr"], {"account": account})
        (series,) = await range_as_grafana(history, dashboard, panel, expr)
        whole = inside(history, series["values"], 3600)

        assert expected > 0
        assert len(whole) >= 24
        assert all(at % 3600 == 0 for at, _ in whole)
        for _, value in whole:
            assert value == pytest.approx(expected, rel=1e-3)


async def panel_queries(
    prom: Prometheus,
) -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str]]:
    """(file, dashboard, panel, target, expression with variables filled in)
    for every query of every dashboard."""
    queries = []
    for name, dashboard in load_dashboards().items():
        values = variable_values(dashboard, await resolve_variables(prom, dashboard))
        for panel, target in targets(dashboard):
            expr = substitute(target["expr"], values)
            queries.append((name, dashboard, panel, target, expr))
    return queries


def result_problems(
    where: str, expr: str, target: dict[str, Any], result: list[dict[str, Any]]
) -> list[str]:
    """What is wrong with a query's result: no data, or an account series
    without its display name."""
    if not result:
        return [f"{where}: no data\n  {expr}"]
    unnamed = [
        s["metric"]
        for s in result
        if "account_id" in s["metric"] and "display" not in s["metric"]
    ]
    # A panel for the one `$account` names it in the title.
    if unnamed and 'account_id="$account"' not in target["expr"]:
        return [f"{where}: account without display: {unnamed[0]}"]
    return []


def as_values(result: list[dict[str, Any]]) -> dict[str, float | None]:
    """Labels -> value of an instant result (NaN as None, to compare)."""
    values = {}
    for sample in result:
        value = float(sample["value"][1])
        key = repr(sorted(sample["metric"].items()))
        values[key] = None if math.isnan(value) else value
    return values


async def range_as_grafana(
    history: History, dashboard: dict[str, Any], panel: dict[str, Any], expr: str
) -> list[dict[str, Any]]:
    """The range query Grafana sends for a panel with a minimum interval."""
    step = seconds(panel["interval"])
    start, end = grafana_range(dashboard, panel, history.end, step)
    return await history.prom.query_range(expr, start, end, step)


def inside(
    history: History, values: list[list[Any]], window: float
) -> list[tuple[float, float]]:
    """The (time, value) points whose whole window lies in the history."""
    return [
        (float(at), float(value))
        for at, value in values
        if float(at) - window >= history.start + HISTORY_SPACING
        and float(at) <= history.end
    ]
