"""Who may call what (SPEC section 8, case C15), client keys included.

A remote caller is simulated by an outermost test middleware that gives the
request another peer address, as a socket from that address would; the
server itself still binds 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from codex_lb.app import KEYS_KEY, SERVER_OPTIONS, create_app
from codex_lb.config import load_settings
from codex_lb.events import EventBus
from codex_lb.proxy.keys import create_key
from codex_lb.sim import Emulator
from codex_lb.store import open_store
from tests.conftest import LB, EventRecorder, import_accounts, settings_env

REMOTE_PEER = "203.0.113.7"


@web.middleware
async def remote_peer(request: web.Request, handler: Any) -> web.StreamResponse:
    """Requests marked ``X-Test-Remote`` arrive from a non-loopback address."""
    if "X-Test-Remote" in request.headers:
        request = request.clone(remote=REMOTE_PEER)
    return await handler(request)


@pytest.fixture
async def open_lb(
    tmp_path: Path,
    aiohttp_client: Any,
    bus: EventBus,
    recorder: EventRecorder,
    emulator: Emulator,
) -> LB:
    """codex-lb with no keys and no admin token, as if bound to 0.0.0.0."""
    data_dir = tmp_path / "lb-data"
    store = await open_store(data_dir)
    try:
        ids = await import_accounts(store, emulator, tmp_path / "auth")
    finally:
        await store.close()
    settings = load_settings(
        settings_env(emulator, data_dir, CODEX_LB_HOST="0.0.0.0"), env_file=None
    )
    app = await create_app(settings, bus=bus, clock=emulator.clock.now)
    app.middlewares.insert(0, remote_peer)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    client = await aiohttp_client(server)
    return LB(client, app, emulator, recorder, ids)


CHAT_BODY = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
CODEX_BODY = {"model": "gpt-5", "instructions": "", "input": "hi", "stream": True}


async def statuses(lb: LB, headers: dict[str, str]) -> dict[str, int]:
    """The status of one call to each kind of route, with ``headers``."""
    calls = {
        "codex": lb.client.post(
            "/backend-api/codex/responses", json=CODEX_BODY, headers=headers
        ),
        "chat": lb.client.post("/v1/chat/completions", json=CHAT_BODY, headers=headers),
        "models": lb.client.get("/v1/models", headers=headers),
        "usage": lb.client.get("/api/codex/usage", headers=headers),
        "api": lb.client.get("/api/accounts", headers=headers),
        "keys": lb.client.get("/api/keys", headers=headers),
        "dashboard": lb.client.get("/dashboard", headers=headers),
    }
    result = {}
    for name, call in calls.items():
        response = await call
        text = await response.text()
        assert "a@example.com" not in text or response.status == 200
        result[name] = response.status
    return result


class TestOpenByAccident:
    async def test_remote_callers_are_refused(self, open_lb: LB) -> None:
        """C15: no keys, no admin token: a remote caller gets nothing."""
        remote = {"X-Test-Remote": "1"}
        forged = {**remote, "X-Forwarded-For": "127.0.0.1"}

        plain = await statuses(open_lb, remote)
        spoofed = await statuses(open_lb, forged)

        assert set(plain.values()) == {401}
        assert set(spoofed.values()) == {401}
        assert open_lb.emulator.requests == []

    async def test_loopback_callers_are_served(self, open_lb: LB) -> None:
        """C15: from 127.0.0.1 the same routes work."""
        result = await statuses(open_lb, {})

        assert result == {
            "codex": 200,
            "chat": 200,
            "models": 200,
            "usage": 200,
            "api": 200,
            "keys": 200,
            "dashboard": result["dashboard"],
        }
        assert result["dashboard"] in (200, 302, 303)


class TestClientKeys:
    async def test_once_a_key_exists_every_proxy_route_needs_one(
        self, open_lb: LB
    ) -> None:
        """Loopback loses its free pass; unknown and revoked keys get 401."""
        key, row = await create_key(open_lb.store, "ci")
        await open_lb.app[KEYS_KEY].load()
        good = {"Authorization": f"Bearer {key}"}

        without = await open_lb.client.post("/v1/chat/completions", json=CHAT_BODY)
        unknown = await open_lb.client.post(
            "/v1/chat/completions",
            json=CHAT_BODY,
            headers={"Authorization": "Bearer sk-clb-LEAK-4"},
        )
        with_key = await open_lb.client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers=good
        )
        remote_with_key = await open_lb.client.get(
            "/v1/models", headers={**good, "X-Test-Remote": "1"}
        )
        await open_lb.store.revoke_api_key(row.id)
        await open_lb.app[KEYS_KEY].load()
        revoked = await open_lb.client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers=good
        )

        assert (without.status, unknown.status) == (401, 401)
        assert "LEAK" not in await unknown.text()
        assert (await unknown.json())["error"]["code"] == "invalid_api_key"
        assert (with_key.status, remote_with_key.status) == (200, 200)
        assert revoked.status == 401
        [logged] = await open_lb.request_logs()
        assert logged.api_key_id == row.id
