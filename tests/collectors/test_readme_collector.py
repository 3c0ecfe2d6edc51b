"""The README's "Writing a collector" section works as written.

Its python blocks (the example collector, then its harness test) are written
to modules as a reader would save them; the collector is loaded into a real
codex-lb through the ``CODEX_LB_COLLECTORS`` value the section gives, and
the harness test is run.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codex_lb.sim import Emulator
from tests.collectors.scrape import parse, scrape_text
from tests.conftest import LB

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Writing a collector"
METRIC = "codex_lb_example_slow_requests_total"


def section() -> str:
    """The section's text, up to the next second-level heading."""
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section(), re.S | re.M)


def collector_spec() -> str:
    [spec] = re.findall(r"CODEX_LB_COLLECTORS=(\S+)", section())
    return spec


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The README's collector saved as the module its spec names, and its
    harness test beside it; the harness module's name."""
    collector, harness = blocks("python")
    module = collector_spec().split(":")[0]
    (tmp_path / f"{module}.py").write_text(collector)
    (tmp_path / "readme_harness_test.py").write_text(harness)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "readme_harness_test"
    for name in (module, "readme_harness_test"):
        sys.modules.pop(name, None)


class TestReadmeCollector:
    def test_section_comes_before_development(self) -> None:
        """The section and the forecasts summary sit right before
        Development, with two python blocks and the loading command."""
        headings = re.findall(r"^## (.+)$", README.read_text(), re.M)

        at = headings.index("Writing a collector")
        assert headings[at : at + 3] == [
            "Writing a collector",
            "Forecasts",
            "Development",
        ]
        assert len(blocks("python")) == 2
        assert collector_spec() == "slow_requests:SlowRequests"

    async def test_loaded_by_the_setting_it_counts_a_request(
        self,
        saved: str,
        make_lb: Any,
        emulator: Emulator,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Through CODEX_LB_COLLECTORS, with a threshold every request
        passes, one real request counts once under its API."""
        monkeypatch.setenv("SLOW_REQUEST_MS", "0")
        lb: LB = await make_lb(emulator, CODEX_LB_COLLECTORS=collector_spec())

        response = await lb.client.post(
            "/backend-api/codex/responses",
            json={"model": "gpt-5", "input": "hi", "stream": True, "store": False},
        )
        await response.read()
        samples = parse(await scrape_text(lb))

        assert response.status == 200
        assert samples[(METRIC, (("api", "codex"),))] == 1
        assert samples[(METRIC, (("api", "chat"),))] == 0

    async def test_its_harness_test_passes(
        self, saved: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every test function of the README's harness block runs and passes
        with the default threshold."""
        monkeypatch.delenv("SLOW_REQUEST_MS", raising=False)
        module = importlib.import_module(saved)
        tests = [
            function
            for name, function in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("test_")
        ]

        for test in tests:
            await test()

        assert len(tests) == 1
