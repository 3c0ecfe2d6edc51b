"""An account removed while codex-lb was down loses its collector state and
series at the next start, as one removed while it ran does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from codex_lb.app import SERVER_OPTIONS, create_app
from codex_lb.config import load_settings
from codex_lb.events import EventBus
from codex_lb.events.collector_api import collector_name
from codex_lb.sim import Emulator
from codex_lb.store import open_store
from collectors import QuotaForecast, QuotaSnapshotAge, WeeklyUsage
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB, settings_env

A, B = "a@example.com", "b@example.com"
CODEX = "/backend-api/codex/responses"
BODY = {"model": "gpt-5", "input": "hi", "stream": True, "store": False}
# The collectors that remember accounts across restarts.
PERSISTENT = [collector_name(c) for c in (WeeklyUsage, QuotaForecast, QuotaSnapshotAge)]


async def state_keys(data_dir: Path) -> dict[str, set[str]]:
    """Each persistent collector's state keys as the store holds them."""
    store = await open_store(data_dir)
    try:
        return {
            name: set(await store.load_collector_state(name)) for name in PERSISTENT
        }
    finally:
        await store.close()


class TestRemovedWhileDown:
    async def test_state_and_series_are_dropped_at_start(
        self, make_lb: Any, emulator: Emulator, tmp_path: Path, aiohttp_client: Any
    ) -> None:
        """Both accounts read and remembered; B removed while stopped; after
        the restart neither /metrics nor the store knows B, and A is intact."""
        lb: LB = await make_lb(emulator)
        a, b = lb.ids[A], lb.ids[B]
        for email in (A, B):
            for account in lb.pool.accounts:
                await lb.pool.set_pinned(account, account.email == email)
            response = await lb.client.post(CODEX, json=BODY)
            await response.read()
            assert response.status == 200
        await lb.client.close()
        data_dir = tmp_path / "lb-data"
        before = await state_keys(data_dir)

        store = await open_store(data_dir)
        try:
            assert await store.remove_account(b)
        finally:
            await store.close()
        settings = load_settings(settings_env(emulator, data_dir), env_file=None)
        app = await create_app(settings, bus=EventBus(), clock=emulator.clock.now)
        server = TestServer(app)
        await server.start_server(**SERVER_OPTIONS)
        client = await aiohttp_client(server)
        text = await scrape_text(LB(client, app, emulator, lb.recorder, lb.ids))
        samples = parse(text)
        await client.close()
        after = await state_keys(data_dir)

        assert before == {name: {a, b} for name in PERSISTENT}
        assert b not in text
        assert after == {name: {a} for name in PERSISTENT}
        assert samples[("codex_lb_quota_snapshot_age_seconds", (("account_id", a),))]
        assert samples[("codex_lb_secondary_used_percent", (("account_id", a),))] > 0
