"""``python -m bench``: measure codex-lb against the floor and print a table.

Three phases, each with its own emulator (fast short answers, fast long
answers, slow answers), codex-lb and reference pass-through, all separate
processes on loopback; within a phase the targets are measured in rotating
order so a noisy moment of the machine hits them alike. Selection and
request-log writes are measured in this process. Everything started is
stopped, and the temporary directory removed, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import aiohttp

from bench import inprocess, load
from bench.report import table
from bench.services import Stack, cpu_seconds, rss_bytes

CODEX_PATH = "/backend-api/codex/responses"
PHASES = ("short", "long", "slow", "inprocess")
LAG_METRIC = re.compile(rb"^codex_lb_event_loop_lag_seconds(?:\{[^}]*\})? (\S+)", re.M)
LAG_TARGETS = ("codex-lb", "reference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--rounds", type=int, default=200, help="TTFB requests per target")
    add("--warmup", type=int, default=20, help="TTFB warm-up requests per target")
    add("--seconds", type=float, default=3.0, help="length of one throughput run")
    add("--repeats", type=int, default=3, help="throughput runs per target")
    add("--concurrency", default="32,256", help="throughput client counts")
    add("--long-events", type=int, default=200, help="text deltas per long answer")
    add("--long-concurrency", type=int, default=8, help="clients for long streams")
    add("--streams", type=int, default=1000, help="concurrent slow streams")
    add("--stream-delay-ms", type=float, default=100.0, help="slow event spacing")
    add("--stream-events", type=int, default=80, help="text deltas per slow answer")
    add("--pool", type=int, default=4, help="accounts codex-lb routes over")
    add("--accounts", type=int, default=300, help="accounts for /metrics, select")
    add("--selection-calls", type=int, default=5000)
    add("--log-rows", type=int, default=50000, help="request-log rows to write")
    add("--no-wrk", action="store_true", help="use the aiohttp client, not wrk")
    add("--json", type=Path, help="also write the figures to this file")
    add("--smoke", action="store_true", help="tiny numbers: checks it still runs")
    add(
        "--phases",
        default=",".join(PHASES),
        help=f"which phases to run, of {','.join(PHASES)}",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.warmup, args.seconds, args.repeats = 10, 2, 1.0, 1
        args.concurrency, args.long_events, args.long_concurrency = "4,8", 20, 2
        args.streams, args.stream_delay_ms, args.stream_events = 20, 20.0, 10
        args.accounts, args.selection_calls, args.log_rows = 12, 200, 1000
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c]
    args.pool = min(args.pool, args.accounts)
    args.phases = [p for p in str(args.phases).split(",") if p]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown {', '.join(unknown)}; use {', '.join(PHASES)}")
    return args


class LagWatcher:
    """Scrapes a target's event-loop lag gauge while load runs.

    Both codex-lb and the reference probe the loop every 25 ms and show the
    longest lateness since the previous scrape, so each scrape covers the
    half second before it; the first scrape only starts the period.
    """

    INTERVAL_SECONDS = 0.5
    MAX_SAMPLES = 2000

    def __init__(self, url: str) -> None:
        self._url = url
        self.samples: list[float] = []
        self.available = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="lag-watcher")

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.samples

    async def _scrape(self, session: aiohttp.ClientSession) -> float | None:
        try:
            async with session.get(self._url) as response:
                text = await response.read()
        except aiohttp.ClientError:
            text = b""
        match = LAG_METRIC.search(text)
        return None if match is None else float(match.group(1))

    async def _watch(self) -> None:
        async with aiohttp.ClientSession() as session:
            if await self._scrape(session) is None:
                self.available = False
                return
            for _ in range(self.MAX_SAMPLES):
                await asyncio.sleep(self.INTERVAL_SECONDS)
                value = await self._scrape(session)
                if value is not None:
                    self.samples.append(value)


class LagWatchers:
    """One :class:`LagWatcher` per target of a stack."""

    def __init__(self, stack: Stack, names: tuple[str, ...] = LAG_TARGETS) -> None:
        bases = {"codex-lb": stack.lb_url, "reference": stack.ref_url}
        self.watchers = {name: LagWatcher(bases[name] + "/metrics") for name in names}

    def start(self) -> None:
        for watcher in self.watchers.values():
            watcher.start()

    async def stop(self, out: dict[str, Any], phase: str) -> None:
        """Record each target's samples under ``out["lag"][phase]``."""
        figures = out["lag"].setdefault(phase, {})
        for name, watcher in self.watchers.items():
            figures.setdefault(name, []).extend(await watcher.stop())
            if name == "codex-lb" and not watcher.available:
                out["lag_available"] = False


