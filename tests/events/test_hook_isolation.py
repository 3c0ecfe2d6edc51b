"""Nothing a collector raises reaches the code that published the event.

A broken collector, plain or ``async``, is loaded into a real codex-lb in
front of the emulator through ``CODEX_LB_COLLECTORS``: requests are served
and logged, failover still happens, and each kind of failure is logged
exactly once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog

from codex_lb.app import BUS_KEY
from codex_lb.events import (
    AccountInfo,
    AccountMarked,
    AccountSelected,
    AttemptFinished,
    AttemptStarted,
    EventBus,
    PoolChanged,
    QuotaSnapshot,
    QuotaWindow,
    RequestFinished,
    RequestLogChanged,
    RequestStarted,
    Retry,
    UnpricedSuccess,
    UsageRefreshFailed,
)
from codex_lb.events.collector_api import CollectorError, CollectorHost
from codex_lb.events.records import EVENT_NAMES
from codex_lb.sim import Emulator, Fault
from tests.conftest import LB
from tests.events.raising_collectors import (
    CrashingLoop,
    FailingCollect,
    FailingRegister,
    RaisingAsync,
    RaisingSync,
)
from tests.prometheus import free_port

CODEX = "/backend-api/codex/responses"
A, B = "a@example.com", "b@example.com"
BODY = {"model": "gpt-5", "input": "hi", "stream": True, "store": False}


def failures(logs: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """How often each (collector, hook, exception type) was logged."""
    return Counter(
        (line["collector"], line["hook"], line["error_type"])
        for line in logs
        if line["event"] == "collector_failed"
    )


async def pin(lb: LB, email: str) -> None:
    for account in lb.pool.accounts:
        await lb.pool.set_pinned(account, account.email == email)


class TestBrokenCollectorInTheApp:
    @pytest.mark.parametrize("broken", [RaisingSync, RaisingAsync])
    async def test_requests_failover_and_logs_survive(
        self, make_lb: Any, emulator: Emulator, broken: type
    ) -> None:
        """Every request is served, has its request-log row and its log
        line, a 500 still fails over, and each hook's failure is logged
        once, however often it recurs."""
        spec = f"{broken.__module__}:{broken.__qualname__}"
        with structlog.testing.capture_logs() as logs:
            lb: LB = await make_lb(emulator, CODEX_LB_COLLECTORS=spec)
            await pin(lb, A)

            statuses = []
            for fault in (None, Fault.status(500, {"error": {"message": "x"}}), None):
                if fault is not None:
                    emulator.add_fault(A, fault)
                response = await lb.client.post(CODEX, json=BODY)
                await response.read()
                statuses.append(response.status)
            # The same keep-alive connection serves the next request.
            again = await lb.client.post(CODEX, json=BODY)
            await again.read()
            statuses.append(again.status)
            await lb.app[BUS_KEY].drain()
            rows = await lb.request_logs()

        assert statuses == [200, 200, 200, 200]
        assert [r.status for r in rows] == ["success"] * 4
        assert [r.account_id for r in rows] == [
            lb.ids[A],
            lb.ids[B],
            lb.ids[A],
            lb.ids[A],
        ]
        assert [r.attempts for r in rows] == [1, 2, 1, 1]
        served = [line for line in logs if line["event"] == "request_finished"]
        assert [line["status"] for line in served] == ["success"] * 4
        assert len(lb.recorder.of("retry")) == 1

        published = {event.name for event in lb.recorder.events}
        assert {"pool_changed", "retry", "request_finished"} <= published
        expected = {(spec, hook, "Broken"): 1 for hook in published}
        assert failures(logs) == expected
        line = next(
            line
            for line in logs
            if line["event"] == "collector_failed" and line["hook"] == "retry"
        )
        kind = "async" if broken is RaisingAsync else "sync"
        assert line["error"] == f"Broken: {kind} retry failed"
        assert line["log_level"] == "error"


class TestHookRunner:
    @pytest.mark.parametrize("broken", [RaisingSync, RaisingAsync])
    async def test_every_event_type_is_survived(self, broken: type) -> None:
        """Publishing each kind of event twice raises nothing, logs each once."""
        bus = EventBus()
        host = CollectorHost(bus)
        await host.add(broken)
        events = one_of_each()
        assert {event.name for event in events} == EVENT_NAMES

        with structlog.testing.capture_logs() as logs:
            for event in events + events:
                bus.publish(event)
            await bus.drain()

        name = f"{broken.__module__}:{broken.__qualname__}"
        assert failures(logs) == {(name, event.name, "Broken"): 1 for event in events}

    async def test_start_up_replay_logs_once_per_kind(self) -> None:
        """``deliver`` (the roster replayed at start-up) never raises and
        logs a recurring failure once."""
        host = CollectorHost(EventBus())
        await host.add(RaisingSync)
        roster = PoolChanged(accounts=(AccountInfo("acc-1", A, "plus", "active"),))

        with structlog.testing.capture_logs() as logs:
            host.deliver(roster)
            host.deliver(roster)
            host.deliver(roster)

        name = "tests.events.raising_collectors:RaisingSync"
        assert failures(logs) == {(name, "pool_changed", "Broken"): 1}

    async def test_a_crashing_loop_is_logged(self) -> None:
        """A collector's ``run`` that dies is logged with its name."""
        host = CollectorHost(EventBus())
        await host.add(CrashingLoop)

        with structlog.testing.capture_logs() as logs:
            host.start()
            for _ in range(5):
                await asyncio.sleep(0)
            await host.close()

        name = "tests.events.raising_collectors:CrashingLoop"
        assert failures(logs) == {(name, "run", "Broken"): 1}

    async def test_a_failing_collect_leaves_the_scrape_whole(self) -> None:
        """``collect`` runs before each scrape; one that raises is logged once
        and the exposition is rendered all the same."""
        host = CollectorHost(EventBus())
        await host.add(FailingCollect)

        with structlog.testing.capture_logs() as logs:
            host.render()
            text = host.render().decode()

        name = "tests.events.raising_collectors:FailingCollect"
        assert failures(logs) == {(name, "collect", "Broken"): 1}
        assert "test_failing_collect_total 2" in text

    async def test_async_hook_tasks_are_named_and_kept(self) -> None:
        """An ``async`` handler runs as a named task the runner holds until
        it ends (a task nobody references can be collected mid-flight)."""
        bus = EventBus()
        host = CollectorHost(bus)
        await host.add(RaisingAsync)

        bus.publish(Retry("r1", "acc-1", "codex", "upstream"))
        names = [
            t.get_name()
            for t in asyncio.all_tasks()
            if t.get_name().startswith("collector-hook:")
        ]
        held = len(bus.hooks._tasks)
        await bus.drain()

        assert names == [
            "collector-hook:tests.events.raising_collectors:RaisingAsync.retry"
        ]
        assert held == 1
        assert not bus.hooks._tasks

    def test_no_running_loop_is_survived(self) -> None:
        """An ``async`` handler published to outside an event loop is
        reported, not raised, and leaves no never-awaited coroutine."""
        bus = EventBus()
        bus.subscribe(RaisingAsync())

        with structlog.testing.capture_logs() as logs:
            bus.publish(Retry("r1", "acc-1", "codex", "upstream"))

        assert [line["error_type"] for line in logs] == ["RuntimeError"]


