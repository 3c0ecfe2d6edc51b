"""The dashboard's JSON API against codex-lb in front of the emulator."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from codex_lb.accounts import AccountPool, TokenRefresher
from codex_lb.accounts.identity import MAX_AUTH_FILE_BYTES
from codex_lb.app import REFRESHER_KEY, SESSION_KEY
from codex_lb.events import EventBus
from codex_lb.sim import SimAccount
from codex_lb.store import open_store
from codex_lb.web.api import LOGINS_KEY
from tests.accounts.test_oauth import play_browser
from tests.conftest import LB
from tests.prometheus import free_port
from tests.proxy.test_relay import turn

CODEX = "/backend-api/codex/responses"


async def proxied(lb: LB, model: str = "gpt-5") -> None:
    response = await lb.client.post(CODEX, json=turn(model=model))
    await response.read()


async def get_json(lb: LB, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = await lb.client.get(path, **kwargs)
    assert response.status == status, await response.text()
    return await response.json()


async def post_json(lb: LB, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = await lb.client.post(path, **kwargs)
    assert response.status == status, await response.text()
    return await response.json()


def unsigned_jwt(claims: Any) -> str:
    """A JWT carrying ``claims`` (the signature is never checked on import)."""

    def part(value: Any) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


class TestReads:
    async def test_accounts_keep_the_spec_shape(self, lb: LB) -> None:
        """GET /api/accounts gives id, email, plan and status, and no token."""
        data = await get_json(lb, "/api/accounts")

        assert sorted(
            (a["id"], a["email"], a["plan"], a["status"]) for a in data["accounts"]
        ) == sorted(
            (lb.ids[e], e, "plus", "active") for e in ("a@example.com", "b@example.com")
        )
        text = json.dumps(data)
        assert "refresh" not in text and "access_token" not in text

    async def test_dashboard_totals_match_the_request_log(self, lb: LB) -> None:
        """Requests, errors and costs add up to the logged rows."""
        await proxied(lb)
        await proxied(lb)
        await proxied(lb, "gpt-5-typo")
        rows = await lb.request_logs()

        data = await get_json(lb, "/api/dashboard")

        snapshot = data["snapshot"]
        cost = sum(r.cost_usd or 0.0 for r in rows)
        for window in ("today", "this_week", "last_hour"):
            assert snapshot[window]["requests"] == 3
            assert snapshot[window]["errors"] == 1
            assert abs(snapshot[window]["cost_usd"] - cost) < 1e-9
        assert abs(snapshot["last_hour"]["error_rate"] - 0.3333) < 1e-9
        by_id = {a["id"]: a for a in data["accounts"]}
        for account_id in lb.ids.values():
            mine = [r for r in rows if r.account_id == account_id]
            assert by_id[account_id]["requests_24h"] == len(mine)
            assert (
                abs(
                    by_id[account_id]["cost_24h_usd"]
                    - sum(r.cost_usd or 0 for r in mine)
                )
                < 1e-6
            )
        assert data["grafana_url"] is None

    async def test_remaining_credits_follow_the_weekly_reading(self, lb: LB) -> None:
        """Remaining credits are 7 560 x (1 - weekly used / 100) for plus."""
        lb.emulator.set_usage("a@example.com", secondary=25.0)
        lb.emulator.set_usage("b@example.com", secondary=25.0)
        await proxied(lb)

        accounts = (await get_json(lb, "/api/dashboard"))["accounts"]

        served = next(a for a in accounts if a["secondary_used_percent"] is not None)
        used = served["secondary_used_percent"]
        assert 25.0 <= used < 26.0
        assert served["remaining_weekly_credits"] == round(7560 * (1 - used / 100), 2)


class TestRequestLog:
    async def test_pages_newest_first(self, lb: LB) -> None:
        """Five rows in pages of two: 5 4 / 3 2 / 1, with has_more right."""
        for _ in range(5):
            await proxied(lb)
        ids = [r.request_id for r in reversed(await lb.request_logs())]

        pages = [
            await get_json(lb, f"/api/requests?limit=2&offset={offset}")
            for offset in (0, 2, 4)
        ]

        assert [[r["request_id"] for r in p["requests"]] for p in pages] == [
            ids[0:2],
            ids[2:4],
            ids[4:5],
        ]
        assert [p["has_more"] for p in pages] == [True, True, False]

    async def test_filters(self, lb: LB) -> None:
        """Account, model, status and time filters each narrow the rows."""
        await proxied(lb, "gpt-5")
        await proxied(lb, "gpt-5-mini")
        await proxied(lb, "gpt-5-typo")
        rows = await lb.request_logs()
        middle = rows[1].started_at

        def ids(data: Any) -> list[str]:
            return [r["request_id"] for r in data["requests"]]

        by_model = await get_json(lb, "/api/requests?model=gpt-5-mini")
        errors = await get_json(lb, "/api/requests?status=error")
        since = await get_json(lb, f"/api/requests?since={middle}")
        until = await get_json(lb, f"/api/requests?until={middle}")
        account = rows[0].account_id
        by_account = await get_json(lb, f"/api/requests?account={account}")

        assert ids(by_model) == [rows[1].request_id]
        assert ids(errors) == [rows[2].request_id]
        assert errors["requests"][0]["error_code"] == rows[2].error_code
        assert ids(since) == [rows[2].request_id, rows[1].request_id]
        assert ids(until) == [rows[0].request_id]
        assert ids(by_account) == [
            r.request_id for r in reversed(rows) if r.account_id == account
        ]
        assert by_model["models"] == ["gpt-5", "gpt-5-mini", "gpt-5-typo"]

    async def test_iso_times_are_accepted(self, lb: LB) -> None:
        """since accepts ISO 8601 with a zone as well as epoch seconds."""
        await proxied(lb)
        await lb.request_logs()

        data = await get_json(lb, "/api/requests?since=2099-01-01T00:00:00Z")

        assert data["requests"] == []

    async def test_bad_parameters_name_the_value(self, lb: LB) -> None:
        """A bad status, limit or time is a 400 that names what was wrong."""
        status = await get_json(lb, "/api/requests?status=ok", status=400)
        limit = await get_json(lb, "/api/requests?limit=0", status=400)
        since = await get_json(lb, "/api/requests?since=yesterday", status=400)

        assert status["error"]["message"] == (
            "status='ok' is not one of success, error"
        )
        assert limit["error"]["message"] == (
            "limit='0' must be an integer from 1 to 500"
        )
        assert since["error"]["message"] == (
            "since='yesterday' is neither epoch seconds nor an ISO 8601 time"
        )

    @pytest.mark.parametrize("value", ["%D9%A3", "3_0", "%203", "-1", "1e2"])
    async def test_a_limit_must_be_ascii_digits(self, lb: LB, value: str) -> None:
        """int() reads an Arabic-Indic 3, underscores and spaces; the API
        does not."""
        data = await get_json(lb, f"/api/requests?limit={value}", status=400)

        assert data["error"]["message"].endswith("must be an integer from 1 to 500")

    @pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31T23:59:59-23:59"])
    async def test_a_time_at_the_edge_of_the_calendar_is_400(
        self, lb: LB, value: str
    ) -> None:
        """A valid ISO date that no epoch time can hold is refused, named."""
        data = await get_json(lb, f"/api/requests?since={value}", status=400)

        assert data["error"]["message"].startswith(f"since={value!r}")


class TestActions:
    async def test_pause_takes_effect_for_routing_at_once(self, lb: LB) -> None:
        """After POST pause, every request goes to the other account."""
        a_id, b_id = lb.ids["a@example.com"], lb.ids["b@example.com"]

        paused = await post_json(lb, f"/api/accounts/{a_id}/pause")
        for _ in range(3):
            await proxied(lb)

        assert paused["status"] == "paused"
        assert [r.account_id for r in await lb.request_logs()] == [b_id] * 3
        assert (await lb.store.get_account(a_id)).status == "paused"  # type: ignore[union-attr]

    async def test_resume_pin_unpin(self, lb: LB) -> None:
        """Resume, pin and unpin answer with the changed account."""
        a_id = lb.ids["a@example.com"]
        await post_json(lb, f"/api/accounts/{a_id}/pause")

        resumed = await post_json(lb, f"/api/accounts/{a_id}/resume")
        pinned = await post_json(lb, f"/api/accounts/{a_id}/pin")
        pinned_in_store = (await lb.store.get_account(a_id)).pinned  # type: ignore[union-attr]
        unpinned = await post_json(lb, f"/api/accounts/{a_id}/unpin")

        assert resumed["status"] == "active"
        assert (pinned["pinned"], pinned_in_store, unpinned["pinned"]) == (
            True,
            True,
            False,
        )

    async def test_resume_refuses_an_account_that_is_not_paused(self, lb: LB) -> None:
        """Resume ends a pause, nothing else: 409 for an active, a benched and
        a re-auth account, each left as it was (SPEC 5: nothing but a fresh
        reading shortens a bench)."""
        a = lb.pool.get(lb.ids["a@example.com"])
        b = lb.pool.get(lb.ids["b@example.com"])
        assert a is not None and b is not None
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        c_id = (
            await post_json(
                lb, "/api/accounts/import", json=lb.emulator.auth_json("c@example.com")
            )
        )["imported"][0]["id"]
        c = lb.pool.get(c_id)
        assert c is not None
        until = lb.pool.now() + 3600
        await lb.pool.bench(b, "rate_limited", "usage_limit_reached", until)
        await lb.pool.require_reauth(c, "refresh_token_reused")

        refusals = [
            await post_json(lb, f"/api/accounts/{x.id}/resume", status=409)
            for x in (a, b, c)
        ]

        assert [r["error"]["code"] for r in refusals] == ["account_not_paused"] * 3
        assert refusals[1]["error"]["type"] == "invalid_request_error"
        assert refusals[1]["error"]["message"].startswith(
            f"cannot resume {b.id}: the account is not paused (it is rate_limited "
            "until "
        )
        assert [x.status for x in (a, b, c)] == [
            "active",
            "rate_limited",
            "reauth_required",
        ]
        assert (b.status_until, c.status_reason) == (until, "refresh_token_reused")
        stored = {r.id: r.status for r in await lb.store.list_accounts()}
        assert (stored[b.id], stored[c.id]) == ("rate_limited", "reauth_required")

    async def test_resume_returns_a_paused_account_to_its_bench(self, lb: LB) -> None:
        """Pausing a benched account and resuming it keeps the bench; routing
        still avoids it until the bench ends."""
        a_id, b_id = lb.ids["a@example.com"], lb.ids["b@example.com"]
        a = lb.pool.get(a_id)
        assert a is not None
        until = lb.pool.now() + 3600
        await lb.pool.bench(a, "rate_limited", "usage_limit_reached", until)

        paused = await post_json(lb, f"/api/accounts/{a_id}/pause")
        resumed = await post_json(lb, f"/api/accounts/{a_id}/resume")
        await proxied(lb)

        assert (paused["status"], paused["status_until"]) == ("paused", None)
        assert (resumed["status"], resumed["status_until"]) == ("rate_limited", until)
        assert resumed["status_reason"] == "usage_limit_reached"
        assert [r.account_id for r in await lb.request_logs()] == [b_id]

    async def test_pause_refuses_an_account_needing_a_login(self, lb: LB) -> None:
        """A re-auth account serves nothing; pausing it would hide why."""
        a_id = lb.ids["a@example.com"]
        await lb.pool.require_reauth(lb.pool.get(a_id), "invalid_grant")  # type: ignore[arg-type]

        data = await post_json(lb, f"/api/accounts/{a_id}/pause", status=409)

        assert data["error"]["code"] == "account_needs_login"
        assert lb.pool.get(a_id).status == "reauth_required"  # type: ignore[union-attr]

    async def test_remove(self, lb: LB) -> None:
        """DELETE removes the account from routing and the store."""
        a_id = lb.ids["a@example.com"]

        response = await lb.client.delete(f"/api/accounts/{a_id}")

        assert await response.json() == {"removed": a_id}
        assert lb.pool.get(a_id) is None
        assert await lb.store.get_account(a_id) is None

    async def test_of_removals_at_once_one_removes(self, lb: LB) -> None:
        """Five DELETEs of one account at once: one 200, four 404s (all five
        once said they had removed it)."""
        a_id = lb.ids["a@example.com"]

        answers = await asyncio.gather(
            *(lb.client.delete(f"/api/accounts/{a_id}") for _ in range(5))
        )

        assert sorted(a.status for a in answers) == [200, 404, 404, 404, 404]
        assert lb.pool.get(a_id) is None
        assert await lb.store.get_account(a_id) is None
        assert [a.id for a in lb.pool.accounts] == [lb.ids["b@example.com"]]

    async def test_unknown_account_is_404(self, lb: LB) -> None:
        """An action on an unknown id names the id."""
        data = await post_json(lb, "/api/accounts/acc_nope/pause", status=404)

        assert data["error"]["code"] == "account_not_found"
        assert data["error"]["message"] == "no account with id or email 'acc_nope'"

    async def test_cross_site_actions_are_refused(self, lb: LB) -> None:
        """A browser post from another site changes nothing."""
        a_id = lb.ids["a@example.com"]

        data = await post_json(
            lb,
            f"/api/accounts/{a_id}/pause",
            status=403,
            headers={"Origin": "http://evil.example"},
        )

        assert data["error"]["code"] == "cross_site_request"
        assert lb.pool.get(a_id).status == "active"  # type: ignore[union-attr]


class TestImport:
    async def test_json_body_adds_then_updates(self, lb: LB) -> None:
        """A new auth.json adds an account; the same one again updates tokens."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        document = lb.emulator.auth_json("c@example.com")

        first = await post_json(lb, "/api/accounts/import", json=document)
        again = await post_json(lb, "/api/accounts/import", json=document)

        (added,) = first["imported"]
        assert (added["email"], added["plan"], added["new"]) == (
            "c@example.com",
            "plus",
            True,
        )
        assert again["imported"][0] == {**added, "new": False}
        assert added["tokens_kept"] is False
        assert lb.pool.get(added["id"]).status == "active"  # type: ignore[union-attr]

    async def test_multipart_files(self, lb: LB) -> None:
        """Every file part of a form is one auth.json."""
        for email in ("c@example.com", "d@example.com"):
            lb.emulator.add_account(SimAccount.make(email))
        form = aiohttp.FormData()
        for email in ("c@example.com", "d@example.com"):
            form.add_field(
                "auth_json",
                json.dumps(lb.emulator.auth_json(email)).encode(),
                filename=f"{email}.json",
                content_type="application/json",
            )

        data = await post_json(lb, "/api/accounts/import", data=form)

        assert [a["email"] for a in data["imported"]] == [
            "c@example.com",
            "d@example.com",
        ]
        assert len(lb.pool.accounts) == 4

    async def test_an_older_auth_json_keeps_the_rotated_tokens(
        self, lb: LB, tmp_path: Path
    ) -> None:
        """The auth.json a@ was imported from, uploaded again after codex-lb
        rotated a@'s refresh token: the live token stays (in memory and in
        the store), the answer says so, and a@ still refreshes (no
        refresh_token_reused after a restart)."""
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        original = json.loads(
            (tmp_path / "auth" / "a@example.com" / "auth.json").read_text()
        )
        lb.emulator.clock.advance(60)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        rotated = await refresher.refresh(a, a.tokens)

        data = await post_json(lb, "/api/accounts/import", json=original)

        (report,) = data["imported"]
        assert (report["id"], report["new"], report["tokens_kept"]) == (
            a.id,
            False,
            True,
        )
        stored = await lb.store.get_account(a.id)
        assert stored is not None
        assert stored.tokens.refresh_token == rotated.refresh_token
        assert a.tokens.refresh_token == rotated.refresh_token
        restarted = await open_store(tmp_path / "lb-data")
        try:
            reborn = AccountPool(restarted, EventBus(), clock=lb.pool.now)
            await reborn.load()
            again = reborn.get(a.id)
            assert again is not None
            fresh = await TokenRefresher(
                reborn,
                lb.app[SESSION_KEY],
                lb.emulator.auth_base_url,
                refresh_age_seconds=8 * 86400,
            ).refresh(again, again.tokens)
        finally:
            await restarted.close()
        assert again.status == "active"
        assert fresh.refresh_token == lb.emulator.account("a@example.com").refresh_token

    async def test_an_older_file_revives_an_account_needing_a_login(
        self, lb: LB
    ) -> None:
        """For a re-auth account any login is worth trying: the file's tokens
        replace the refused ones in the store and in routing."""
        a = lb.pool.get(lb.ids["a@example.com"])
        assert a is not None
        lb.emulator.clock.advance(60)
        refresher: TokenRefresher = lb.app[REFRESHER_KEY]
        await refresher.refresh(a, a.tokens)
        await lb.pool.require_reauth(a, "refresh_token_reused")
        sim = lb.emulator.account("a@example.com")
        lb.emulator.tokens.issue(sim, lb.emulator.clock.now())
        document = lb.emulator.auth_json("a@example.com")
        document["last_refresh"] = "2020-01-01T00:00:00Z"
        await lb.pool.pause(lb.pool.get(lb.ids["b@example.com"]))  # type: ignore[arg-type]

        data = await post_json(lb, "/api/accounts/import", json=document)
        in_memory = (a.status, a.tokens.refresh_token)
        await proxied(lb)

        assert data["imported"][0]["tokens_kept"] is False
        assert in_memory == ("active", document["tokens"]["refresh_token"])
        (row,) = await lb.request_logs()
        assert (row.account_id, row.status) == (a.id, "success")

    async def test_a_bad_file_adds_nothing(self, lb: LB) -> None:
        """One bad file in a batch refuses the batch, naming the file."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        form = aiohttp.FormData()
        form.add_field(
            "auth_json",
            json.dumps(lb.emulator.auth_json("c@example.com")).encode(),
            filename="good.json",
        )
        form.add_field("auth_json", b"{not json", filename="bad.json")

        data = await post_json(lb, "/api/accounts/import", status=400, data=form)

        assert data["error"]["code"] == "invalid_auth_file"
        assert data["error"]["message"].startswith("bad.json: not JSON:")
        assert len(lb.pool.accounts) == 2

    @pytest.mark.parametrize(
        "claims",
        [
            {"chatgpt_account_id": ["x", 1], "chatgpt_plan_type": "plus"},
            {"chatgpt_account_id": 12345},
            {"chatgpt_account_id": ""},
            {"chatgpt_account_id": "acc\nnext"},
            {"chatgpt_account_id": "a" * 300},
            "not an object",
        ],
        ids=["list", "number", "empty", "newline", "300-chars", "claim-a-text"],
    )
    async def test_a_file_with_a_bad_account_id_adds_nothing(
        self, lb: LB, claims: Any
    ) -> None:
        """An id that no account has refuses the batch before anything is
        stored (a list once reached the store after the good file was in)."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        bad = {
            "tokens": {
                "id_token": unsigned_jwt(
                    {"email": "w@x", "https://api.openai.com/auth": claims}
                ),
                "access_token": "opaque-access",
                "refresh_token": "opaque-refresh",
            }
        }
        form = aiohttp.FormData()
        form.add_field(
            "auth_json",
            json.dumps(lb.emulator.auth_json("c@example.com")).encode(),
            filename="good.json",
        )
        form.add_field("auth_json", json.dumps(bad).encode(), filename="bad.json")

        data = await post_json(lb, "/api/accounts/import", status=400, data=form)
        listed = await get_json(lb, "/api/accounts")

        assert data["error"]["code"] == "invalid_auth_file"
        assert data["error"]["message"] == (
            "bad.json: no ChatGPT account id in tokens or id token"
        )
        assert len(listed["accounts"]) == 2

    @pytest.mark.parametrize(
        "tokens",
        [
            {"id_token": 5},
            {"id_token": unsigned_jwt({"email": 7, "exp": 1e999})},
            {"id_token": unsigned_jwt({"https://api.openai.com/profile": []})},
        ],
        ids=["id-token-a-number", "email-a-number", "profile-a-list"],
    )
    async def test_claims_of_the_wrong_type_are_left_out(
        self, lb: LB, tokens: dict[str, Any]
    ) -> None:
        """A claim of the wrong type is ignored, never a 500: with the id
        given beside the tokens the file is taken, named by that id."""
        document = {
            "tokens": {
                **tokens,
                "access_token": "opaque-access",
                "refresh_token": "opaque-refresh",
                "account_id": "acct-typed",
            }
        }

        data = await post_json(lb, "/api/accounts/import", json=document)

        (imported,) = data["imported"]
        assert (imported["email"], imported["plan"]) == ("acct-typed", "unknown")

    async def test_a_login_without_an_email_is_shown_by_its_codex_lb_id(
        self, lb: LB
    ) -> None:
        """With no email claim the account is listed under its ChatGPT account
        id, which /metrics never shows (SPEC 7): its display there is
        codex-lb's own id."""
        chatgpt_id = "11111111-2222-3333-4444-555555555555"
        document = {
            "tokens": {
                "id_token": unsigned_jwt(
                    {"https://api.openai.com/auth": {"chatgpt_account_id": chatgpt_id}}
                ),
                "access_token": "opaque-access",
                "refresh_token": "opaque-refresh",
            }
        }

        data = await post_json(lb, "/api/accounts/import", json=document)
        response = await lb.client.get("/metrics")
        metrics = await response.text()

        (imported,) = data["imported"]
        assert imported["email"] == chatgpt_id
        assert chatgpt_id not in metrics
        assert (
            f'codex_lb_account_identity{{account_id="{imported["id"]}",'
            f'display="{imported["id"]}"}} 1'
        ) in metrics

    async def test_an_upload_that_is_no_form_is_400(self, lb: LB) -> None:
        response = await lb.client.post(
            "/api/accounts/import",
            data=b"xx",
            headers={"Content-Type": "multipart/form-data"},
        )

        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_request_error"

    async def test_a_body_that_is_no_utf8_is_400(self, lb: LB) -> None:
        response = await lb.client.post(
            "/api/accounts/import",
            data=b"\xff\xfe{}",
            headers={"Content-Type": "application/json"},
        )

        assert response.status == 400
        assert "UTF-8" in (await response.json())["error"]["message"]

    async def test_a_file_larger_than_any_auth_json_is_refused(self, lb: LB) -> None:
        form = aiohttp.FormData()
        big = io.BytesIO(b" " * (MAX_AUTH_FILE_BYTES + 1))
        form.add_field("auth_json", big, filename="big")

        data = await post_json(lb, "/api/accounts/import", status=400, data=form)

        assert data["error"]["code"] == "invalid_auth_file"
        assert "larger than" in data["error"]["message"]


