"""The dashboard's JSON API against codex-lb in front of the emulator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from codex_lb.sim import SimAccount
from tests.conftest import LB
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

    async def test_remove(self, lb: LB) -> None:
        """DELETE removes the account from routing and the store."""
        a_id = lb.ids["a@example.com"]

        response = await lb.client.delete(f"/api/accounts/{a_id}")

        assert await response.json() == {"removed": a_id}
        assert lb.pool.get(a_id) is None
        assert await lb.store.get_account(a_id) is None

    async def test_unknown_account_is_404(self, lb: LB) -> None:
        """An action on an unknown id names the id."""
        data = await post_json(lb, "/api/accounts/acc_nope/pause", status=404)

        assert data["error"]["code"] == "account_not_found"
        assert data["error"]["message"] == "no account with id 'acc_nope'"

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
