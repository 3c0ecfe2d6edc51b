"""Every error answer has the SPEC 5 shape, whoever raised it.

aiohttp's own errors (unknown route, wrong method, body over the limit) and
failures nobody planned for (a store that cannot be written, a broken part)
come back as ``{"error": {"message", "type", "code", "param"}}`` JSON, with
the same keys as the proxy's and the dashboard API's own errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from codex_lb.sim import Emulator
from tests.conftest import LB
from tests.tmpfs import fill, small_tmpfs

ERROR_KEYS = {"message", "type", "code", "param"}


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The ``error`` object of a JSON error answer with ``status``."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= ERROR_KEYS
    error: dict[str, Any] = body["error"]
    return error


class TestAiohttpErrors:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/v1/embeddings"),
            ("GET", "/api/nope"),
            ("GET", "/nothing/here"),
            ("GET", "/dashboard/nope"),
        ],
    )
    async def test_unknown_routes_are_json_404(
        self, lb: LB, method: str, path: str
    ) -> None:
        response = await lb.client.request(method, path, json={})

        error = await error_of(response, 404)
        assert error["code"] == "not_found"
        assert error["message"] == f"no route {method} {path}"
        assert error["param"] is None

    async def test_a_wrong_method_is_json_405_with_allow(self, lb: LB) -> None:
        response = await lb.client.get("/v1/chat/completions")

        error = await error_of(response, 405)
        assert error["code"] == "method_not_allowed"
        assert (
            error["message"] == "GET is not allowed on /v1/chat/completions (use POST)"
        )
        assert response.headers["Allow"] == "POST"

    async def test_an_import_over_the_body_limit_is_json_413(
        self, make_lb: Any, emulator: Emulator
    ) -> None:
        """The dashboard's upload is bounded like every body."""
        lb = await make_lb(emulator, CODEX_LB_MAX_REQUEST_BYTES="1000")
        form = aiohttp.FormData()
        form.add_field("file", b"{" + b" " * 5000 + b"}", filename="auth.json")

        response = await lb.client.post("/api/accounts/import", data=form)

        error = await error_of(response, 413)
        assert error["code"] == "request_too_large"
        assert "Maximum request body size 1000 exceeded" in error["message"]


class TestUnexpectedFailures:
    async def test_a_broken_part_is_a_logged_json_500(
        self, lb: LB, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With its store gone, the request log route answers a JSON 500."""
        await lb.store.close()

        response = await lb.client.get("/api/requests")

        error = await error_of(response, 500)
        assert (error["code"], error["type"]) == ("internal_error", "server_error")
        assert "Traceback" not in error["message"]
        assert "request_failed" in capsys.readouterr().out


class TestAccountActionsOnAFullDisk:
    @pytest.mark.parametrize("action", ["pin", "pause", "remove"])
    async def test_an_action_that_cannot_be_stored_changes_nothing(
        self, make_lb: Any, emulator: Emulator, tmp_path: Path, action: str
    ) -> None:
        """503 store_unavailable; memory and store both keep the old value."""
        with small_tmpfs(tmp_path / "lb-data", size_kb=2048) as mount:
            lb: LB = await make_lb(emulator)
            a_id = lb.ids["a@example.com"]
            # An empty WAL, so the next write needs new room on the disk.
            await lb.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
            fill(mount)
            try:
                if action == "remove":
                    response = await lb.client.delete(f"/api/accounts/{a_id}")
                else:
                    response = await lb.client.post(f"/api/accounts/{a_id}/{action}")
                error = await error_of(response, 503)
            finally:
                (mount / "filler").unlink()

            assert error["code"] == "store_unavailable"
            assert "full" in error["message"]
            account = lb.pool.get(a_id)
            assert account is not None
            assert (account.pinned, account.status) == (False, "active")
            stored = await lb.store.get_account(a_id)
            assert stored is not None
            assert (stored.pinned, stored.status) == (False, "active")

            # With room again, the same action goes through.
            if action == "remove":
                again = await lb.client.delete(f"/api/accounts/{a_id}")
            else:
                again = await lb.client.post(f"/api/accounts/{a_id}/{action}")
            assert again.status == 200, await again.text()


class TestAccountsByEmail:
    async def test_routes_take_an_email_as_the_commands_do(self, lb: LB) -> None:
        a_id = lb.ids["a@example.com"]

        read = await lb.client.get("/api/accounts/a@example.com")
        paused = await lb.client.post("/api/accounts/a@example.com/pause")

        assert read.status == 200 and (await read.json())["id"] == a_id
        assert paused.status == 200
        account = lb.pool.get(a_id)
        assert account is not None and account.status == "paused"

    async def test_an_unknown_email_is_404(self, lb: LB) -> None:
        response = await lb.client.get("/api/accounts/nobody@example.com")

        error = await error_of(response, 404)
        assert error["code"] == "account_not_found"
        assert error["message"] == ("no account with id or email 'nobody@example.com'")