async def login_outcome(lb: LB, flow_id: str) -> Any:
    """Poll a login until it ends (the device flow polls once a second)."""
    for _ in range(100):
        flow = await get_json(lb, f"/api/logins/{flow_id}")
        if flow["status"] not in ("starting", "waiting"):
            return flow
        await asyncio.sleep(0.1)
    raise AssertionError(f"login {flow_id} still {flow['status']}")


class TestLogins:
    async def test_reauth_by_device_code(self, lb: LB) -> None:
        """Re-auth shows a code; once approved the account is active again."""
        a_id = lb.ids["a@example.com"]
        await lb.pool.require_reauth(lb.pool.get(a_id), "invalid_grant")  # type: ignore[arg-type]

        started = await post_json(
            lb, f"/api/accounts/{a_id}/reauth", status=202, json={"mode": "device"}
        )
        lb.emulator.approve_device(started["user_code"], "a@example.com")
        flow = await login_outcome(lb, started["id"])

        assert (started["status"], started["account_id"]) == ("waiting", a_id)
        assert (
            started["verification_url"] == lb.emulator.auth_base_url + "/codex/device"
        )
        assert (flow["status"], flow["email"], flow["result_account_id"]) == (
            "complete",
            "a@example.com",
            a_id,
        )
        assert lb.pool.get(a_id).status == "active"  # type: ignore[union-attr]
        await proxied(lb)
        assert len(await lb.request_logs()) == 1

    async def test_new_account_by_device_code(self, lb: LB) -> None:
        """A login from the dashboard adds an account the pool did not have."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))

        started = await post_json(lb, "/api/logins", status=202, json={})
        lb.emulator.approve_device(started["user_code"], "c@example.com")
        flow = await login_outcome(lb, started["id"])

        assert (flow["status"], flow["email"]) == ("complete", "c@example.com")
        assert sorted(a.email for a in lb.pool.accounts) == [
            "a@example.com",
            "b@example.com",
            "c@example.com",
        ]

    async def test_reauth_approved_as_another_account_says_so(self, lb: LB) -> None:
        """Re-auth of a@ approved as b@: the login does not report success,
        names who signed in, and a@ still needs its login."""
        a_id = lb.ids["a@example.com"]
        await lb.pool.require_reauth(lb.pool.get(a_id), "invalid_grant")  # type: ignore[arg-type]

        started = await post_json(
            lb, f"/api/accounts/{a_id}/reauth", status=202, json={"mode": "device"}
        )
        lb.emulator.approve_device(started["user_code"], "b@example.com")
        flow = await login_outcome(lb, started["id"])

        assert (flow["status"], flow["email"], flow["result_account_id"]) == (
            "failed",
            "b@example.com",
            None,
        )
        assert flow["error"].startswith(
            "signed in as another account (b@example.com), not a@example.com"
        )
        assert lb.pool.get(a_id).status == "reauth_required"  # type: ignore[union-attr]

    async def test_browser_login_end_to_end(self, lb: LB) -> None:
        """Browser mode from the dashboard API: the sign-in page sends the
        browser back to codex-lb's callback, and the account is added."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        lb.emulator.login_email = "c@example.com"
        lb.app[LOGINS_KEY].callback_port = free_port()

        started = await post_json(
            lb, "/api/logins", status=202, json={"mode": "browser"}
        )
        status, page = await play_browser(started["verification_url"])
        flow = await login_outcome(lb, started["id"])

        assert (status, "Signed in" in page) == (200, True)
        assert (flow["status"], flow["email"]) == ("complete", "c@example.com")
        c = lb.pool.get(flow["result_account_id"])
        assert c is not None and c.email == "c@example.com"

    async def test_a_new_browser_login_replaces_a_waiting_one(self, lb: LB) -> None:
        """The callback port is held by a login still waiting: starting
        another one (a retry) cancels it instead of failing with 502."""
        lb.app[LOGINS_KEY].callback_port = free_port()

        first = await post_json(lb, "/api/logins", status=202, json={"mode": "browser"})
        second = await post_json(
            lb, "/api/logins", status=202, json={"mode": "browser"}
        )
        await play_browser(second["verification_url"])
        replaced = await get_json(lb, f"/api/logins/{first['id']}")
        done = await login_outcome(lb, second["id"])

        assert (replaced["status"], replaced["error"]) == (
            "cancelled",
            "replaced by a newer browser login",
        )
        assert done["status"] == "complete"

    async def test_cancel_frees_the_callback_port(self, lb: LB) -> None:
        """DELETE gives a waiting login up and stops its callback server; a
        login that ended cannot be cancelled; an unknown one is 404."""
        port = free_port()
        lb.app[LOGINS_KEY].callback_port = port
        started = await post_json(
            lb, "/api/logins", status=202, json={"mode": "browser"}
        )

        response = await lb.client.delete(f"/api/logins/{started['id']}")
        cancelled = await response.json()
        again = await lb.client.delete(f"/api/logins/{started['id']}")
        unknown = await lb.client.delete("/api/logins/login_nope")

        assert response.status == 200
        assert (cancelled["status"], cancelled["error"]) == (
            "cancelled",
            "cancelled by the operator",
        )
        assert (again.status, (await again.json())["error"]["code"]) == (
            409,
            "login_finished",
        )
        assert unknown.status == 404
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

    async def test_bad_mode(self, lb: LB) -> None:
        """A mode other than device or browser is refused by name."""
        data = await post_json(lb, "/api/logins", status=400, json={"mode": "fax"})

        assert data["error"]["message"] == (
            "login mode 'fax' is not one of device, browser"
        )

    async def test_unknown_login(self, lb: LB) -> None:
        """Polling a login that does not exist is a 404."""
        data = await get_json(lb, "/api/logins/login_nope", status=404)

        assert data["error"]["code"] == "login_not_found"


