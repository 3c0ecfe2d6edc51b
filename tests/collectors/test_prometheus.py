"""Every PromQL expression of the seed file, evaluated by a real Prometheus.

codex-lb (on a real loopback port, in front of the emulator) is scraped every
second while a scripted workload runs; then each seed expression is queried
through Prometheus' HTTP API and compared with totals computed another way:
the script itself, the request log in the store, the emulator's windows and
the events on the bus.

Why the rate and increase checks can be exact: Prometheus extrapolates
``rate``/``increase`` to the edges of the range, except (a) towards the start
when a counter's first sample is 0 (it extrapolates at most to where the
counter would have been 0, which is that first sample) and (b) towards the
end when the query time is the last sample's time. So every series the
workload touches is made to exist at 0 before the first scrape (per-account
series do so by themselves; the test pre-creates the model and pool series
it will use), and every query is evaluated at the timestamp of the last
scrape. Then ``increase(x[r]) == last - first == last`` and
``rate(x[5m]) == last / 300`` for every series, and ratios of rates are
ratios of totals.

The daily-rollup and one-day expressions are also checked on a day of
synthetic data with ``promtool test rules``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from codex_lb.constants import BUILTIN_PRICES
from codex_lb.events.collector_api import COLLECTORS_KEY
from codex_lb.events.metrics import LATENCY_MS_BUCKETS
from codex_lb.sim import Emulator, Fault, SimAccount
from collectors.request_metrics import RequestMetrics
from collectors.routing_metrics import RoutingMetrics
from tests.collectors.prometheus_server import (
    HAVE_PROMETHEUS,
    WHY_NOT,
    PrometheusServer,
)
from tests.conftest import LB

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(not HAVE_PROMETHEUS, reason=WHY_NOT),
]

SEED = Path(__file__).with_name("seed_000.txt")
CODEX = "/backend-api/codex/responses"
COMPACT = "/backend-api/codex/responses/compact"
A, B, C = "a@example.com", "b@example.com", "c@example.com"
WEEK = 7 * 24 * 3600
JOIN = (
    "codex_lb_secondary_used_percent"
    " * on(account_id) group_left(display) codex_lb_account_identity"
)
CREATED = (
    b"event: response.created\n"
    b'data: {"type":"response.created","response":{"id":"resp_1",'
    b'"status":"in_progress"}}\n\n'
)
COMPLETED_NO_USAGE = (
    b"event: response.completed\n"
    b'data: {"type":"response.completed","response":{"id":"resp_1",'
    b'"status":"completed","model":"gpt-5"}}\n\n'
)


def seed_expressions() -> list[str]:
    """Every PromQL expression listed in the seed file, in order."""
    text = SEED.read_text()
    found = re.findall(r"^\s+- `([^`]+)`$", text, flags=re.MULTILINE)
    # One bullet shows an exposition line, not a query.
    found.remove("codex_lb_account_identity{account_id,display} 1")
    # The join's left side is "..." in the seed: any per-account metric.
    template = "... * on(account_id) group_left(display) codex_lb_account_identity"
    return [JOIN if expr == template else expr for expr in found]


def turn(model: str = "gpt-5", stream: bool = True) -> dict[str, Any]:
    return {
        "model": model,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            }
        ],
        "stream": stream,
        "store": False,
    }


def cost_of(model: str | None, row: Any) -> float:
    """USD from the request log's tokens and the built-in table (exact names)."""
    price = BUILTIN_PRICES.get(model or "")
    if price is None or row.input_tokens is None:
        return 0.0
    cached = row.cached_input_tokens or 0
    fresh = row.input_tokens - cached
    return (fresh * price[0] + cached * price[1] + row.output_tokens * price[2]) / 1e6


def quantile_bucket(latencies: list[float], q: float) -> tuple[float, float]:
    """The (lower, upper) bounds of the bucket histogram_quantile lands in."""
    bounds = [*LATENCY_MS_BUCKETS, math.inf]
    rank = q * len(latencies)
    lower = 0.0
    for upper in bounds:
        if sum(1 for v in latencies if v <= upper) >= rank:
            return (lower, upper) if upper != math.inf else (lower, lower)
        lower = upper
    raise AssertionError("unreachable")


