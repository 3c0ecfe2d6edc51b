"""/metrics as Prometheus reads it (C09), its token, and plug-in collectors."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from codex_lb.app import BUS_KEY
from codex_lb.events import AccountInfo, PoolChanged
from codex_lb.events.collector_api import CollectorError
from codex_lb.sim import Emulator
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB

NASTY = 'we"ird\\name\nx@example.com'
SPEC_METRICS = [
    "codex_lb_proxy_requests_total",
    "codex_lb_proxy_errors_total",
    "codex_lb_proxy_latency_ms",
    "codex_lb_proxy_tokens_total",
    "codex_lb_proxy_cost_usd_total",
    "codex_lb_proxy_account_requests_total",
    "codex_lb_proxy_account_cost_usd_total",
    "codex_lb_proxy_retries_total",
    "codex_lb_proxy_account_retries_total",
    "codex_lb_proxy_unpriced_success_total",
    "codex_lb_proxy_account_unpriced_success_total",
    "codex_lb_account_identity",
    "codex_lb_accounts",
    "codex_lb_primary_used_percent",
    "codex_lb_secondary_used_percent",
    "codex_lb_primary_reset_at_seconds",
    "codex_lb_secondary_reset_at_seconds",
    "codex_lb_secondary_window_minutes",
    "codex_lb_secondary_remaining_credits",
    "codex_lb_secondary_used_percent_increase_total",
    "codex_lb_secondary_resets_total",
    "codex_lb_lb_select_total",
    "codex_lb_lb_mark_total",
    "codex_lb_lb_mark_permanent_failure_total",
    "codex_lb_proxy_inflight_requests",
    "codex_lb_account_inflight_requests",
    "codex_lb_usage_refresh_failures_total",
    "codex_lb_request_log_buffer_size",
    "codex_lb_request_log_buffer_dropped_total",
    "codex_lb_event_loop_lag_seconds",
    "codex_lb_proxy_attempts",
]


def promtool_findings(text: str) -> tuple[int, str]:
    done = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


async def with_nasty_account(lb: LB) -> str:
    infos = [a.info for a in lb.pool.accounts]
    infos.append(AccountInfo("acc_nasty", NASTY, "plus", "active"))
    lb.app[BUS_KEY].publish(PoolChanged(accounts=tuple(infos)))
    await lb.client.post(
        "/backend-api/codex/responses",
        json={"model": "gpt-5", "input": "hi", "stream": True, "store": False},
    )
    return await scrape_text(lb)


class TestExposition:
    async def test_nasty_display_round_trips(self, lb: LB) -> None:
        """A display with a quote, backslash and newline parses back intact."""
        text = await with_nasty_account(lb)

        samples = parse(text)

        key = (
            "codex_lb_account_identity",
            (("account_id", "acc_nasty"), ("display", NASTY)),
        )
        assert samples[key] == 1

    @pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
    async def test_promtool_finds_only_the_spec_units(self, lb: LB) -> None:
        """promtool finds exactly two things, both consequences of metric
        names the SPEC fixes (C09): the ``_ms`` unit the seed puts in the
        latency histogram, and the weekly window in minutes rather than
        seconds. The request publishes its quota snapshot before the scrape,
        so the window gauge has a sample."""
        text = await with_nasty_account(lb)

        code, output = promtool_findings(text)

        assert code == 3, output
        assert sorted(line for line in output.splitlines() if line.strip()) == [
            "codex_lb_proxy_latency_ms metric names should not contain "
            "abbreviated units",
            'codex_lb_secondary_window_minutes use base unit "seconds" instead '
            'of "minutes"',
        ], output

    async def test_every_spec_metric_is_served_once(self, lb: LB) -> None:
        """Every non-forecast SPEC metric has one TYPE line; none is doubled."""
        text = await with_nasty_account(lb)

        types = [
            line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")
        ]
        assert sorted(set(types)) == sorted(types)
        assert set(SPEC_METRICS) <= set(types)
        assert "_total_total" not in text

    async def test_histogram_inf_bucket_equals_count(self, lb: LB) -> None:
        """Every latency series has ``le="+Inf"`` equal to its ``_count``."""
        samples = parse(await with_nasty_account(lb))

        counts = {
            labels: value
            for (name, labels), value in samples.items()
            if name == "codex_lb_proxy_latency_ms_count"
        }
        assert counts
        for labels, count in counts.items():
            key = ("codex_lb_proxy_latency_ms_bucket", (*labels, ("le", "+Inf")))
            assert samples[(key[0], tuple(sorted(key[1])))] == count


class TestAccess:
    async def test_metrics_token_is_required_when_set(
        self, make_lb: Any, emulator: Emulator
    ) -> None:
        """With a metrics token, /metrics answers 401 without it, 200 with it."""
        lb: LB = await make_lb(emulator, CODEX_LB_METRICS_TOKEN="s3cret")

        refused = await lb.client.get("/metrics")
        allowed = await lb.client.get(
            "/metrics", headers={"Authorization": "Bearer s3cret"}
        )

        assert refused.status == 401
        assert allowed.status == 200
        assert "s3cret" not in await allowed.text()


class TestPlugins:
    async def test_bad_spec_stops_start_up(
        self, make_lb: Any, emulator: Emulator
    ) -> None:
        """A collector that cannot be imported stops start-up with one line."""
        with pytest.raises(CollectorError) as caught:
            await make_lb(emulator, CODEX_LB_COLLECTORS="nowhere.at_all:Thing")

        assert caught.value.problems == [
            "CODEX_LB_COLLECTORS='nowhere.at_all:Thing': cannot import module "
            "'nowhere.at_all' (ModuleNotFoundError: No module named 'nowhere')"
        ]
