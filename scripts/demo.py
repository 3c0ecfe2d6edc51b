"""`make demo`: codex-lb on the emulator with traffic and a local Prometheus.

Starts, in the foreground and in this order: the emulated ChatGPT backend
(`python -m codex_lb.sim`, a few accounts on a fast clock), codex-lb with
those accounts imported, a local Prometheus (Debian's `prometheus`) with the
repository's scrape config and alert rules, and a small traffic generator.
It prints the URLs to open, then runs until Ctrl-C (or for DEMO_SECONDS),
and stops everything it started, newest first.

Settings (environment): DEMO_SECONDS (0: until Ctrl-C), DEMO_LB_PORT (2455),
DEMO_EMULATOR_PORT (8765), DEMO_PROMETHEUS_PORT (9090), DEMO_ACCOUNTS (4),
DEMO_CLOCK_SPEED (60 emulated seconds per second), DEMO_RATE (requests/s, 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from codex_lb.sim.emulator import DEFAULT_MODELS

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = ROOT / "compose" / "prometheus.yml"
ALERT_RULES_DIR = ROOT / "compose" / "alerts"

# What the compose config names and the local copy replaces.
COMPOSE_TARGET = '"codex-lb:2455"'
COMPOSE_TOKEN_FILE = "/run/secrets/metrics_token"
COMPOSE_RULES = "/etc/prometheus/rules/"
COMPOSE_SCRAPE_INTERVAL = "scrape_interval: 15s"
COMPOSE_EVALUATION_INTERVAL = "evaluation_interval: 15s"

# Priced models the traffic mixes, and one the price table lacks, so the
# "unpriced" panels have something to show.
PRICED_MODELS = ("gpt-5", "gpt-5-codex", "gpt-5-mini", "gpt-5.1-codex")
UNPRICED_MODEL = "gpt-5.9-preview"


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def local_prometheus_config(
    target: str,
    token_file: Path,
    rules_dir: Path = ALERT_RULES_DIR,
    scrape_interval: str = "15s",
    source: str | None = None,
) -> str:
    """The compose Prometheus config, pointed at a codex-lb on this machine.

    Only the target, the token file, the rules folder and the intervals
    change, so the demo and the tests run the very scrape job and rules the
    compose stack ships.
    """
    text = PROMETHEUS_CONFIG.read_text() if source is None else source
    replacements = {
        COMPOSE_TARGET: f'"{target}"',
        COMPOSE_TOKEN_FILE: str(token_file),
        COMPOSE_RULES: f"{rules_dir}/",
        COMPOSE_SCRAPE_INTERVAL: f"scrape_interval: {scrape_interval}",
        COMPOSE_EVALUATION_INTERVAL: f"evaluation_interval: {scrape_interval}",
    }
    for old, new in replacements.items():
        # A changed compose file must not silently scrape the wrong place.
        if old not in text:
            raise DemoError(f"{PROMETHEUS_CONFIG} no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str, variable: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} for {what} is taken; set {variable} to another port"
            ) from None


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DemoError(f"{name}={raw!r}: expected a number") from None
    if value < 0:
        raise DemoError(f"{name}={raw!r}: expected 0 or more")
    return value


# -- child processes ----------------------------------------------------------


class Children:
    """The processes the demo started, stopped newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        log = (self.log_dir / f"{name}.log").open("wb")
        # A session of their own: Ctrl-C reaches the demo only, which then
        # stops them in order instead of all at once.
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        self.running.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop_all(self) -> None:
        for name, process in reversed(self.running):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout=10)
                except TimeoutError:
                    print(f"demo: {name} ignored SIGTERM; killing it", flush=True)
                    process.kill()
                    await process.wait()
        self.running.clear()