class Workload:
    """The scripted traffic, and what it should add up to."""

    def __init__(self, lb: LB) -> None:
        self.lb = lb
        self.emu = lb.emulator
        self.ids = lb.ids
        self.statuses: list[int] = []
        self.first_used: dict[str, float] = {}
        self.used_before_reset: dict[str, float] = {}

    def weekly_used(self, email: str) -> float:
        window = self.emu.account(email).secondary
        return float(window.used_percent)

    async def only(self, email: str) -> None:
        """Pin ``email``'s account so it is tried first."""
        for account in self.lb.pool.accounts:
            await self.lb.pool.set_pinned(account, account.email == email)

    async def send(self, path: str = CODEX, model: str = "gpt-5", **kw: Any) -> int:
        response = await self.lb.client.post(path, json=turn(model, **kw))
        await response.read()
        self.statuses.append(response.status)
        return response.status

    async def run(self) -> None:
        await self.only(A)
        await self.send()
        self.first_used[A] = self.weekly_used(A)
        await self.send()
        await self.send()
        await self.send(COMPACT, stream=False)

        await self.only(B)
        await self.send(model="gpt-5-mini")
        self.first_used[B] = self.weekly_used(B)
        await self.send(model="gpt-5-mini")

        # Three failovers away from A, one per error class.
        await self.only(A)
        self.emu.add_fault(A, Fault.status(500, {"error": {"message": "boom"}}))
        await self.send()
        self.emu.add_fault(A, Fault.raw([CREATED], then="reset"))
        await self.send()
        limit = {
            "error": {
                "type": "usage_limit_reached",
                "code": "usage_limit_reached",
                "message": "limit",
                "resets_in_seconds": 3600,
            }
        }
        self.emu.add_fault(A, Fault.status(429, limit))
        await self.send()

        # Unpriced successes: an unknown model, then a stream with no usage.
        await self.only(B)
        self.emu.models.append("house-model")
        await self.send(model="house-model")
        self.emu.add_fault(B, Fault.raw([CREATED, COMPLETED_NO_USAGE]))
        await self.send()
        # A client error: the upstream does not know the model.
        await self.send(model="gpt-5-typo")

        # C's token is revoked and its refresh token refused: re-auth needed.
        await self.only(C)
        self.emu.revoke_access_token(C)
        self.emu.add_fault(C, Fault.status(400, {"error": "invalid_grant"}), "token")
        await self.send()

        # A week later B's window has reset: two readings confirm it.
        self.used_before_reset = {e: self.weekly_used(e) for e in (A, B, C)}
        self.emu.clock.advance(WEEK)
        await self.only(B)
        await self.send()
        await self.send()


def pre_create_series(lb: LB) -> None:
    """Series the workload will touch start at 0 before the first scrape."""
    host = lb.app[COLLECTORS_KEY]
    request_metrics = next(c for c in host.collectors if isinstance(c, RequestMetrics))
    routing = next(c for c in host.collectors if isinstance(c, RoutingMetrics))
    for status, model, api in [
        ("success", "gpt-5", "codex"),
        ("success", "gpt-5", "compact"),
        ("success", "gpt-5-mini", "codex"),
        ("success", "other", "codex"),
        ("error", "other", "codex"),
        ("error", "gpt-5", "codex"),
    ]:
        request_metrics.requests.touch(status=status, model=model, api=api)
        request_metrics.latency.touch(model=model, api=api)
    for model in ("gpt-5", "gpt-5-mini", "other"):
        request_metrics.cost.touch(model=model)
        for kind in ("input", "cached_input", "output", "reasoning"):
            request_metrics.tokens.touch(kind=kind, model=model)
    for pool in ("pinned", "full"):
        for outcome in (
            "selected",
            "no_accounts",
            "all_tried",
            "all_limited",
            "all_paused",
            "all_reauth",
        ):
            routing.selections.touch(pool=pool, outcome=outcome)
    routing.permanent.touch(code="invalid_grant")


