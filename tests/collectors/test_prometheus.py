"""Every PromQL expression of the seed file, evaluated by a real Prometheus.

codex-lb (on a real loopback port, in front of the emulator) is scraped every
second while a scripted workload runs; then each seed expression is queried
through Prometheus' HTTP API and compared with totals the script knows in
advance: which account answers each request, with what outcome, after which
failovers, marks and selections (the routing rules of SPEC section 5 applied
to the plan), the tokens the emulator sent back (read from the responses the
client got), their cost (the price table's arithmetic, done here) and the
weekly percents the emulator reported (its own header function). Nothing
expected comes from codex-lb's request log, its events or its metrics.

Why the rate and increase checks can be exact: Prometheus extrapolates
``rate``/``increase`` to the edges of the range, except (a) towards the start
when a counter's first sample is 0 (it extrapolates at most to where the
counter would have been 0, which is that first sample) and (b) towards the
end when the query time is the last sample's time. So every series the
workload touches must exist at 0 before the first scrape, and every query is
evaluated at the timestamp of the last scrape. The product does that itself:
per-account series start at 0 with the roster, every known routing label at
registration, and every series of a model and API codex-lb has served before
at start-up. So the script first serves one request of each model and API
(a warm-up), restarts codex-lb on the same data, and only then lets
Prometheus scrape. Then ``increase(x[r]) == last`` and ``rate(x[5m]) ==
last / 300`` for every series, and ratios of rates are ratios of totals.

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
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestServer

from codex_lb.app import SERVER_OPTIONS, create_app
from codex_lb.config import load_settings
from codex_lb.events import EventBus
from codex_lb.events.metrics import LATENCY_MS_BUCKETS
from codex_lb.sim import Emulator, Fault, SimAccount
from codex_lb.sim.backend import quota_headers
from tests.conftest import LB, settings_env
from tests.prometheus import Prometheus, scraping

# Without Debian's prometheus package the Prometheus test skips (a failure
# under CI: tests/ci_skips.py).
pytestmark = [pytest.mark.prometheus]

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
LIMIT = {
    "error": {
        "type": "usage_limit_reached",
        "code": "usage_limit_reached",
        "message": "limit",
        "resets_in_seconds": 3600,
    }
}

# USD per million tokens (input, cached input, output): OpenAI's list prices
# for the two priced models the script uses. Anything else is unpriced.
PRICES = {"gpt-5": (1.25, 0.125, 10.0), "gpt-5-mini": (0.25, 0.025, 2.0)}
PLUS_CREDITS = 7560.0

SELECTED = ("pinned", "selected")
# A request pinned to an account that fails before the first byte: that
# account, then nothing left in the pinned pool, then the full pool.
FAILED_OVER = [SELECTED, ("pinned", "all_tried"), ("full", "selected")]
POOLS = ("pinned", "full")
OUTCOMES = (
    "selected",
    "cooldown",
    "no_accounts",
    "all_tried",
    "all_limited",
    "all_paused",
    "all_reauth",
)
REFRESH_CODES = (
    "account_deactivated",
    "invalid_grant",
    "refresh_token_expired",
    "refresh_token_invalidated",
    "refresh_token_reused",
    "token_expired",
)
MARK_EVENTS = (
    "rate_limit",
    "usage_limit_reached",
    "quota_exceeded",
    "permanent_failure",
    "error",
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


def turn(
    model: str = "gpt-5", stream: bool = True, cache_key: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
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
    if cache_key is not None:
        body["prompt_cache_key"] = cache_key
    return body


def usage_sent(raw: bytes, stream: bool) -> dict[str, Any] | None:
    """The usage the emulator put in its answer, as the client received it."""
    if not stream:
        usage = json.loads(raw).get("usage")
        return dict(usage) if usage else None
    for line in raw.split(b"\n"):
        if line.startswith(b"data: "):
            data = json.loads(line[6:])
            if data.get("type") == "response.completed":
                usage = data["response"].get("usage")
                return dict(usage) if usage else None
    return None


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


@attrs.define
class Expected:
    """The totals the script adds up to, kept as it plans each request."""

    requests: Counter[tuple[str, str, str]] = attrs.field(factory=Counter)
    by_account: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    tokens: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    cost: defaultdict[str, float] = attrs.field(factory=lambda: defaultdict(float))
    account_cost: defaultdict[str, float] = attrs.field(
        factory=lambda: defaultdict(float)
    )
    retries: Counter[str] = attrs.field(factory=Counter)
    account_retries: Counter[str] = attrs.field(factory=Counter)
    unpriced: Counter[str] = attrs.field(factory=Counter)
    account_unpriced: Counter[str] = attrs.field(factory=Counter)
    selections: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    marks: Counter[str] = attrs.field(factory=Counter)
    lost_logins: Counter[str] = attrs.field(factory=Counter)
    client_ms: list[float] = attrs.field(factory=list)


class Workload:
    """The scripted traffic and, for each request, what it must come to."""

    def __init__(self, lb: LB) -> None:
        self.lb = lb
        self.emu = lb.emulator
        self.expected = Expected()
        # Weekly percents as the emulator reported them, per account.
        self.start: dict[str, float] = {}
        self.before_reset: dict[str, float] = {}
        self.after_reset: dict[str, float] = {}

    def reported(self, email: str) -> float:
        """The weekly used percent the emulator's headers give now."""
        headers = quota_headers(self.emu.account(email), self.emu.clock.now())
        return float(headers["x-codex-secondary-used-percent"])

    async def only(self, email: str) -> None:
        """Pin ``email``'s account so it is tried first."""
        for account in self.lb.pool.accounts:
            await self.lb.pool.set_pinned(account, account.email == email)

    async def send(
        self,
        answered_by: str,
        *,
        path: str = CODEX,
        model: str = "gpt-5",
        stream: bool = True,
        cache_key: str | None = None,
        status: int = 200,
        label: str | None = None,
        selections: list[tuple[str, str]] | None = None,
        retry: tuple[str, str] | None = None,
        marks: tuple[str, ...] = (),
        lost_login: str | None = None,
        unpriced: str | None = None,
    ) -> None:
        """One request and what it must add: ``answered_by`` answers last,
        after a ``retry`` (account, class) if one is planned."""
        body = turn(model, stream, cache_key)
        began = time.perf_counter()
        response = await self.lb.client.post(path, json=body)
        raw = await response.read()
        self.expected.client_ms.append((time.perf_counter() - began) * 1000)
        assert response.status == status, (answered_by, raw[:300])

        e = self.expected
        outcome = "success" if status == 200 else "error"
        api = "compact" if path == COMPACT else "codex"
        label = label or model
        e.requests[(outcome, label, api)] += 1
        e.by_account[(answered_by, outcome)] += 1
        for pool_outcome in selections or [SELECTED]:
            e.selections[pool_outcome] += 1
        if retry is not None:
            e.retries[retry[1]] += 1
            e.account_retries[retry[0]] += 1
        for mark in marks:
            e.marks[mark] += 1
        if lost_login is not None:
            e.lost_logins[lost_login] += 1
        if unpriced is not None:
            e.unpriced[unpriced] += 1
            e.account_unpriced[answered_by] += 1

        usage = usage_sent(raw, stream) if outcome == "success" else None
        if usage is None:
            return
        cached = usage["input_tokens_details"]["cached_tokens"]
        counts = {
            "input": usage["input_tokens"],
            "cached_input": cached,
            "output": usage["output_tokens"],
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
        }
        for kind, count in counts.items():
            e.tokens[(kind, label)] += count
        price = PRICES.get(model)
        if price is not None:
            fresh = counts["input"] - cached
            usd = (
                fresh * price[0] + cached * price[1] + counts["output"] * price[2]
            ) / 1e6
            e.cost[label] += usd
            e.account_cost[answered_by] += usd

    async def warm_up(self) -> None:
        """One request of each model and API the script uses, on each
        account, served by a codex-lb that is then restarted."""
        self.emu.models.append("house-model")
        await self.only(A)
        for path, stream in ((CODEX, True), (COMPACT, False)):
            response = await self.lb.client.post(path, json=turn(stream=stream))
            assert response.status == 200, await response.read()
        await self.only(B)
        for model in ("gpt-5-mini", "house-model"):
            response = await self.lb.client.post(CODEX, json=turn(model))
            assert response.status == 200, await response.read()
        await self.only(C)
        response = await self.lb.client.post(CODEX, json=turn())
        assert response.status == 200, await response.read()

    async def run(self) -> None:
        """The measured script, on the restarted codex-lb."""
        self.start = {email: self.reported(email) for email in (A, B, C)}

        # A serves two turns of one conversation (the second reads the
        # first from the prompt cache) and a compaction.
        await self.only(A)
        await self.send(A, cache_key="k-a")
        await self.send(A, cache_key="k-a")
        await self.send(A, path=COMPACT, stream=False)

        await self.only(B)
        await self.send(B, model="gpt-5-mini")
        await self.send(B, model="gpt-5-mini")

        # C serves once, then its token is revoked and its refresh token
        # refused: C needs a new login and the request moves on to the full
        # pool, where B (the least used; A sits at the top) answers.
        await self.only(C)
        await self.send(C)
        self.emu.revoke_access_token(C)
        self.emu.add_fault(C, Fault.status(400, {"error": "invalid_grant"}), "token")
        await self.send(
            B,
            selections=FAILED_OVER,
            retry=(C, "auth"),
            marks=("permanent_failure",),
            lost_login="invalid_grant",
        )

        # Three failovers away from A, one per error class; C is out, so
        # B answers each.
        await self.only(A)
        for fault, error_class, mark in (
            (Fault.status(500, {"error": {"message": "boom"}}), "upstream", "error"),
            (Fault.raw([CREATED], then="reset"), "transport", "error"),
            (Fault.status(429, LIMIT), "rate_limit", "usage_limit_reached"),
        ):
            self.emu.add_fault(A, fault)
            await self.send(
                B,
                selections=FAILED_OVER,
                retry=(A, error_class),
                marks=(mark,),
            )

        # Unpriced successes: an unknown model, then a stream with no usage;
        # then a client error (the upstream does not know the model).
        await self.only(B)
        await self.send(
            B, model="house-model", label="other", unpriced="unknown_pricing"
        )
        self.emu.add_fault(B, Fault.raw([CREATED, COMPLETED_NO_USAGE]))
        await self.send(B, unpriced="missing_usage")
        await self.send(B, model="gpt-5-typo", label="other", status=400)

        # A week later B's window has reset: two readings confirm it.
        self.before_reset = {email: self.reported(email) for email in (A, B, C)}
        self.emu.clock.advance(WEEK)
        await self.send(B, model="gpt-5-mini")
        await self.send(B, model="gpt-5-mini")
        self.after_reset = {B: self.reported(B)}