class TestRegistrationFailure:
    async def test_register_error_is_one_line(self) -> None:
        """A ``register`` that raises is a CollectorError of one line naming
        the collector and the error."""
        with pytest.raises(CollectorError) as caught:
            await CollectorHost(EventBus()).add(FailingRegister)

        assert caught.value.problems == [
            "collector tests.events.raising_collectors:FailingRegister failed to "
            "register: Broken: no metrics today second line"
        ]

    def test_register_error_stops_start_up_with_one_line(self, tmp_path: Path) -> None:
        """``codex-lb serve`` with such a collector exits 2 with one line on
        stderr and no traceback."""
        plugin = tmp_path / "plugins"
        plugin.mkdir()
        (plugin / "broken_register.py").write_text(
            "class Bad:\n"
            "    def register(self, ctx):\n"
            "        raise ValueError('cannot declare\\nmy metrics')\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_LB_")}
        env.update(
            CODEX_LB_DATA_DIR=str(tmp_path / "data"),
            # Start-up stops before the port is bound; any free one will do.
            CODEX_LB_PORT=str(free_port()),
            CODEX_LB_COLLECTORS="broken_register:Bad",
            CODEX_LB_LOG_LEVEL="warning",
            PYTHONPATH=os.pathsep.join([str(plugin), env.get("PYTHONPATH", "")]),
        )

        done = subprocess.run(
            [sys.executable, "-m", "codex_lb", "serve"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )

        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "codex-lb: collector broken_register:Bad failed to register: "
            "ValueError: cannot declare my metrics"
        ]


def one_of_each() -> list[Any]:
    """One event of every kind the bus carries."""
    info = AccountInfo("acc-1", A, "plus", "active")
    window = QuotaWindow(10.0, 10080, 1_800_000_000.0)
    return [
        RequestFinished(
            "r1", "codex", "gpt-5", "acc-1", "success", 200, "gpt-5", None, 12.0, 1
        ),
        Retry("r1", "acc-1", "codex", "upstream"),
        UnpricedSuccess("r1", "acc-1", "codex", None, "missing_model"),
        QuotaSnapshot(info, "poll", 0.0, window, window),
        AccountSelected("full", "selected", "acc-1"),
        AccountMarked("acc-1", "error", "upstream_error"),
        RequestStarted("r1", "codex"),
        AttemptStarted("r1", "acc-1"),
        AttemptFinished("r1", "acc-1"),
        PoolChanged(accounts=(info,)),
        UsageRefreshFailed("acc-1", "timeout"),
        RequestLogChanged(1, 0),
    ]
