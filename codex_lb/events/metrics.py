"""Metric helpers for collectors: typed metrics over aioprometheus, and the
text exposition that Prometheus reads.

A metric declares its label names once; every update names each label by
keyword (``requests.inc(status="success", model="gpt-5", api="codex")``), so
a missing or extra label fails at the line that made it. Every label value
enters a series through ``label_value``, which makes it valid UTF-8 (a lone
surrogate, as a broken email can hold, would make aioprometheus' key
encoding raise), and is escaped when rendered: aioprometheus writes values
raw, and one quote or newline in a value would make Prometheus reject the
whole scrape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import aioprometheus
import orjson
from aioprometheus.collectors import Collector as PromCollector
from aioprometheus.formats.text import TEXT_CONTENT_TYPE
from aioprometheus.histogram import Histogram as _HistogramState
from aioprometheus.metricdict import MetricDict

CONTENT_TYPE = TEXT_CONTENT_TYPE

# Latency of LLM calls: a cached compact answer takes tens of milliseconds, a
# long reasoning stream many minutes. Milliseconds, up to 15 minutes.
LATENCY_MS_BUCKETS: tuple[float, ...] = (
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    20_000.0,
    30_000.0,
    60_000.0,
    120_000.0,
    300_000.0,
    600_000.0,
    900_000.0,
)


class MetricError(ValueError):
    """A metric was declared or updated wrongly."""


def label_value(value: object) -> str:
    """``value`` as label text: a string that is valid UTF-8, with each lone
    surrogate (which no UTF-8 encoder accepts) replaced by U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_label_value(value: str) -> str:
    """A label value as the text exposition format writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text as the text exposition format writes it."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Metric:
    """One metric family with fixed label names."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        collector: PromCollector,
        labels: Sequence[str],
    ) -> None:
        self._metric = collector
        self.label_names: tuple[str, ...] = tuple(labels)

    @property
    def name(self) -> str:
        return self._metric.name

    @property
    def doc(self) -> str:
        return self._metric.doc

    def _key(self, labels: Mapping[str, Any]) -> dict[str, str]:
        if set(labels) != set(self.label_names):
            raise MetricError(
                f"{self.name} takes labels {sorted(self.label_names)}, "
                f"got {sorted(labels)}"
            )
        return {name: label_value(labels[name]) for name in self.label_names}

    def remove(self, **labels: Any) -> None:
        """Drop the series with exactly these labels, if it exists."""
        self._metric.values.pop(self._key(labels), None)

    def remove_where(self, **labels: Any) -> int:
        """Drop every series whose labels include these; how many went."""
        wanted = {name: label_value(value) for name, value in labels.items()}
        unknown = set(wanted) - set(self.label_names)
        if unknown:
            raise MetricError(f"{self.name} has no label {sorted(unknown)}")
        gone = [
            series
            for series in self.series()
            if all(series.get(k) == v for k, v in wanted.items())
        ]
        for series in gone:
            del self._metric.values[series]
        return len(gone)

    def series(self) -> Iterator[dict[str, str]]:
        """The label sets of every series this metric has now."""
        for labels, _value in self._metric.get_all():
            yield dict(labels)

    def clear(self) -> None:
        self._metric.values.clear()


class Counter(Metric):
    """A value that only goes up; a new series starts at 0."""

    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: Any) -> None:
        if amount < 0 or math.isnan(amount):
            raise MetricError(f"{self.name} cannot go down (amount {amount})")
        self._metric.add(self._key(labels), amount)  # type: ignore[attr-defined]

    def touch(self, **labels: Any) -> None:
        """Make the series exist at 0 so that the first increase is seen."""
        key = self._key(labels)
        if key not in self._metric.values:
            self._metric.set_value(key, 0)

    def value(self, **labels: Any) -> float | None:
        return self._metric.values.get(self._key(labels))


class Gauge(Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, /, **labels: Any) -> None:
        self._metric.set_value(self._key(labels), value)

    def inc(self, amount: float = 1.0, /, **labels: Any) -> None:
        key = self._key(labels)
        self._metric.set_value(key, self._metric.values.get(key, 0) + amount)

    def dec(self, amount: float = 1.0, /, **labels: Any) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: Any) -> float | None:
        return self._metric.values.get(self._key(labels))


