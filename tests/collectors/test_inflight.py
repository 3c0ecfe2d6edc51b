"""Inflight: started and finished events paired into gauges."""

from __future__ import annotations

from codex_lb.events import AttemptFinished, AttemptStarted, RequestStarted
from codex_lb.events.testing import CollectorHarness
from collectors.inflight import Inflight
from tests.collectors.events import finished, info, roster

ACCOUNT = "codex_lb_account_inflight_requests"


class TestInflight:
    async def test_known_accounts_show_zero(self) -> None:
        """Every known account has a 0 series before any traffic."""
        harness = await CollectorHarness.start(Inflight)

        harness.feed(roster(info("a"), info("b")))

        assert harness.sample(ACCOUNT, {"account_id": "a"}) == 0
        assert harness.sample(ACCOUNT, {"account_id": "b"}) == 0
        assert harness.sample("codex_lb_proxy_inflight_requests") == 0

    async def test_counts_rise_and_fall(self) -> None:
        """Open requests and attempts are counted until they finish."""
        harness = await CollectorHarness.start(Inflight)
        harness.feed(roster(info("a")), RequestStarted("r1", "codex"))
        harness.feed(AttemptStarted("r1", "a"))

        during = (
            harness.sample("codex_lb_proxy_inflight_requests"),
            harness.sample(ACCOUNT, {"account_id": "a"}),
        )
        harness.feed(AttemptFinished("r1", "a"), finished(request_id="r1"))

        assert during == (1, 1)
        assert harness.sample("codex_lb_proxy_inflight_requests") == 0
        assert harness.sample(ACCOUNT, {"account_id": "a"}) == 0

    async def test_unmatched_finish_never_goes_negative(self) -> None:
        """A finish without a start leaves the gauges at 0."""
        harness = await CollectorHarness.start(Inflight)
        harness.feed(roster(info("a")))

        harness.feed(AttemptFinished("r9", "a"), finished(request_id="r9"))

        assert harness.sample(ACCOUNT, {"account_id": "a"}) == 0
        assert harness.sample("codex_lb_proxy_inflight_requests") == 0

    async def test_removed_account_loses_its_series(self) -> None:
        """An account that leaves the roster leaves the output."""
        harness = await CollectorHarness.start(Inflight)
        harness.feed(roster(info("a"), info("b")))

        harness.feed(roster(info("b")))

        assert harness.sample(ACCOUNT, {"account_id": "a"}) is None