@pytest.fixture
async def three_accounts() -> Any:
    emu = Emulator(
        [SimAccount.make(A), SimAccount.make(B), SimAccount.make(C)],
        event_delay=0.0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


class TestSeedOnPrometheus:
    async def test_every_seed_expression(
        self, make_lb: Any, three_accounts: Emulator, tmp_path: Path
    ) -> None:
        """Each seed expression is non-empty and equals the known total."""
        lb: LB = await make_lb(three_accounts)
        pre_create_series(lb)
        target = f"127.0.0.1:{lb.client.port}"
        prom = PrometheusServer(tmp_path, target)
        await prom.start()
        try:
            await self.check(lb, prom)
        finally:
            await prom.stop()

    async def check(self, lb: LB, prom: PrometheusServer) -> None:
        # Two scrapes before any traffic: every series starts at 0.
        await prom.wait_for("count(codex_lb_proxy_requests_total)", lambda v: v)
        first = await prom.values("timestamp(codex_lb_proxy_inflight_requests)")
        await prom.wait_for(
            "timestamp(codex_lb_proxy_inflight_requests)", lambda v: v != first
        )

        work = Workload(lb)
        await work.run()
        rows = await lb.request_logs()
        finished_at = time.time()
        await asyncio.sleep(0.2)
        got = await prom.wait_for(
            "timestamp(codex_lb_proxy_inflight_requests)",
            lambda v: v and next(iter(v.values())) > finished_at + 0.5,
        )
        at = next(iter(got.values()))

        results = {}
        for expr in seed_expressions():
            results[expr] = await prom.values(expr.replace("$account", lb.ids[A]), at)
        failures = [f"{e}: empty" for e, v in results.items() if not v]
        failures += self.compare(lb, work, rows, results)
        assert not failures, "\n".join(failures)

    def compare(
        self, lb: LB, work: Workload, rows: list[Any], got: dict[str, dict[str, float]]
    ) -> list[str]:
        ids = lb.ids
        a, b, c = ids[A], ids[B], ids[C]
        failures: list[str] = []

        def same(expr: str, expected: dict[str, float]) -> None:
            actual = got[expr]
            ok = set(actual) == set(expected) and all(
                math.isclose(actual[k], expected[k], rel_tol=1e-6, abs_tol=1e-12)
                or (math.isnan(actual[k]) and math.isnan(expected[k]))
                for k in expected
            )
            if not ok:
                failures.append(f"{expr}:\n  got      {actual}\n  expected {expected}")

        # The script, as the request log recorded it.
        assert work.statuses == [200] * 11 + [400, 401, 200, 200], work.statuses
        assert len(rows) == 15
        by_account = Counter((r.account_id, r.status) for r in rows)
        assert by_account[(a, "success")] == 4 and by_account[(c, "error")] == 1
        cost = {k: 0.0 for k in (a, b, c)}
        input_tokens = cached_tokens = 0
        for row in rows:
            cost[row.account_id] += cost_of(row.model, row)
            input_tokens += row.input_tokens or 0
            cached_tokens += row.cached_input_tokens or 0
        requests = {
            k: by_account[(k, "success")] + by_account[(k, "error")] for k in cost
        }
        errors = sum(1 for r in rows if r.status == "error")
        aid = "account_id="

        # Gauges: the weekly baseline, against the emulator's own windows.
        # Gauges show the last weekly reading each account sent (all rises
        # here, so the baseline); the emulator's windows agree to the header's
        # rounding.
        readings: dict[str, list[float]] = {}
        for snap in lb.recorder.of("quota_snapshot"):
            if snap.secondary and snap.secondary.used_percent is not None:
                readings.setdefault(snap.account.account_id, []).append(
                    snap.secondary.used_percent
                )
        used = {k: v[-1] for k, v in readings.items()}
        emulator_used = {
            a: work.used_before_reset[A],
            b: work.weekly_used(B),
            c: work.used_before_reset[C],
        }
        for k, v in used.items():
            assert math.isclose(v, emulator_used[k], abs_tol=1e-6), (k, v)
        same(
            "topk(20, codex_lb_secondary_used_percent)",
            {aid + k: v for k, v in used.items()},
        )
        same(
            "topk(20, codex_lb_secondary_remaining_credits)",
            {aid + k: 7560 * (100 - v) / 100 for k, v in used.items()},
        )
        same(
            JOIN,
            {
                f"account_id={k},display={e}": used[k]
                for e, k in ids.items()
                if k in used
            },
        )

        # Ratios of rates are ratios of totals.
        same(
            'sum(rate(codex_lb_proxy_requests_total{status="error"}[5m])) / '
            "sum(rate(codex_lb_proxy_requests_total[5m]))",
            {"": errors / len(rows)},
        )
        same(
            'sum(rate(codex_lb_proxy_tokens_total{kind="cached_input"}[5m])) / '
            'sum(rate(codex_lb_proxy_tokens_total{kind="input"}[5m]))',
            {"": cached_tokens / input_tokens},
        )
        latencies = [e.latency_ms for e in lb.recorder.of("request_finished")]
        lower, upper = quantile_bucket(latencies, 0.95)
        p95 = got[
            "histogram_quantile(0.95, sum by (le) "
            "(rate(codex_lb_proxy_latency_ms_bucket[5m])))"
        ]
        if not lower <= p95.get("", -1) <= upper:
            failures.append(f"p95 {p95} not in bucket ({lower}, {upper}]")

        # Per account: rate over 5 m is the total / 300.
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_cost_usd_total[5m])) * 3600)",
            {aid + k: v * 3600 / 300 for k, v in cost.items()},
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_requests_total[5m])))",
            {aid + k: v / 300 for k, v in requests.items()},
        )
        same(
            "sum by (account_id) "
            '(rate(codex_lb_proxy_account_requests_total{status="error"}[5m]))'
            " / sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m]))",
            {
                aid + k: (by_account[(k, "error")] / n if n else math.nan)
                for k, n in requests.items()
            },
        )

        # Retries and unpriced successes, as scripted.
        same(
            "sum by (error_class) (rate(codex_lb_proxy_retries_total[5m]))",
            {
                "error_class=rate_limit": 1 / 300,
                "error_class=quota": 0.0,
                "error_class=upstream": 1 / 300,
                "error_class=transport": 1 / 300,
            },
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_retries_total[5m])))",
            {aid + a: 3 / 300, aid + b: 0.0, aid + c: 0.0},
        )
        same(
            "sum by (reason) (rate(codex_lb_proxy_unpriced_success_total[5m]))",
            {
                "reason=missing_model": 0.0,
                "reason=missing_usage": 1 / 300,
                "reason=unknown_pricing": 1 / 300,
            },
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_unpriced_success_total[5m])))",
            {aid + a: 0.0, aid + b: 2 / 300, aid + c: 0.0},
        )

        # Increases over ranges that hold the whole run are the totals.
        # A only rose; B rose, reset once, rose again (SPEC 7 rules 3 and 5).
        progress_a = readings[a][-1] - readings[a][0]
        progress_b = 100 - readings[b][0] + readings[b][-1]
        assert math.isclose(readings[a][0], work.first_used[A], abs_tol=1e-6)
        assert math.isclose(readings[b][0], work.first_used[B], abs_tol=1e-6)
        implied = got[
            "increase(codex_lb_proxy_account_cost_usd_total[1d]) / "
            "(increase(codex_lb_secondary_used_percent_increase_total[1d]) / 100)"
        ]
        for key, expected in (
            (a, cost[a] / (progress_a / 100)),
            (b, cost[b] / (progress_b / 100)),
        ):
            if not math.isclose(
                implied.get(aid + key, math.nan), expected, rel_tol=1e-6
            ):
                failures.append(f"implied quota {key}: {implied} expected {expected}")
        same(
            f'increase(codex_lb_proxy_account_cost_usd_total{{account_id="{a}"}}[1h])'.replace(
                a, "$account"
            ),
            {aid + a: cost[a]},
        )
        same(
            f'increase(codex_lb_proxy_account_requests_total{{account_id="{a}"}}[1h])'.replace(
                a, "$account"
            ),
            {
                f"account_id={a},status=success": by_account[(a, "success")],
                f"account_id={a},status=error": by_account[(a, "error")],
            },
        )
        same(
            "sum(increase(codex_lb_proxy_cost_usd_total[1d]))",
            {"": sum(cost.values())},
        )
        same(
            "topk(20, sum by (account_id) "
            "(increase(codex_lb_proxy_account_cost_usd_total[1d])))",
            {aid + k: v for k, v in cost.items()},
        )

        # Routing: selections as the bus saw them, marks as scripted.
        selected = Counter(
            (e.pool, e.outcome) for e in lb.recorder.of("account_selected")
        )
        same(
            "sum by (pool, outcome) (rate(codex_lb_lb_select_total[5m]))",
            {
                f"outcome={o},pool={p}": selected[(p, o)] / 300
                for p in ("pinned", "full")
                for o in (
                    "selected",
                    "no_accounts",
                    "all_tried",
                    "all_limited",
                    "all_paused",
                    "all_reauth",
                )
            },
        )
        same(
            "sum by (event) (rate(codex_lb_lb_mark_total[5m]))",
            {
                "event=rate_limit": 0.0,
                "event=usage_limit_reached": 1 / 300,
                "event=quota_exceeded": 0.0,
                "event=permanent_failure": 1 / 300,
                "event=error": 2 / 300,
            },
        )
        same(
            "sum by (code) (increase(codex_lb_lb_mark_permanent_failure_total[1h]))",
            {"code=invalid_grant": 1.0},
        )
        return failures


