"""`make demo`: the emulator, codex-lb, traffic and a local Prometheus."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import socket

import pytest

from tests.compose.helpers import ROOT, load_script, tool
from tests.prometheus import free_port

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
        assert "docker run --rm --network host -e GF_SERVER_HTTP_ADDR=127.0.0.1" in (
            text
        )

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


class TestGrafanaCommand:
    def test_grafana_listens_on_loopback_only(self) -> None:
        """The printed `docker run` shares the host's network but binds
        Grafana to 127.0.0.1, and names the demo's Prometheus."""
        command = load_script("demo").grafana_command("http://127.0.0.1:9191")

        assert "--network host" in command
        assert "-e GF_SERVER_HTTP_ADDR=127.0.0.1 " in command
        assert "-e PROMETHEUS_URL=http://127.0.0.1:9191 " in command

    def test_documented_commands_bind_loopback_too(self) -> None:
        """Every Grafana `docker run` in the docs binds it to 127.0.0.1."""
        docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        commands = [
            block
            for path in docs
            for block in re.findall(
                r"docker run[^`]*?grafana/grafana", path.read_text()
            )
        ]

        assert commands
        assert all("GF_SERVER_HTTP_ADDR=127.0.0.1" in c for c in commands), commands
