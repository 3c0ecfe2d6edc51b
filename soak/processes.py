"""Starting the emulator and codex-lb as real processes on loopback.

The soak run and the shutdown and secrets tests need codex-lb as an operator
runs it (``python -m codex_lb``, signals, its own stdout and stderr), not
inside the test's event loop. Every child binds 127.0.0.1, writes its output
to a file, and is told by the kernel to die with its parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: a killed harness leaves no orphans.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def spawn(
    argv: Sequence[str], env: dict[str, str], log: Path, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv``; stderr goes to ``log`` (stdout too, unless given apart)."""
    err = log.open("wb")
    out = stdout.open("wb") if stdout is not None else err
    try:
        return subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_die_with_parent,
        )
    finally:
        # The child holds its own copies of the descriptors.
        err.close()
        if out is not err:
            out.close()


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the child's output if it dies."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode}:\n"
                + log.read_text(errors="replace")[-4000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_SECONDS} s")


def start_emulator(
    workdir: Path, *options: str, accounts: int = 2
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m codex_lb.sim`` on a free port; auth files in workdir/auth."""
    port = free_port()
    log = workdir / "emulator.log"
    process = spawn(
        [
            sys.executable,
            "-m",
            "codex_lb.sim",
            "--port",
            str(port),
            "--accounts",
            str(accounts),
            "--auth-dir",
            str(workdir / "auth"),
            *options,
        ],
        dict(os.environ),
        log,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_sim/accounts", process, log)
    return process, base


def lb_env(
    data_dir: Path, emulator_base: str, port: int, **extra: str
) -> dict[str, str]:
    """The environment of a codex-lb process in front of the emulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEX_LB_")
    }
    env.update(
        {
            "CODEX_LB_HOST": "127.0.0.1",
            "CODEX_LB_PORT": str(port),
            "CODEX_LB_DATA_DIR": str(data_dir),
            "CODEX_LB_UPSTREAM_BASE_URL": emulator_base + "/backend-api",
            "CODEX_LB_AUTH_BASE_URL": emulator_base,
            "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS": "0",
            "CODEX_LB_LOG_FORMAT": "json",
            "CODEX_LB_LOG_LEVEL": "warning",
        }
    )
    env.update(extra)
    return env


def import_accounts(env: dict[str, str], auth_dir: Path) -> None:
    """``python -m codex_lb accounts import`` every auth.json under ``auth_dir``."""
    files = sorted(str(p) for p in auth_dir.glob("*/auth.json"))
    subprocess.run(
        [sys.executable, "-m", "codex_lb", "accounts", "import", *files],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


def start_codex_lb(
    env: dict[str, str], log: Path, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """``python -m codex_lb`` with ``env``, once /health answers."""
    process = spawn([sys.executable, "-m", "codex_lb"], env, log, stdout)
    wait_http(f"http://127.0.0.1:{env['CODEX_LB_PORT']}/health", process, log)
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` from /proc."""
    return len(os.listdir(f"/proc/{pid}/fd"))


# /proc/net/tcp state codes (include/net/tcp_states.h).
_TCP_STATES = {
    "01": "established",
    "02": "syn_sent",
    "03": "syn_recv",
    "04": "fin_wait1",
    "05": "fin_wait2",
    "06": "time_wait",
    "07": "close",
    "08": "close_wait",
    "09": "last_ack",
    "0A": "listen",
    "0B": "closing",
}


def socket_states(pid: int) -> dict[str, int]:
    """How many of ``pid``'s descriptors are TCP sockets in each state."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    states: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                state = _TCP_STATES.get(fields[3], fields[3])
                states[state] = states.get(state, 0) + 1
    return states