# 45-minute samples (32 a day) with binary-exact steps, so that the exact
# comparison promtool makes is not upset by float rounding.
DAY_RULE_TEST = """
rule_files: []
evaluation_interval: 45m
tests:
  - interval: 45m
    input_series:
      - series: 'codex_lb_proxy_cost_usd_total{model="gpt-5"}'
        values: '0+0.5x64'
      - series: 'codex_lb_proxy_cost_usd_total{model="gpt-5-mini"}'
        values: '0+0.0625x64'
      - series: 'codex_lb_proxy_account_cost_usd_total{account_id="acc_a"}'
        values: '0+0.375x64'
      - series: 'codex_lb_proxy_account_cost_usd_total{account_id="acc_b"}'
        values: '0+0.125x64'
      - series: 'codex_lb_secondary_used_percent_increase_total{account_id="acc_a"}'
        values: '0+0.78125x64'
      - series: 'codex_lb_secondary_used_percent_increase_total{account_id="acc_b"}'
        values: '0+0.390625x64'
    promql_expr_test:
      - expr: sum(increase(codex_lb_proxy_cost_usd_total[1d]))
        eval_time: 2d
        exp_samples:
          - labels: '{}'
            value: 18
      - expr: topk(20, sum by (account_id) (increase(codex_lb_proxy_account_cost_usd_total[1d])))
        eval_time: 1d
        exp_samples:
          - labels: '{account_id="acc_a"}'
            value: 12
          - labels: '{account_id="acc_b"}'
            value: 4
      - expr: increase(codex_lb_proxy_account_cost_usd_total[1d]) / (increase(codex_lb_secondary_used_percent_increase_total[1d]) / 100)
        eval_time: 2d
        exp_samples:
          - labels: '{account_id="acc_a"}'
            value: 48
          - labels: '{account_id="acc_b"}'
            value: 32
"""  # noqa: E501


class TestDailyRollups:
    def test_one_day_expressions_on_synthetic_days(self, tmp_path: Path) -> None:
        """Daily totals and implied quota over two synthetic days are exact."""
        tests = tmp_path / "day_test.yml"
        tests.write_text(DAY_RULE_TEST)

        done = subprocess.run(
            ["promtool", "test", "rules", str(tests)],
            capture_output=True,
            timeout=60,
        )

        assert done.returncode == 0, (done.stdout + done.stderr).decode()

    def test_synthetic_checks_cover_the_seed(self) -> None:
        """Every one-day expression of the seed is in the synthetic test."""
        one_day = [e for e in seed_expressions() if "[1d]" in e]

        assert len(one_day) == 3
        for expr in one_day:
            assert expr in DAY_RULE_TEST


def test_seed_copy_matches_shared_seed() -> None:
    """The repository's copy of the seed is the shared one, when present."""
    shared = Path("/work/shared/seeds/000_cddb313839a5f497.txt")
    if not shared.exists():
        pytest.skip("the shared seed file is not on this machine")
    assert shared.read_text() == SEED.read_text()
    assert len(seed_expressions()) == 21
    json.dumps(seed_expressions())
