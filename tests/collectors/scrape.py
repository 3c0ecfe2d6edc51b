"""Reading codex-lb's /metrics in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from codex_lb.app import BUS_KEY
from tests.conftest import LB

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, keys), value in samples.items()
        if sample == name and set(labels.items()) <= set(keys)
    )


async def scrape_text(lb: LB) -> str:
    """``/metrics`` once every event published so far has been handled.

    ``async`` handlers (the weekly counter writes its baseline before it
    counts) finish a moment after the event; waiting for them makes a scrape
    show what the test did, not a race with the disk.
    """
    await lb.app[BUS_KEY].drain()
    response = await lb.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    return await response.text()


async def scrape_until(
    lb: LB, ready: Callable[[Samples], bool], seconds: float = 5.0
) -> Samples:
    """Scrape until ``ready`` holds (events land just after the last byte)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        samples = parse(await scrape_text(lb))
        if ready(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.02)
