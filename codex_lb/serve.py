"""``codex-lb serve``: one server per data folder, listening until told to stop.

Start-up checks what would otherwise fail later with a traceback or, worse,
not at all: that ``CODEX_LB_HOST`` resolves, that no other codex-lb serves
the same data folder (two servers would refresh one account's single-use
refresh token at once and lose the account to ``reauth_required``), and
that the address can be bound. Each problem is one line naming the setting.

Stopping follows the signals an operator sends:

1. the first SIGTERM or SIGINT stops accepting connections and lets the
   requests in flight finish for ``CODEX_LB_SHUTDOWN_GRACE_SECONDS``; the
   relay then ends what is left with ``server_shutdown``;
2. a second one ends every stream at once, the same way, and goes on with
   the orderly close: request-log rows flushed, store closed,
   ``codex_lb_stopped`` logged;
3. a third exits at once, leaving what is unwritten.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
from pathlib import Path
from typing import IO, Final

import structlog
from aiohttp import web

from codex_lb.app import RELAY_KEY, SERVER_OPTIONS, create_app, settle_the_heap
from codex_lb.config import Settings, SettingsError
from codex_lb.proxy.pricing import PricingFileError
from codex_lb.store import StoreOpenError, store_failure

log = structlog.get_logger("codex_lb.serve")

LOCK_FILE: Final = "serve.lock"
# aiohttp's own deadline for requests in flight comes this long after the
# grace period, so the relay ends its streams first and aiohttp never has
# to cut a handler that is already finishing (which made it log an
# InvalidStateError per request when both fired at once).
AIOHTTP_DEADLINE_SLACK: Final = 5.0


class StartupError(Exception):
    """The server cannot start; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def run(settings: Settings) -> None:
    """Serve until stopped by signals (see the module's doc).

    Raises StartupError, or StoreOpenError for a data folder that cannot be
    used, with nothing served.
    """
    _check_host(settings)
    lock = lock_data_dir(settings.data_path)
    try:
        asyncio.run(_serve(settings))
    finally:
        lock.close()


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold the data folder for this server: an exclusive lock on a file there.

    The lock lives as long as the returned file is open (the kernel drops it
    when the process ends, however it ends). Account and key commands do not
    take it: they write through the store, which the server follows.

    Only processes on one machine see this lock. A store shared by several
    replicas (the PostgreSQL backend the store's interface is kept for)
    needs a per-account refresh lease in the store itself instead.
    """
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreOpenError(data_dir, store_failure(exc)) from exc

    lock = os.fdopen(descriptor, "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock.read().strip()
        lock.close()
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise StartupError(
            [
                f"another codex-lb{pid} already serves the data folder {data_dir} "
                "(CODEX_LB_DATA_DIR): stop it, or give this one its own folder"
            ]
        ) from None

    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _check_host(settings: Settings) -> None:
    """Refuse a ``CODEX_LB_HOST`` that names no address, before opening anything."""
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StartupError(
            [
                f"bad setting: CODEX_LB_HOST={settings.host!r}: must be an IP "
                f"address or a host name that resolves ({reason})"
            ]
        ) from exc


async def _serve(settings: Settings) -> None:
    try:
        app = await create_app(settings)
    except PricingFileError as exc:
        raise StartupError([f"CODEX_LB_PRICING_FILE: {exc}"]) from exc

    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_seconds + AIOHTTP_DEADLINE_SLACK,
        # A client that hangs up cancels its handler at once, so the relay
        # lets go of the upstream and logs 499 instead of waiting for the
        # upstream's next byte to notice (aiohttp's test server does the same).
        handler_cancellation=True,
        **SERVER_OPTIONS,
    )
    try:
        await runner.setup()
    except SettingsError as exc:
        # Problems found while opening the parts (e.g. a bad collector).
        raise StartupError(exc.problems) from exc
    # Everything is open: what start-up made is left out of collections.
    await settle_the_heap()

    signals = ShutdownSignals(app)
    try:
        await _listen(runner, settings)
        signals.install()
        await signals.first.wait()
    finally:
        await runner.cleanup()
        signals.remove()


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(
            [
                f"cannot listen on {settings.host}:{settings.port} (CODEX_LB_HOST, "
                f"CODEX_LB_PORT): {exc.strerror or exc}"
            ]
        ) from exc

    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "listening",
        url=base,
        codex_base_url=f"{base}/backend-api/codex",
        data_dir=str(settings.data_path),
    )


class ShutdownSignals:
    """Counts SIGTERM and SIGINT: drain, then hurry, then leave."""

    def __init__(self, app: web.Application) -> None:
        self.first = asyncio.Event()
        self._app = app
        self._count = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._received, number)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)

    def _received(self, number: int) -> None:
        self._count += 1
        name = signal.Signals(number).name
        # Each step acts before it logs: the signal is obeyed even when
        # the log line cannot be written.
        if self._count == 1:
            self.first.set()
            log.info("shutdown_started", signal=name)
        elif self._count == 2:
            # The drain is cut short, not skipped: streams end with a
            # server_shutdown event and every row is still written.
            if RELAY_KEY in self._app:
                self._app[RELAY_KEY].stop_streams()
            log.warning("shutdown_hurried", signal=name)
        else:
            try:
                log.error("shutdown_abandoned", signal=name)
            finally:
                os._exit(1)