async def phase_short(
    args: argparse.Namespace, work: Path, out: dict[str, Any]
) -> None:
    """TTFB, throughput, then /metrics once the pool holds ``--accounts``."""
    stack = Stack(work / "short", ["--fast"], args.accounts)
    STACKS.append(stack)
    (work / "short").mkdir()
    await stack.start(import_count=args.pool)
    headers = stack.direct_headers()
    targets = {
        "direct": stack.sim_url + CODEX_PATH,
        "codex-lb": stack.lb_url + CODEX_PATH,
        "reference": stack.ref_url + CODEX_PATH,
    }
    first, content = await load.ttfb(targets, headers, args.rounds, args.warmup)
    for key, samples in (("ttfb", first), ("ttfc", content)):
        out[f"{key}_ms"] = {name: load.summary(v) for name, v in samples.items()}
        # Added time per round (each target minus the direct call of that
        # round), so p99 is of the added time itself, not a difference of
        # two tails.
        out[f"{key}_added_ms"] = {
            name: load.summary(
                [t - d for t, d in zip(samples[name], samples["direct"], strict=True)]
            )
            for name in ("codex-lb", "reference")
        }

    watchers = LagWatchers(stack)
    watchers.start()
    meter = load.Throughput(work / "short", headers, use_wrk=not args.no_wrk)
    out["throughput_client"] = meter.client
    pids = {"codex-lb": stack.service("codex-lb").pid}
    pids["reference"] = stack.service("reference").pid
    out["throughput"] = {}
    for concurrency in args.concurrency:
        await stack.reset_usage(args.pool)
        rates: dict[str, list[float]] = {"codex-lb": [], "reference": []}
        cpu: dict[str, list[float]] = {"codex-lb": [], "reference": []}
        for repeat in range(args.repeats):
            order = ["codex-lb", "reference"][:: 1 if repeat % 2 == 0 else -1]
            for name in order:
                before = cpu_seconds(pids[name])
                rate = await meter.run(
                    targets[name], concurrency, args.seconds, load.SHORT_PROMPT
                )
                used = cpu_seconds(pids[name]) - before
                rates[name].append(rate)
                cpu[name].append(used / max(1.0, rate * args.seconds) * 1e6)
        direct = await meter.run(
            targets["direct"], concurrency, args.seconds, load.SHORT_PROMPT
        )
        out["throughput"][concurrency] = {
            "direct": direct,
            **{name: statistics.median(v) for name, v in rates.items()},
            "cpu_us": {name: statistics.median(v) for name, v in cpu.items()},
        }
    await watchers.stop(out, "throughput")

    out["metrics"] = await measure_metrics(args, stack)
    stack.stop()


