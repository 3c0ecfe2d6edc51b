"""One server per data folder: a second ``serve`` on it is refused at once.

Two servers on one folder would both refresh an account whose token is due,
and the upstream's single-use refresh tokens would lose the account to
``reauth_required`` (SPEC 4). Real processes on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from soak.processes import free_port, stop
from tests.process.conftest import Processes, Running, emulator_processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    yield from emulator_processes(tmp_path)


def codex_lb(lb: Running, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m codex_lb ARGS`` with the running server's settings."""
    return subprocess.run(
        [sys.executable, "-m", "codex_lb", *args],
        env={**lb.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


class TestOneServerPerDataFolder:
    def test_a_second_server_is_refused_naming_the_folder_and_pid(
        self, processes: Processes
    ) -> None:
        """The second exits 2 with one line; the first keeps serving."""
        first = processes.start()

        second = codex_lb(first, "serve", CODEX_LB_PORT=str(free_port()))

        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert line == (
            f"codex-lb: another codex-lb (pid {first.process.pid}) already serves "
            f"the data folder {first.data_dir} (CODEX_LB_DATA_DIR): stop it, or "
            "give this one its own folder"
        )
        assert first.process.poll() is None

    def test_account_and_key_commands_work_beside_the_server(
        self, processes: Processes
    ) -> None:
        first = processes.start()

        listed = codex_lb(first, "accounts", "list", "--json")
        email = json.loads(listed.stdout)[0]["email"]
        paused = codex_lb(first, "accounts", "pause", email)
        created = codex_lb(first, "keys", "create", "laptop")

        assert listed.returncode == 0, listed.stderr
        assert paused.returncode == 0, paused.stderr
        assert created.returncode == 0, created.stderr
        assert first.process.poll() is None

    def test_the_folder_is_free_again_once_the_server_stopped(
        self, processes: Processes
    ) -> None:
        """The lock goes with the process, however it ends (here: SIGKILL)."""
        first = processes.start()
        first.process.kill()
        first.process.wait()

        again = processes.start()

        assert again.process.poll() is None
        assert stop(again.process) == 0
