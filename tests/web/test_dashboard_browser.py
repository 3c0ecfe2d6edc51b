"""The dashboard in a real browser: Debian's chromium driven by Playwright.

codex-lb runs in front of the emulator on loopback; the browser loads its
pages, acts on accounts, and each test saves a screenshot of its page under
``test-artifacts/`` to be looked at.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from codex_lb.sim import SimAccount
from codex_lb.store import RequestLogRow
from tests.conftest import LB
from tests.proxy.test_relay import turn

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CODEX = "/backend-api/codex/responses"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (make chromium)",
)


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A fresh page in headless chromium; never a browser Playwright downloads."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(10_000)
            yield page
        finally:
            await browser.close()


async def open_page(page: Any, lb: LB, path: str) -> None:
    await page.goto(str(lb.client.make_url(path)))
    await page.wait_for_selector("body[data-loaded=true]")


async def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


async def proxied_request(lb: LB, model: str = "gpt-5") -> None:
    response = await lb.client.post(CODEX, json=turn(model=model))
    await response.read()


async def served_by(lb: LB) -> list[str | None]:
    """The account of each logged request, oldest first (flushes the buffer)."""
    return [row.account_id for row in await lb.request_logs()]


def row(page: Any, email: str) -> Any:
    return page.locator(f'#accounts-table tbody tr[data-email="{email}"]')


class TestOverviewPage:
    async def test_shows_the_pool_snapshot(self, lb: LB, page: Any) -> None:
        """The overview shows status counts, requests and cost from the API."""
        lb.emulator.set_usage("a@example.com", primary=40.0, secondary=62.0)
        lb.emulator.set_usage("b@example.com", primary=10.0, secondary=30.0)
        await proxied_request(lb)
        await proxied_request(lb)
        await lb.request_logs()
        await lb.pool.pause(lb.pool.get(lb.ids["b@example.com"]))  # type: ignore[arg-type]
        await lb.store.add_api_key("ci runner", "0" * 64, "sk-clb-abcd")

        await open_page(page, lb, "/dashboard")
        await page.locator("#keys-section").wait_for()

        active = page.locator('#statuses [data-status="active"] .value')
        paused = page.locator('#statuses [data-status="paused"] .value')
        assert await active.inner_text() == "1"
        assert await paused.inner_text() == "1"
        cards = await page.locator("#cards").inner_text()
        assert "REQUESTS LAST HOUR\n2\n0 errors" in cards
        assert await page.locator("#grafana-link").is_hidden()
        key_row = await page.locator("#keys-table tbody td").all_inner_texts()
        assert key_row[:4] == ["ci runner", "sk-clb-abcd...", "active", "0"]
        await screenshot(page, "dashboard-overview.png")

    async def test_links_to_grafana_when_configured(
        self, make_lb: Any, emulator: Any, page: Any
    ) -> None:
        """With CODEX_LB_GRAFANA_URL set, the header links to it."""
        lb = await make_lb(
            emulator, CODEX_LB_GRAFANA_URL="http://grafana.test:3000/d/x"
        )

        await open_page(page, lb, "/dashboard")

        link = page.locator("#grafana-link")
        assert await link.is_visible()
        assert await link.get_attribute("href") == "http://grafana.test:3000/d/x"


class TestAccountsPage:
    async def test_pause_changes_status_and_routing_avoids_the_account(
        self, lb: LB, page: Any
    ) -> None:
        """Pausing a@ in the page shows it paused and sends every request to b@."""
        a_id, b_id = lb.ids["a@example.com"], lb.ids["b@example.com"]
        await open_page(page, lb, "/dashboard/accounts")

        await row(page, "a@example.com").locator("button[data-action=pause]").click()
        await row(page, "a@example.com").locator(".badge.paused").wait_for()

        assert lb.pool.get(a_id).status == "paused"  # type: ignore[union-attr]
        for _ in range(3):
            await proxied_request(lb)
        assert await served_by(lb) == [b_id, b_id, b_id]
        why = await row(page, "a@example.com").locator(".why").inner_text()
        assert why == "paused by operator"
        await page.reload()
        await page.wait_for_selector("body[data-loaded=true]")
        b_requests = await row(page, "b@example.com").locator("td").nth(6).inner_text()
        assert b_requests.endswith("3 req")
        await screenshot(page, "dashboard-accounts-paused.png")

        await row(page, "a@example.com").locator("button[data-action=resume]").click()
        await row(page, "a@example.com").locator(".badge.active").wait_for()
        assert lb.pool.get(a_id).status == "active"  # type: ignore[union-attr]

    async def test_each_status_offers_only_its_actions(self, lb: LB, page: Any) -> None:
        """A benched account offers Pause (not Resume), one needing a login
        only Re-auth; pausing the benched one offers Resume, which returns
        it to its bench, not to active."""
        a = lb.pool.get(lb.ids["a@example.com"])
        b = lb.pool.get(lb.ids["b@example.com"])
        assert a is not None and b is not None
        until = lb.pool.now() + 3600
        await lb.pool.bench(a, "rate_limited", "usage_limit_reached", until)
        await lb.pool.require_reauth(b, "refresh_token_reused")
        await open_page(page, lb, "/dashboard/accounts")

        def actions(email: str) -> Any:
            return (
                row(page, email)
                .locator("td.actions button")
                .evaluate_all("buttons => buttons.map(b => b.dataset.action)")
            )

        benched = await actions("a@example.com")
        needs_login = await actions("b@example.com")
        await row(page, "a@example.com").locator("button[data-action=pause]").click()
        await row(page, "a@example.com").locator(".badge.paused").wait_for()
        paused = await actions("a@example.com")
        why = await row(page, "a@example.com").locator(".why").inner_text()
        await screenshot(page, "dashboard-accounts-actions.png")
        await row(page, "a@example.com").locator("button[data-action=resume]").click()
        await row(page, "a@example.com").locator(".badge.rate_limited").wait_for()

        assert benched == ["pause", "pin", "remove"]
        assert needs_login == ["re-auth", "pin", "remove"]
        assert paused == ["resume", "pin", "remove"]
        assert why.startswith("paused by operator · rate limited beneath, back in ")
        assert (a.status, a.status_until) == ("rate_limited", until)
        assert b.status == "reauth_required"

    async def test_pin_and_sort(self, lb: LB, page: Any) -> None:
        """Pinning b@ routes to it first; sorting by pinned puts it last then first."""
        b_id = lb.ids["b@example.com"]
        await open_page(page, lb, "/dashboard/accounts")

        await row(page, "b@example.com").locator("button[data-action=pin]").click()
        await row(page, "b@example.com").locator("button[data-action=unpin]").wait_for()
        await proxied_request(lb)
        await page.locator("th[data-sort=pinned]").click()
        ascending = await page.locator("#accounts-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.email)"
        )
        await page.locator("th[data-sort=pinned]").click()
        descending = await page.locator("#accounts-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.email)"
        )

        assert await served_by(lb) == [b_id]
        assert ascending == ["a@example.com", "b@example.com"]
        assert descending == ["b@example.com", "a@example.com"]

    async def test_remove_asks_first(self, lb: LB, page: Any) -> None:
        """Remove opens a confirmation; cancel keeps the account, confirm drops it."""
        a_id = lb.ids["a@example.com"]
        await open_page(page, lb, "/dashboard/accounts")

        await row(page, "a@example.com").locator("button[data-action=remove]").click()
        dialog = page.locator("#confirm-dialog")
        await dialog.wait_for()
        text = await page.locator("#confirm-text").inner_text()
        await screenshot(page, "dashboard-remove-confirm.png")
        await dialog.locator("button[value=cancel]").click()
        kept = lb.pool.get(a_id) is not None
        await row(page, "a@example.com").locator("button[data-action=remove]").click()
        await dialog.locator("button[value=ok]").click()
        await row(page, "a@example.com").wait_for(state="detached")

        assert text.startswith(f"Remove a@example.com ({a_id}) from the pool?")
        assert kept
        assert lb.pool.get(a_id) is None
        assert await lb.store.get_account(a_id) is None

    async def test_import_auth_json_adds_a_new_account(
        self, lb: LB, page: Any, tmp_path: Path
    ) -> None:
        """Uploading c@'s auth.json adds c@ to the table and to routing."""
        lb.emulator.add_account(SimAccount.make("c@example.com"))
        paths = lb.emulator.write_auth_files(tmp_path / "upload")
        c_file = next(p for p in paths if p.parent.name == "c@example.com")
        await open_page(page, lb, "/dashboard/accounts")

        await page.locator("#import-file").set_input_files(str(c_file))
        await row(page, "c@example.com").wait_for()

        notice = await page.locator("#notice").inner_text()
        assert notice == "Imported c@example.com (new)"
        emails = sorted(a.email for a in lb.pool.accounts)
        assert emails == ["a@example.com", "b@example.com", "c@example.com"]
        c = next(a for a in lb.pool.accounts if a.email == "c@example.com")
        for other in ("a@example.com", "b@example.com"):
            await lb.pool.pause(lb.pool.get(lb.ids[other]))  # type: ignore[arg-type]
        await proxied_request(lb)
        assert await served_by(lb) == [c.id]
        await screenshot(page, "dashboard-accounts-imported.png")

    async def test_import_refuses_a_file_that_is_not_a_login(
        self, lb: LB, page: Any, tmp_path: Path
    ) -> None:
        """A JSON file without tokens is refused with the reason, nothing added."""
        bad = tmp_path / "auth.json"
        bad.write_text(json.dumps({"OPENAI_API_KEY": "sk-x"}))
        await open_page(page, lb, "/dashboard/accounts")

        await page.locator("#import-file").set_input_files(str(bad))
        notice = page.locator("#notice.error")
        await notice.wait_for()

        assert await notice.inner_text() == (
            "Import failed: auth.json: no 'tokens' object: "
            "is this a ChatGPT login of the Codex CLI?"
        )
        assert len(lb.pool.accounts) == 2

    async def test_reauth_shows_the_code_and_its_progress(
        self, lb: LB, page: Any
    ) -> None:
        """Re-auth by device code shows the code, then the account is back."""
        a_id = lb.ids["a@example.com"]
        await lb.pool.require_reauth(lb.pool.get(a_id), "invalid_grant")  # type: ignore[arg-type]
        await open_page(page, lb, "/dashboard/accounts")
        why = await row(page, "a@example.com").locator(".why").inner_text()

        await row(page, "a@example.com").locator("button[data-action=re-auth]").click()
        await page.locator("#login-dialog button[data-mode=device]").click()
        code = page.locator("#login-code")
        await code.wait_for()
        user_code = await code.inner_text()
        await screenshot(page, "dashboard-reauth.png")
        lb.emulator.approve_device(user_code, "a@example.com")
        await page.wait_for_function(
            "() => document.querySelector('#login-status').textContent"
            ".startsWith('Signed in')",
            timeout=15_000,
        )
        await page.locator("#login-dialog button[value=close]").click()
        await row(page, "a@example.com").locator(".badge.active").wait_for()

        assert why == "invalid_grant"
        assert await page.locator("#login-title").inner_text() == (
            "Re-auth a@example.com"
        )
        assert lb.pool.get(a_id).status == "active"  # type: ignore[union-attr]