async def measure_metrics(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    """Import the rest of the accounts, send traffic, then time ``/metrics``."""
    await stack.import_accounts(stack.auth_files[args.pool : args.accounts])
    async with aiohttp.ClientSession() as session:
        # Account commands reach a running server within about 2 s.
        deadline = time.monotonic() + 15
        count = 0
        while time.monotonic() < deadline:
            async with session.get(stack.lb_url + "/api/accounts") as response:
                count = len((await response.json())["accounts"])
            if count >= args.accounts:
                break
            await asyncio.sleep(0.25)
        payload = load.body(load.SHORT_PROMPT)
        for _ in range(min(args.accounts, 300)):
            async with session.post(stack.lb_url + CODEX_PATH, data=payload) as r:
                await r.read()

        times, size = [], 0
        for _ in range(30):
            started = time.perf_counter()
            async with session.get(stack.lb_url + "/metrics") as response:
                text = await response.read()
                status = response.status
            times.append((time.perf_counter() - started) * 1000)
            size = len(text)
        if status != 200:
            return {"available": False, "accounts": count}
    return {"available": True, "accounts": count, "size": size, **load.summary(times)}


async def phase_long(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    """Events relayed per second on long, fast streams."""
    directory = work / "long"
    directory.mkdir()
    stack = Stack(directory, ["--fast", "--events", str(args.long_events)], args.pool)
    STACKS.append(stack)
    await stack.start(import_count=args.pool)
    headers = stack.direct_headers()
    url = stack.sim_url + CODEX_PATH
    events = await load.events_per_answer(url, headers, load.LONG_PROMPT)
    meter = load.Throughput(directory, headers, use_wrk=not args.no_wrk)
    watchers = LagWatchers(stack)
    watchers.start()
    rates: dict[str, list[float]] = {"codex-lb": [], "reference": []}
    for repeat in range(args.repeats):
        order = [("codex-lb", stack.lb_url), ("reference", stack.ref_url)]
        for name, base in order[:: 1 if repeat % 2 == 0 else -1]:
            rate = await meter.run(
                base + CODEX_PATH, args.long_concurrency, args.seconds, load.LONG_PROMPT
            )
            rates[name].append(rate * events)
    direct = await meter.run(url, args.long_concurrency, args.seconds, load.LONG_PROMPT)
    await watchers.stop(out, "long")
    out["events_per_answer"] = events
    out["events_per_second"] = {
        "direct": direct * events,
        **{name: statistics.median(v) for name, v in rates.items()},
    }
    stack.stop()


async def phase_slow(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    """Peak memory with ``--streams`` slow streams open at once."""
    directory = work / "slow"
    directory.mkdir()
    sim_args = [
        "--event-delay-ms",
        str(args.stream_delay_ms),
        "--events",
        str(args.stream_events),
    ]
    stack = Stack(directory, sim_args, args.pool)
    STACKS.append(stack)
    await stack.start(import_count=args.pool)
    headers = stack.direct_headers()
    timeout = 60.0 + args.stream_events * args.stream_delay_ms / 1000
    out["memory"] = {}
    for name, base in (("codex-lb", stack.lb_url), ("reference", stack.ref_url)):
        pid = stack.service(name).pid
        idle, _ = rss_bytes(pid)
        peak = idle
        watchers = LagWatchers(stack, (name,))
        watchers.start()

        async def sample(pid: int = pid) -> None:
            # Sample while every stream is open, then keep the kernel's peak.
            nonlocal peak
            for _ in range(20):
                peak = max(peak, rss_bytes(pid)[0])
                await asyncio.sleep(0.1)

        completed, opened, seconds = await load.open_streams(
            base + CODEX_PATH, headers, args.streams, sample, timeout
        )
        peak = max(peak, rss_bytes(pid)[1])
        await watchers.stop(out, "slow")
        out["memory"][name] = {
            "idle": idle,
            "peak": peak,
            "opened": opened,
            "completed": completed,
            "open_seconds": seconds,
        }
    stack.stop()


async def phase_inprocess(
    args: argparse.Namespace, work: Path, out: dict[str, Any]
) -> None:
    timings = await inprocess.selection_ms(
        work / "select", args.accounts, args.selection_calls
    )
    out["selection_ms"] = load.summary(timings)
    out["request_log_rows_per_second"] = await inprocess.request_log_rows_per_second(
        work / "request-log", args.log_rows, seconds=30
    )


STACKS: list[Stack] = []


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    started = time.monotonic()
    out["load_before"] = os.getloadavg()
    out["lag"] = {}
    runners = {
        "short": phase_short,
        "long": phase_long,
        "slow": phase_slow,
        "inprocess": phase_inprocess,
    }
    for name in PHASES:
        if name in args.phases:
            print(f"bench: {name} phase ...", file=sys.stderr, flush=True)
            await runners[name](args, work, out)
    out["load_after"] = os.getloadavg()
    out["seconds"] = time.monotonic() - started
    return out


def _terminate(_signum: int, _frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix="codex-lb-bench-"))
    try:
        out = asyncio.run(run(args, work))
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        for stack in STACKS:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(args, out))
    print(f"(whole run: {out['seconds']:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