async def wait_until_up(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    children: Children,
    process: asyncio.subprocess.Process,
    headers: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> None:
    """Poll `url` until it answers 200, or fail with the child's last lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            break
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, headers=headers) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise DemoError(f"{name} did not come up at {url}:\n{children.log_tail(name)}")


# -- traffic --------------------------------------------------------------------


def turn(model: str, session_key: str) -> dict[str, Any]:
    """A small Codex-CLI-shaped request; one cache key per simulated session."""
    return {
        "model": model,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "say something short"}],
            }
        ],
        "stream": True,
        "store": False,
        "prompt_cache_key": session_key,
    }


async def one_request(
    session: aiohttp.ClientSession, lb_url: str, stats: dict[str, int]
) -> None:
    model = UNPRICED_MODEL if random.random() < 0.05 else random.choice(PRICED_MODELS)
    session_key = f"demo-session-{random.randrange(6)}"
    try:
        async with session.post(
            f"{lb_url}/backend-api/codex/responses", json=turn(model, session_key)
        ) as response:
            await response.read()
            key = "ok" if response.status == 200 else f"http_{response.status}"
    except aiohttp.ClientError:
        key = "failed"
    stats[key] = stats.get(key, 0) + 1


async def inject_trouble(
    session: aiohttp.ClientSession, emulator_url: str, emails: list[str]
) -> None:
    """Now and then a 429, a 5xx or a jump in weekly use, so panels move."""
    email = random.choice(emails)
    roll = random.random()
    if roll < 0.4:
        fault = {
            "kind": "status",
            "status": 429,
            "body": {
                "error": {
                    "type": "usage_limit_reached",
                    "code": "usage_limit_reached",
                    "message": "demo: usage limit",
                    "resets_in_seconds": 20,
                }
            },
        }
        await session.post(
            f"{emulator_url}/_sim/faults", json={"email": email, "fault": fault}
        )
    elif roll < 0.8:
        fault = {"kind": "status", "status": 502, "body": {"error": {"message": "x"}}}
        await session.post(
            f"{emulator_url}/_sim/faults", json={"email": email, "fault": fault}
        )
    else:
        async with session.get(f"{emulator_url}/_sim/accounts") as response:
            accounts = (await response.json())["accounts"]
        row = next(a for a in accounts if a["email"] == email)
        used = (row["secondary"] or {}).get("used_percent", 0.0)
        await session.post(
            f"{emulator_url}/_sim/usage",
            json={"email": email, "secondary": min(100.0, used + 7.0)},
        )


async def traffic(
    lb_url: str,
    emulator_url: str,
    emails: list[str],
    rate: float,
    stats: dict[str, int],
) -> None:
    """Requests at about `rate` per second, with trouble every few seconds."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        pending: set[asyncio.Task[None]] = set()
        tick = 0
        while True:
            task = asyncio.create_task(one_request(session, lb_url, stats))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += 1
            if tick % max(1, int(rate * 5)) == 0:
                with contextlib.suppress(aiohttp.ClientError, KeyError):
                    await inject_trouble(session, emulator_url, emails)
            await asyncio.sleep(random.expovariate(rate) if rate > 0 else 1.0)


# -- the demo ---------------------------------------------------------------------


async def count_codex_lb_series(
    session: aiohttp.ClientSession, prometheus_url: str
) -> int:
    query = 'count({__name__=~"codex_lb_.+"})'
    async with session.get(
        f"{prometheus_url}/api/v1/query", params={"query": query}
    ) as response:
        result = (await response.json())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


@contextlib.asynccontextmanager
async def stack(work: Path, env: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
    """Emulator, codex-lb and Prometheus running; stopped on the way out."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise DemoError(
            "no `prometheus` on PATH: apt-get install prometheus (Debian package)"
        )
    lb_port = int(env_number(env, "DEMO_LB_PORT", 2455))
    emulator_port = int(env_number(env, "DEMO_EMULATOR_PORT", 8765))
    prometheus_port = int(env_number(env, "DEMO_PROMETHEUS_PORT", 9090))
    accounts = max(1, int(env_number(env, "DEMO_ACCOUNTS", 4)))
    clock_speed = env_number(env, "DEMO_CLOCK_SPEED", 60)
    check_port_free(lb_port, "codex-lb", "DEMO_LB_PORT")
    check_port_free(emulator_port, "the emulator", "DEMO_EMULATOR_PORT")
    check_port_free(prometheus_port, "Prometheus", "DEMO_PROMETHEUS_PORT")

    children = Children(work)
    python = sys.executable
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    lb_url = f"http://127.0.0.1:{lb_port}"
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    token = secrets.token_urlsafe(24)
    token_file = work / "metrics_token"
    token_file.write_text(token)
    token_file.chmod(0o600)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        try:
            # The emulator: a few accounts of mixed plans on a fast clock,
            # serving the priced models and one the price table lacks.
            models = ",".join((*DEFAULT_MODELS, UNPRICED_MODEL))
            emulator = await children.start(
                "emulator",
                [
                    python,
                    "-m",
                    "codex_lb.sim",
                    "--port",
                    str(emulator_port),
                    "--accounts",
                    str(accounts),
                    "--plans",
                    "plus,pro,team",
                    "--clock-speed",
                    str(clock_speed),
                    "--event-delay-ms",
                    "20",
                    "--auth-dir",
                    str(work / "auth"),
                    "--models",
                    models,
                ],
            )
            await wait_until_up(
                session, f"{emulator_url}/_sim/accounts", "emulator", children, emulator
            )
            async with session.get(f"{emulator_url}/_sim/accounts") as response:
                emails = [a["email"] for a in (await response.json())["accounts"]]

            # codex-lb with those accounts, polling their usage often.
            lb_env = {
                **os.environ,
                "CODEX_LB_HOST": "127.0.0.1",
                "CODEX_LB_PORT": str(lb_port),
                "CODEX_LB_DATA_DIR": str(work / "codex-lb"),
                "CODEX_LB_UPSTREAM_BASE_URL": f"{emulator_url}/backend-api",
                "CODEX_LB_AUTH_BASE_URL": emulator_url,
                "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS": "10",
                "CODEX_LB_METRICS_TOKEN": token,
                "CODEX_LB_LOG_FORMAT": "json",
                "CODEX_LB_LOG_LEVEL": "warning",
            }
            auth_files = sorted(str(p) for p in (work / "auth").glob("*/auth.json"))
            importer = await children.start(
                "import",
                [python, "-m", "codex_lb", "accounts", "import", *auth_files],
                env=lb_env,
            )
            if await importer.wait() != 0:
                raise DemoError(
                    f"accounts import failed:\n{children.log_tail('import')}"
                )
            lb = await children.start(
                "codex-lb", [python, "-m", "codex_lb", "serve"], env=lb_env
            )
            await wait_until_up(session, f"{lb_url}/health", "codex-lb", children, lb)

            # Prometheus with the compose scrape job and alert rules.
            config = work / "prometheus.yml"
            config.write_text(
                local_prometheus_config(
                    f"127.0.0.1:{lb_port}", token_file, scrape_interval="5s"
                )
            )
            prom = await children.start(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
            )
            await wait_until_up(
                session, f"{prometheus_url}/-/ready", "prometheus", children, prom
            )
            yield {
                "lb_url": lb_url,
                "emulator_url": emulator_url,
                "prometheus_url": prometheus_url,
                "emails": emails,
                "token_file": token_file,
                "children": children,
                "session": session,
            }
        finally:
            await children.stop_all()


def grafana_command(prometheus_url: str) -> str:
    """The `docker run` that shows the dashboards over `prometheus_url`.

    Host networking lets Grafana reach a Prometheus on the host's loopback;
    GF_SERVER_HTTP_ADDR keeps Grafana, with its admin/admin login, off every
    other interface.
    """
    return f"""docker run --rm --network host -e GF_SERVER_HTTP_ADDR=127.0.0.1 \\
    -e PROMETHEUS_URL={prometheus_url} \\
    -v {ROOT}/grafana/provisioning:/etc/grafana/provisioning:ro \\
    -v {ROOT}/grafana/dashboards:/etc/grafana/dashboards/codex-lb:ro \\
    grafana/grafana:11.2.0      # then open http://127.0.0.1:3000 (admin/admin)"""


def print_urls(urls: Mapping[str, Any], seconds: float) -> None:
    lb, prom = urls["lb_url"], urls["prometheus_url"]
    until = f"for {int(seconds)} s" if seconds else "Ctrl-C stops it"
    graph = urllib.parse.quote(
        "sum by (model) (rate(codex_lb_proxy_requests_total[1m]))", safe=""
    )
    print(
        f"""
codex-lb demo is running ({until}):
  codex-lb          {lb}   (Codex CLI base_url: {lb}/backend-api/codex)
  codex-lb metrics  {lb}/metrics   (Bearer token in {urls["token_file"]})
  emulator          {urls["emulator_url"]}/_sim/accounts
  Prometheus        {prom}/graph?g0.expr={graph}
  alerts            {prom}/alerts
Grafana (with Docker) on 127.0.0.1 only, with this repository's dashboards:
  {grafana_command(prom)}
""",
        flush=True,
    )


async def run(env: Mapping[str, str]) -> int:
    seconds = env_number(env, "DEMO_SECONDS", 0)
    rate = env_number(env, "DEMO_RATE", 4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    stats: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="codex-lb-demo-") as tmp:
        async with stack(Path(tmp), env) as urls:
            print_urls(urls, seconds)
            generator = asyncio.create_task(
                traffic(
                    urls["lb_url"], urls["emulator_url"], urls["emails"], rate, stats
                ),
                name="demo-traffic",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds or None)
            generator.cancel()
            await asyncio.gather(generator, return_exceptions=True)

            # One line that proves the pipeline worked end to end.
            series = await count_codex_lb_series(
                urls["session"], urls["prometheus_url"]
            )
            print(f"demo: stopping; requests {dict(sorted(stats.items()))}", flush=True)
            print(f"demo: prometheus holds {series} codex_lb series", flush=True)
    print("demo: stopped", flush=True)
    return 0


def main() -> None:
    try:
        code = asyncio.run(run(os.environ))
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
