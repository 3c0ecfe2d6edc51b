"""The collector API: discovery, registration, state and the harness."""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import codex_lb.events.host as host_module
from codex_lb.events import EventBus, Retry
from codex_lb.events import state as state_module
from codex_lb.events.collector_api import (
    COLLECTORS_KEY,
    CollectorContext,
    CollectorError,
    CollectorHost,
    CollectorState,
    collector_name,
    discover,
    import_collector,
)
from codex_lb.events.testing import CollectorHarness
from codex_lb.sim import Emulator
from codex_lb.store import Store, open_store
from collectors import BUILTIN
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB
from tests.events.raising_collectors import NeverRegisters


class Retries:
    """A collector counting retries by class."""

    def register(self, ctx: CollectorContext) -> None:
        self.counter = ctx.counter(
            "codex_lb_proxy_retries_total", "Retries.", ("error_class",)
        )

    def retry(self, event: Retry) -> None:
        self.counter.inc(error_class=event.error_class)


class AsyncRetries:
    """An async collector with async registration and a different metric."""

    async def register(self, ctx: CollectorContext) -> None:
        self.counter = ctx.counter("test_async_retries_total", "Retries.")

    async def retry(self, event: Retry) -> None:
        self.counter.inc()


class Typo:
    def register(self, ctx: CollectorContext) -> None:
        pass

    def request_finshed(self, event: Any) -> None:
        pass


def retry_event(error_class: str = "upstream") -> Retry:
    return Retry(
        request_id="r1", account_id="acc-1", api="codex", error_class=error_class
    )


