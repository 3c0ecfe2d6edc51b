"""``GET /api/keys``: keys with their request and cost totals, never the key."""

from __future__ import annotations

import pytest

from codex_lb.app import KEYS_KEY
from codex_lb.clientkeys import create_key
from tests.conftest import LB

CHAT_BODY = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}


class TestKeysApi:
    async def test_totals_per_key(self, lb: LB) -> None:
        """Each key lists its own requests, errors, tokens and cost."""
        busy, busy_row = await create_key(lb.store, "busy")
        _, idle_row = await create_key(lb.store, "idle")
        await lb.app[KEYS_KEY].load()
        for _ in range(2):
            await lb.client.post(
                "/v1/chat/completions",
                json=CHAT_BODY,
                headers={"Authorization": f"Bearer {busy}"},
            )
        await lb.client.post(
            "/v1/chat/completions",
            json={**CHAT_BODY, "model": "no-such-model"},
            headers={"Authorization": f"Bearer {busy}"},
        )
        await lb.store.revoke_api_key(idle_row.id, now=123.0)
        rows = await lb.request_logs()

        response = await lb.client.get("/api/keys")
        keys = (await response.json())["keys"]

        assert busy not in await response.text()
        assert [k["name"] for k in keys] == ["busy", "idle"]
        busy_json, idle_json = keys
        assert busy_json["id"] == busy_row.id
        assert busy_json["shown"] == busy[:11] + "..."
        assert (busy_json["requests"], busy_json["errors"]) == (3, 1)
        assert busy_json["input_tokens"] == sum(r.input_tokens or 0 for r in rows)
        assert busy_json["cost_usd"] == pytest.approx(
            sum(r.cost_usd or 0.0 for r in rows)
        )
        assert busy_json["last_request_at"] == max(r.started_at for r in rows)
        assert (idle_json["status"], idle_json["revoked_at"]) == ("revoked", 123.0)
        assert (idle_json["requests"], idle_json["cost_usd"]) == (0, 0.0)

    @pytest.mark.parametrize("since", ["yesterday", "nan", "inf", "0001-01-01"])
    async def test_bad_since_is_400(self, lb: LB, since: str) -> None:
        """A since that is no time is refused by name, as on /api/requests
        (nan once gave totals of 0)."""
        response = await lb.client.get(f"/api/keys?since={since}")

        assert response.status == 400
        assert f"since={since!r}" in (await response.json())["error"]["message"]

    async def test_since_takes_an_iso_time_too(self, lb: LB) -> None:
        response = await lb.client.get("/api/keys?since=2020-01-01T00:00:00Z")

        assert response.status == 200
