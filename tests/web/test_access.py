"""Who may call what (SPEC section 8, case C15), client keys included.

A remote caller is simulated by an outermost test middleware that gives the
request another peer address, as a socket from that address would; the
server itself still binds 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from codex_lb.app import KEYS_KEY, SERVER_OPTIONS, create_app
from codex_lb.clientkeys import create_key
from codex_lb.config import load_settings
from codex_lb.events import EventBus
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
def make_open_lb(
    tmp_path: Path,
    aiohttp_client: Any,
    bus: EventBus,
    recorder: EventRecorder,
    emulator: Emulator,
) -> Callable[..., Awaitable[LB]]:
    """codex-lb with no keys, as if bound to 0.0.0.0; ``env`` adds settings."""

    async def make(**env: str) -> LB:
        data_dir = tmp_path / "lb-data"
        store = await open_store(data_dir)
        try:
            ids = await import_accounts(store, emulator, tmp_path / "auth")
        finally:
            await store.close()
        settings = load_settings(
            settings_env(emulator, data_dir, CODEX_LB_HOST="0.0.0.0", **env),
            env_file=None,
        )
        app = await create_app(settings, bus=bus, clock=emulator.clock.now)
        app.middlewares.insert(0, remote_peer)
        server = TestServer(app)
        await server.start_server(**SERVER_OPTIONS)
        client = await aiohttp_client(server)
        return LB(client, app, emulator, recorder, ids)

    return make


@pytest.fixture
async def open_lb(make_open_lb: Callable[..., Awaitable[LB]]) -> LB:
    """No keys and no admin token."""
    return await make_open_lb()


CHAT_BODY = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
CODEX_BODY = {"model": "gpt-5", "instructions": "", "input": "hi", "stream": True}


Headers = dict[str, str] | list[tuple[str, str]]


async def statuses(lb: LB, headers: Headers) -> dict[str, int]:
    """The status of one call to each kind of route, with ``headers``.

    A refused call must not carry account data: no email, no account id.
    """
    calls = {
        "codex": lb.client.post(
            "/backend-api/codex/responses", json=CODEX_BODY, headers=headers
        ),
        "chat": lb.client.post("/v1/chat/completions", json=CHAT_BODY, headers=headers),
        "models": lb.client.get("/v1/models", headers=headers),
        "usage": lb.client.get("/api/codex/usage", headers=headers),
        "api": lb.client.get("/api/accounts", headers=headers),
        "dashboard_api": lb.client.get("/api/dashboard", headers=headers),
        "requests": lb.client.get("/api/requests", headers=headers),
        "keys": lb.client.get("/api/keys", headers=headers),
        "dashboard": lb.client.get("/dashboard", headers=headers),
        "metrics": lb.client.get("/metrics", headers=headers),
    }
    result = {}
    for name, call in calls.items():
        response = await call
        text = await response.text()
        if response.status >= 400:
            leaked = [x for x in (*lb.ids, *lb.ids.values()) if x in text]
            assert leaked == [], f"{name} refused but told {leaked}"
        result[name] = response.status
    return result


ALL_REFUSED = dict.fromkeys(
    (
        "codex",
        "chat",
        "models",
        "usage",
        "api",
        "dashboard_api",
        "requests",
        "keys",
        "dashboard",
        "metrics",
    ),
    401,
)


class TestOpenByAccident:
    async def test_remote_callers_are_refused(self, open_lb: LB) -> None:
        """C15: no keys, no admin token: a remote caller gets nothing."""
        remote = {"X-Test-Remote": "1"}
        forged = {**remote, "X-Forwarded-For": "127.0.0.1"}

        plain = await statuses(open_lb, remote)
        spoofed = await statuses(open_lb, forged)

        assert plain == ALL_REFUSED
        assert spoofed == ALL_REFUSED
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
            "dashboard_api": 200,
            "requests": 200,
            "keys": 200,
            "dashboard": result["dashboard"],
            "metrics": 200,
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


LOCAL_PROXY = "127.0.0.1/32"
FAR_CLIENT = "198.51.100.9"


class TestForwardedFor:
    """``X-Forwarded-For`` counts only when the peer is a named proxy."""

    @pytest.mark.parametrize(
        "forwarded",
        [
            [("X-Forwarded-For", FAR_CLIENT)],
            # The client forged a loopback hop; the proxy appended the truth.
            [("X-Forwarded-For", f"127.0.0.1, {FAR_CLIENT}")],
            # ... or added its own header line after the client's.
            [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", FAR_CLIENT)],
            # Hops nobody can place are not loopback.
            [("X-Forwarded-For", "unknown")],
            [("X-Forwarded-For", "127.0.0.1:8080")],
        ],
        ids=["remote", "forged-then-appended", "two-lines", "unknown", "with-port"],
    )
    async def test_remote_client_behind_a_local_proxy_is_refused(
        self, make_open_lb: Callable[..., Awaitable[LB]], forwarded: Headers
    ) -> None:
        """C15 behind nginx on the same host: the peer is loopback, the
        client is not; nothing is served and the upstream hears nothing."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=LOCAL_PROXY)

        result = await statuses(lb, forwarded)

        assert result == ALL_REFUSED
        assert lb.emulator.requests == []

    async def test_loopback_client_behind_a_local_proxy_is_served(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """A proxy that says its client is on loopback is believed."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=LOCAL_PROXY)

        result = await statuses(lb, [("X-Forwarded-For", "127.0.0.1")])

        assert result["codex"] == result["api"] == result["metrics"] == 200

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """Naming proxies does not make every peer's header believed."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=LOCAL_PROXY)

        result = await statuses(
            lb, {"X-Test-Remote": "1", "X-Forwarded-For": "127.0.0.1"}
        )

        assert result == ALL_REFUSED
        assert lb.emulator.requests == []

    async def test_a_remote_trusted_proxy_passes_its_client_on(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """A proxy on another host, when named, vouches for its hops."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=f"{REMOTE_PEER}/32")

        far = await statuses(lb, {"X-Test-Remote": "1", "X-Forwarded-For": FAR_CLIENT})
        near = await statuses(
            lb, {"X-Test-Remote": "1", "X-Forwarded-For": "127.0.0.1"}
        )

        assert far == ALL_REFUSED
        assert near["api"] == near["models"] == 200


class TestAdminToken:
    async def test_admin_token_opens_the_dashboard_api_not_the_proxy(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """A remote caller with the admin token reads /api; wrong tokens and
        proxy routes without a client key stay closed."""
        lb = await make_open_lb(CODEX_LB_ADMIN_TOKEN="admin-secret-1")
        remote = {"X-Test-Remote": "1"}

        good = await statuses(lb, {**remote, "Authorization": "Bearer admin-secret-1"})
        wrong = await statuses(lb, {**remote, "Authorization": "Bearer admin-secret"})
        cookie = await lb.client.get(
            "/api/accounts",
            headers={**remote, "Cookie": "codex_lb_admin=admin-secret-1"},
        )

        assert good == {
            **ALL_REFUSED,
            "api": 200,
            "dashboard_api": 200,
            "requests": 200,
            "keys": 200,
            "dashboard": good["dashboard"],
        }
        assert good["dashboard"] in (200, 302, 303)
        assert wrong == ALL_REFUSED
        assert cookie.status == 200
        emails = {a["email"] for a in (await cookie.json())["accounts"]}
        assert emails == set(lb.ids)
        assert lb.emulator.requests == []