class TestRemoteAccess:
    ENV = {
        "CODEX_LB_TRUSTED_PROXIES": "127.0.0.1/32",
        "CODEX_LB_ADMIN_TOKEN": "admin-secret",
    }
    REMOTE = {"X-Forwarded-For": "203.0.113.7"}

    async def test_remote_needs_the_admin_token(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """From a remote address the API and pages need the token (SPEC 8)."""
        lb = await make_lb(emulator, **self.ENV)

        api = await lb.client.get("/api/dashboard", headers=self.REMOTE)
        page = await lb.client.get("/dashboard/accounts", headers=self.REMOTE)
        good = await lb.client.get(
            "/api/dashboard",
            headers={**self.REMOTE, "Authorization": "Bearer admin-secret"},
        )

        assert (api.status, page.status, good.status) == (401, 401, 200)
        assert "a@example.com" not in await api.text()

    async def test_login_form_sets_the_cookie(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """The login form takes the token once; the cookie then opens the pages."""
        lb = await make_lb(emulator, **self.ENV)

        form = await lb.client.get("/dashboard/login", headers=self.REMOTE)
        wrong = await lb.client.post(
            "/dashboard/login",
            data={"token": "guess"},
            headers=self.REMOTE,
            allow_redirects=False,
        )
        right = await lb.client.post(
            "/dashboard/login",
            data={"token": "admin-secret"},
            headers=self.REMOTE,
            allow_redirects=False,
        )
        after = await lb.client.get("/api/accounts", headers=self.REMOTE)

        assert form.status == 200
        assert (wrong.status, wrong.headers["Location"]) == (
            303,
            "/dashboard/login?failed=1",
        )
        assert (right.status, right.headers["Location"]) == (303, "/dashboard")
        cookie = right.cookies["codex_lb_admin"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert after.status == 200

    async def test_a_malformed_login_form_is_a_failed_login(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """The login route is open to anyone: garbage is a failed login, not
        a 500."""
        lb = await make_lb(emulator, **self.ENV)

        answer = await lb.client.post(
            "/dashboard/login",
            data=b"garbage",
            headers={**self.REMOTE, "Content-Type": "multipart/form-data; boundary=x"},
            allow_redirects=False,
        )

        assert (answer.status, answer.headers["Location"]) == (
            303,
            "/dashboard/login?failed=1",
        )
