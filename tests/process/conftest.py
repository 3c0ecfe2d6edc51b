"""codex-lb and the emulator as real processes on loopback (soak/processes.py)."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from soak.processes import (
    free_port,
    import_accounts,
    lb_env,
    start_codex_lb,
    start_emulator,
    stop,
)

CODEX = "/backend-api/codex/responses"
CODEX_BODY: dict[str, Any] = {
    "model": "gpt-5",
    "instructions": "",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "a long enough question"}],
        }
    ],
    "stream": True,
    "store": False,
}


@attrs.define
class Running:
    """One codex-lb process: its handle, address, settings and files."""

    process: subprocess.Popen[bytes]
    base: str
    env: dict[str, str]
    data_dir: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.data_dir / "store.db"

    def rows(self, where: str = "1") -> list[sqlite3.Row]:
        """Request-log rows read straight from the database file."""
        connection = sqlite3.connect(self.db, timeout=30)
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(
                f"SELECT * FROM request_logs WHERE {where} ORDER BY id"
            ).fetchall()
        finally:
            connection.close()


class Processes:
    """Starts codex-lb processes in front of one emulator; stops them all."""

    def __init__(self, workdir: Path, emulator_base: str) -> None:
        self.workdir = workdir
        self.emulator_base = emulator_base
        self.started: list[subprocess.Popen[bytes]] = []
        self._imported: set[Path] = set()

    def start(self, name: str = "lb", **settings: str) -> Running:
        data_dir = self.workdir / f"{name}-data"
        env = lb_env(data_dir, self.emulator_base, free_port(), **settings)
        if data_dir not in self._imported:
            import_accounts(env, self.workdir / "auth")
            self._imported.add(data_dir)
        log = self.workdir / f"{name}-{len(self.started)}.log"
        process = start_codex_lb(env, log)
        self.started.append(process)
        return Running(
            process, f"http://127.0.0.1:{env['CODEX_LB_PORT']}", env, data_dir, log
        )

    def stop_all(self) -> None:
        for process in self.started:
            stop(process)


def emulator_processes(
    workdir: Path, *options: str, accounts: int = 2
) -> Iterator[Processes]:
    """The emulator as a process; codex-lb processes started in front of it."""
    emulator, base = start_emulator(
        workdir, "--plans", "pro", *options, accounts=accounts
    )
    processes = Processes(workdir, base)
    try:
        yield processes
    finally:
        processes.stop_all()
        stop(emulator)


@pytest.fixture
def slow_streams(tmp_path: Path) -> Iterator[Processes]:
    """An emulator whose streams take a few seconds each (40 events, 150 ms)."""
    yield from emulator_processes(tmp_path, "--event-delay-ms", "150", "--events", "40")


@pytest.fixture
def quick_streams(tmp_path: Path) -> Iterator[Processes]:
    """An emulator whose streams take a fraction of a second."""
    yield from emulator_processes(tmp_path, "--event-delay-ms", "5", "--events", "8")
