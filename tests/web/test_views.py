"""The dashboard's page data computed from accounts and request totals."""

from __future__ import annotations

import datetime

from codex_lb.accounts import Account
from codex_lb.store import QuotaReading, RequestTotals, TokenSet
from codex_lb.web import views

T = 1_800_000_000.0


def account(
    email: str,
    status: str = "active",
    plan: str = "plus",
    primary: float | None = None,
    weekly: float | None = None,
    primary_reset: float | None = None,
    weekly_reset: float | None = None,
    until: float | None = None,
) -> Account:
    quota = None
    if primary is not None or weekly is not None:
        quota = QuotaReading(
            observed_at=T,
            source="poll",
            primary_used_percent=primary,
            primary_reset_at=primary_reset,
            secondary_used_percent=weekly,
            secondary_reset_at=weekly_reset,
        )
    return Account(
        id="acc_" + email[0],
        email=email,
        chatgpt_account_id="cg-" + email[0],
        plan=plan,
        status=status,
        status_reason=None,
        status_until=until,
        pinned=False,
        tokens=TokenSet("at", "rt", None, refreshed_at=T),
        quota=quota,
        last_used_at=None,
    )


NO_REQUESTS = RequestTotals(0, 0, 0.0, 0, 0)


class TestRemainingWeeklyCredits:
    def test_plan_capacity_times_what_is_left(self) -> None:
        """Plus at 25 % used has 7 560 x 0.75 left; pro at 10 % 50 400 x 0.9."""
        assert views.remaining_weekly_credits("plus", 25.0) == 5670.0
        assert views.remaining_weekly_credits("pro", 10.0) == 45360.0
        assert views.remaining_weekly_credits("team", 0.0) == 7560.0

    def test_unknown_plan_or_reading_is_none(self) -> None:
        """No capacity or no reading gives no number rather than a guess."""
        assert views.remaining_weekly_credits("mystery", 10.0) is None
        assert views.remaining_weekly_credits("plus", None) is None

    def test_over_full_is_zero(self) -> None:
        """A reading above 100 % leaves nothing, never a negative amount."""
        assert views.remaining_weekly_credits("plus", 130.0) == 0.0


class TestPoolSnapshot:
    def test_quota_left_resets_and_statuses(self) -> None:
        """Means and sums cover serving accounts; resets are the next future ones."""
        accounts = [
            account(
                "a@x",
                primary=20.0,
                weekly=40.0,
                primary_reset=T + 600,
                weekly_reset=T + 9000,
            ),
            account(
                "b@x",
                status="rate_limited",
                primary=100.0,
                weekly=60.0,
                primary_reset=T + 300,
                weekly_reset=T - 5,
                until=T + 300,
            ),
            account(
                "c@x", status="paused", primary=0.0, weekly=0.0, primary_reset=T + 60
            ),
            account("d@x", plan="pro", status="reauth_required", weekly=0.0),
        ]
        hour = RequestTotals(4, 1, 0.5, 10, 20)

        snapshot = views.pool_snapshot(accounts, NO_REQUESTS, NO_REQUESTS, hour, T)

        assert snapshot["primary_left_percent"] == 40.0  # (80 + 0) / 2
        assert snapshot["secondary_left_percent"] == 50.0  # (60 + 40) / 2
        assert snapshot["weekly_credits_left"] == 7560 * 0.6 + 7560 * 0.4
        assert snapshot["weekly_credits_capacity"] == 15120.0
        assert snapshot["next_primary_reset_at"] == T + 300
        assert snapshot["next_secondary_reset_at"] == T + 9000
        assert snapshot["next_bench_end_at"] == T + 300
        assert snapshot["accounts_by_status"] == {
            "active": 1,
            "paused": 1,
            "rate_limited": 1,
            "quota_exceeded": 0,
            "reauth_required": 1,
        }
        assert snapshot["last_hour"] == {
            "requests": 4,
            "errors": 1,
            "error_rate": 0.25,
            "cost_usd": 0.5,
            "input_tokens": 10,
            "output_tokens": 20,
        }

    def test_quota_left_weighs_each_account_by_its_plan(self) -> None:
        """A pro account at 10 % used and a plus one at 90 %: what is left
        is weighted by capacity (pro 50 400, plus 7 560), as the pool's quota
        for the Codex CLI is, not the plain mean of 50 %."""
        accounts = [
            account("p@x", plan="pro", primary=10.0, weekly=10.0),
            account("q@x", plan="plus", primary=90.0, weekly=90.0),
        ]

        snapshot = views.pool_snapshot(
            accounts, NO_REQUESTS, NO_REQUESTS, NO_REQUESTS, T
        )

        left = (90 * 50400 + 10 * 7560) / (50400 + 7560)
        assert snapshot["primary_left_percent"] == round(left, 2)
        assert snapshot["secondary_left_percent"] == round(left, 2)

    def test_no_readings(self) -> None:
        """With no reading anywhere, quota left and resets are unknown."""
        snapshot = views.pool_snapshot(
            [account("a@x")], NO_REQUESTS, NO_REQUESTS, NO_REQUESTS, T
        )

        assert snapshot["primary_left_percent"] is None
        assert snapshot["next_secondary_reset_at"] is None
        assert snapshot["weekly_credits_left"] == 0
        assert snapshot["last_hour"]["error_rate"] == 0.0


class TestCalendar:
    def test_day_and_week_start_in_local_time(self) -> None:
        """Today starts at local midnight, the week on Monday's."""
        now = datetime.datetime(2027, 1, 14, 15, 30).timestamp()  # a Thursday

        assert views.day_start(now) == datetime.datetime(2027, 1, 14).timestamp()
        assert views.week_start(now) == datetime.datetime(2027, 1, 11).timestamp()
