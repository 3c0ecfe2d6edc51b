"""``python -m bench.dashboard_api``: time the dashboard's JSON API at scale.

Fills a real SQLite store in a temporary directory with 300 accounts (each
with a quota reading) and 100 000 request-log rows spread over the last
seven days, serves codex-lb on loopback, and times every call the pages make
over HTTP. The goal: each page's data back in under 100 ms. A benchmark to
run by hand, not a timed test: the machine's load makes single runs noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from codex_lb.app import SERVER_OPTIONS, create_app
from codex_lb.config import load_settings
from codex_lb.store import (
    NewAccount,
    QuotaReading,
    RequestLogRow,
    TokenSet,
    open_store,
)

WEEK = 7 * 24 * 3600.0
MODELS = ("gpt-5", "gpt-5-codex", "gpt-5-mini", "gpt-5.1-codex", "gpt-5.2")
GOAL_MS = 100.0


async def fill_store(data_dir: Path, accounts: int, rows: int, now: float) -> list[str]:
    """Write the accounts and request-log rows; returns the account ids."""
    rng = random.Random(7)
    store = await open_store(data_dir)
    try:
        ids = []
        for n in range(accounts):
            new = NewAccount(
                email=f"user{n:03d}@example.com",
                chatgpt_account_id=f"cg-{n:03d}",
                plan="pro" if n % 10 == 0 else "plus",
                tokens=TokenSet(f"at-{n}", f"rt-{n}", None, refreshed_at=now),
            )
            account_id = await store.add_account(new, now=now)
            await store.record_quota(
                account_id,
                QuotaReading(
                    observed_at=now - 30,
                    source="poll",
                    primary_used_percent=rng.uniform(0, 100),
                    primary_window_minutes=300,
                    primary_reset_at=now + rng.uniform(0, 5 * 3600),
                    secondary_used_percent=rng.uniform(0, 100),
                    secondary_window_minutes=10080,
                    secondary_reset_at=now + rng.uniform(0, WEEK),
                ),
            )
            ids.append(account_id)

        batch: list[RequestLogRow] = []
        for n in range(rows):
            failed = rng.random() < 0.03
            batch.append(
                RequestLogRow(
                    request_id=f"req-{n:06d}",
                    started_at=now - rng.uniform(0, WEEK),
                    api="codex",
                    model=rng.choice(MODELS),
                    account_id=rng.choice(ids),
                    status="error" if failed else "success",
                    status_code=502 if failed else 200,
                    error_code="upstream_error" if failed else None,
                    attempts=1,
                    latency_ms=rng.uniform(200, 9000),
                    input_tokens=rng.randint(1000, 60000),
                    cached_input_tokens=rng.randint(0, 1000),
                    output_tokens=rng.randint(10, 3000),
                    reasoning_tokens=rng.randint(0, 1000),
                    cost_usd=None if failed else rng.uniform(0.001, 0.2),
                )
            )
            if len(batch) == 5000:
                await store.write_request_logs(batch)
                batch = []
        await store.write_request_logs(batch)
        return ids
    finally:
        await store.close()


async def time_calls(
    session: aiohttp.ClientSession, base: str, path: str, rounds: int
) -> list[float]:
    """Milliseconds per GET of ``path``, after two warm-up calls."""
    for _ in range(2):
        async with session.get(base + path) as response:
            response.raise_for_status()
            await response.read()
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(base + path) as response:
            await response.read()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def run(accounts: int, rows: int, rounds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="codex-lb-bench-dashboard-") as tmp:
        data_dir = Path(tmp) / "data"
        now = time.time()
        started = time.perf_counter()
        ids = await fill_store(data_dir, accounts, rows, now)
        print(
            f"filled {accounts} accounts and {rows} request-log rows "
            f"in {time.perf_counter() - started:.1f} s"
        )

        # No upstream is called: nothing is proxied and polling is off.
        settings = load_settings(
            {
                "CODEX_LB_DATA_DIR": str(data_dir),
                "CODEX_LB_UPSTREAM_BASE_URL": "http://127.0.0.1:9/backend-api",
                "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS": "0",
                "CODEX_LB_LOG_LEVEL": "warning",
            },
            env_file=None,
        )
        runner = web.AppRunner(
            await create_app(settings), access_log=None, **SERVER_OPTIONS
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"

        calls = {
            "overview + accounts page (/api/dashboard)": "/api/dashboard",
            "accounts (/api/accounts)": "/api/accounts",
            "snapshot (/api/snapshot)": "/api/snapshot",
            "request log, first page": "/api/requests?limit=50",
            "request log, page 20": "/api/requests?limit=50&offset=950",
            "request log, by account": f"/api/requests?account={ids[0]}",
            "request log, by model": "/api/requests?model=gpt-5-mini",
            "request log, errors": "/api/requests?status=error",
            "request log, last hour": f"/api/requests?since={now - 3600}",
        }
        worst = 0.0
        try:
            async with aiohttp.ClientSession() as session:
                print(f"\n{'call':44} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
                for name, path in calls.items():
                    timings = sorted(await time_calls(session, base, path, rounds))
                    median = statistics.median(timings)
                    p95 = timings[int(len(timings) * 0.95) - 1]
                    worst = max(worst, p95)
                    print(f"{name:44} {median:10.1f} {p95:8.1f} {timings[-1]:8.1f}")
        finally:
            await runner.cleanup()

    verdict = "met" if worst < GOAL_MS else "NOT met"
    print(f"\ngoal: page data under {GOAL_MS:.0f} ms (p95): {verdict}")
    return 0 if worst < GOAL_MS else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard_api", description=__doc__
    )
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per route")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.accounts, args.rows, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