async def restarted(lb: LB, aiohttp_client: Any, data_dir: Path) -> LB:
    """``lb`` shut down cleanly and started again on the same data."""
    await lb.client.close()
    emu = lb.emulator
    settings = load_settings(settings_env(emu, data_dir), env_file=None)
    app = await create_app(settings, bus=EventBus(), clock=emu.clock.now)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    client = await aiohttp_client(server)
    return LB(client, app, emu, lb.recorder, lb.ids)


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
        self,
        make_lb: Any,
        three_accounts: Emulator,
        tmp_path: Path,
        aiohttp_client: Any,
    ) -> None:
        """Each seed expression is non-empty and equals the known total."""
        first: LB = await make_lb(three_accounts)
        await Workload(first).warm_up()
        lb = await restarted(first, aiohttp_client, tmp_path / "lb-data")
        target = f"127.0.0.1:{lb.client.port}"
        async with scraping(tmp_path, target) as prom:
            await self.check(lb, prom)

    async def check(self, lb: LB, prom: Prometheus) -> None:
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
        a = ids[A]
        e = work.expected
        failures: list[str] = []

        def same(expr: str, expected: dict[str, float]) -> None:
            """Exactly these series come back, each with its value."""
            actual = got[expr]
            ok = set(actual) == set(expected) and all(
                math.isclose(actual[k], expected[k], rel_tol=1e-6, abs_tol=1e-12)
                or (math.isnan(actual[k]) and math.isnan(expected[k]))
                for k in expected
            )
            if not ok:
                failures.append(f"{expr}:\n  got      {actual}\n  expected {expected}")

        def per_account(values: dict[str, float]) -> dict[str, float]:
            return {f"account_id={ids[email]}": v for email, v in values.items()}

        emails = (A, B, C)
        requests = {
            m: e.by_account[(m, "success")] + e.by_account[(m, "error")] for m in emails
        }
        total_requests = sum(e.requests.values())
        errors = sum(
            n for (status, _m, _a), n in e.requests.items() if status == "error"
        )
        assert total_requests == 15 and errors == 1

        # Gauges: the last weekly percent the emulator reported per account
        # (B read again after its reset; A and C not).
        used = {
            A: work.before_reset[A],
            B: work.after_reset[B],
            C: work.before_reset[C],
        }
        same("topk(20, codex_lb_secondary_used_percent)", per_account(used))
        same(
            "topk(20, codex_lb_secondary_remaining_credits)",
            per_account({m: PLUS_CREDITS * (100 - u) / 100 for m, u in used.items()}),
        )
        same(
            JOIN,
            {f"account_id={ids[m]},display={m}": u for m, u in used.items()},
        )

        # Ratios of rates are ratios of totals.
        same(
            'sum(rate(codex_lb_proxy_requests_total{status="error"}[5m])) / '
            "sum(rate(codex_lb_proxy_requests_total[5m]))",
            {"": errors / total_requests},
        )
        cached = sum(n for (kind, _m), n in e.tokens.items() if kind == "cached_input")
        inputs = sum(n for (kind, _m), n in e.tokens.items() if kind == "input")
        assert cached > 0
        same(
            'sum(rate(codex_lb_proxy_tokens_total{kind="cached_input"}[5m])) / '
            'sum(rate(codex_lb_proxy_tokens_total{kind="input"}[5m]))',
            {"": cached / inputs},
        )

        # Latency is measured by codex-lb alone: the quantile must land in
        # the bucket of its logged latencies, each no longer than the time
        # the client itself waited for that request.
        # (The log also holds the warm-up's rows, before the script's.)
        latencies = [row.latency_ms for row in rows[-len(e.client_ms) :]]
        assert len(rows) == len(e.client_ms) + 5
        assert all(
            0 < logged <= waited
            for logged, waited in zip(latencies, e.client_ms, strict=True)
        )
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
            per_account({m: e.account_cost[m] * 3600 / 300 for m in emails}),
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_requests_total[5m])))",
            per_account({m: requests[m] / 300 for m in emails}),
        )
        same(
            "sum by (account_id) "
            '(rate(codex_lb_proxy_account_requests_total{status="error"}[5m]))'
            " / sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m]))",
            per_account({m: e.by_account[(m, "error")] / requests[m] for m in emails}),
        )

        # Retries and unpriced successes, as scripted.
        same(
            "sum by (error_class) (rate(codex_lb_proxy_retries_total[5m]))",
            {
                f"error_class={c}": e.retries[c] / 300
                for c in ("rate_limit", "quota", "auth", "upstream", "transport")
            },
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_retries_total[5m])))",
            per_account({m: e.account_retries[m] / 300 for m in emails}),
        )
        same(
            "sum by (reason) (rate(codex_lb_proxy_unpriced_success_total[5m]))",
            {
                f"reason={r}": e.unpriced[r] / 300
                for r in ("missing_model", "missing_usage", "unknown_pricing")
            },
        )
        same(
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_unpriced_success_total[5m])))",
            per_account({m: e.account_unpriced[m] / 300 for m in emails}),
        )

        # Increases over ranges that hold the whole run are the totals. The
        # weekly progress of SPEC 7: A and C only rose; B rose, reset once
        # and rose again, (100 - start) + after.
        progress = {
            A: work.before_reset[A] - work.start[A],
            B: 100 - work.start[B] + work.after_reset[B],
            C: work.before_reset[C] - work.start[C],
        }
        assert all(p > 0 for p in progress.values()), progress
        same(
            "increase(codex_lb_proxy_account_cost_usd_total[1d]) / "
            "(increase(codex_lb_secondary_used_percent_increase_total[1d]) / 100)",
            per_account({m: e.account_cost[m] / (progress[m] / 100) for m in emails}),
        )
        same(
            'increase(codex_lb_proxy_account_cost_usd_total{account_id="$account"}[1h])',
            {f"account_id={a}": e.account_cost[A]},
        )
        same(
            'increase(codex_lb_proxy_account_requests_total{account_id="$account"}[1h])',
            {
                f"account_id={a},status={s}": e.by_account[(A, s)]
                for s in ("success", "error")
            },
        )
        same(
            "sum(increase(codex_lb_proxy_cost_usd_total[1d]))",
            {"": sum(e.cost.values())},
        )
        same(
            "topk(20, sum by (account_id) "
            "(increase(codex_lb_proxy_account_cost_usd_total[1d])))",
            per_account({m: e.account_cost[m] for m in emails}),
        )

        # Routing: selections, marks and lost logins as planned.
        same(
            "sum by (pool, outcome) (rate(codex_lb_lb_select_total[5m]))",
            {
                f"outcome={o},pool={p}": e.selections[(p, o)] / 300
                for p in POOLS
                for o in OUTCOMES
            },
        )
        same(
            "sum by (event) (rate(codex_lb_lb_mark_total[5m]))",
            {f"event={m}": e.marks[m] / 300 for m in MARK_EVENTS},
        )
        same(
            "sum by (code) (increase(codex_lb_lb_mark_permanent_failure_total[1h]))",
            {f"code={c}": e.lost_logins[c] for c in REFRESH_CODES},
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
