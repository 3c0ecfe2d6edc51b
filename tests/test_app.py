"""The application's parts open in order and close in reverse (codex_lb/app.py).

Each part holding a resource (store, upstream session, request-log writer,
account pool, collectors, relay) is opened at start-up and closed at the
end; a part that fails to start closes the parts opened before it, and a bad
setting stops ``python -m codex_lb`` with one line before anything opens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from codex_lb.app import REQUEST_LOG_KEY, SESSION_KEY, STORE_KEY, create_app
from codex_lb.config import SettingsError, load_settings
from codex_lb.sim import Emulator
from tests.conftest import settings_env


class TestParts:
    async def test_a_part_failing_to_start_closes_those_before_it(
        self, emulator: Emulator, tmp_path: Path
    ) -> None:
        """A collector that cannot be loaded (the fifth part) stops start-up;
        the store, the upstream session and the request-log writer opened
        before it are closed, not left to the garbage collector."""
        settings = load_settings(
            settings_env(
                emulator,
                tmp_path / "data",
                CODEX_LB_COLLECTORS="no_such_module_xyz:Thing",
            ),
            env_file=None,
        )
        app = await create_app(settings)
        server = TestServer(app)

        with pytest.raises(SettingsError, match="CODEX_LB_COLLECTORS"):
            await server.start_server()

        assert app[SESSION_KEY].closed
        with pytest.raises(ValueError):
            await app[STORE_KEY].list_accounts()
        # The writer ran its last flush against the open store and stopped.
        assert app[REQUEST_LOG_KEY].size == 0
        await server.close()

    async def test_every_part_closes_after_a_normal_run(
        self, emulator: Emulator, tmp_path: Path
    ) -> None:
        """Started and stopped: the session and the store are closed."""
        settings = load_settings(
            settings_env(emulator, tmp_path / "data"), env_file=None
        )
        app = await create_app(settings)
        server = TestServer(app)
        await server.start_server()

        await server.close()

        assert app[SESSION_KEY].closed
        with pytest.raises(ValueError):
            await app[STORE_KEY].list_accounts()


def run_codex_lb(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "CODEX_LB_DATA_DIR": str(tmp_path / "data"),
        "CODEX_LB_PORT": "1",  # never reached: start-up stops before binding
        "CODEX_LB_LOG_FORMAT": "json",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "codex_lb"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


class TestStartUpErrors:
    def test_bad_trusted_proxies_is_one_line_before_anything_opens(
        self, tmp_path: Path
    ) -> None:
        """CODEX_LB_TRUSTED_PROXIES that is not addresses: one line naming it,
        exit 2, no traceback, and no data folder created."""
        done = run_codex_lb(tmp_path, CODEX_LB_TRUSTED_PROXIES="nginx")

        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(
            "codex-lb: bad setting: CODEX_LB_TRUSTED_PROXIES='nginx'"
        )
        assert "Traceback" not in done.stdout + done.stderr
        assert not (tmp_path / "data").exists()

    def test_a_part_failing_to_start_leaves_nothing_open(self, tmp_path: Path) -> None:
        """A bad collector found at start-up: one line, exit 2, and no warning
        of a session or database left open."""
        done = run_codex_lb(tmp_path, CODEX_LB_COLLECTORS="no_such_module_xyz:Thing")
        output = done.stdout + done.stderr

        assert done.returncode == 2
        assert "codex-lb: CODEX_LB_COLLECTORS='no_such_module_xyz:Thing'" in output
        assert "Traceback" not in output
        assert "Unclosed" not in output
        assert "never awaited" not in output


class TestSettleTheHeap:
    def test_start_up_objects_are_frozen_and_young_collections_rarer(self) -> None:
        """In a process of its own (it changes the interpreter for good):
        everything alive is moved out of the collector's sight and the young
        generation's threshold is raised; the older ones keep theirs."""
        script = (
            "import asyncio, gc\n"
            "from codex_lb.app import GC_YOUNG_THRESHOLD, settle_the_heap\n"
            "before = gc.get_threshold()\n"
            "asyncio.run(settle_the_heap())\n"
            "after = gc.get_threshold()\n"
            "assert after == (GC_YOUNG_THRESHOLD, *before[1:]), (before, after)\n"
            "print(gc.get_freeze_count())\n"
        )

        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > 10_000
