"""Who may call what (SPEC section 8, case C15), client keys included.

A remote caller is simulated by an outermost test middleware that gives the
request another peer address, as a socket from that address would; the
server itself still binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
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
from codex_lb.store import QuotaReading, open_store
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
            settings_env(emulator, data_dir, **{"CODEX_LB_HOST": "0.0.0.0", **env}),
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
        if response.status in (401, 403):
            quota = [h for h in response.headers if h.lower().startswith("x-codex-")]
            assert quota == [], f"{name} refused but told the pool's quota"
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
        """C15: no keys, no admin token: a remote caller gets nothing, not
        even the pool's quota headers."""
        remote = {"X-Test-Remote": "1"}
        forged = {**remote, "X-Forwarded-For": "127.0.0.1"}
        for account in open_lb.pool.accounts:
            await open_lb.pool.apply_reading(
                account, QuotaReading(0.0, "poll", secondary_used_percent=42.0)
            )

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

    async def test_a_remote_trusted_proxy_never_makes_a_caller_local(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """A proxy on another host may name its client, but a client on *its*
        loopback is not on ours: local means every hop is on loopback, the
        proxy included."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=f"{REMOTE_PEER}/32")

        far = await statuses(lb, {"X-Test-Remote": "1", "X-Forwarded-For": FAR_CLIENT})
        near = await statuses(
            lb, {"X-Test-Remote": "1", "X-Forwarded-For": "127.0.0.1"}
        )

        assert far == ALL_REFUSED
        assert near == ALL_REFUSED
        assert lb.emulator.requests == []

    async def test_a_remote_trusted_proxy_still_passes_its_keyed_client(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """Behind a remote trusted proxy, a client with a key is served."""
        lb = await make_open_lb(CODEX_LB_TRUSTED_PROXIES=f"{REMOTE_PEER}/32")
        key, _ = await create_key(lb.store, "behind-proxy")
        await lb.app[KEYS_KEY].load()

        response = await lb.client.get(
            "/v1/models",
            headers={
                "X-Test-Remote": "1",
                "X-Forwarded-For": FAR_CLIENT,
                "Authorization": f"Bearer {key}",
            },
        )

        assert response.status == 200


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


class TestDnsRebinding:
    """A page on a name rebound to 127.0.0.1 calls from loopback: the calls
    let in only for being local need a local ``Host``."""

    REBOUND = {"Host": "evil.test:2455", "Origin": "http://evil.test:2455"}

    async def test_a_rebound_name_gets_nothing(self, open_lb: LB) -> None:
        """No keys, no admin token: every route a local caller gets for free
        refuses the rebound name with 403 in the error shape, and nothing
        is done (no account paused, no quota spent)."""
        result = await statuses(open_lb, self.REBOUND)
        pause = await open_lb.client.post(
            f"/api/accounts/{open_lb.ids['a@example.com']}/pause",
            headers=self.REBOUND,
        )
        body = await pause.json()

        assert result == dict.fromkeys(ALL_REFUSED, 403)
        assert pause.status == 403
        assert body["error"]["code"] == "forbidden_host"
        assert set(body["error"]) >= {"message", "type", "code", "param"}
        assert all(a.status == "active" for a in open_lb.pool.accounts)
        assert open_lb.emulator.requests == []

    @pytest.mark.parametrize(
        "host",
        ["localhost:2455", "LOCALHOST", "127.0.0.1", "127.0.0.5:80", "[::1]:2455"],
    )
    async def test_local_names_are_served(self, open_lb: LB, host: str) -> None:
        """localhost and loopback addresses, with any port, are local names."""
        result = await statuses(open_lb, {"Host": host})

        assert result["codex"] == result["api"] == result["metrics"] == 200

    async def test_the_bound_host_is_a_local_name(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """CODEX_LB_HOST is accepted as the Host too."""
        lb = await make_open_lb(CODEX_LB_HOST="lb.internal")

        result = await statuses(lb, {"Host": "lb.internal:2455"})

        assert result["codex"] == result["api"] == 200

    async def test_credentials_work_under_any_name(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """A caller with the admin token or a client key is not refused for
        its Host: the rule only guards what loopback alone grants."""
        lb = await make_open_lb(CODEX_LB_ADMIN_TOKEN="admin-secret-1")
        key, _ = await create_key(lb.store, "named")
        await lb.app[KEYS_KEY].load()

        api = await lb.client.get(
            "/api/accounts",
            headers={**self.REBOUND, "Authorization": "Bearer admin-secret-1"},
        )
        models = await lb.client.get(
            "/v1/models", headers={**self.REBOUND, "Authorization": f"Bearer {key}"}
        )

        assert (api.status, models.status) == (200, 200)


class TestUndecodableCredentials:
    """A credential header with bytes that are not ASCII is a wrong
    credential: 401, never a 500."""

    ROUTES = ("/api/accounts", "/metrics", "/backend-api/codex/responses")

    async def test_non_ascii_bearer_is_401(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """``Bearer été`` on the admin API, /metrics and a proxy route."""
        lb = await make_open_lb(
            CODEX_LB_ADMIN_TOKEN="admin-secret-1",
            CODEX_LB_METRICS_TOKEN="metrics-secret-1",
        )
        # A live key, so a proxy route checks the one presented.
        await create_key(lb.store, "k")
        await lb.app[KEYS_KEY].load()

        for path in self.ROUTES:
            for value in ("Bearer été", "Bearer sk-clb-été"):
                status, body = await raw_request(
                    lb, path, b"Authorization: " + value.encode() + b"\r\n", remote=True
                )
                assert status == 401, (path, value, body)
                assert json.loads(body)["error"]["code"] == "invalid_api_key"

    async def test_undecodable_bytes_are_401(
        self, make_open_lb: Callable[..., Awaitable[LB]]
    ) -> None:
        """Raw bytes that are not UTF-8 in the header: 401 on every kind."""
        lb = await make_open_lb(
            CODEX_LB_ADMIN_TOKEN="admin-secret-1",
            CODEX_LB_METRICS_TOKEN="metrics-secret-1",
        )
        # A live key, so a proxy route checks the one presented.
        await create_key(lb.store, "k")
        await lb.app[KEYS_KEY].load()

        for path in self.ROUTES:
            for value in (b"Bearer \xff\xfe", b"Bearer sk-clb-\xff\xfe\x80"):
                status, body = await raw_request(
                    lb, path, b"Authorization: " + value + b"\r\n", remote=True
                )
                assert status == 401, (path, value, body)


async def raw_request(
    lb: LB, path: str, header: bytes, remote: bool = False
) -> tuple[int, bytes]:
    """One request written byte for byte (clients refuse to send such headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lb.client.port)
    body = json.dumps(CODEX_BODY).encode()
    method = b"POST" if path.startswith("/backend-api") else b"GET"
    writer.write(
        method
        + b" "
        + path.encode()
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + (b"X-Test-Remote: 1\r\n" if remote else b"")
        + header
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest
