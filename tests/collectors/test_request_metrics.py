"""RequestMetrics and AccountTraffic on the real proxy and emulator (C08, C10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codex_lb.events.testing import CollectorHarness
from codex_lb.sim import Fault
from codex_lb.store import open_store
from collectors.request_metrics import RequestMetrics
from tests.collectors.events import finished
from tests.collectors.scrape import parse, scrape_text, scrape_until, total
from tests.conftest import LB

CODEX = "/backend-api/codex/responses"
REQUESTS = "codex_lb_proxy_requests_total"


def turn(model: str = "gpt-5", stream: bool = True) -> dict[str, Any]:
    return {
        "model": model,
        "instructions": "",
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


def completed_usage(raw: bytes) -> dict[str, Any]:
    """The usage of the ``response.completed`` event of a stream."""
    for line in raw.split(b"\n"):
        if line.startswith(b"data: "):
            data = json.loads(line[6:])
            if data.get("type") == "response.completed":
                return dict(data["response"]["usage"])
    raise AssertionError("no response.completed")


def gpt5_cost(usage: dict[str, Any]) -> float:
    cached = usage["input_tokens_details"]["cached_tokens"]
    fresh = usage["input_tokens"] - cached
    return (fresh * 1.25 + cached * 0.125 + usage["output_tokens"] * 10.0) / 1e6


class TestUnit:
    async def test_one_event_counts_everywhere_once(self) -> None:
        """A finished request adds one count, its tokens, cost and latency."""
        harness = await CollectorHarness.start(RequestMetrics)

        harness.feed(finished(latency_ms=250.0))

        labels = {"status": "success", "model": "gpt-5", "api": "codex"}
        assert harness.sample(REQUESTS, labels) == 1
        tokens = "codex_lb_proxy_tokens_total"
        assert harness.sample(tokens, {"kind": "input", "model": "gpt-5"}) == 100
        assert harness.sample(tokens, {"kind": "cached_input", "model": "gpt-5"}) == 20
        assert harness.sample(tokens, {"kind": "output", "model": "gpt-5"}) == 10
        assert harness.sample(tokens, {"kind": "reasoning", "model": "gpt-5"}) == 4
        assert (
            harness.sample("codex_lb_proxy_cost_usd_total", {"model": "gpt-5"}) == 0.5
        )
        latency = "codex_lb_proxy_latency_ms_bucket"
        assert (
            harness.sample(latency, {"model": "gpt-5", "api": "codex", "le": "250.0"})
            == 1
        )
        assert (
            harness.sample(latency, {"model": "gpt-5", "api": "codex", "le": "100.0"})
            == 0
        )

    async def test_error_counts_its_code_and_no_tokens(self) -> None:
        """An error adds to the error counter and no tokens or cost."""
        harness = await CollectorHarness.start(RequestMetrics)

        harness.feed(
            finished("error", error_code="upstream_error", cost=None, tokens=None)
        )

        assert (
            harness.sample(
                "codex_lb_proxy_errors_total", {"error_code": "upstream_error"}
            )
            == 1
        )
        # The model's token and cost series exist (at 0) but gained nothing.
        samples = parse(harness.text())
        added = {
            name: value
            for (name, _labels), value in samples.items()
            if name in ("codex_lb_proxy_tokens_total", "codex_lb_proxy_cost_usd_total")
        }
        assert set(added) == {
            "codex_lb_proxy_tokens_total",
            "codex_lb_proxy_cost_usd_total",
        }
        assert all(
            value == 0
            for (name, _labels), value in samples.items()
            if name in ("codex_lb_proxy_tokens_total", "codex_lb_proxy_cost_usd_total")
        )


class TestOnTheProxy:
    async def test_c08_one_request_one_count(self, lb: LB) -> None:
        """Three requests, one with a failover: +3 requests, +1 retry (C08)."""
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        before = parse(await scrape_text(lb))

        first = await lb.client.post(CODEX, json=turn())
        usages = [completed_usage(await first.read())]
        second = await lb.client.post(
            "/backend-api/codex/responses/compact", json=turn(stream=False)
        )
        usages.append(dict((await second.json())["usage"]))
        # The third request's first account answers 500 before any byte.
        await lb.pool.set_pinned(a, True)
        lb.emulator.add_fault("a@example.com", Fault.status(500, {"error": {}}))
        third = await lb.client.post(CODEX, json=turn())
        usages.append(completed_usage(await third.read()))
        after = await scrape_until(lb, lambda s: total(s, REQUESTS) >= 3)

        def grew(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        assert [first.status, second.status, third.status] == [200, 200, 200]
        assert grew(REQUESTS) == 3
        assert grew(REQUESTS, status="success") == 3
        assert grew("codex_lb_proxy_retries_total") == 1
        assert grew("codex_lb_proxy_retries_total", error_class="upstream") == 1
        assert grew("codex_lb_proxy_account_retries_total", account_id=a.id) == 1
        tokens = "codex_lb_proxy_tokens_total"
        assert grew(tokens, kind="input") == sum(u["input_tokens"] for u in usages)
        assert grew(tokens, kind="output") == sum(u["output_tokens"] for u in usages)
        assert grew("codex_lb_proxy_cost_usd_total") == pytest.approx(
            sum(gpt5_cost(u) for u in usages), rel=1e-9
        )
        assert grew("codex_lb_proxy_latency_ms_count") == 3
        assert grew("codex_lb_proxy_account_requests_total") == 3
        # Accounts tried per request: 1 and 1, then 2 for the failover.
        attempts = "codex_lb_proxy_attempts"
        assert grew(f"{attempts}_count", api="codex") == 2
        assert grew(f"{attempts}_sum", api="codex") == 3
        assert grew(f"{attempts}_bucket", api="codex", le="1.0") == 1
        assert grew(f"{attempts}_count", api="compact") == 1
        assert grew(f"{attempts}_sum", api="compact") == 1
        assert "# TYPE codex_lb_proxy_attempts histogram" in await scrape_text(lb)

    async def test_c10_junk_models_do_not_grow_the_output(self, lb: LB) -> None:
        """1000 junk model names, then 5 gpt-5: bounded labels, a few KB (C10)."""
        await lb.client.post(CODEX, json=turn())
        start = len(await scrape_text(lb))

        for i in range(1000):
            response = await lb.client.post(CODEX, json=turn(f"gpt-5-typo-{i}"))
            await response.read()
        for _ in range(5):
            response = await lb.client.post(CODEX, json=turn())
            await response.read()
        samples = await scrape_until(lb, lambda s: total(s, REQUESTS) >= 1006)
        end = len(await scrape_text(lb))

        models = {
            dict(labels)["model"]
            for (_name, labels) in samples
            if "model" in dict(labels)
        }
        assert total(samples, REQUESTS) == 1006
        assert models <= {"gpt-5", "other"}
        assert end - start < 4096


class TestBoundedErrorCodes:
    async def test_a_thousand_junk_codes_are_one_series(self) -> None:
        """1000 upstream-invented codes add one ``other`` series; known codes
        and a missing code keep theirs."""
        harness = await CollectorHarness.start(RequestMetrics)
        junk = [
            finished(status="error", error_code=f"junk_{i}", request_id=f"r{i}")
            for i in range(1000)
        ]

        harness.feed(*junk)
        harness.feed(finished(status="error", error_code="no_accounts"))
        harness.feed(finished(status="error", error_code=None))

        samples = parse(harness.text())
        errors = {
            dict(labels)["error_code"]: value
            for (name, labels), value in samples.items()
            if name == "codex_lb_proxy_errors_total"
        }
        assert errors == {"other": 1000, "no_accounts": 1, "unknown": 1}


class TestSeriesAtZero:
    async def test_a_new_pair_starts_every_series_at_zero(self) -> None:
        """The first request of a model and API brings the other outcome,
        every token kind and the cost at 0 with it."""
        harness = await CollectorHarness.start(RequestMetrics)

        harness.feed(finished(model="gpt-5-mini", tokens=(100, 0, 10, 0)))

        samples = parse(harness.text())
        assert (
            samples[
                (
                    REQUESTS,
                    (("api", "codex"), ("model", "gpt-5-mini"), ("status", "error")),
                )
            ]
            == 0
        )
        assert (
            samples[
                (
                    "codex_lb_proxy_tokens_total",
                    (("kind", "cached_input"), ("model", "gpt-5-mini")),
                )
            ]
            == 0
        )
        assert (
            samples[
                (
                    "codex_lb_proxy_tokens_total",
                    (("kind", "input"), ("model", "gpt-5-mini")),
                )
            ]
            == 100
        )

    async def test_pairs_seen_come_back_at_zero_after_a_restart(
        self, tmp_path: Path
    ) -> None:
        """Before any request, a restarted collector shows every series of
        the pairs it saw before at 0 (and of no other pair)."""
        store = await open_store(tmp_path / "d")
        try:
            first = await CollectorHarness.start(RequestMetrics, store=store)
            first.feed(finished(), finished(model="other", api="chat", cost=None))
            await first.settle()

            again = await CollectorHarness.start(RequestMetrics, store=store)
        finally:
            await store.close()

        samples = parse(again.text())
        requests = {
            labels: value
            for (name, labels), value in samples.items()
            if name == REQUESTS
        }
        assert requests == {
            (("api", api), ("model", model), ("status", status)): 0
            for model, api in (("gpt-5", "codex"), ("other", "chat"))
            for status in ("success", "error")
        }
        for model in ("gpt-5", "other"):
            assert samples[("codex_lb_proxy_cost_usd_total", (("model", model),))] == 0
            for kind in ("input", "cached_input", "output", "reasoning"):
                key = (("kind", kind), ("model", model))
                assert samples[("codex_lb_proxy_tokens_total", key)] == 0
        count = (
            "codex_lb_proxy_latency_ms_count",
            (("api", "chat"), ("model", "other")),
        )
        assert samples[count] == 0