class TestRequestLogPage:
    async def test_filters_by_account_model_and_status(self, lb: LB, page: Any) -> None:
        """Filtering narrows the table to the matching rows, newest first."""
        a_id, b_id = lb.ids["a@example.com"], lb.ids["b@example.com"]
        await lb.pool.pause(lb.pool.get(b_id))  # type: ignore[arg-type]
        await proxied_request(lb, "gpt-5")
        await proxied_request(lb, "gpt-5-mini")
        await lb.pool.resume(lb.pool.get(b_id))  # type: ignore[arg-type]
        await lb.pool.pause(lb.pool.get(a_id))  # type: ignore[arg-type]
        await proxied_request(lb, "gpt-5")
        await proxied_request(lb, "gpt-5-typo")  # the upstream refuses it: 400
        rows = await lb.request_logs()
        await open_page(page, lb, "/dashboard/requests")
        table = page.locator("#requests-table tbody tr")
        all_ids = await table.evaluate_all("rows => rows.map(r => r.dataset.requestId)")

        await page.select_option("#filters select[name=account]", a_id)
        await page.click("#filters button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelectorAll('#requests-table tbody tr').length === 2"
        )
        by_account = await table.evaluate_all(
            "rows => rows.map(r => r.dataset.requestId)"
        )
        await page.select_option("#filters select[name=model]", "gpt-5")
        await page.click("#filters button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelectorAll('#requests-table tbody tr').length === 1"
        )
        by_model = await table.evaluate_all(
            "rows => rows.map(r => r.dataset.requestId)"
        )
        await page.click("#filters button[type=reset]")
        await page.select_option("#filters select[name=status]", "error")
        await page.click("#filters button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelectorAll('#requests-table tbody tr').length === 1"
        )
        errors = await table.locator("td.error-code").all_inner_texts()
        await screenshot(page, "dashboard-requests-errors.png")

        newest_first = [r.request_id for r in reversed(rows)]
        assert all_ids == newest_first
        assert by_account == [rows[1].request_id, rows[0].request_id]
        assert by_model == [rows[0].request_id]
        assert errors == [rows[3].error_code]
        assert rows[3].error_code is not None

    async def test_paging_older_and_newer(self, lb: LB, page: Any) -> None:
        """60 rows: the first page shows the newest 50; Older shows the other
        10, Newer the first 50 again."""
        rows = [
            RequestLogRow(
                request_id=f"req-{n:02d}",
                started_at=lb.pool.now() - 600 + n,
                api="codex",
                model="gpt-5",
                account_id=lb.ids["a@example.com"],
                status="success",
                status_code=200,
                error_code=None,
                attempts=1,
                latency_ms=10.0,
            )
            for n in range(60)
        ]
        await lb.store.write_request_logs(rows)
        newest_first = [f"req-{n:02d}" for n in reversed(range(60))]
        table = page.locator("#requests-table tbody tr")

        async def shown() -> list[str]:
            ids: list[str] = await table.evaluate_all(
                "rows => rows.map(r => r.dataset.requestId)"
            )
            return ids

        await open_page(page, lb, "/dashboard/requests")
        first = await shown()
        newer_disabled = await page.locator("#newer").is_disabled()
        await page.click("#older")
        await page.wait_for_function(
            "() => document.querySelectorAll('#requests-table tbody tr').length === 10"
        )
        second = await shown()
        older_disabled = await page.locator("#older").is_disabled()
        info = await page.locator("#page-info").inner_text()
        await page.click("#newer")
        await page.wait_for_function(
            "() => document.querySelectorAll('#requests-table tbody tr').length === 50"
        )
        back = await shown()

        assert first == newest_first[:50]
        assert second == newest_first[50:]
        assert back == first
        assert (newer_disabled, older_disabled) == (True, True)
        assert info == "rows 51\u201360"

    async def test_time_filter_and_full_page(self, lb: LB, page: Any) -> None:
        """A time range after every request shows none; the full log shows all."""
        for _ in range(3):
            await proxied_request(lb)
        await lb.request_logs()
        await open_page(page, lb, "/dashboard/requests")
        await screenshot(page, "dashboard-requests.png")
        shown = await page.locator("#requests-table tbody tr").count()

        await page.fill("#filters input[name=since]", "2099-01-01T00:00")
        await page.click("#filters button[type=submit]")
        await page.locator("#requests-empty").wait_for()

        assert shown == 3
        assert await page.locator("#requests-table tbody tr").count() == 0
