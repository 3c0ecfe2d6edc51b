"""AccountRoster: identity per mode and accounts by status."""

from __future__ import annotations

from codex_lb.config import IdentityMode
from codex_lb.events.testing import CollectorHarness
from collectors.account_roster import AccountRoster
from tests.collectors.events import info, roster

IDENTITY = "codex_lb_account_identity"


class TestIdentity:
    async def test_email_mode_shows_email(self) -> None:
        """In email mode ``display`` is the account's email."""
        harness = await CollectorHarness.start(AccountRoster)

        harness.feed(roster(info()))

        labels = {"account_id": "acc-1", "display": "a@example.com"}
        assert harness.sample(IDENTITY, labels) == 1

    async def test_account_id_mode_has_no_email(self) -> None:
        """In account_id mode no email appears anywhere in the output."""
        harness = await CollectorHarness.start(
            AccountRoster, identity_mode=IdentityMode.ACCOUNT_ID
        )

        harness.feed(roster(info()))

        assert (
            harness.sample(IDENTITY, {"account_id": "acc-1", "display": "acc-1"}) == 1
        )
        assert "example.com" not in harness.text()

    async def test_email_with_a_lone_surrogate_is_shown(self) -> None:
        """An email holding a lone surrogate still gets its identity series,
        with U+FFFD in the surrogate's place."""
        harness = await CollectorHarness.start(AccountRoster)

        harness.feed(roster(info(email="a\ud800@x.com")))

        labels = {"account_id": "acc-1", "display": "a\ufffd@x.com"}
        assert harness.sample(IDENTITY, labels) == 1
        assert "a\ufffd@x.com" in harness.text()

    async def test_rename_and_removal_drop_old_series(self) -> None:
        """A renamed account keeps one series; a removed one keeps none."""
        harness = await CollectorHarness.start(AccountRoster)
        harness.feed(roster(info(), info("acc-2", "b@example.com")))

        harness.feed(roster(info(email="new@example.com")))

        text = harness.text()
        assert "a@example.com" not in text
        assert "acc-2" not in text
        labels = {"account_id": "acc-1", "display": "new@example.com"}
        assert harness.sample(IDENTITY, labels) == 1


class TestStatuses:
    async def test_every_status_is_shown_zero_included(self) -> None:
        """All five statuses have a series, counted from the roster."""
        harness = await CollectorHarness.start(AccountRoster)

        harness.feed(
            roster(
                info("a", status="active"),
                info("b", status="active"),
                info("c", status="paused"),
            )
        )

        counts = {
            status: harness.sample("codex_lb_accounts", {"status": status})
            for status in (
                "active",
                "paused",
                "rate_limited",
                "quota_exceeded",
                "reauth_required",
            )
        }
        assert counts == {
            "active": 2,
            "paused": 1,
            "rate_limited": 0,
            "quota_exceeded": 0,
            "reauth_required": 0,
        }