class TestRegistration:
    async def test_duplicate_metric_is_refused_naming_both(self) -> None:
        """A metric name registered twice stops start-up naming both owners."""
        host = CollectorHost(EventBus())
        await host.add_all(BUILTIN)

        with pytest.raises(CollectorError) as caught:
            await host.add(Retries)

        message = str(caught.value)
        assert "'codex_lb_proxy_retries_total'" in message
        assert "tests.events.test_collector_api:Retries" in message
        assert "collectors.request_metrics:RequestMetrics" in message

    async def test_builtin_collectors_register_together(self) -> None:
        """Every built-in collector registers without a name clash."""
        host = CollectorHost(EventBus())

        await host.add_all(BUILTIN)

        assert len(host.collectors) == len(BUILTIN)

    async def test_counter_without_total_is_refused(self) -> None:
        """A counter must be named ``..._total`` exactly once."""

        class Bad:
            def register(self, ctx: CollectorContext) -> None:
                ctx.counter("codex_lb_bad", "Bad.")

        with pytest.raises(CollectorError, match="_total"):
            await CollectorHost(EventBus()).add(Bad)

    async def test_misspelt_handler_is_refused(self) -> None:
        """A method one letter away from an event name is reported."""
        with pytest.raises(CollectorError, match="did you mean 'request_finished'"):
            await CollectorHost(EventBus()).add(Typo)

    @pytest.mark.parametrize("cls", [collections.OrderedDict, object, Exception])
    async def test_a_class_that_is_no_collector_is_refused(self, cls: type) -> None:
        """No handler, no hook: a wrong class named in CODEX_LB_COLLECTORS."""
        with pytest.raises(CollectorError, match="handles no event"):
            await CollectorHost(EventBus()).add(cls)

    async def test_a_register_that_never_returns_stops_start_up(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Start-up once hung silently on such a collector."""
        monkeypatch.setattr(host_module, "REGISTER_SECONDS", 0.05)

        with pytest.raises(
            CollectorError, match="NeverRegisters did not finish registering within"
        ):
            await CollectorHost(EventBus()).add(NeverRegisters)

    async def test_a_collector_with_only_a_hook_is_taken(self) -> None:
        class OnlyRegisters:
            def register(self, ctx: CollectorContext) -> None:
                ctx.gauge("codex_lb_only_registers", "A gauge.")

        host = CollectorHost(EventBus())
        await host.add(OnlyRegisters)

        assert len(host.collectors) == 1


class TestDiscovery:
    def test_spec_loads_class(self) -> None:
        """``module:Class`` names a class."""
        assert import_collector("tests.events.test_collector_api:Retries") is Retries

    @pytest.mark.parametrize(
        ("spec", "words"),
        [
            ("nocolon", "must be module:Class"),
            ("no_such_module_xyz:Thing", "cannot import module"),
            ("tests.events.test_collector_api:Missing", "has no class 'Missing'"),
        ],
    )
    def test_bad_spec_is_one_clear_line(self, spec: str, words: str) -> None:
        """A bad spec names the variable, the value and the problem on one line."""
        with pytest.raises(CollectorError) as caught:
            discover([spec])

        [line] = caught.value.problems
        assert line.startswith(f"CODEX_LB_COLLECTORS={spec!r}: ")
        assert words in line
        assert "\n" not in line

    def test_builtins_come_first_and_once(self) -> None:
        """Built-ins keep their order and a spec repeating one adds nothing."""
        classes = discover(["collectors.inflight:Inflight"], BUILTIN)

        assert classes == BUILTIN


class TestHarness:
    async def test_feed_and_sample(self) -> None:
        """A fed event shows in the sample; an unknown series is None."""
        harness = await CollectorHarness.start(Retries)

        harness.feed(retry_event(), retry_event(), retry_event("quota"))

        assert (
            harness.sample("codex_lb_proxy_retries_total", {"error_class": "upstream"})
            == 2
        )
        assert (
            harness.sample("codex_lb_proxy_retries_total", {"error_class": "x"}) is None
        )

    async def test_async_handlers_are_awaited_by_settle(self) -> None:
        """Async registration and handlers work; ``settle`` waits for them."""
        harness = await CollectorHarness.start(AsyncRetries)

        harness.feed(retry_event())
        await harness.settle()

        assert harness.sample("test_async_retries_total") == 1


class TestState:
    async def test_state_survives_reopening_the_store(self, tmp_path: Path) -> None:
        """Values set by a collector are read back after the store reopens."""
        store: Store = await open_store(tmp_path / "d")
        state = await CollectorState.load("c:C", store)
        state.set("a", {"x": 1})
        state.set("b", 2)
        state.set("b", None)
        await state.flush()
        await store.close()

        store = await open_store(tmp_path / "d")
        try:
            again = await CollectorState.load("c:C", store)
        finally:
            await store.close()

        assert again.items() == [("a", {"x": 1})]

    async def test_a_burst_of_changes_is_written_by_the_writer_later(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a flush the delayed writer stores each key's latest value."""
        monkeypatch.setattr(state_module, "STATE_WRITE_SECONDS", 0.01)
        store: Store = await open_store(tmp_path / "d")
        try:
            state = await CollectorState.load("c:C", store)
            for value in range(50):
                state.set("n", value)
            for _ in range(200):
                if await store.load_collector_state("c:C"):
                    break
                await asyncio.sleep(0.01)
            stored = await store.load_collector_state("c:C")
        finally:
            await store.close()

        assert stored == {"n": 49}


DEMO_COLLECTOR = """
from codex_lb.events.collector_api import CollectorContext


class DemoCollector:
    def register(self, ctx: CollectorContext) -> None:
        self.requests = ctx.counter(
            "test_entry_point_requests_total", "Requests seen.", ("api",)
        )

    def request_finished(self, event) -> None:
        self.requests.inc(api=event.api)
"""


def install_distribution(where: Path, entry_point: str) -> None:
    """An installed distribution, as pip leaves one in site-packages: a
    package and a dist-info folder whose entry_points.txt offers
    ``entry_point`` in the ``codex_lb.collectors`` group."""
    package = where / "ep_collector_demo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(DEMO_COLLECTOR)
    info = where / "ep_collector_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-collector-demo\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[codex_lb.collectors]\ndemo = {entry_point}\n"
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for distributions made by the test."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    yield where
    sys.modules.pop("ep_collector_demo", None)


class TestEntryPoints:
    async def test_collector_from_the_group_is_loaded_and_counts(
        self, site: Path, make_lb: Any, emulator: Emulator
    ) -> None:
        """A collector an installed package offers in ``codex_lb.collectors``
        is registered after the built-ins and updates its metric."""
        install_distribution(site, "ep_collector_demo:DemoCollector")
        lb: LB = await make_lb(emulator)

        response = await lb.client.post(
            "/backend-api/codex/responses",
            json={"model": "gpt-5", "input": "hi", "stream": True, "store": False},
        )
        await response.read()
        samples = parse(await scrape_text(lb))

        assert response.status == 200
        names = [collector_name(c) for c in lb.app[COLLECTORS_KEY].collectors]
        assert names[-1] == "ep_collector_demo:DemoCollector"
        assert names[:-1] == [collector_name(c) for c in BUILTIN]
        key = ("test_entry_point_requests_total", (("api", "codex"),))
        assert samples[key] == 1

    def test_broken_entry_point_is_one_line_naming_it(self, site: Path) -> None:
        """An entry point naming a missing class stops start-up naming it."""
        install_distribution(site, "ep_collector_demo:Missing")

        with pytest.raises(CollectorError) as caught:
            discover([], BUILTIN)

        assert caught.value.problems == [
            "entry point 'demo'='ep_collector_demo:Missing': module "
            "'ep_collector_demo' has no class 'Missing'"
        ]