class Histogram(Metric):
    """Observations counted in cumulative buckets (a bound is inclusive)."""

    kind = "histogram"

    def observe(self, value: float, /, **labels: Any) -> None:
        self._metric.add(self._key(labels), float(value))  # type: ignore[attr-defined]

    def touch(self, **labels: Any) -> None:
        """Make the series exist with every bucket at 0."""
        key = self._key(labels)
        if key not in self._metric.values:
            bounds: Any = self._metric
            self._metric.set_value(key, _HistogramState(*bounds.upper_bounds))

    def buckets(self, **labels: Any) -> dict[float, float] | None:
        """Cumulative count per upper bound, ``inf`` last; None if unseen."""
        key = self._key(labels)
        if key not in self._metric.values:
            return None
        state: Any = self._metric.values[key]
        return {float(k): float(v) for k, v in state.buckets.items()}

    def count(self, **labels: Any) -> float | None:
        key = self._key(labels)
        if key not in self._metric.values:
            return None
        return float(self._metric.values[key].observations)

    def sum(self, **labels: Any) -> float | None:
        key = self._key(labels)
        if key not in self._metric.values:
            return None
        return float(self._metric.values[key].sum)


class ExpositionRenderer:
    """Writes registries in the Prometheus text format, version 0.0.4.

    aioprometheus' own formatter neither escapes label values nor runs fast
    enough for hundreds of accounts: it decodes every series key and builds
    each line through several dictionaries on every scrape. This renderer
    reads the stored series directly and keeps each series' escaped label
    text between scrapes, so a scrape costs a string join per series.
    """

    def __init__(self) -> None:
        self._labels: dict[bytes | str, str] = {}

    def render(self, registry: aioprometheus.Registry) -> bytes:
        families = sorted(registry.get_all(), key=lambda c: c.name)
        lines: list[str] = []
        live = 0
        for family in families:
            kind = _KINDS.get(type(family))
            if kind is None:
                continue
            lines.append(f"# HELP {family.name} {escape_help(family.doc)}")
            lines.append(f"# TYPE {family.name} {kind}")
            store: dict[bytes | str, Any] = family.values.store
            live += len(store)
            if kind == "histogram":
                self._histogram_lines(family.name, store, lines)
                continue
            for key, value in store.items():
                lines.append(f"{family.name}{self._label_text(key)} {_number(value)}")
        lines.append("")

        # Series of removed accounts leave cached label text behind.
        if len(self._labels) > 2 * live + 1000:
            self._labels.clear()
        return "\n".join(lines).encode()

    def _histogram_lines(
        self, name: str, store: dict[bytes | str, Any], lines: list[str]
    ) -> None:
        for key, state in store.items():
            labels = self._label_text(key)
            prefix = labels[:-1] + "," if labels else "{"
            for bound, count in state.buckets.items():
                le = "+Inf" if math.isinf(bound) else str(float(bound))
                lines.append(f'{name}_bucket{prefix}le="{le}"}} {_number(count)}')
            lines.append(f"{name}_count{labels} {_number(state.observations)}")
            lines.append(f"{name}_sum{labels} {_number(state.sum)}")

    def _label_text(self, key: bytes | str) -> str:
        text = self._labels.get(key)
        if text is None:
            labels = {} if key == MetricDict.EMPTY_KEY else orjson.loads(key)
            text = (
                "{"
                + ",".join(
                    f'{k}="{escape_label_value(str(v))}"' for k, v in labels.items()
                )
                + "}"
                if labels
                else ""
            )
            self._labels[key] = text
        return text


_KINDS: dict[type, str] = {
    aioprometheus.Counter: "counter",
    aioprometheus.Gauge: "gauge",
    aioprometheus.Histogram: "histogram",
}


def _number(value: Any) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


_default_renderer = ExpositionRenderer()


def render(registry: aioprometheus.Registry) -> bytes:
    """The registry in the Prometheus text format, version 0.0.4."""
    return _default_renderer.render(registry)
