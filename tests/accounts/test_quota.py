"""Quota readings from usage polls and headers: classified by window length."""

from __future__ import annotations

from codex_lb.accounts.quota import reading_from_headers, reading_from_usage

T = 1_800_000_000


class TestReadingFromUsage:
    def test_weekly_window_in_primary_slot_feeds_weekly(self) -> None:
        """C14: a 7-day window reported as primary is the weekly reading."""
        payload = {
            "plan_type": "free",
            "rate_limit": {
                "primary_window": {
                    "used_percent": 100,
                    "limit_window_seconds": 604800,
                    "reset_at": T + 471285,
                },
                "secondary_window": None,
            },
        }

        reading = reading_from_usage(payload, now=T)

        assert reading is not None
        assert reading.secondary_used_percent == 100
        assert reading.secondary_reset_at == T + 471285
        assert reading.secondary_window_minutes == 10080
        assert reading.primary_used_percent is None

    def test_thirty_day_window_is_weekly_too(self) -> None:
        """C14 variant: a 30-day window feeds the long-window reading."""
        payload = {
            "rate_limit": {
                "primary_window": {
                    "used_percent": 12.5,
                    "limit_window_seconds": 30 * 86400,
                    "reset_after_seconds": 100,
                }
            }
        }

        reading = reading_from_usage(payload, now=T)

        assert reading is not None
        assert reading.secondary_used_percent == 12.5
        assert reading.secondary_reset_at == T + 100

    def test_reset_at_wins_over_reset_after(self) -> None:
        """When both are given, ``reset_at`` is used."""
        window = {
            "used_percent": 5,
            "limit_window_seconds": 18000,
            "reset_after_seconds": 10,
            "reset_at": T + 999,
        }

        reading = reading_from_usage({"rate_limit": {"primary_window": window}}, T)

        assert reading is not None and reading.primary_reset_at == T + 999

    def test_missing_fields_are_unknown_not_zero(self) -> None:
        """A window with no used percent is None, never 0."""
        payload = {"rate_limit": {"primary_window": {"limit_window_seconds": 18000}}}

        reading = reading_from_usage(payload, T)

        assert reading is not None and reading.primary_used_percent is None

    def test_no_windows_is_no_reading(self) -> None:
        assert reading_from_usage({"rate_limit": None}, T) is None
        assert reading_from_usage("nonsense", T) is None


class TestReadingFromHeaders:
    def test_empty_values_and_zero_window_are_ignored(self) -> None:
        """C14: empty header values never become 0, so no fake reset."""
        headers = {
            "x-codex-secondary-window-minutes": "0",
            "x-codex-secondary-reset-at": "",
            "x-codex-secondary-used-percent": "",
        }

        assert reading_from_headers(headers, T) is None

    def test_both_windows(self) -> None:
        headers = {
            "x-codex-primary-used-percent": "12.5",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-after-seconds": "600",
            "x-codex-secondary-used-percent": "40",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": str(T + 5000),
        }

        reading = reading_from_headers(headers, T)

        assert reading is not None
        assert (reading.primary_used_percent, reading.primary_reset_at) == (
            12.5,
            T + 600,
        )
        assert (reading.secondary_used_percent, reading.secondary_reset_at) == (
            40,
            T + 5000,
        )

    def test_the_same_headers_read_later_are_read_again(self) -> None:
        """Readings of repeated headers are taken at their own time; a reset
        given only in seconds from now moves with it, one given as a time
        does not."""
        headers = {
            "x-codex-primary-used-percent": "12",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-after-seconds": "600",
            "x-codex-secondary-used-percent": "40",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": str(T + 5000),
            "x-codex-secondary-reset-after-seconds": "4000",
        }
        timed = {**headers, "x-codex-primary-reset-at": str(T + 900)}

        readings = [
            reading_from_headers(h, T + d) for d in (0, 100) for h in (headers, timed)
        ]

        assert [
            (r.observed_at, r.primary_reset_at, r.secondary_reset_at)
            for r in readings
            if r
        ] == [
            (T, T + 600, T + 5000),
            (T, T + 900, T + 5000),
            (T + 100, T + 700, T + 5000),
            (T + 100, T + 900, T + 5000),
        ]
