"""`make demo`: the emulator, codex-lb, traffic and a local Prometheus."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import socket

import pytest

from tests.compose.helpers import ROOT, tool
from tests.grafana.prometheus import free_port

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(120)]

PORTS = ("DEMO_LB_PORT", "DEMO_EMULATOR_PORT", "DEMO_PROMETHEUS_PORT")


def demo_env(**extra: str) -> dict[str, str]:
    """The environment for a demo on free ports."""
    tool("prometheus")
    ports = {name: str(free_port()) for name in PORTS}
    return {**os.environ, **ports, **extra}


async def start_make_demo(env: dict[str, str]) -> asyncio.subprocess.Process:
    # `-o` keeps make from reinstalling the virtual environment mid-test;
    # a session of its own lets the test send Ctrl-C as a terminal would.
    return await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "-o",
        ".venv/.installed",
        "demo",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


def port_is_free(port: str) -> bool:
    """Nothing listens on the port (connections in TIME_WAIT aside)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", int(port)))
        except OSError:
            return False
        return True


class TestDemo:
    async def test_runs_for_demo_seconds_and_prometheus_has_series(self) -> None:
        """With DEMO_SECONDS=20 it serves, scrapes, then stops by itself."""
        env = demo_env(DEMO_SECONDS="20")

        process = await start_make_demo(env)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
        text = output.decode()

        assert process.returncode == 0, text
        assert f"http://127.0.0.1:{env['DEMO_LB_PORT']}/metrics" in text
        assert f"http://127.0.0.1:{env['DEMO_PROMETHEUS_PORT']}/alerts" in text
        (series,) = re.findall(r"prometheus holds (\d+) codex_lb series", text)
        assert int(series) > 50
        (counts,) = re.findall(r"demo: stopping; requests (\{.*\})", text)
        assert ast.literal_eval(counts).get("ok", 0) > 0
        assert text.rstrip().endswith("demo: stopped")
        assert all(port_is_free(env[name]) for name in PORTS)

    async def test_ctrl_c_stops_everything_cleanly(self) -> None:
        """Ctrl-C to the foreground group stops the demo and all it started."""
        env = demo_env()
        process = await start_make_demo(env)
        assert process.stdout is not None
        seen: list[str] = []
        while not any("demo is running" in line for line in seen):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line, "".join(seen)
            seen.append(line.decode())
        await asyncio.sleep(2)

        os.killpg(process.pid, signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        text = "".join(seen) + rest.decode()

        assert "Traceback" not in text
        assert "demo: stopped" in text
        assert all(port_is_free(env[name]) for name in PORTS)
