"""Under CI, a test skipped for want of a tool fails instead.

The Prometheus, Compose, Codex CLI and browser tests skip on a developer's
machine that lacks their tool, which is a kindness there and a lie in CI:
a green run would prove nothing about the parts those tests cover. With
the environment variable CI set, any skip whose reason names one of those
tools (whether it came from a `skipif` mark, a `pytest.skip()` in a helper
or fixture, or `importorskip`) is reported as a failure. Skips for other
reasons (a file only some machines have) stay skips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

# Words a skip reason uses when a tool the suite needs is missing.
TOOL_REASON = re.compile(
    r"prometheus|promtool|chromium|playwright|compose|CODEX_LB_TEST_CODEX"
    r"|codex cli|codex binary|npm",
    re.IGNORECASE,
)


def running_in_ci(environ: Any = None) -> bool:
    """CI is set to anything but an empty string, 0 or false."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


def skip_reason(report: pytest.TestReport) -> str:
    """The reason text of a skipped report."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[Any]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not running_in_ci():
        return

    reason = skip_reason(report)
    if TOOL_REASON.search(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} would be skipped, but CI is set and the skip hides a "
            f"missing tool: {reason}"
        )
