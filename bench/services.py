"""The processes a benchmark phase runs: emulator, codex-lb, reference proxy.

Each runs as its own Python process on a free loopback port, in its own
session so a Ctrl-C in the terminal reaches only the harness, which then
stops them in order; on Linux they are also told to die with the harness if
it is killed outright. Their output goes to files in the phase's temporary
directory, shown when one fails to start.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: a SIGKILLed harness leaves no orphans.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Service:
    """One child process and where it listens."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self._log_path = log_dir / f"{name}.log"
        self._log = self._log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-4000:]

    async def wait_ready(self, url: str) -> None:
        """Poll ``url`` until it answers; fail with the process's output."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    async with session.get(url) as response:
                        if response.status < 500:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not come up at {url} "
            f"(exit {self.process.poll()}):\n{self.output()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; always reaps."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self._log.close()


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, from /proc."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """Emulator, codex-lb and reference proxy for one phase."""

    def __init__(self, work: Path, sim_args: Sequence[str], accounts: int) -> None:
        self.work = work
        self.sim_args = list(sim_args)
        self.accounts = accounts
        self.sim_port = free_port()
        self.lb_port = free_port()
        self.ref_port = free_port()
        self.services: list[Service] = []
        self.auth_files: list[Path] = []
        python = sys.executable
        self._python = python
        self.lb_env = dict(
            os.environ,
            CODEX_LB_HOST="127.0.0.1",
            CODEX_LB_PORT=str(self.lb_port),
            CODEX_LB_DATA_DIR=str(work / "lb"),
            CODEX_LB_UPSTREAM_BASE_URL=f"{self.sim_url}/backend-api",
            CODEX_LB_AUTH_BASE_URL=self.sim_url,
            CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS="0",
            # The defaults an operator runs with: a JSON line per request.
            CODEX_LB_LOG_LEVEL="info",
            CODEX_LB_LOG_FORMAT="json",
        )
        for name in list(self.lb_env):
            # A developer's own settings must not leak into the measurement.
            if name.startswith("CODEX_LB_") and name not in (
                "CODEX_LB_HOST",
                "CODEX_LB_PORT",
                "CODEX_LB_DATA_DIR",
                "CODEX_LB_UPSTREAM_BASE_URL",
                "CODEX_LB_AUTH_BASE_URL",
                "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS",
                "CODEX_LB_LOG_LEVEL",
                "CODEX_LB_LOG_FORMAT",
            ):
                del self.lb_env[name]

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def ref_url(self) -> str:
        return f"http://127.0.0.1:{self.ref_port}"

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    async def start(self, import_count: int) -> None:
        """Start all three; codex-lb with the first ``import_count`` accounts."""
        auth_dir = self.work / "auth"
        sim = Service(
            "emulator",
            [
                self._python,
                "-m",
                "codex_lb.sim",
                "--port",
                str(self.sim_port),
                "--accounts",
                str(self.accounts),
                "--plans",
                "pro",
                "--auth-dir",
                str(auth_dir),
                # The real upstream reports whole percents: a reading changes
                # about once per percent point, not with every answer.
                "--whole-percents",
                *self.sim_args,
            ],
            dict(os.environ),
            self.work,
        )
        self.services.append(sim)
        script = str(HERE / "reference_proxy.py")
        ref = Service(
            "reference",
            [self._python, script, str(self.ref_port), self.sim_url],
            dict(os.environ),
            self.work,
        )
        self.services.append(ref)
        await sim.wait_ready(f"{self.sim_url}/_sim/accounts")
        self.auth_files = sorted(auth_dir.glob("*/auth.json"), key=_sim_order)

        await self.import_accounts(self.auth_files[:import_count])
        lb = Service(
            "codex-lb", [self._python, "-m", "codex_lb"], self.lb_env, self.work
        )
        self.services.append(lb)
        await lb.wait_ready(f"{self.lb_url}/health")
        await ref.wait_ready(f"{self.ref_url}/_sim/accounts")

    async def import_accounts(self, files: Sequence[Path]) -> None:
        """``python -m codex_lb accounts import`` (works while codex-lb runs)."""
        if not files:
            return
        process = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "codex_lb",
            "accounts",
            "import",
            *map(str, files),
            env=self.lb_env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), 120)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError("accounts import took over 120 s") from None
        if process.returncode != 0:
            raise RuntimeError(f"accounts import failed: {err.decode()[-2000:]}")

    def direct_headers(self, index: int = 0) -> dict[str, str]:
        """What a client calling the emulator itself sends: an account's login."""
        auth = json.loads(self.auth_files[index].read_text())
        return {
            "Authorization": f"Bearer {auth['tokens']['access_token']}",
            "chatgpt-account-id": auth["tokens"]["account_id"],
        }

    async def reset_usage(self, count: int) -> None:
        """Empty the first ``count`` emulated accounts' windows."""
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.sim_url}/_sim/accounts") as response:
                accounts: list[dict[str, Any]] = (await response.json())["accounts"]
            for account in accounts[:count]:
                body = {"email": account["email"], "primary": 0, "secondary": 0}
                async with session.post(f"{self.sim_url}/_sim/usage", json=body):
                    pass

    def stop(self) -> None:
        # codex-lb first (it drains streams), the emulator last.
        errors: list[str] = []
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:
                errors.append(f"{service.name}: {exc}")
        self.services.clear()
        if errors:
            print("could not stop: " + "; ".join(errors), file=sys.stderr)


def _sim_order(path: Path) -> int:
    # simN@example.com: numeric order, so the first N files are sim1..simN.
    digits = "".join(ch for ch in path.parent.name.split("@")[0] if ch.isdigit())
    return int(digits or 0)
