"""RoutingMetrics: selections and marks."""

from __future__ import annotations

from codex_lb.events import AccountMarked, AccountSelected, UsageRefreshFailed
from codex_lb.events.testing import CollectorHarness
from collectors.routing_metrics import RoutingMetrics
from tests.collectors.scrape import parse


class TestRouting:
    async def test_selections_and_marks(self) -> None:
        """Each event counts once under its labels; permanent ones by code."""
        harness = await CollectorHarness.start(RoutingMetrics)

        harness.feed(
            AccountSelected("full", "selected", "a"),
            AccountSelected("pinned", "all_limited"),
            AccountMarked("a", "rate_limit", "rate_limit_exceeded"),
            AccountMarked("a", "permanent_failure", "invalid_grant"),
        )

        select = "codex_lb_lb_select_total"
        assert harness.sample(select, {"pool": "full", "outcome": "selected"}) == 1
        assert harness.sample(select, {"pool": "pinned", "outcome": "all_limited"}) == 1
        assert harness.sample("codex_lb_lb_mark_total", {"event": "rate_limit"}) == 1
        assert harness.sample("codex_lb_lb_mark_total", {"event": "error"}) == 0
        assert (
            harness.sample(
                "codex_lb_lb_mark_permanent_failure_total", {"code": "invalid_grant"}
            )
            == 1
        )

    async def test_usage_poll_failures_start_at_zero(self) -> None:
        """The known reasons exist at 0 before the first failure, so
        ``increase()`` counts that first one; another reason counts too."""
        harness = await CollectorHarness.start(RoutingMetrics)
        name = "codex_lb_usage_refresh_failures_total"
        before = {
            dict(labels)["reason"]: value
            for (metric, labels), value in parse(harness.text()).items()
            if metric == name
        }

        harness.feed(
            UsageRefreshFailed("a", "timeout"), UsageRefreshFailed("a", "http_418")
        )

        assert before == {
            "timeout": 0,
            "transport": 0,
            "token_refresh": 0,
            "invalid_json": 0,
            "no_windows": 0,
            "http_429": 0,
            "http_500": 0,
            "http_502": 0,
            "http_503": 0,
        }
        assert harness.sample(name, {"reason": "timeout"}) == 1
        assert harness.sample(name, {"reason": "http_418"}) == 1


class TestBoundedCodes:
    async def test_a_thousand_junk_refresh_codes_are_one_series(self) -> None:
        """Permanent failures with 1000 junk codes from the OAuth server add
        one ``other`` series; a known refresh code counts in its own."""
        harness = await CollectorHarness.start(RoutingMetrics)
        junk = [
            AccountMarked("acc-1", "permanent_failure", code=f"weird_{i}")
            for i in range(1000)
        ]

        harness.feed(
            *junk, AccountMarked("acc-1", "permanent_failure", "invalid_grant")
        )

        samples = parse(harness.text())
        codes = {
            dict(labels)["code"]: value
            for (name, labels), value in samples.items()
            if name == "codex_lb_lb_mark_permanent_failure_total"
        }
        assert codes == {
            "other": 1000,
            "invalid_grant": 1,
            # Every known lost-login code exists from the start, at 0.
            "account_deactivated": 0,
            "refresh_token_expired": 0,
            "refresh_token_invalidated": 0,
            "refresh_token_reused": 0,
            "token_expired": 0,
        }
