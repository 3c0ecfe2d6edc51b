"""The alert rules in compose/alerts, unit-tested by `promtool test rules`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compose.helpers import RULE_TESTS, RULES, tool

pytestmark = pytest.mark.prometheus

ALERTS = (
    "CodexLbAccountNeedsReauth",
    "CodexLbPoolExhaustsBeforeReset",
    "CodexLbHighErrorRate",
    "CodexLbWeeklyQuotaResetsUnused",
    "CodexLbNotScraped",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=60
    )


def expectations(text: str) -> list[tuple[str, bool]]:
    """(alert, fires) for every `alert_rule_test` step of a test file."""
    steps = re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*)", text)
    return [(name, rest.strip() != "[]") for name, rest in steps]


class TestAlertRules:
    def test_rules_are_valid(self) -> None:
        """`promtool check rules` accepts the rule file."""
        result = promtool("check", "rules", str(RULES))

        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS: 5 rules found" in result.stdout

    def test_unit_tests_pass(self) -> None:
        """`promtool test rules` passes every synthetic-series case."""
        result = promtool("test", "rules", str(RULE_TESTS))

        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_every_alert_is_tested_firing_and_quiet(self) -> None:
        """Each alert has at least one firing and one quiet expectation."""
        steps = expectations(RULE_TESTS.read_text())
        defined = re.findall(r"- alert: (\w+)", RULES.read_text())

        assert sorted(defined) == sorted(ALERTS)
        for alert in ALERTS:
            assert (alert, True) in steps, f"{alert} is never expected to fire"
            assert (alert, False) in steps, f"{alert} is never expected to be quiet"

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("> 0.05", "> 0.5"),
            (
                "codex_lb_secondary_used_percent < 50",
                "codex_lb_secondary_used_percent < 5",
            ),
            ("for: 1m", "for: 30m"),
            (
                "< min(codex_lb_secondary_reset_at_seconds > time()) - time()",
                "< 3600",
            ),
            # A reset time already passed must not count as the earliest.
            (
                "codex_lb_secondary_reset_at_seconds > time())",
                "codex_lb_secondary_reset_at_seconds)",
            ),
            ('up{job="codex-lb"} == 0 or ', ""),
        ],
    )
    def test_unit_tests_catch_a_broken_rule(
        self, tmp_path: Path, old: str, new: str
    ) -> None:
        """A rule with a changed threshold or condition fails the unit tests."""
        shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
        text = RULES.read_text()
        assert old in text
        (tmp_path / RULES.name).write_text(text.replace(old, new, 1))

        result = promtool("test", "rules", str(tmp_path / RULE_TESTS.name))

        assert result.returncode == 1, result.stdout
        assert "FAILED" in result.stdout + result.stderr
